"""Alembic migrations on a real PostgreSQL: up, down, expand–contract data steps, offline SQL, CLI.

Each test gets a fresh empty database (``empty_database_url``). The Alembic configuration is the
project's own (``pyproject.toml``), and the connection is handed to ``migrations/env.py`` through
``Config.attributes["connection"]``, as the deploy-time migration function does.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from blog.tables import metadata

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
# Oldest first, as the scripts chain them.
REVISIONS = [
    rev.revision
    for rev in reversed(
        list(ScriptDirectory.from_config(Config(toml_file=str(PYPROJECT))).walk_revisions())
    )
]
HEAD = REVISIONS[-1]
MODELS_SCHEMA = "from_models"


# --- helpers -------------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None, **kwargs: Any) -> Config:
    """The project's Alembic configuration, optionally bound to an open connection."""
    cfg = Config(toml_file=str(PYPROJECT), **kwargs)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:  # outside a transaction: Alembic begins its own
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa_inspect(conn).get_table_names())


def schema_snapshot(engine: Engine, schema: str | None = None) -> dict[str, dict[str, Any]]:
    """The catalogue of every table but alembic_version, as PostgreSQL reports it.

    Unlike autogenerate, this includes CHECK constraints and the names of every constraint.
    Column order is left out: a column added by a later revision comes last.
    """
    snapshot: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        insp = sa_inspect(conn)
        for table in sorted(set(insp.get_table_names(schema=schema)) - {"alembic_version"}):
            snapshot[table] = {
                "columns": sorted(
                    (c["name"], str(c["type"]), c["nullable"], c["default"], "identity" in c)
                    for c in insp.get_columns(table, schema=schema)
                ),
                "primary_key": insp.get_pk_constraint(table, schema=schema),
                "foreign_keys": sorted(
                    (
                        fk["name"],
                        tuple(fk["constrained_columns"]),
                        fk["referred_table"],
                        tuple(fk["referred_columns"]),
                        fk["options"].get("ondelete"),
                    )
                    for fk in insp.get_foreign_keys(table, schema=schema)
                ),
                "unique_constraints": sorted(
                    (u["name"], tuple(u["column_names"]))
                    for u in insp.get_unique_constraints(table, schema=schema)
                ),
                "check_constraints": sorted(
                    (c["name"], c["sqltext"])
                    for c in insp.get_check_constraints(table, schema=schema)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), i["unique"])
                    for i in insp.get_indexes(table, schema=schema)
                ),
                # The whole definition: access method, operator classes, partial predicate.
                "index_definitions": sorted(
                    definition.replace(f" ON {schema or 'public'}.", " ON ")
                    for definition in conn.execute(
                        text(
                            "SELECT indexdef FROM pg_indexes"
                            " WHERE schemaname = :schema AND tablename = :table"
                        ),
                        {"schema": schema or "public", "table": table},
                    ).scalars()
                ),
            }
    return snapshot


def extensions(engine: Engine) -> set[str]:
    """The extensions created in the database (plpgsql is always there)."""
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT extname FROM pg_extension")).scalars()) - {"plpgsql"}


def server_field(error: DBAPIError, key: str) -> str | None:
    """A field of PostgreSQL's error report (``C``: SQLSTATE, ``n``: constraint name)."""
    fields = error.orig.args[0] if error.orig is not None and error.orig.args else {}
    return fields.get(key) if isinstance(fields, dict) else None


def offline_sql(run: Callable[..., None], revision_range: str) -> str:
    """The SQL that ``alembic upgrade|downgrade REVISIONS --sql`` writes out."""
    buffer = io.StringIO()
    run(alembic_config(output_buffer=buffer), revision_range, sql=True)
    return buffer.getvalue()


def cli_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DB_SECRET_ARN"}}
    return env | overrides


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


# --- schema --------------------------------------------------------------------------------------


def test_upgrade_head_on_empty_database_matches_the_models(engine: Engine) -> None:
    upgrade(engine, "head")

    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        # Raises AutogenerateDiffsDetected on any difference (types and server defaults included).
        command.check(alembic_config(conn))


def test_upgrade_head_builds_the_same_catalogue_as_the_models(engine: Engine) -> None:
    upgrade(engine, "head")
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {MODELS_SCHEMA}"))
        metadata.create_all(conn.execution_options(schema_translate_map={None: MODELS_SCHEMA}))

    migrated = schema_snapshot(engine)
    assert set(migrated) == set(metadata.tables)
    assert migrated == schema_snapshot(engine, MODELS_SCHEMA)
    assert {name for name, _ in migrated["users"]["check_constraints"]} == {
        "ck_users_email_lowercase",
        "ck_users_username_lowercase",
        "ck_users_status_allowed",
        "ck_users_status_matches_is_active",
    }


