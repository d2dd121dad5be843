"""``python -m benchmarks.protected_request [N]``: what one protected request costs end to end.

Through the local gateway's API Gateway emulation in this process (the Lambda authorizer, then
the function), on an embedded PostgreSQL: ``GET /users/{id}`` N times (default 300) with a valid
token. Prints the database connections each request opened (authorizer and handler together)
and the median and 90th percentile of its latency. With NullPool every connection is a TCP
connect and a SCRAM authentication (behind RDS Proxy, a client connection).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Measure and print one line of JSON."""
    samples = int(argv[0]) if argv else 300
    from sqlalchemy import event

    from local.__main__ import _migrate, prepare_environment
    from local.embedded_pg import EmbeddedPostgres

    home = Path(tempfile.mkdtemp(prefix="bench-protected-", dir="/tmp"))  # noqa: S108
    home.chmod(0o711)
    server = EmbeddedPostgres(home / "data", password="bench-password-0123456789")  # noqa: S106
    server.start()
    try:
        url = server.url()
        os.environ.setdefault("JWT_SIGNING_KEY", "bench-signing-key-that-is-long-enough-0123")
        prepare_environment(url)
        _migrate(url)
        from blog.db import get_engine
        from local.gateway import handle

        headers = [("host", "localhost"), ("content-type", "application/json")]
        body = b'{"email": "bench@example.com", "username": "bench", "password": "password-123"}'
        user = json.loads(handle("POST", "/users", headers, body)["body"])
        login = b'{"login": "bench", "password": "password-123"}'
        token = json.loads(handle("POST", "/auth/token", headers, login)["body"])["access_token"]
        signed = [*headers, ("authorization", f"Bearer {token}")]
        path = f"/users/{user['id']}"
        connections = 0

        def count(*_: object) -> None:
            nonlocal connections
            connections += 1

        event.listen(get_engine(), "connect", count)
        for _ in range(20):  # warm
            handle("GET", path, signed, b"")
        connections = 0
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            result = handle("GET", path, signed, b"")
            latencies.append((time.perf_counter() - started) * 1000)
            assert result["statusCode"] == 200, result
        deciles = statistics.quantiles(latencies, n=10)
        print(  # noqa: T201
            json.dumps(
                {
                    "requests": samples,
                    "connections_per_request": connections / samples,
                    "median_ms": round(statistics.median(latencies), 2),
                    "p90_ms": round(deciles[-1], 2),
                }
            )
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
