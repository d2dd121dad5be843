"""Import throughput: users through ImportUsersFunction's handler, against raw COPY.

    .venv/bin/python -m benchmarks.bench_import [--users 10000] [--rounds 7]

Runs on an embedded PostgreSQL (or ``DATABASE_URL``), in one process. Each round times, in turn:
one message of new users through the handler, the same users again with new usernames (every row
conflicts and changes), the same message redelivered (every row conflicts, nothing changes), and
a raw ``COPY`` of the same rows into the emptied table (with its indexes and constraints, on a new
connection, committed: what the handler does, without the handler). Interleaving them lets
machine noise hit all alike. An untimed import and ``COPY`` of a few users come first, so that
every timed case runs warm (cold starts are measured elsewhere). The messages are built before
the clock starts: encoding them is the producer's work, not the function's. Prints rows/s
(median of rounds) and each case's ratio to raw COPY.

:func:`measure` is the entry point for other harnesses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import local  # noqa: F401 - puts the layer on sys.path

NEW: Final = "handler, new users"
CONFLICTING: Final = "handler, all conflicting"
UNCHANGED: Final = "handler, redelivered"
COPY: Final = "raw COPY"
COPY_ONE: Final = "raw COPY, one message"
#: The goal for both the new and the conflicting case: at least this fraction of COPY's rows/s.
TARGET_RATIO: Final = 0.3
#: Users of the untimed warm-up import that precedes the rounds.
WARM_UP_USERS: Final = 100


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


def _count() -> int:
    from sqlalchemy import text

    from blog.db import get_engine

    with get_engine().connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM users")).scalar_one())


def _copy(rows: list[tuple[str, str, str]], *, one_message: bool = False) -> None:
    """``COPY`` the rows into ``users`` and commit, on a new connection (as the handler does).

    pg8000 reads a file-like ``stream`` in 8 KiB CopyData messages (the reference); an iterable
    is sent one message per item, which is what the import does with its one ``bytes`` item.
    """
    from blog.db import get_engine

    data = "".join(f"{e}\t{u}\t{h}\n" for e, u, h in rows).encode()
    stream = [data] if one_message else io.BytesIO(data)
    raw = get_engine().raw_connection()
    try:
        cursor = raw.cursor()
        copy = "COPY users (email, username, hashed_password) FROM STDIN"
        cursor.execute(copy, stream=stream)  # type: ignore[call-arg]
        raw.commit()
    finally:
        raw.close()


@contextmanager
def database() -> Iterator[str]:
    """``DATABASE_URL`` if set, else an embedded PostgreSQL for the duration; migrated to head."""
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
        from local.__main__ import _migrate

        _migrate(os.environ["DATABASE_URL"])
        yield os.environ["DATABASE_URL"]
    finally:
        if server is not None:
            server.stop()
            os.environ.pop("DATABASE_URL", None)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(users: int = 10_000, rounds: int = 7) -> dict[str, Any]:
    """Time the import of ``users`` pre-hashed users, ``rounds`` times; JSON-ready results.

    Uses ``DATABASE_URL`` if set (its ``users`` and ``posts`` tables are emptied), else an
    embedded PostgreSQL. Returns ``{"users", "rounds", "cores", "target_ratio", "cases"}``, where
    ``cases`` maps each case name to ``{"seconds": [...], "median_s", "rows_per_s", "vs_copy",
    "vs_copy_one_message", "vs_copy_per_round": [...]}``; ``vs_copy`` is the case's rows/s over
    raw COPY's (medians of rounds; per round: within the round), the target's measure;
    ``vs_copy_one_message`` is the same against the faster one-message COPY.
    """
    with database():
        from blog.security import hash_password
        from local.functions import REPO, load_module_from
        from local.gateway import LambdaContext

        handler = load_module_from(REPO / "functions" / "import_users").lambda_handler
        hashed = hash_password("benchmark-password")
        people = [
            {"email": f"user{n}@example.com", "username": f"user{n}", "hashed_password": hashed}
            for n in range(users)
        ]
        renamed = [{**u, "username": u["username"] + "x"} for u in people]
        rows = [(u["email"], u["username"], hashed) for u in people]

        def run(event: dict[str, Any]) -> Callable[[], None]:
            def invoke() -> None:
                # Powertools prints the metrics (EMF) to stdout: kept out of the report.
                with contextlib.redirect_stdout(io.StringIO()):
                    result = handler(event, LambdaContext("Bench"))
                assert result == {"batchItemFailures": []}, result

            return invoke

        seconds: dict[str, list[float]] = {
            NEW: [],
            CONFLICTING: [],
            UNCHANGED: [],
            COPY: [],
            COPY_ONE: [],
        }
        # One untimed pass first: the process's one-time work (building the validators,
        # compiling the statements, loading modules) is a cold start's, not the import's, and
        # would otherwise weigh on the first case of the first round only.
        _truncate()
        run(_event(people[:WARM_UP_USERS]))()
        run(_event(renamed[:WARM_UP_USERS]))()
        _truncate()
        _copy(rows[:WARM_UP_USERS])
        for _ in range(rounds):
            new_event, renamed_event, again_event = _event(people), _event(renamed), _event(renamed)
            _truncate()
            seconds[NEW].append(_timed(run(new_event)))
            seconds[CONFLICTING].append(_timed(run(renamed_event)))
            seconds[UNCHANGED].append(_timed(run(again_event)))
            assert _count() == users
            _truncate()
            seconds[COPY].append(_timed(lambda: _copy(rows)))
            assert _count() == users
            _truncate()
            seconds[COPY_ONE].append(_timed(lambda: _copy(rows, one_message=True)))
            assert _count() == users

    copy_median = statistics.median(seconds[COPY])
    copy_one_median = statistics.median(seconds[COPY_ONE])
    cases: dict[str, dict[str, Any]] = {}
    for case, times in seconds.items():
        median = statistics.median(times)
        cases[case] = {
            "seconds": times,
            "median_s": median,
            "rows_per_s": users / median,
            "vs_copy": copy_median / median,
            "vs_copy_one_message": copy_one_median / median,
            "vs_copy_per_round": [c / t for c, t in zip(seconds[COPY], times, strict=True)],
        }
    return {
        "users": users,
        "rounds": rounds,
        "cores": os.cpu_count(),
        "target_ratio": TARGET_RATIO,
        "cases": cases,
    }


def report(results: dict[str, Any]) -> str:
    """The results of :func:`measure` as a table."""
    lines = [
        f"{results['users']} users, {results['rounds']} rounds, {results['cores']} cores",
        f"{'case':<26}{'median s':>10}{'rows/s':>12}{'vs COPY':>9}{'vs 1-msg':>10}"
        "  vs COPY per round",
    ]
    for case, r in results["cases"].items():
        rounds = " ".join(f"{ratio:.2f}" for ratio in r["vs_copy_per_round"])
        lines.append(
            f"{case:<26}{r['median_s']:>10.3f}{r['rows_per_s']:>12,.0f}{r['vs_copy']:>9.2f}"
            f"{r['vs_copy_one_message']:>10.2f}  {rounds}"
        )
    target = results["target_ratio"]
    verdicts = [
        f"{case}: {results['cases'][case]['vs_copy']:.2f}x COPY "
        f"({'meets' if results['cases'][case]['vs_copy'] >= target else 'BELOW'} {target}x)"
        for case in (NEW, CONFLICTING)
    ]
    lines.extend(verdicts)
    return "\n".join(lines)


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = measure(args.users, args.rounds)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
