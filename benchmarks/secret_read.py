"""A cold start's first secret read: ``python -m benchmarks.secret_read [--samples N]``.

On AWS every function reads a secret from Secrets Manager on its first call (the database's
credentials, the token signing key); ``make bench`` gives the database as ``DATABASE_URL``
instead, so its cold starts do not show that read. This measures it alone, on the host build
(``make bench-build`` first) and the Lambda runtime's boto3, in fresh ``python3.13 -I -S -B``
processes that first import ``GetPostFunction`` (untimed, as a cold start has by then), then
time ``blog.secrets_manager.read_secret`` once, three ways, samples interleaved:

- ``sdk``: through the AWS SDK (Powertools' parameters utility: boto3's import, a client, the
  call), as without the extension;
- ``sdk, modules primed``: the same after the SDK's modules were imported, as after a SnapStart
  restore (the before-snapshot hook imports them);
- ``extension``: through the Parameters and Secrets Lambda Extension's HTTP interface.

Secrets Manager and the extension are one local stand-in that answers both interfaces at once
(``GetSecretValue`` in the AWS JSON protocol, and ``GET /secretsmanager/get``), so the times are
the client side's: the SDK's import, client and request, or one local HTTP request. What the
real extension adds (its own start during the environment's initialization, its call to Secrets
Manager on a cache miss) cannot be measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks import cold

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:blog/db-AbCdEf"
SECRET = json.dumps({"username": "blog", "password": "not-a-real-password", "host": "db"})
ANSWER = json.dumps({"ARN": ARN, "Name": "blog/db", "SecretString": SECRET, "VersionId": "v1"})
TOKEN = "session-token"

CHILD = """
import sys, time
sys.path[:0] = {path!r}
import app  # the function's import, untimed
from blog import secrets_manager
if {primed!r}:
    from blog import snapstart
    snapstart._aws_sdk()
started = time.perf_counter()
value = secrets_manager.read_secret({arn!r}, max_age=300)
elapsed = time.perf_counter() - started
assert value == {secret!r}, value
print(elapsed * 1000, "boto3" in sys.modules)
"""

VARIANTS = {
    "sdk": {"SECRETS_EXTENSION": "false", "primed": False},
    "sdk, modules primed": {"SECRETS_EXTENSION": "false", "primed": True},
    "extension": {"SECRETS_EXTENSION": "true", "primed": False},
}


class _StandIn(BaseHTTPRequestHandler):
    """Secrets Manager's GetSecretValue and the extension's read, answering the one secret."""

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(ANSWER.encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("X-Aws-Parameters-Secrets-Token") != TOKEN:
            self.send_error(400)
            return
        self._answer(ANSWER.encode())

    def log_message(self, *_args: Any) -> None:
        return


def measure(python: str, package: cold.Package, samples: int) -> dict[str, Any]:
    """Median and p90 (ms) of each variant's first read, from ``samples`` interleaved rounds of
    fresh processes of ``package`` (``GetPostFunction``'s)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LAMBDA_TASK_ROOT": str(package.function_dir),
        "AWS_LAMBDA_FUNCTION_NAME": package.name,
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-key",
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{port}",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        "POWERTOOLS_SERVICE_NAME": "blog-api",
        "DB_SECRET_ARN": ARN,
    }
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    sdk_loaded: dict[str, bool] = {}
    try:
        for _ in range(samples):
            for name, variant in VARIANTS.items():
                code = CHILD.format(
                    path=package.path, primed=variant["primed"], arn=ARN, secret=SECRET
                )
                env = {**base, "SECRETS_EXTENSION": str(variant["SECRETS_EXTENSION"])}
                done = subprocess.run(
                    [python, "-I", "-S", "-B", "-c", code],
                    capture_output=True, text=True, env=env, timeout=120, check=False,
                )  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
                elapsed, loaded = done.stdout.split()
                times[name].append(float(elapsed))
                sdk_loaded[name] = loaded == "True"
    finally:
        server.shutdown()
        server.server_close()
    found: dict[str, Any] = {"samples": samples, "variants": {}}
    for name, values in times.items():
        found["variants"][name] = {
            "median_ms": statistics.median(values),
            "p90_ms": cold.p90(values),
            "boto3_loaded": sdk_loaded[name],
        }
    return found


def main(argv: list[str] | None = None) -> int:
    """Measure and print one line per variant."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.secret_read")
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args(argv)
    python = cold.find_python313(None)
    host, _ = cold.host_build()
    package = cold.function_packages(host, cold.lambda_runtime(python))["GetPostFunction"]
    found = measure(python, package, args.samples)
    print(f"first secret read of a cold GetPostFunction, {args.samples} samples, median | p90 ms:")
    for name, result in found["variants"].items():
        boto3 = "boto3 loaded" if result["boto3_loaded"] else "no boto3"
        print(f"  {name:<22} {result['median_ms']:7.1f} | {result['p90_ms']:7.1f}   ({boto3})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