def test_upgrade_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    upgrade(engine, "head")
    at_head = schema_snapshot(engine)

    downgrade(engine, "base")
    assert table_names(engine) == {"alembic_version"}
    assert current_revision(engine) is None

    upgrade(engine, "head")
    assert current_revision(engine) == HEAD
    assert schema_snapshot(engine) == at_head


@pytest.mark.parametrize(
    ("revision", "previous"), list(zip(REVISIONS, [None, *REVISIONS[:-1]], strict=True))[::-1]
)
def test_each_revision_steps_down_and_up_again(
    engine: Engine, revision: str, previous: str | None
) -> None:
    upgrade(engine, revision)
    before = (every_schema_snapshot(engine), extensions(engine))

    downgrade(engine, "-1")
    assert current_revision(engine) == previous
    assert (every_schema_snapshot(engine), extensions(engine)) != before

    upgrade(engine, "+1")
    assert current_revision(engine) == revision
    assert (every_schema_snapshot(engine), extensions(engine)) == before


def every_schema_snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """:func:`schema_snapshot` of the models' schema and of ``migration_backup``, where data
    migrations keep what their downgrade puts back."""
    backup = {f"migration_backup.{k}": v for k, v in schema_snapshot(engine, BACKUP).items()}
    return schema_snapshot(engine) | backup


BACKUP = "migration_backup"


# --- data: canonical emails ----------------------------------------------------------------------


def emails(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT username, email FROM users")).all())


def test_stored_emails_are_rewritten_in_their_canonical_spelling_and_back(engine: Engine) -> None:
    # Given rows written before emails were normalized beyond lower-case
    upgrade(engine, "0010")
    before = {
        "idn": "user@bücher.de",
        "decomposed": "jose\u0301@example.com",
        "ascii": "plain@example.com",
        "twin": "twin@xn--bcher-kva.de",  # what "twin@bücher.de" becomes: taken already
        "twin2": "twin@bücher.de",
        "invalid": "who@bü_cher.de",  # no valid IDNA domain: left as it is
    }
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (email, username, hashed_password) VALUES (:e, :u, 'x')"),
            [{"e": e, "u": u} for u, e in before.items()],
        )
    # When the data migration runs
    upgrade(engine, "0011")
    # Then each is canonical, but for the one that would collide and the invalid one
    assert emails(engine) == {
        **before,
        "idn": "user@xn--bcher-kva.de",
        "decomposed": "jos\u00e9@example.com",
    }
    # And the downgrade puts the old spellings back
    downgrade(engine, "0010")
    assert emails(engine) == before


def test_an_interrupted_concurrent_index_build_is_rebuilt_by_the_next_upgrade(
    engine: Engine,
) -> None:
    # Given the trigram index left INVALID, as an interrupted CREATE INDEX CONCURRENTLY leaves
    # it, and the database one revision before the one that builds it (its commit never came)
    builder = ScriptDirectory.from_config(alembic_config()).get_revision("0008")
    upgrade(engine, builder.revision)  # revisions after it have not run either
    index = "SELECT indexrelid::int, indisvalid FROM pg_index"
    index += " WHERE indexrelid = to_regclass('ix_posts_content_trgm')"
    with engine.begin() as conn:
        before, _ = conn.execute(text(index)).one()
        conn.execute(text(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = {before}"))
        conn.execute(
            text("UPDATE alembic_version SET version_num = :rev"), {"rev": builder.down_revision}
        )
    # When the upgrade runs again
    upgrade(engine, "head")
    # Then the leftover was dropped and the index built anew, valid
    with engine.connect() as conn:
        after, valid = conn.execute(text(index)).one()
    assert valid is True
    assert after != before
    assert current_revision(engine) == HEAD


# --- data: expand and contract -------------------------------------------------------------------

INSERT_USER = text(
    "INSERT INTO users (email, username, hashed_password, is_active)"
    " VALUES (:name || '@example.com', :name, 'x', :active)"
)


def statuses(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT username, status FROM users")).all())


def test_expand_step_backfills_status_from_is_active(engine: Engine) -> None:
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            INSERT_USER, [{"name": "ann", "active": True}, {"name": "bob", "active": False}]
        )

    upgrade(engine, "0003")

    assert statuses(engine) == {"ann": "active", "bob": "inactive"}


def test_expand_step_accepts_writes_of_code_that_knows_no_status(engine: Engine) -> None:
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(INSERT_USER, {"name": "old", "active": False})
        conn.execute(text("UPDATE users SET is_active = true WHERE username = 'old'"))

    assert statuses(engine) == {"old": None}


def test_contract_step_reconciles_rows_written_between_the_steps(engine: Engine) -> None:
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(INSERT_USER, {"name": "ann", "active": True})
    upgrade(engine, "0003")
    # Old code still running: a new user without status, and a deactivation of the flag only.
    with engine.begin() as conn:
        conn.execute(INSERT_USER, {"name": "new", "active": False})
        conn.execute(text("UPDATE users SET is_active = false WHERE username = 'ann'"))

    upgrade(engine, "0004")

    assert statuses(engine) == {"ann": "inactive", "new": "inactive"}


def test_contract_step_defaults_status_to_active(engine: Engine) -> None:
    upgrade(engine, "head")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (email, username, hashed_password)"
                " VALUES ('eve@example.com', 'eve', 'x')"
            )
        )

    assert statuses(engine) == {"eve": "active"}


