"""The deploy-time migration function: the custom resource lifecycle and the manual actions.

A local HTTP server stands in for CloudFormation's pre-signed response URL; a TCP relay that
starts late stands in for a database that is not reachable yet.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from local.functions import REPO, load_module_from
from local.gateway import LambdaContext
from local.migrations_digest import digest
from tests.conftest import reset_layer_caches

_SCRIPTS = ScriptDirectory.from_config(Config(toml_file=str(REPO / "pyproject.toml")))
#: Newest first, as the scripts chain them.
REVISIONS = [rev.revision for rev in _SCRIPTS.walk_revisions()]
HEAD = REVISIONS[0]
#: What the template passes: the digest of the scripts in this checkout (the packaged ones).
PACKAGED_DIGEST = digest()


class ResponseCatcher(HTTPServer):
    """Records every PUT it receives, like CloudFormation's S3 pre-signed URL."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(inner) -> None:  # noqa: N802, N805
                length = int(inner.headers["Content-Length"])
                self.bodies.append(json.loads(inner.rfile.read(length)))
                self.headers_seen.append(dict(inner.headers))
                inner.send_response(200)
                inner.send_header("Content-Length", "0")
                inner.end_headers()

            def log_message(inner, *args: Any) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/presigned?sig=abc"


@pytest.fixture
def catcher() -> Iterator[ResponseCatcher]:
    server = ResponseCatcher()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fn(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The migration function's module, its layer pointed at a fresh empty database."""
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    reset_layer_caches()
    module = load_module_from(REPO / "migrations")
    yield module
    monkeypatch.undo()
    reset_layer_caches()


def cfn_event(request_type: str, url: str, **extra: Any) -> dict[str, Any]:
    event = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:migrations",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/blog-api/guid",
        "RequestId": f"request-{request_type.lower()}",
        "ResourceType": "Custom::DatabaseMigrations",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceProperties": {"ScriptsDigest": PACKAGED_DIGEST},
    }
    event.update(extra)
    return event


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        engine.dispose()


def test_create_then_update_then_delete(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str
) -> None:
    # Create migrates to head and answers with the exact body CloudFormation expects
    result = fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations"))
    assert result == {"sent": True, "delivered": True}
    created = catcher.bodies[-1]
    assert created["Status"] == "SUCCESS"
    assert created["Data"] == {"Revision": HEAD}
    assert set(created) >= {
        "Status",
        "Reason",
        "PhysicalResourceId",
        "StackId",
        "RequestId",
        "LogicalResourceId",
        "Data",
    }
    assert created["RequestId"] == "request-create"
    assert catcher.headers_seen[-1]["Content-Type"] == ""
    assert revision_of(empty_database_url) == HEAD
    # Update keeps the physical id (no replacement) and is a no-op at head
    physical = created["PhysicalResourceId"]
    fn.lambda_handler(
        cfn_event("Update", catcher.url, PhysicalResourceId=physical), LambdaContext("Migrations")
    )
    assert catcher.bodies[-1]["Status"] == "SUCCESS"
    assert catcher.bodies[-1]["PhysicalResourceId"] == physical
    # Delete answers SUCCESS and keeps every table
    fn.lambda_handler(
        cfn_event("Delete", catcher.url, PhysicalResourceId=physical), LambdaContext("Migrations")
    )
    assert catcher.bodies[-1]["Status"] == "SUCCESS"
    assert {"users", "posts", "alembic_version"} <= tables(empty_database_url)
    assert len(catcher.bodies) == 3


