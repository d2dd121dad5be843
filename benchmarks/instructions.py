"""Instructions executed by one cold start: ``python -m benchmarks.instructions [ID ...]``.

Wall-clock cold starts on a shared virtual machine move by a quarter from one run to the next;
the work a cold start does does not. This runs one fresh process per case exactly as ``make
bench-cold`` does (``cold_child``: import of the handler, then its first invocation, sampled, on
an event of its own against the TLS-fronted database), under valgrind's callgrind, and prints the
instructions it executed: for the given functions (default: GetUser, IssueToken, the authorizer),
the FastAPI app on ``GET /users/{id}``, and the required packages alone (the bound). ``--compare
DIR`` adds the same functions from another host build (for a before/after). Needs ``make
bench-build`` and valgrind; each case takes 20-40 s. The counts include the interpreter's own
start (about 34 million instructions) and the child's harness, the same in every case.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import cold
from benchmarks.cold_events import SIGNING_KEY, Fixtures, cold_event
from benchmarks.harness import REPO, UdpSink, event, lambda_environment, start_world

DEFAULT = ("GetUserFunction", "IssueTokenFunction", "AuthorizerFunction")
_COLLECTED = re.compile(r"Collected : (\d+)")


def _wrapper(python: str, logs: Path) -> Path:
    """An executable that runs ``python`` under callgrind, logging to ``logs``."""
    script = logs / "python-under-callgrind"
    script.write_text(
        "#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=/dev/null "
        f'--log-file={logs}/callgrind.%p.log {python} "$@"\n'
    )
    script.chmod(0o755)
    return script


def _instructions(logs: Path) -> int:
    found = [_COLLECTED.search(p.read_text()) for p in logs.glob("callgrind.*.log")]
    return max((int(m.group(1)) for m in found if m), default=0)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0914 - one run, in order
    """Measure and print one line per case."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("functions", nargs="*", default=list(DEFAULT))
    parser.add_argument("--compare", type=Path, help="another host build's folder")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed")
    python = cold.find_python313(None)
    host, _ = cold.host_build()
    runtime = cold.lambda_runtime(python)
    builds = {"": host, **({" (compared)": args.compare} if args.compare else {})}
    world, sink = start_world(), UdpSink()
    results: dict[str, int] = {}
    try:
        fixtures = Fixtures(world.plain_url, world.seed)
        database = world.database_env()
        cases: list[tuple[str, cold.Package, dict[str, str], dict[str, Any]]] = []
        for logical_id in args.functions:
            for suffix, build in builds.items():
                package = cold.Package(
                    logical_id, build / logical_id, build / "SharedLayer" / "python", runtime
                )
                env = {
                    **lambda_environment(logical_id, build, database, sink.address),
                    "JWT_SIGNING_KEY": SIGNING_KEY,
                }
                first = cold_event(logical_id, fixtures, fixtures.round())
                cases.append((f"{logical_id}{suffix}", package, env, first))
        cases.append(
            (
                "FastAPI + Mangum (GET /users/{id})",
                cold.fastapi_package(python, runtime),
                lambda_environment("FastApiFunction", REPO, database, sink.address),
                event("get_user", world.seed),
            )
        )
        cases.append(
            (
                "required packages alone (bound)",
                cold.required_imports_package(python, host, runtime),
                lambda_environment("BlogApiFunction", REPO, database, sink.address),
                event("get_user", world.seed),
            )
        )
        for name, package, env, first in cases:
            with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as scratch:
                logs = Path(scratch)
                done = cold.run_child(str(_wrapper(python, logs)), package, [first], env)
                results[name] = _instructions(logs)
            print(f"  {name:<40} {results[name] / 1e6:9.1f} M   {done['statuses']}", flush=True)
    finally:
        world.stop()
        sink.close()
    reference = results["FastAPI + Mangum (GET /users/{id})"]
    print("instructions of one cold start (import + first sampled call), to FastAPI's:")
    for name, count in results.items():
        print(f"  {name:<40} {count / 1e6:9.1f} M  {count / reference:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
