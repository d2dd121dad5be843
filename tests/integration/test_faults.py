"""Faults on a real PostgreSQL: outages, black holes, rotated credentials, timeouts, conflicts.

The module runs a server of its own, which its tests stop and start, never the session's shared
one. Like RDS, it wants a password (SCRAM-SHA-256) on every TCP connection; the functions connect
as an unprivileged login role that owns the migrated ``blog`` database, the test itself as the
superuser. Handlers run in this process, as a warm Lambda execution environment runs them, or
behind the local gateway over real HTTP.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from blog import db as layer_db
from blog.errors import TransactionError, UnavailableError
from local.embedded_pg import EmbeddedPostgres, cleanup_stale
from local.gateway import AUTHORIZER_ID, handle, invoke
from tests.conftest import REPO, migrate, reset_layer_caches
from tests.e2e.conftest import TEST_SIGNING_KEY

APP_ROLE = "blog_app"
DATABASE = "blog"
CONNECT_TIMEOUT_S = 1.0
#: Slack for a loaded two-core CI machine on top of a timeout that should bound a wait.
MARGIN_S = 1.5


@dataclass
class Server:
    """This module's server and what the tests need to know about it."""

    server: EmbeddedPostgres
    admin: Engine  # the superuser, on the ``blog`` database
    app_password: str
    passwords: list[str] = field(default_factory=list)  # every one used: none may leak

    def app_url(self, port: int | None = None) -> str:
        """The functions' URL (``port``: somewhere else, same credentials)."""
        where = f"127.0.0.1:{port or self.server.port}"
        return f"postgresql+pg8000://{APP_ROLE}:{self.app_password}@{where}/{DATABASE}"

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.admin.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def set_app_password(self, password: str) -> None:
        """What a rotation does to the database (the secret is updated separately)."""
        self.passwords.append(password)
        # A role's password cannot be a bind parameter; these are URL-safe tokens.
        assert password.replace("-", "").replace("_", "").isalnum()
        self.sql(f"ALTER ROLE {APP_ROLE} PASSWORD '{password}'")