@pytest.mark.parametrize(
    ("is_active", "status", "sqlstate", "constraint"),
    [
        (True, "inactive", "23514", "ck_users_status_matches_is_active"),
        (False, "active", "23514", "ck_users_status_matches_is_active"),
        (False, "banned", "23514", "ck_users_status_allowed"),
        (True, None, "23502", None),
    ],
)
def test_contract_step_rejects_a_status_that_disagrees_or_is_missing(
    engine: Engine, is_active: bool, status: str | None, sqlstate: str, constraint: str | None
) -> None:
    upgrade(engine, "head")

    with pytest.raises(DBAPIError) as excinfo, engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (email, username, hashed_password, is_active, status)"
                " VALUES ('x@example.com', 'x', 'x', :active, :status)"
            ),
            {"active": is_active, "status": status},
        )

    assert server_field(excinfo.value, "C") == sqlstate
    assert server_field(excinfo.value, "n") == constraint
    assert statuses(engine) == {}


# --- offline SQL, history, command line ----------------------------------------------------------


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """No database is configured, and any attempt to connect to one fails the test."""
    import pg8000.dbapi

    from blog import db as layer_db

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("offline SQL generation tried to use a database")

    for name in ("DATABASE_URL", "DB_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(layer_db, "get_engine", refuse)
    monkeypatch.setattr(pg8000.dbapi, "connect", refuse)


@pytest.mark.usefixtures("no_database")
def test_offline_upgrade_sql_needs_no_database() -> None:
    sql = offline_sql(command.upgrade, "head")

    expected_in_order = [
        "CREATE TABLE alembic_version",
        "CREATE TABLE users",
        "CREATE UNIQUE INDEX ix_users_email ON users (email)",
        "CREATE TABLE posts",
        "ON DELETE CASCADE",
        "ALTER TABLE users ADD COLUMN status VARCHAR(20)",
        "ALTER TABLE users ALTER COLUMN status SET NOT NULL",
        "ADD CONSTRAINT ck_users_status_matches_is_active CHECK (is_active = (status = 'active'))",
        "ALTER TABLE users ADD COLUMN is_admin BOOLEAN DEFAULT false NOT NULL",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        # Outside the transaction: what came before is committed first.
        "COMMIT;\n\nSET statement_timeout = 0;\n\nCREATE INDEX CONCURRENTLY IF NOT EXISTS",
        "DROP INDEX CONCURRENTLY IF EXISTS ix_posts_author_id;",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_posts_content_trgm ON posts USING gin",
        f"UPDATE alembic_version SET version_num='{HEAD}'",
    ]
    assert sql.rstrip().endswith("COMMIT;")
    positions = [sql.find(fragment) for fragment in expected_in_order]
    assert -1 not in positions, dict(zip(expected_in_order, positions, strict=True))
    assert positions == sorted(positions)


@pytest.mark.usefixtures("no_database")
def test_offline_downgrade_sql_needs_no_database() -> None:
    sql = offline_sql(command.downgrade, f"{HEAD}:base")

    assert "ALTER TABLE users DROP COLUMN is_admin" in sql
    assert "DROP CONSTRAINT ck_users_status_allowed" in sql
    assert "ALTER TABLE users DROP COLUMN status" in sql
    assert sql.index("DROP TABLE posts") < sql.index("DROP TABLE users")
    assert sql.rstrip().endswith(
        "DELETE FROM alembic_version WHERE alembic_version.version_num = '0001';\n\nCOMMIT;"
    )


def test_history_lists_the_revisions_in_order() -> None:
    out = io.StringIO()
    command.history(alembic_config(stdout=out))

    newest_first = re.findall(r"^\S+ -> (\w+)", out.getvalue(), flags=re.MULTILINE)
    assert newest_first[::-1] == REVISIONS
    assert f"{REVISIONS[-2]} -> {HEAD} (head)" in out.getvalue()
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    for revision in script.walk_revisions():
        assert Path(revision.path).name.startswith(f"{revision.revision}_")
        assert "op." in inspect.getsource(revision.module.downgrade)  # a real downgrade


def test_cli_reads_pyproject_and_writes_offline_sql() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout
    assert f"UPDATE alembic_version SET version_num='{HEAD}'" in result.stdout


@pytest.mark.slow
def test_cli_migrates_through_the_layer_engine_and_checks(empty_database_url: str) -> None:
    env = cli_env(DATABASE_URL=empty_database_url, DB_SSLMODE="disable")

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    upgraded = alembic("upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    checked = alembic("check")
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()
