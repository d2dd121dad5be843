"""The plans of the idempotency-key statements on a table of a million keys.

    .venv/bin/python -m benchmarks.explain_idempotency [--rows 1000000]

Seeds ``idempotency_keys`` (half of the rows expired) on an embedded PostgreSQL (or
``DATABASE_URL``), then prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements the repository
builds: claiming a new key and a live one, reading a record, and one purge batch. Everything runs
in transactions that are rolled back, so each plan sees the same table.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.pool import NullPool

from benchmarks.bench_import import database
from blog.tables import idempotency_keys

SEED = """
INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, headers, body, expires_at)
SELECT 'user:' || mod(g, 50000), md5(g::text), md5(g::text), 201, '{}'::jsonb, '{"id": 1}',
       now() + (mod(g, 48) - 24) * interval '1 hour'
FROM generate_series(1, :rows) AS g
"""


def _claim(scope: str, key: str) -> Any:
    insert = pg_insert(idempotency_keys).values(
        scope=scope, key=key, fingerprint="f", expires_at=func.now() + timedelta(days=1)
    )
    return insert.on_conflict_do_update(
        index_elements=[idempotency_keys.c.scope, idempotency_keys.c.key],
        set_={"fingerprint": insert.excluded.fingerprint},
        where=idempotency_keys.c.expires_at <= func.now(),
    ).returning(idempotency_keys.c.scope)


def statements() -> dict[str, Any]:
    """The repository's statements, built as it builds them."""
    from blog.repositories import IdempotencyKeyRepository

    captured: dict[str, Any] = {}

    class Recorder:
        def execute(self, stmt: Any, *_: Any, **__: Any) -> Any:
            captured["purge"] = stmt
            raise LookupError  # only the statement is wanted

    try:
        IdempotencyKeyRepository(Recorder()).purge_expired(5000)  # type: ignore[arg-type]
    except LookupError:
        pass
    return {
        "claim a new key": _claim("user:7", "a-new-key"),
        # Row 30 expires in 6 hours (row g: mod(g, 48) - 24 hours from now).
        "claim a live key": _claim("user:30", hashlib.md5(b"30").hexdigest()),  # noqa: S324
        "read a record": select(idempotency_keys).where(
            idempotency_keys.c.scope == "user:7",
            idempotency_keys.c.key == literal_column("md5('7')"),
        ),
        "purge one batch": captured["purge"],
    }


def main(argv: list[str] | None = None) -> int:
    """Seed, then print each plan."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain_idempotency")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with database() as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE idempotency_keys"))
            conn.execute(text(SEED), {"rows": args.rows})
            conn.execute(text("ANALYZE idempotency_keys"))
        for name, stmt in statements().items():
            with engine.connect() as conn:
                compiled = stmt.compile(dialect=conn.dialect)
                params = tuple(compiled.params[k] for k in compiled.positiontup or ())
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + compiled.string, params
                ).scalars()
                print(f"--- {name}\n" + "\n".join(plan))  # noqa: T201
                conn.rollback()
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
