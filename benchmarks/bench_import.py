"""Import throughput: 10,000 users through ImportUsersFunction's handler, against raw COPY.

    .venv/bin/python -m benchmarks.bench_import [--users 10000] [--rounds 3]

Runs on an embedded PostgreSQL (or ``DATABASE_URL``), in one process, interleaving the three
measurements each round so machine noise hits them alike; prints rows/s (median of rounds).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import local  # noqa: F401 - puts the layer on sys.path


def _event(users: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "bench",
                "body": json.dumps({"users": users}),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bench",
                "awsRegion": "eu-west-1",
            }
        ]
    }


def _truncate() -> None:
    from sqlalchemy import text

    from blog.db import get_engine

    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE users, posts RESTART IDENTITY CASCADE"))


def _copy(rows: list[tuple[str, str, str]]) -> None:
    from blog.db import get_engine

    buffer = io.BytesIO("".join(f"{e}\t{u}\t{h}\n" for e, u, h in rows).encode())
    raw = get_engine().raw_connection()
    try:
        cursor = raw.cursor()
        # pg8000's COPY support: the rows come from ``stream``.
        copy = "COPY users (email, username, hashed_password) FROM STDIN"
        cursor.execute(copy, stream=buffer)  # type: ignore[call-arg]
        raw.commit()
    finally:
        raw.close()


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = None
    if not os.environ.get("DATABASE_URL"):
        from local.embedded_pg import EmbeddedPostgres

        home = Path(tempfile.mkdtemp(prefix="blog-api-bench-"))
        home.chmod(0o711)
        server = EmbeddedPostgres(home / "data").start()
        os.environ["DATABASE_URL"] = server.url()
    os.environ.setdefault("DB_SSLMODE", "disable")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Bench")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    try:
        from blog.security import hash_password
        from local.__main__ import _migrate
        from local.functions import REPO, load_module_from
        from local.gateway import LambdaContext

        _migrate(os.environ["DATABASE_URL"])
        handler = load_module_from(REPO / "functions" / "import_users").lambda_handler
        hashed = hash_password("benchmark-password")
        users = [
            {"email": f"user{n}@example.com", "username": f"user{n}", "hashed_password": hashed}
            for n in range(args.users)
        ]
        renamed = [{**u, "username": u["username"] + "x"} for u in users]
        rows = [(u["email"], u["username"], hashed) for u in users]
        results: dict[str, list[float]] = {"new users": [], "all conflicting": [], "raw COPY": []}
        for _ in range(args.rounds):
            _truncate()
            started = time.perf_counter()
            assert handler(_event(users), LambdaContext("Bench")) == {"batchItemFailures": []}
            results["new users"].append(time.perf_counter() - started)
            started = time.perf_counter()
            assert handler(_event(renamed), LambdaContext("Bench")) == {"batchItemFailures": []}
            results["all conflicting"].append(time.perf_counter() - started)
            _truncate()
            started = time.perf_counter()
            _copy(rows)
            results["raw COPY"].append(time.perf_counter() - started)
        copy_rate = args.users / statistics.median(results["raw COPY"])
        print(f"{args.users} users, {args.rounds} rounds, {os.cpu_count()} cores")
        print(f"{'case':<18}{'median s':>10}{'rows/s':>12}{'vs COPY':>9}")
        for case, times in results.items():
            rate = args.users / statistics.median(times)
            print(
                f"{case:<18}{statistics.median(times):>10.3f}{rate:>12,.0f}{rate / copy_rate:>9.2f}"
            )
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
