"""The deploy-time migration function: the custom resource lifecycle and the manual actions.

A local HTTP server stands in for CloudFormation's pre-signed response URL.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from local.functions import REPO, load_module_from
from local.gateway import LambdaContext
from tests.conftest import reset_layer_caches
from tests.integration.test_migrations import REVISIONS

HEAD = REVISIONS[-1]


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
        "ResourceProperties": {"ScriptsDigest": "abc123"},
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
    assert [h["revision"] for h in history] == REVISIONS[::-1]
    assert history[0]["is_head"] is True
    sql = fn.lambda_handler({"action": "sql", "revision": "head"}, context)["sql"]
    assert "CREATE TABLE users" in sql
    assert revision_of(empty_database_url) is None  # offline SQL touched nothing
    assert (
        fn.lambda_handler({"action": "upgrade", "revision": "0003"}, context)["revision"] == "0003"
    )
    assert fn.lambda_handler({"action": "upgrade"}, context)["revision"] == HEAD
    down = fn.lambda_handler({"action": "downgrade", "revision": "-1"}, context)
    assert (down["from_revision"], down["revision"]) == (HEAD, REVISIONS[-2])
    assert "error" in fn.lambda_handler({"action": "downgrade"}, context)
    assert "error" in fn.lambda_handler({"action": "drop-everything"}, context)
    assert fn.lambda_handler({"action": "current"}, context) == {"revision": REVISIONS[-2]}
