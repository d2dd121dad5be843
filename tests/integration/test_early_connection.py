"""The first connection of an on-demand cold start, opened while the handler imports
(``blog.db.connect_during_init``): used by the first unit of work when it is ready and fresh,
its failure reported as that unit of work's own, never opened where nothing may hold a
connection (SnapStart, provisioned concurrency, outside Lambda).

Everything runs against the real test database; which server process served a unit of work is
told by ``pg_backend_pid()`` and ``pg_stat_activity``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from blog import db as layer_db
from blog import snapstart
from blog.errors import UnavailableError
from tests.conftest import REPO, reset_layer_caches
from tests.unit.test_cold_path import run_function

ON_DEMAND = {"LAMBDA_TASK_ROOT": str(REPO / "functions" / "get_user")}


@pytest.fixture
def cold(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[pytest.MonkeyPatch]:
    """A process as Lambda starts it on demand: its caches empty, no early connection yet."""
    for name, value in ON_DEMAND.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    reset_layer_caches()
    monkeypatch.setattr(layer_db, "_early", None)
    monkeypatch.setattr(layer_db, "_early_started", False)
    yield monkeypatch
    layer_db.discard_early_connection()
    monkeypatch.undo()
    reset_layer_caches()


def _blog_backends(database_url: str) -> set[int]:
    """The server processes of the layer's connections (``application_name``) to the test
    database, seen from a connection of another name."""
    engine = create_engine(
        database_url, poolclass=NullPool, connect_args={"application_name": "test-observer"}
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'blog-api'"
                )
            )
            return {int(pid) for (pid,) in rows}
    finally:
        engine.dispose()


def _wait_for_thread() -> None:
    early = layer_db._early
    assert early is not None
    early.thread.join(10)
    assert not early.thread.is_alive()


def _opened_during_init(database_url: str) -> int:
    """Start the early connection, wait for it; the server process of the one it opened."""
    before = _blog_backends(database_url)
    assert layer_db.connect_during_init() is True
    _wait_for_thread()
    (opened,) = _blog_backends(database_url) - before  # one connection, before any unit of work
    return opened


def _backend_pid() -> int:
    with layer_db.transaction() as conn:
        return int(conn.scalar(text("SELECT pg_backend_pid()")))


def _gone(database_url: str, pid: int) -> bool:
    """Whether the backend ``pid`` has ended (a closed connection's ends just after)."""
    deadline = time.monotonic() + 5
    while pid in _blog_backends(database_url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_on_demand_cold_start_opens_its_first_connection_during_the_import(
    cold: pytest.MonkeyPatch, database_url: str
) -> None:
    # Given / When: the import starts the early connection, and it is done; one connection was
    # opened before any unit of work ran
    opened = _opened_during_init(database_url)

    # Then: the first unit of work runs on it, and closes it (NullPool)
    first = _backend_pid()
    assert first == opened
    assert _gone(database_url, first)
    # And: the next unit of work opens a connection of its own
    assert _backend_pid() != first
    # And: it is started once per process
    assert layer_db.connect_during_init() is False


@pytest.mark.parametrize(
    "environment",
    [
        {"LAMBDA_TASK_ROOT": None},  # not on Lambda: tests, local tools
        {"AWS_LAMBDA_INITIALIZATION_TYPE": None},
        {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"},  # nothing may be in the snapshot
        {"AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"},  # initialised long before
        {"DB_CONNECT_DURING_INIT": "false"},
        # The secret would be read through the AWS SDK: boto3 imported on the thread
        {"DATABASE_URL": None, "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x"},
        {"DB_CONNECT_TIMEOUT": "not a number"},  # left to the first use to report
    ],
)
def test_no_connection_is_opened_early_where_none_may_be_held_or_had_for_free(
    cold: pytest.MonkeyPatch, database_url: str, environment: dict[str, str | None]
) -> None:
    # Given: a process started otherwise than on demand, or configured otherwise
    for name, value in environment.items():
        if value is None:
            cold.delenv(name, raising=False)
        else:
            cold.setenv(name, value)
    reset_layer_caches()
    before = _blog_backends(database_url)

    # When / Then: nothing is started and no connection opened
    assert layer_db.connect_during_init() is False
    assert layer_db._early is None
    assert _blog_backends(database_url) == before


def test_an_early_connection_that_waited_too_long_is_closed_and_a_new_one_used(
    cold: pytest.MonkeyPatch, database_url: str
) -> None:
    # Given: a connection opened during the import, older than its first unit of work may use
    stale = _opened_during_init(database_url)
    cold.setattr(layer_db, "EARLY_CONNECTION_MAX_AGE_S", 0.0)
    time.sleep(0.01)

    # When: the first unit of work runs
    first = _backend_pid()

    # Then: it ran on a new connection, and the stale one was closed
    assert first != stale
    assert _gone(database_url, stale)


class _SilentServer:
    """A TCP server that accepts connections, counts them, and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.socket.close()
        for conn in self.accepted:
            conn.close()


def test_a_database_that_does_not_answer_costs_one_connect_timeout_not_two(
    cold: pytest.MonkeyPatch,
) -> None:
    # Given: a database address where nothing answers, and a short connect timeout
    server = _SilentServer()
    try:
        cold.setenv("DATABASE_URL", f"postgresql://blog@127.0.0.1:{server.port}/blog")
        cold.setenv("DB_CONNECT_TIMEOUT", "0.5")
        cold.setenv("DB_SSLMODE", "disable")
        reset_layer_caches()

        # When: the import starts connecting, and the first unit of work runs
        assert layer_db.connect_during_init() is True
        with pytest.raises(UnavailableError), layer_db.transaction() as conn:
            conn.execute(text("SELECT 1"))

        # Then: it is the 503 of an unreachable database, after the one attempt the import
        # started: the first unit of work did not try a second time
        assert len(server.accepted) == 1
    finally:
        server.close()


def test_a_snapshot_holds_no_connection_opened_during_the_import(
    cold: pytest.MonkeyPatch, database_url: str
) -> None:
    # Given: a connection opened during the import (say the init type was misreported)
    early = _opened_during_init(database_url)

    # When: the before-snapshot hook drops connections and credentials
    snapshot_state = snapstart.forget_connections_and_credentials
    snapshot_state()

    # Then: it was closed, and the first unit of work after the restore opens its own
    assert _gone(database_url, early)
    assert layer_db.take_early_connection() is None
    assert _backend_pid() != early


def test_a_cold_start_answers_on_the_early_connection_whose_thread_imports_nothing(
    database_url: str,
) -> None:
    # Given: a fresh interpreter started as Lambda starts an on-demand cold start, recording every
    # import made on the connecting thread (modules imported there would race the main thread's)
    result = run_function(
        "get_post",
        f"""
        import threading
        on_thread = []
        def audit(event, args):
            if event == "import" and threading.current_thread().name == "blog-db-connect":
                on_thread.append(args[0])
        sys.addaudithook(audit)
        import app
        from blog import db
        started = db._early is not None
        request = json.load(open({str(REPO / "events" / "get_post.json")!r}))
        request["pathParameters"] = {{"post_id": "2147483000"}}
        response = app.lambda_handler(request, Context())
        print(json.dumps({{
            "started": started, "taken": db._early is None, "on_thread": on_thread,
            "status": response["statusCode"],
        }}))
        """,
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "get_post"),
        AWS_LAMBDA_INITIALIZATION_TYPE="on-demand",
        DATABASE_URL=database_url,
    )

    # When / Then: the connection was started during the import and taken by the invocation,
    # which answered from the database (no such post), and the thread imported nothing
    assert result["started"] is True
    assert result["taken"] is True
    assert result["status"] == 404, json.dumps(result)
    assert result["on_thread"] == []
