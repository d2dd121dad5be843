"""Fixtures that build the world: a real PostgreSQL, the migrated schema, isolation, fake AWS.

The server is a throwaway embedded PostgreSQL (pip-installed binaries) unless
``TEST_DATABASE_URL`` names one, e.g. ``postgresql+pg8000://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Settings are read lazily by the layer, so this runs before any of it is used.
_TEST_ENV = {
    "DB_SSLMODE": "disable",
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "64",  # tests lower the KDF cost through configuration only
    "DB_RETRY_BASE_DELAY": "0.005",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "POWERTOOLS_DEV": "false",
    "POWERTOOLS_METRICS_NAMESPACE": "BlogApiTests",
    "POWERTOOLS_SERVICE_NAME": "blog-api-tests",
}
os.environ.update(_TEST_ENV)
for _name in ("DATABASE_URL", "DB_SECRET_ARN", "DB_HOST", "DB_PORT", "DB_NAME", "AWS_PROFILE"):
    os.environ.pop(_name, None)


def reset_layer_caches() -> None:
    """Forget process-wide caches (settings, engine, hasher), as a new Lambda process would."""
    from blog import db, secrets_manager, security
    from blog.config import get_settings

    get_settings.cache_clear()
    secrets_manager.forget()
    db.get_engine.cache_clear()
    db.ssl_context.cache_clear()
    db.use_bind(None)
    security._hasher.cache_clear()


def _url_for(admin_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def _admin_execute(admin_url: str, sql: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a maintenance database on the test server (embedded unless TEST_DATABASE_URL)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    from local.embedded_pg import EmbeddedPostgres, cleanup_stale

    # One prefix per checkout: a crashed earlier run of this checkout left its server behind.
    prefix = "blog-api-pytest-" + hashlib.sha256(str(REPO).encode()).hexdigest()[:8] + "-"
    parent = Path(tempfile.gettempdir())
    cleanup_stale(parent, prefix)
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    home.chmod(0o711)  # as root, the server runs as another user and must reach its data dir
    server = EmbeddedPostgres(home / "data")
    try:
        server.start()
        yield server.url("postgres")
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the test server and return its URL."""
    _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    return _url_for(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still on it."""
    _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alembic_config(connection: object | None = None) -> object:
    """An Alembic Config from pyproject.toml, optionally bound to an open connection."""
    from alembic.config import Config

    cfg = Config(toml_file=str(REPO / "pyproject.toml"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Run ``alembic upgrade revision`` on the database at ``url`` (Alembic's transaction)."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), revision)  # type: ignore[arg-type]
    finally:
        engine.dispose()


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test only."""
    name = f"blog_empty_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_admin_url, name)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per run; the layer's DATABASE_URL points at it."""
    name = f"blog_test_{os.getpid()}"
    drop_database(pg_admin_url, name)
    url = create_database(pg_admin_url, name)
    migrate(url)
    os.environ["DATABASE_URL"] = url
    reset_layer_caches()
    try:
        yield url
    finally:
        os.environ.pop("DATABASE_URL", None)
        reset_layer_caches()
        drop_database(pg_admin_url, name)


@pytest.fixture
def db(database_url: str) -> Iterator[None]:
    """Isolation: everything the test commits is rolled back at its end.

    SQLAlchemy's recipe: an outer transaction on one connection, and units of work that join it
    with savepoints, so code under test may commit and roll back freely.
    """
    from blog import db as layer_db

    connection = layer_db.get_engine().connect()
    outer = connection.begin()
    layer_db.use_bind(connection)
    try:
        yield
    finally:
        layer_db.use_bind(None)
        outer.rollback()
        connection.close()


@pytest.fixture
def committed_db(database_url: str) -> Iterator[None]:
    """Real commits on separate connections (races, deadlocks); tables are emptied afterwards."""
    from sqlalchemy import text

    from blog import db as layer_db

    yield
    with layer_db.get_engine().begin() as conn:
        conn.execute(text("TRUNCATE users, posts, idempotency_keys RESTART IDENTITY CASCADE"))


@pytest.fixture
def aws() -> Iterator[None]:
    """moto stands in for AWS (Secrets Manager, SQS); start it before any boto3 client exists."""
    from moto import mock_aws

    with mock_aws():
        yield
