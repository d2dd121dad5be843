"""Unit of work, savepoints, error translation, retries and connection settings, on PostgreSQL."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import pg8000.dbapi
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from blog import db as layer_db
from blog import tables
from blog.config import SSLMode, get_settings
from blog.errors import (
    ConflictError,
    DatabaseError,
    DuplicateError,
    TransactionError,
    UnavailableError,
    ValidationError,
)
from blog.repositories import UserRepository
from tests.conftest import reset_layer_caches
from tests.factories import make_user, user_values


def _user_count() -> int:
    with layer_db.transaction() as conn:
        return int(conn.scalar(select(func.count()).select_from(tables.users)) or 0)


# --- transaction and savepoint -------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_transaction_commits_on_success() -> None:
    with layer_db.transaction() as conn:
        UserRepository(conn).create(**user_values())
    assert _user_count() == 1


@pytest.mark.usefixtures("db")
def test_transaction_rolls_back_and_reraises_any_error() -> None:
    with pytest.raises(KeyError), layer_db.transaction() as conn:
        UserRepository(conn).create(**user_values())
        raise KeyError("boom")
    assert _user_count() == 0


@pytest.mark.usefixtures("db")
def test_savepoint_rollback_keeps_the_outer_work() -> None:
    make_user(username="taken")
    with layer_db.transaction() as conn:
        users = UserRepository(conn)
        kept = users.create(**user_values())
        with pytest.raises(DuplicateError), layer_db.savepoint(conn):
            users.create(**user_values(username="taken"))
        also_kept = users.create(**user_values())
    with layer_db.transaction() as conn:
        users = UserRepository(conn)
        assert users.get(kept.id) is not None
        assert users.get(also_kept.id) is not None
    assert _user_count() == 3


@pytest.mark.usefixtures("db")
def test_the_orm_unit_of_work_runs_on_the_layer_transaction() -> None:
    from blog.models import Post, User, unit_of_work

    # Given the ORM's unit of work: its flush order and relationships, on the same tables
    with unit_of_work() as session:
        user = User(**user_values(email="Orm@Example.com"))
        user.posts.append(Post(title="by the ORM", content="c"))
        session.add(user)
    # Then what it wrote is committed and read back through the repositories
    with layer_db.transaction() as conn:
        found = UserRepository(conn).get_with_posts(user.id)
    assert found is not None
    assert (found.email, [p.title for p in found.posts]) == ("orm@example.com", ["by the ORM"])
    # And an error inside rolls everything back, as in any unit of work, as a domain error
    with pytest.raises(DuplicateError), unit_of_work() as session:
        session.add(Post(author_id=user.id, title="lost", content="c"))
        session.add(User(**user_values(email="orm@example.com")))
    with layer_db.transaction() as conn:
        assert len(UserRepository(conn).get_with_posts(user.id).posts) == 1  # type: ignore[union-attr]


@pytest.mark.usefixtures("db")
def test_database_errors_become_domain_errors_by_sqlstate() -> None:
    author = make_user()
    with pytest.raises(ConflictError), layer_db.transaction() as conn:
        conn.execute(
            text("INSERT INTO posts (title, content, author_id) VALUES ('t', 'c', :a)"),
            {"a": author.id + 1000},
        )
    with pytest.raises(ValidationError), layer_db.transaction() as conn:
        UserRepository(conn).create(**user_values(username="x" * 51))
    with pytest.raises(ValidationError), layer_db.transaction() as conn:
        conn.execute(text("SELECT CAST(:t AS text)"), {"t": "nul\x00byte"})
    with pytest.raises(DatabaseError), layer_db.transaction() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))


@pytest.mark.usefixtures("database_url")
def test_text_the_driver_cannot_encode_is_a_validation_error_and_harms_nothing() -> None:
    # The driver fails while sending, so this runs on its own connection, not the shared one.
    with pytest.raises(ValidationError), layer_db.transaction() as conn:
        conn.execute(text("SELECT CAST(:t AS text)"), {"t": "lone \ud800 surrogate"})
    with layer_db.transaction() as conn:
        assert conn.scalar(text("SELECT 1")) == 1


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"C": "23505", "n": "ix_users_email"}, DuplicateError),
        ({"C": "23503"}, ConflictError),
        ({"C": "23514"}, ValidationError),
        ({"C": "22001"}, ValidationError),
        ({"C": "40P01"}, layer_db.RetryableError),
        ({"C": "40001"}, layer_db.RetryableError),
        ({"C": "57014"}, UnavailableError),
        ({"C": "08006"}, UnavailableError),
        ({"C": "53300"}, UnavailableError),
        ({"C": "28P01"}, UnavailableError),
        ({"C": "42P01"}, DatabaseError),
    ],
)
def test_translate_error_uses_the_sqlstate_not_the_message(fields: dict, expected: type) -> None:
    # The message text is deliberately misleading: only the code may decide.
    error = pg8000.dbapi.DatabaseError({**fields, "M": "unique constraint deadlock not found"})
    translated = layer_db.translate_error(error)
    assert type(translated) is expected


def test_translate_error_names_the_duplicate_field() -> None:
    error = pg8000.dbapi.DatabaseError({"C": "23505", "n": "ix_users_username"})
    assert layer_db.translate_error(error).details == {"field": "username"}


# --- retries --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("committed_db")
def test_deadlock_is_retried_and_then_both_transactions_succeed() -> None:
    # Given two users and two transactions that lock them in opposite orders
    first, second = make_user(), make_user()
    barrier = threading.Barrier(2)
    attempts: dict[str, int] = {"ab": 0, "ba": 0}
    results: dict[str, object] = {}

    def run(key: str, order: tuple[int, int]) -> None:
        @layer_db.retry_on_conflict(attempts=5, base_delay=0.01)
        def lock_both() -> None:
            attempts[key] += 1
            with layer_db.transaction() as conn:
                users = UserRepository(conn)
                users.update(order[0], username=f"{key}-{order[0]}")
                if attempts[key] == 1:
                    barrier.wait(timeout=5)  # both hold their first lock before taking the second
                users.update(order[1], username=f"{key}-{order[1]}")

        try:
            lock_both()
            results[key] = "ok"
        except Exception as error:  # noqa: BLE001 - recorded for the assertion
            results[key] = error

    threads = [
        threading.Thread(target=run, args=("ab", (first.id, second.id))),
        threading.Thread(target=run, args=("ba", (second.id, first.id))),
    ]
    # When they run at once, PostgreSQL detects the deadlock and aborts one of them
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then the victim is retried and both end up committed
    assert results == {"ab": "ok", "ba": "ok"}
    assert attempts["ab"] + attempts["ba"] == 3
    with layer_db.transaction() as conn:
        names = {u.username for u in conn.execute(select(tables.users))}
    assert len(names) == 2


@pytest.mark.usefixtures("committed_db")
def test_retry_budget_exhausted_becomes_transaction_error_with_nothing_written() -> None:
    calls = 0

    @layer_db.retry_on_conflict(attempts=3, base_delay=0)
    def always_conflicts() -> None:
        nonlocal calls
        calls += 1
        with layer_db.transaction() as conn:
            UserRepository(conn).create(**user_values())
            # A real serialization failure, raised by the server itself.
            conn.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
            )

    with pytest.raises(TransactionError) as caught:
        always_conflicts()
    assert calls == 3
    assert not isinstance(caught.value, layer_db.RetryableError)
    assert _user_count() == 0


def test_non_retryable_errors_are_not_retried() -> None:
    calls = 0

    @layer_db.retry_on_conflict(attempts=5, base_delay=0)
    def duplicate() -> None:
        nonlocal calls
        calls += 1
        raise DuplicateError()

    with pytest.raises(DuplicateError):
        duplicate()
    assert calls == 1


# --- connections ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def layer_env(monkeypatch: pytest.MonkeyPatch, database_url: str):
    """Lets a test change the layer's settings; caches are reset before and after."""
    reset_layer_caches()
    yield monkeypatch
    monkeypatch.undo()
    reset_layer_caches()