@pytest.fixture(scope="module")
def pg() -> Iterator[Server]:
    """A server of this module's own, kept on disk across stops, with password authentication."""
    prefix = "blog-api-faults-" + hashlib.sha256(str(REPO).encode()).hexdigest()[:8] + "-"
    parent = Path(tempfile.gettempdir())
    cleanup_stale(parent, prefix)
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    home.chmod(0o711)  # as root, the server runs as another user and must reach its data dir
    server = EmbeddedPostgres(home / "data", persistent=True, password=secrets.token_urlsafe(18))
    admin: Engine | None = None
    try:
        server.start()
        superuser = create_engine(server.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        app_password = secrets.token_urlsafe(18)
        with superuser.connect() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{app_password}'")
            conn.exec_driver_sql(f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}")
        superuser.dispose()
        admin = create_engine(server.url(DATABASE), poolclass=NullPool)
        world = Server(server, admin, app_password, [app_password])
        migrate(world.app_url())  # as the role that owns the database, as the migration function
        yield world
    finally:
        if admin is not None:
            admin.dispose()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def layer(pg: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The layer pointed at this module's server, as a fresh execution environment would be."""
    from aws_lambda_powertools.utilities import parameters

    monkeypatch.setenv("DATABASE_URL", pg.app_url())
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
    monkeypatch.setenv("JWT_SIGNING_KEY", TEST_SIGNING_KEY)
    reset_layer_caches()
    parameters.clear_caches()
    yield monkeypatch
    monkeypatch.undo()
    reset_layer_caches()
    parameters.clear_caches()
    if not pg.server.is_running():  # a test that failed while the server was down
        pg.server.start()
    pg.set_app_password(pg.app_password)
    pg.sql("TRUNCATE users, posts RESTART IDENTITY CASCADE")


# --- calling the functions in this process -----------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    text: str


def call(
    method: str,
    path: str,
    body: Any = None,
    *,
    as_user: int | None = None,
    token: str | None = None,
) -> Reply:
    """One request through API Gateway's emulation into the handlers, in this process.

    ``token`` goes through the real authorizer; ``as_user`` stands for a verdict the gateway
    still has in its authorizer cache, so the function runs without the authorizer.
    """
    headers = [("host", "localhost"), ("content-type", "application/json")]
    if token or as_user:
        headers.append(("authorization", f"Bearer {token or 'cached'}"))

    def run(logical_id: str, event: dict[str, Any]) -> Any:
        if as_user is not None and logical_id == AUTHORIZER_ID:
            context = {"user_id": as_user, "token_version": 0, "expires_at": 2**31}
            return {"isAuthorized": True, "context": context}
        return invoke(logical_id, event)

    raw = json.dumps(body).encode() if body is not None else b""
    result = handle(method, path, headers, raw, run)
    text_body = result.get("body") or ""
    response_headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    parsed = json.loads(text_body) if text_body else None
    return Reply(int(result["statusCode"]), response_headers, parsed, text_body)


def new_user() -> dict[str, str]:
    name = f"u{uuid.uuid4().hex[:12]}"
    return {"email": f"{name}@example.com", "username": name, "password": "password-123"}


def assert_unavailable(reply: Reply, code: str = "service_unavailable") -> None:
    """A 503 with ``Retry-After`` and the standard error body."""
    assert reply.status == 503, reply.text
    assert int(reply.headers["retry-after"]) > 0
    assert set(reply.body) == {"error"}
    assert reply.body["error"]["code"] == code
    assert reply.body["error"]["message"]


def timed(action: Callable[[], Reply]) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = action()
    return reply, time.monotonic() - started


def test_the_server_checks_passwords(pg: Server) -> None:
    """What the rotation tests rely on: a wrong password is refused (28P01), none is trusted."""
    import pg8000.dbapi

    with pytest.raises(pg8000.dbapi.DatabaseError) as refused:
        pg8000.dbapi.connect(
            user=APP_ROLE,
            password="wrong",
            host="127.0.0.1",
            port=pg.server.port,
            database=DATABASE,
        )
    assert layer_db.sqlstate(refused.value) == "28P01"
    rules = pg.sql("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
    assert {row[0] for row in rules} == {"scram-sha-256"}


# --- the database goes away and comes back -----------------------------------------------------


@pytest.mark.slow
def test_an_outage_is_503_with_retry_after_and_the_warm_environment_recovers(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    # Given warm functions (the connect timeout is long: a refusal must not wait for it)
    layer.setenv("DB_CONNECT_TIMEOUT", "5")
    reset_layer_caches()
    author = call("POST", "/users", new_user())
    assert author.status == 201, author.text
    assert call("GET", "/posts").status == 200
    engine = layer_db.get_engine()
    late = new_user()
    # When the database stops
    pg.server.stop()
    try:
        during = {
            "GET /posts": lambda: call("GET", "/posts"),
            "POST /users": lambda: call("POST", "/users", late),
            "POST /auth/token": lambda: call(
                "POST", "/auth/token", {"login": late["username"], "password": late["password"]}
            ),
            "POST /posts": lambda: call(
                "POST", "/posts", {"title": "t", "content": "c"}, as_user=author.body["id"]
            ),
            "GET /users/{id}": lambda: call(
                "GET", f"/users/{author.body['id']}", as_user=author.body["id"]
            ),
        }
        for route, request in during.items():
            reply, elapsed = timed(request)
            # Then every request is a 503 to retry later, answered at once: a stopped server on
            # loopback refuses the connection, nothing waits for the (5 s) connect timeout.
            assert_unavailable(reply)
            assert elapsed < 2.0, (route, elapsed)
    finally:
        pg.server.start()
    # And once it is back, the same process (same engine) serves the next request
    reply, reconnect = timed(lambda: call("GET", "/posts"))
    assert reply.status == 200, reply.text
    assert reconnect < 2.0
    assert layer_db.get_engine() is engine
    # And the registration refused during the outage wrote nothing: it succeeds now
    assert call("POST", "/users", late).status == 201
    assert pg.sql("SELECT count(*) FROM users")[0][0] == 2


@pytest.mark.slow
def test_gateway_workers_answer_503_during_an_outage_and_recover_without_a_restart(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    from blog.auth import issue_token
    from tests.e2e.live_gateway import HttpClient, running_gateway

    layer.setenv("DB_CONNECT_TIMEOUT", "5")
    with running_gateway(workers=1) as gateway:
        client = HttpClient(gateway.base)
        user = client.call("POST", "/users", new_user())
        assert user.status == 201
        bearer, _ = issue_token(user.body["id"], 0)  # what POST /auth/token would answer
        assert client.call("POST", "/posts", {"title": "t", "content": "c"}, bearer).status == 201
        assert client.call("GET", "/posts").status == 200
        workers_before = gateway.worker_pids()

        pg.server.stop()
        try:
            for method, path, body in [("GET", "/posts", None), ("POST", "/users", new_user())]:
                reply = client.call(method, path, body)
                assert reply.status == 503, (path, reply.body)
                assert int(reply.headers["retry-after"]) > 0
                assert reply.body["error"]["code"] == "service_unavailable"
            # Protected routes too: the authorizer checks the token alone (no database), and the
            # handler, which reads the caller's row, answers 503 with Retry-After.
            for method, path, body in [
                ("POST", "/posts", {"title": "t", "content": "c"}),
                ("GET", f"/users/{user.body['id']}", None),
                ("GET", "/users", None),
            ]:
                protected = client.call(method, path, body, bearer)
                assert protected.status == 503, (path, protected.body)
                assert int(protected.headers["retry-after"]) > 0
                assert protected.body["error"]["code"] == "service_unavailable"
            workers_during = gateway.worker_pids()
        finally:
            pg.server.start()

        started = time.monotonic()
        assert client.call("GET", "/posts").status == 200
        reconnect = time.monotonic() - started
        assert client.call("POST", "/posts", {"title": "t", "content": "c"}, bearer).status == 201
        assert client.call("POST", "/users", new_user()).status == 201
        # The same worker processes served before, during and after: nothing was restarted.
        assert workers_during.items() >= workers_before.items()
        assert gateway.worker_pids() == workers_during
    assert reconnect < 2.0


# --- black holes: the connect timeout bounds every wait for a connection -----------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose listener completes TCP handshakes (the kernel does) and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that drops connection attempts (SYNs), as a firewall or a dead host does.

    A listener whose accept queue is full makes the kernel drop further SYNs without an answer.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(64):
            try:
                fillers.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
            except TimeoutError:
                break
            except OSError:
                pytest.skip("this kernel refuses connections past a full accept queue")
        else:
            pytest.skip("this kernel answers connections past a full accept queue")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("where", ["silent_server", "black_hole"])
def test_the_connect_timeout_bounds_a_server_that_never_answers(
    pg: Server, layer: pytest.MonkeyPatch, where: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue(where)
    layer.setenv("DATABASE_URL", pg.app_url(port=port))
    reset_layer_caches()
    # Through the layer
    started = time.monotonic()
    with pytest.raises(UnavailableError), layer_db.transaction() as conn:
        conn.execute(text("SELECT 1"))
    elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT_S * 0.9 <= elapsed < CONNECT_TIMEOUT_S + MARGIN_S
    # And through a handler: a 503 to retry, not a function that hangs until Lambda kills it
    reply, elapsed = timed(lambda: call("GET", "/posts"))
    assert_unavailable(reply)
    assert CONNECT_TIMEOUT_S * 0.9 <= elapsed < CONNECT_TIMEOUT_S + MARGIN_S


def test_a_server_that_stops_answering_mid_query_is_unavailable_within_the_read_timeout(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    # The socket waits at most statement timeout + connect timeout for a reply (the server
    # answers a cancelled statement within the first; the second covers the round trip).
    layer.setenv("DB_STATEMENT_TIMEOUT_MS", "500")
    reset_layer_caches()
    bound = 0.5 + CONNECT_TIMEOUT_S
    elapsed = 0.0
    with pytest.raises(UnavailableError), layer_db.transaction() as conn:
        backend = int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
        os.kill(backend, signal.SIGSTOP)  # the server process freezes, the connection stays up
        started = time.monotonic()
        try:
            conn.execute(text("SELECT 1"))
        finally:
            elapsed = time.monotonic() - started
            os.kill(backend, signal.SIGCONT)
    assert bound * 0.9 <= elapsed < bound + MARGIN_S


# --- rotated credentials -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("aws")
def test_a_rotated_password_is_refetched_on_the_first_authentication_failure(
    pg: Server,
    layer: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import boto3

    caplog.set_level(logging.INFO)
    client = boto3.client("secretsmanager")
    secret = {
        "engine": "postgres",
        "username": APP_ROLE,
        "password": pg.app_password,
        "host": "127.0.0.1",
        "port": pg.server.port,
        "dbname": DATABASE,
    }
    arn = client.create_secret(
        Name=f"blog/db-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(secret)
    )["ARN"]
    layer.delenv("DATABASE_URL")
    layer.setenv("DB_SECRET_ARN", arn)
    reset_layer_caches()

    def rotate(database: str, stored: str | None = None) -> None:
        """Set the role's password, and the secret's (the same unless ``stored`` is given)."""
        pg.set_app_password(database)
        pg.passwords.append(stored or database)
        value = json.dumps({**secret, "password": stored or database})
        client.put_secret_value(SecretId=arn, SecretString=value)

    def refetches() -> int:
        return sum("refetching the credentials secret" in r.getMessage() for r in caplog.records)

    # Given warm functions that cached the secret
    user = new_user()
    assert call("POST", "/users", user).status == 201
    token = call("POST", "/auth/token", {"login": user["username"], "password": user["password"]})
    assert token.status == 200
    bearer = token.body["access_token"]
    assert call("GET", "/posts").status == 200
    assert refetches() == 0

    # When the password is rotated (database and secret) while they are warm
    rotate(secrets.token_urlsafe(18))
    # Then the next request fails to authenticate once, refetches the secret and succeeds
    assert call("GET", "/posts").status == 200
    assert refetches() == 1
    # And later requests, the authorizer's too, use the new password from the cache
    assert call("POST", "/posts", {"title": "t", "content": "c"}, token=bearer).status == 201
    assert call("GET", "/posts").status == 200
    assert refetches() == 1

    # When the secret holds a password the database does not accept
    accepted = secrets.token_urlsafe(18)
    rotate(accepted, stored=secrets.token_urlsafe(18))
    wrong = call("GET", "/posts")
    # Then it is a 503 to retry later, not a 500
    assert_unavailable(wrong)
    # And once the secret is right again, the next request picks it up
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": accepted}))
    assert call("GET", "/posts").status == 200

    # No password appears in a response or in the logs
    captured = capsys.readouterr()
    records = json.dumps([vars(record) for record in caplog.records], default=str)
    seen = captured.out + captured.err + records + wrong.text + json.dumps(wrong.headers)
    assert "request failed" in captured.out + caplog.text  # the failure was logged
    for password in pg.passwords:
        assert password not in seen


@pytest.mark.usefixtures("aws")
def test_a_password_rotated_before_a_cold_start_connected_during_its_import_is_refetched(
    pg: Server, layer: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import boto3

    from blog import secrets_manager

    caplog.set_level(logging.INFO)
    client = boto3.client("secretsmanager")
    secret = {
        "username": APP_ROLE, "password": pg.app_password,
        "host": "127.0.0.1", "port": pg.server.port, "dbname": DATABASE,
    }  # fmt: skip
    arn = client.create_secret(
        Name=f"blog/db-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(secret)
    )["ARN"]
    layer.delenv("DATABASE_URL")
    layer.setenv("DB_SECRET_ARN", arn)
    layer.setenv("LAMBDA_TASK_ROOT", str(REPO / "functions" / "get_post"))
    layer.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    layer.setattr(layer_db, "_early", None)
    layer.setattr(layer_db, "_early_started", False)
    reset_layer_caches()
    # Given: a process that holds the secret as it was (say, read by its before-snapshot hook)
    # while the password has since been rotated, in the database and in the secret
    secrets_manager.read_secret(arn, max_age=300)
    rotated = secrets.token_urlsafe(18)
    pg.set_app_password(rotated)
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": rotated}))

    # When: the import connects with the password it holds, and the first unit of work runs
    assert layer_db.connect_during_init() is True
    with layer_db.transaction() as conn:
        answered = conn.scalar(text("SELECT current_user"))

    # Then: the refusal the import met made the first unit of work refetch the secret, once,
    # and connect with the new password
    assert answered == APP_ROLE
    refetched = [r for r in caplog.records if "refetching the credentials secret" in r.getMessage()]
    assert len(refetched) == 1
    layer_db.discard_early_connection()


# --- statement timeout -------------------------------------------------------------------------


def _blog_api_backends(pg: Server) -> list[Any]:
    return pg.sql(
        "SELECT pid, state, wait_event_type, query FROM pg_stat_activity "
        "WHERE application_name = 'blog-api' AND pid <> pg_backend_pid()"
    )


def test_a_query_past_the_statement_timeout_is_cancelled_by_the_server_and_is_503(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    layer.setenv("DB_STATEMENT_TIMEOUT_MS", "300")
    reset_layer_caches()
    # Given a lock that keeps every read of posts waiting (as a long migration step would)
    with pg.admin.connect() as holder:
        holder.execute(text("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE"))
        # When a function reads posts
        reply, elapsed = timed(lambda: call("GET", "/posts"))
        # Then the server cancels its statement after the timeout, and the client gets a 503
        assert_unavailable(reply)
        assert 0.3 <= elapsed < 0.3 + MARGIN_S
        # And nothing of that request is left on the server: no waiting or running query
        assert _blog_api_backends(pg) == []
        assert pg.sql("SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0] == 0
        holder.rollback()
    assert call("GET", "/posts").status == 200


def test_with_the_deployed_timeouts_a_stuck_query_is_our_503_well_before_lambda_stops_us(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_template import effective_timeouts

    # Given the statement timeout and the function timeout of GET /posts as deployed
    statement_s, _connect_s, function_s = effective_timeouts("ListPostsFunction")
    layer.setenv("DB_STATEMENT_TIMEOUT_MS", str(int(statement_s * 1000)))
    reset_layer_caches()
    # And a lock that keeps every read of posts waiting
    with pg.admin.connect() as holder:
        holder.execute(text("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE"))
        # When the function reads posts
        reply, elapsed = timed(lambda: call("GET", "/posts"))
        holder.rollback()
    # Then the server cancels the statement and the client gets our 503 with Retry-After, in
    # about the statement timeout: long before Lambda would have stopped the function
    assert_unavailable(reply)
    assert statement_s <= elapsed < statement_s + MARGIN_S
    assert elapsed + MARGIN_S < function_s


def test_a_long_query_is_cancelled_on_the_server_not_only_abandoned_by_the_client(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    layer.setenv("DB_STATEMENT_TIMEOUT_MS", "300")
    reset_layer_caches()
    with pytest.raises(UnavailableError), layer_db.transaction() as conn:
        conn.execute(text("SELECT pg_sleep(30)"))
    # A client that merely gave up would leave pg_sleep running for 30 s on the server.
    assert _blog_api_backends(pg) == []


# --- deadlocks and serialization failures -------------------------------------------------------


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize(("attempts", "status"), [(1, 503), (2, 204)])
def test_a_deadlock_in_a_handler_is_retried_and_past_the_budget_is_a_clean_503(
    pg: Server, layer: pytest.MonkeyPatch, attempts: int, status: int
) -> None:
    layer.setenv("DB_RETRY_ATTEMPTS", str(attempts))
    reset_layer_caches()
    author = call("POST", "/users", new_user()).body
    post = call("POST", "/posts", {"title": "t", "content": "c"}, as_user=author["id"]).body
    replies: list[Reply] = []
    # Given another transaction that holds the author's post
    with pg.admin.connect() as other:
        other.execute(text("SET LOCAL deadlock_timeout = '10s'"))  # so the function is the victim
        other.execute(text("SELECT id FROM posts WHERE id = :id FOR UPDATE"), {"id": post["id"]})
        # When the author deletes their account: it locks the user, then waits for the post
        worker = threading.Thread(
            target=lambda: replies.append(
                call("DELETE", f"/users/{author['id']}", as_user=author["id"])
            )
        )
        worker.start()
        _wait_until(lambda: any(row.wait_event_type == "Lock" for row in _blog_api_backends(pg)))
        # And the other transaction then wants the user: a deadlock, found by the function's
        # backend after its deadlock_timeout (1 s), which aborts the function's transaction
        other.execute(
            text("SELECT id FROM users WHERE id = :id FOR KEY SHARE"), {"id": author["id"]}
        )
        other.rollback()
        worker.join(timeout=30)
    (reply,) = replies
    assert reply.status == status, reply.text
    remaining = pg.sql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts)")[0]
    if status == 503:
        # Past the retry budget: the documented 503 to retry later, and nothing half-done
        assert_unavailable(reply, code="transaction_conflict")
        assert tuple(remaining) == (1, 1)
    else:
        # Within it: run again once the other transaction is gone, and done completely
        assert tuple(remaining) == (0, 0)


@pytest.mark.slow
def test_a_real_serialization_failure_is_retried_until_both_writes_commit(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    from blog.repositories import UserRepository

    user_id = call("POST", "/users", {**new_user(), "username": "base"}).body["id"]
    barrier = threading.Barrier(2)
    attempts = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    @layer_db.retry_on_conflict(attempts=3, base_delay=0.01)
    def append(tag: str) -> None:
        attempts[tag] += 1
        with layer_db.transaction() as conn:
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            name = UserRepository(conn).get(user_id).username  # type: ignore[union-attr]
            if attempts[tag] == 1:
                barrier.wait(timeout=10)  # both read the same snapshot before either writes
            conn.execute(
                text("UPDATE users SET username = :n WHERE id = :id"),
                {"n": f"{name}-{tag}", "id": user_id},
            )

    def run(tag: str) -> None:
        try:
            append(tag)
        except BaseException as error:  # noqa: BLE001 - recorded for the assertion
            errors.append(error)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # The second writer got "could not serialize access" (40001), ran again on the new snapshot
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]
    final = pg.sql("SELECT username FROM users WHERE id = :id", id=user_id)[0][0]
    assert final in {"base-a-b", "base-b-a"}


@pytest.mark.slow
def test_a_deadlock_past_the_retry_budget_is_a_transaction_error_and_nothing_half_written(
    pg: Server, layer: pytest.MonkeyPatch
) -> None:
    from blog.models import Post, User, unit_of_work

    first = call("POST", "/users", new_user()).body["id"]
    second = call("POST", "/users", new_user()).body["id"]
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    @layer_db.retry_on_conflict(attempts=1)
    def lock_both(key: str, order: tuple[int, int]) -> None:
        # The ORM's unit of work on the layer's transaction: its flushes take the row locks.
        with unit_of_work() as session:
            session.add(Post(author_id=order[0], title=f"by {key}", content="c"))
            session.flush()
            session.get_one(User, order[0]).username = f"{key}-{order[0]}"
            session.flush()
            barrier.wait(timeout=10)  # both hold their first row before taking the second
            session.get_one(User, order[1]).username = f"{key}-{order[1]}"
            session.flush()

    def run(key: str, order: tuple[int, int]) -> None:
        try:
            lock_both(key, order)
            outcomes[key] = "committed"
        except BaseException as error:  # noqa: BLE001 - recorded for the assertion
            outcomes[key] = error

    threads = [
        threading.Thread(target=run, args=("ab", (first, second))),
        threading.Thread(target=run, args=("ba", (second, first))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # One transaction won; the deadlock's victim had no retry left and failed cleanly
    (winner,) = [key for key, outcome in outcomes.items() if outcome == "committed"]
    (loser,) = [outcome for outcome in outcomes.values() if outcome != "committed"]
    assert type(loser) is TransactionError
    # And only the winner's writes exist: the victim's post and first update were rolled back
    names = {row[0] for row in pg.sql("SELECT username FROM users")}
    assert names == {f"{winner}-{first}", f"{winner}-{second}"}
    assert [row[0] for row in pg.sql("SELECT title FROM posts")] == [f"by {winner}"]


# --- the execution environment itself dies ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("layer")
def test_a_crashed_execution_environment_is_replaced_by_a_new_one() -> None:
    from tests.e2e.live_gateway import HttpClient, running_gateway

    with running_gateway(workers=1) as gateway:
        client = HttpClient(gateway.base)
        assert client.call("GET", "/posts").status == 200
        (pid,) = gateway.worker_pids()["ListPostsFunction"]
        # When the function's process dies (killed, out of memory...)
        os.kill(pid, signal.SIGKILL)
        crashed = client.call("GET", "/posts")
        # Then that invocation fails as Lambda reports a crashed runtime, and the next one runs
        # in a new execution environment
        assert crashed.status == 500
        assert crashed.body == {"message": "Internal Server Error"}
        assert client.call("GET", "/posts").status == 200
        assert pid not in gateway.worker_pids()["ListPostsFunction"]
        client.close()