def test_a_failing_migration_answers_failed_and_leaves_the_schema_as_it_was(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str
) -> None:
    # Given a database where revision 0002 cannot run (a "posts" table is in the way)
    engine = create_engine(empty_database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE posts (id int)"))
    engine.dispose()
    # When the stack is created
    fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations"))
    # Then CloudFormation hears FAILED with a short reason, and 0001 was rolled back too
    reply = catcher.bodies[-1]
    assert reply["Status"] == "FAILED"
    assert "42P07" in reply["Reason"]
    assert len(reply["Reason"]) <= 500
    assert tables(empty_database_url) == {"posts"}


def test_an_exception_before_alembic_runs_still_answers(
    fn: Any, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_engine() -> None:
        raise RuntimeError("No database configured")

    monkeypatch.setattr(fn, "get_engine", broken_engine)
    fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations"))
    assert catcher.bodies[-1]["Status"] == "FAILED"
    assert "RuntimeError: No database configured" in catcher.bodies[-1]["Reason"]


def test_the_timeout_guard_answers_failed_once_before_lambda_would_stop(
    fn: Any, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a migration slower than the time left (the guard fires 10 s before the timeout)
    monkeypatch.setattr(fn, "migrate", lambda target: time.sleep(2) or {"revision": HEAD})
    context = LambdaContext("Migrations", timeout_s=fn.TIMEOUT_MARGIN_MS / 1000 + 0.3)
    started = time.monotonic()
    fn.lambda_handler(cfn_event("Create", catcher.url), context)
    # Then FAILED was sent by the guard, in time, and the late success was not sent at all
    assert [b["Status"] for b in catcher.bodies] == ["FAILED"]
    assert "timeout" in catcher.bodies[0]["Reason"]
    assert time.monotonic() - started < 5


def test_unknown_request_type_answers_failed(fn: Any, catcher: ResponseCatcher) -> None:
    fn.lambda_handler(cfn_event("Rollback", catcher.url), LambdaContext("Migrations"))
    assert catcher.bodies[-1]["Status"] == "FAILED"


def test_two_concurrent_upgrades_do_not_interleave(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str
) -> None:
    barrier = threading.Barrier(2)

    def run(n: int) -> None:
        barrier.wait()
        fn.lambda_handler(
            cfn_event("Create", catcher.url, RequestId=f"r{n}"), LambdaContext("Migrations")
        )

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(b["Status"] for b in catcher.bodies) == ["SUCCESS", "SUCCESS"]
    assert {b["Data"]["Revision"] for b in catcher.bodies} == {HEAD}
    assert revision_of(empty_database_url) == HEAD


def test_manual_actions(fn: Any, empty_database_url: str) -> None:
    context = LambdaContext("Migrations")
    assert fn.lambda_handler({"action": "current"}, context) == {"revision": None}
    history = fn.lambda_handler({"action": "history"}, context)["history"]
    assert [h["revision"] for h in history] == REVISIONS
    assert history[0]["is_head"] is True
    sql = fn.lambda_handler({"action": "sql", "revision": "head"}, context)["sql"]
    assert "CREATE TABLE users" in sql
    assert revision_of(empty_database_url) is None  # offline SQL touched nothing
    assert (
        fn.lambda_handler({"action": "upgrade", "revision": "0003"}, context)["revision"] == "0003"
    )
    assert fn.lambda_handler({"action": "upgrade"}, context)["revision"] == HEAD
    down = fn.lambda_handler({"action": "downgrade", "revision": "-1"}, context)
    assert (down["from_revision"], down["revision"]) == (HEAD, REVISIONS[1])
    assert "error" in fn.lambda_handler({"action": "downgrade"}, context)
    assert "error" in fn.lambda_handler({"action": "drop-everything"}, context)
    assert fn.lambda_handler({"action": "current"}, context) == {"revision": REVISIONS[1]}


# ----------------------------------------------------------------- rollback and waiting


def test_a_rollback_update_answers_success_without_touching_the_schema(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a database at 0004 (the previous deployment's head)
    context = LambdaContext("Migrations")
    fn.lambda_handler({"action": "upgrade", "revision": "0004"}, context)
    # When CloudFormation rolls back: the previous properties (another digest) reach this code
    rollback = cfn_event(
        "Update",
        catcher.url,
        PhysicalResourceId="blog-api-database-migrations",
        ResourceProperties={"ScriptsDigest": "sha256:" + "0" * 64},
        OldResourceProperties={"ScriptsDigest": PACKAGED_DIGEST},
    )
    with caplog.at_level(logging.WARNING):
        fn.lambda_handler(rollback, context)
    # Then it answers SUCCESS at the database's revision, and upgraded nothing
    reply = catcher.bodies[-1]
    assert reply["Status"] == "SUCCESS"
    assert reply["Data"] == {"Revision": "0004"}
    assert "Rollback" in reply["Reason"]
    assert revision_of(empty_database_url) == "0004"
    assert "a rollback, schema not touched" in caplog.text


def test_a_rollback_update_succeeds_even_when_the_database_is_down(
    fn: Any, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+pg8000://postgres@127.0.0.1:{free_port()}/x")
    reset_layer_caches()
    rollback = cfn_event("Update", catcher.url, ResourceProperties={"ScriptsDigest": "old"})
    fn.lambda_handler(rollback, LambdaContext("Migrations"))
    assert catcher.bodies[-1]["Status"] == "SUCCESS"
    assert catcher.bodies[-1]["Data"] == {"Revision": "unknown"}


def test_an_update_with_the_packaged_digest_upgrades_to_head(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str
) -> None:
    fn.lambda_handler({"action": "upgrade", "revision": "0003"}, LambdaContext("Migrations"))
    update = cfn_event(
        "Update", catcher.url, OldResourceProperties={"ScriptsDigest": "sha256:previous"}
    )
    fn.lambda_handler(update, LambdaContext("Migrations"))
    assert catcher.bodies[-1]["Status"] == "SUCCESS"
    assert revision_of(empty_database_url) == HEAD


def test_the_packaged_digest_is_the_one_the_template_passes(fn: Any) -> None:
    # The function hashes the scripts it was deployed with exactly as `make generate` does.
    assert fn.scripts_digest() == PACKAGED_DIGEST


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class LateRelay:
    """Forwards a local port to the database, but only from ``start()`` on (a cluster booting)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.port = free_port()
        self.upstream = upstream
        self.server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> None:
        upstream = self.upstream

        class Pipe(socketserver.BaseRequestHandler):
            def handle(inner) -> None:  # noqa: N805
                with socket.create_connection(upstream) as remote:
                    pump = threading.Thread(target=_copy, args=(remote, inner.request), daemon=True)
                    pump.start()
                    _copy(inner.request, remote)
                    pump.join(timeout=5)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Pipe)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        with_shutdown(target)


def with_shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture
def late_database(
    fn: Any, empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LateRelay]:
    """The function's database URL points at a relay that is not listening yet."""
    url = make_url(empty_database_url)
    relay = LateRelay((url.host or "127.0.0.1", url.port or 5432))
    monkeypatch.setenv(
        "DATABASE_URL", url.set(host="127.0.0.1", port=relay.port).render_as_string(False)
    )
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")
    reset_layer_caches()
    yield relay
    relay.stop()


def test_create_waits_for_a_database_that_is_not_reachable_yet(
    fn: Any,
    catcher: ResponseCatcher,
    late_database: LateRelay,
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a database that starts accepting connections 1.5 s after the deployment asks
    monkeypatch.setattr(fn, "MIGRATION_RESERVE_MS", 0)
    timer = threading.Timer(1.5, late_database.start)
    timer.start()
    try:
        # When the stack is created
        fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations", 40))
    finally:
        timer.cancel()
    # Then it waited, migrated, and answered once
    assert [b["Status"] for b in catcher.bodies] == ["SUCCESS"]
    assert catcher.bodies[0]["Data"] == {"Revision": HEAD}
    assert revision_of(empty_database_url) == HEAD


def test_create_gives_up_waiting_in_time_to_answer_failed_itself(
    fn: Any, catcher: ResponseCatcher, late_database: LateRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database that never becomes reachable and 3 s to wait before the reserve
    monkeypatch.setattr(fn, "MIGRATION_RESERVE_MS", 1_000)
    context = LambdaContext("Migrations", timeout_s=fn.TIMEOUT_MARGIN_MS / 1000 + 4)
    started = time.monotonic()
    fn.lambda_handler(cfn_event("Create", catcher.url), context)
    # Then the function, not the timeout guard, answers FAILED, saying why
    assert [b["Status"] for b in catcher.bodies] == ["FAILED"]
    assert "not reachable" in catcher.bodies[0]["Reason"]
    assert 2.5 <= time.monotonic() - started < 4
    assert late_database.server is None


def test_an_error_that_waiting_cannot_fix_fails_at_once(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database name that does not exist (SQLSTATE 3D000), with a minute to wait
    missing = make_url(empty_database_url).set(database="no_such_database")
    monkeypatch.setenv("DATABASE_URL", missing.render_as_string(False))
    monkeypatch.setattr(fn, "MIGRATION_RESERVE_MS", 0)
    reset_layer_caches()
    started = time.monotonic()
    fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations", 70))
    assert catcher.bodies[-1]["Status"] == "FAILED"
    assert "3D000" in catcher.bodies[-1]["Reason"]
    assert time.monotonic() - started < 5


# ----------------------------------------------------------------- the first admin


def test_grant_and_revoke_admin_by_email_are_logged(
    fn: Any, empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from blog import services

    # Given a deployed schema and a registered user
    context = LambdaContext("Migrations")
    fn.lambda_handler({"action": "upgrade"}, context)
    user = services.register_user(email="first@example.com", username="first", password="x" * 12)
    assert user.is_admin is False
    # When an operator grants admin rights by email (any case)
    with caplog.at_level(logging.WARNING):
        granted = fn.lambda_handler(
            {"action": "grant-admin", "email": "First@Example.com"}, context
        )
    # Then the user is an admin, and the change is in the log with who was changed
    assert granted == {"user_id": user.id, "email": "first@example.com", "is_admin": True}
    assert services.get_user(user.id, actor=services.SYSTEM)[0].is_admin is True
    (audit,) = (r for r in caplog.records if r.getMessage() == "admin rights changed")
    assert (audit.user_id, audit.email, audit.is_admin) == (user.id, "first@example.com", True)
    # And revoking takes the rights away again
    revoked = fn.lambda_handler({"action": "revoke-admin", "email": "first@example.com"}, context)
    assert revoked["is_admin"] is False
    assert services.get_user(user.id, actor=services.SYSTEM)[0].is_admin is False


def test_grant_admin_refuses_an_unknown_or_missing_email(fn: Any) -> None:
    context = LambdaContext("Migrations")
    fn.lambda_handler({"action": "upgrade"}, context)
    assert fn.lambda_handler({"action": "grant-admin", "email": "nobody@example.com"}, context) == {
        "error": "No user with that email"
    }
    assert "error" in fn.lambda_handler({"action": "grant-admin"}, context)
    assert "error" in fn.lambda_handler({"action": "revoke-admin", "email": "  "}, context)


def test_create_waits_while_the_secrets_endpoint_cannot_be_reached_yet(
    fn: Any, catcher: ResponseCatcher, empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from botocore.exceptions import EndpointConnectionError

    # Given an endpoint whose name does not answer for the first two attempts (as Powertools
    # reports it: a GetParameterError raised while handling the connection error)
    real = fn.get_engine
    calls = {"n": 0}

    def engine_after_two_misses() -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            try:
                raise EndpointConnectionError(endpoint_url="https://secretsmanager.example")
            except EndpointConnectionError as error:
                raise GetParameterError(str(error))  # noqa: B904 - as Powertools does
        return real()

    monkeypatch.setattr(fn, "get_engine", engine_after_two_misses)
    monkeypatch.setattr(fn, "MIGRATION_RESERVE_MS", 0)
    monkeypatch.setattr(fn, "WAIT_FIRST_DELAY_S", 0.05)
    # When the stack is created, it waits and then migrates
    fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations", 30))
    assert [b["Status"] for b in catcher.bodies] == ["SUCCESS"]
    assert revision_of(empty_database_url) == HEAD


def test_an_answer_from_secrets_manager_is_not_waited_for(
    fn: Any, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    def denied() -> Any:
        raise GetParameterError("AccessDeniedException: not allowed")

    monkeypatch.setattr(fn, "get_engine", denied)
    monkeypatch.setattr(fn, "MIGRATION_RESERVE_MS", 0)
    started = time.monotonic()
    fn.lambda_handler(cfn_event("Create", catcher.url), LambdaContext("Migrations", 60))
    assert catcher.bodies[-1]["Status"] == "FAILED"
    assert "AccessDenied" in catcher.bodies[-1]["Reason"]
    assert time.monotonic() - started < 5