def test_unreachable_database_is_unavailable_within_the_connect_timeout(layer_env) -> None:
    layer_env.setenv("DATABASE_URL", f"postgresql+pg8000://postgres@127.0.0.1:{_free_port()}/x")
    layer_env.setenv("DB_CONNECT_TIMEOUT", "1")
    reset_layer_caches()
    started = time.monotonic()
    with pytest.raises(UnavailableError), layer_db.transaction() as conn:
        conn.execute(text("SELECT 1"))
    assert time.monotonic() - started < 5


def test_statement_timeout_cancels_a_slow_query_as_unavailable(layer_env) -> None:
    layer_env.setenv("DB_STATEMENT_TIMEOUT_MS", "200")
    reset_layer_caches()
    started = time.monotonic()
    with pytest.raises(UnavailableError), layer_db.transaction() as conn:
        conn.execute(text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 3


def test_connections_use_the_statement_timeout_and_tcp_nodelay(layer_env) -> None:
    layer_env.setenv("DB_STATEMENT_TIMEOUT_MS", "4321")
    reset_layer_caches()
    with layer_db.transaction() as conn:
        assert conn.scalar(text("SHOW statement_timeout")) == "4321ms"
        raw = conn.connection.dbapi_connection
        sock = raw._usock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_engine_uses_nullpool_and_is_created_once_per_process(database_url: str) -> None:
    from sqlalchemy.pool import NullPool

    engine = layer_db.get_engine()
    assert isinstance(engine.pool, NullPool)
    assert layer_db.get_engine() is engine


def test_credentials_come_from_a_secrets_manager_secret_in_rds_format(layer_env, aws) -> None:
    import boto3

    url = make_url(layer_env_url := get_settings().database_url)
    assert layer_env_url
    client = boto3.client("secretsmanager")
    secret = {
        "engine": "postgres",
        "username": url.username or "postgres",
        "password": "not-used-by-trust-auth",
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
    }
    arn = client.create_secret(Name="blog/db", SecretString=json.dumps(secret))["ARN"]
    layer_env.delenv("DATABASE_URL")
    layer_env.setenv("DB_SECRET_ARN", arn)
    reset_layer_caches()

    creds = layer_db.get_credentials()
    assert (creds.host, creds.port, creds.database) == (url.host, url.port, url.database)
    with layer_db.transaction() as conn:
        assert conn.scalar(text("SELECT current_database()")) == url.database

    # A rotated secret is read again only when asked to (as after an authentication failure).
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": "new"}))
    assert layer_db.get_credentials().password == "not-used-by-trust-auth"
    assert layer_db.get_credentials(refresh=True).password == "new"


def test_ssl_context_per_mode_is_built_once() -> None:
    assert layer_db.ssl_context(SSLMode.DISABLE, None) is False
    required = layer_db.ssl_context(SSLMode.REQUIRE, None)
    assert isinstance(required, ssl.SSLContext)
    assert required.verify_mode == ssl.CERT_NONE
    verified = layer_db.ssl_context(SSLMode.VERIFY_FULL, None)
    assert isinstance(verified, ssl.SSLContext)
    assert verified.verify_mode == ssl.CERT_REQUIRED
    assert verified.check_hostname is True
    assert layer_db.ssl_context(SSLMode.VERIFY_FULL, None) is verified
