"""SnapStart, simulated: one snapshot of an initialized function, two environments restored from
it (forks of one process, see ``snapstart_restore.py``), each answering a real request on the
test database with credentials and a signing key from (moto's) Secrets Manager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from blog import auth, snapstart
from blog.config import get_settings
from tests.factories import make_post, make_user

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EVENTS = REPO / "events"
#: The token signing key when the snapshot is taken, and after it rotated (before restore 2).
SIGNING_KEYS = (
    "snapshot-time-signing-key-long-enough-0123",
    "rotated-signing-key-long-enough-456789",
)
NOTHING_HELD = {"connections": 0, "secrets": 0, "scram_keys": 0, "credentials": 0}


def _token(user_id: int, key: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("JWT_SIGNING_KEY", key)
    get_settings.cache_clear()
    try:
        token, _ = auth.issue_token(user_id, 0)
    finally:
        monkeypatch.delenv("JWT_SIGNING_KEY")
        get_settings.cache_clear()
    return token


@pytest.fixture(scope="module")
def report(database_url: str) -> dict[str, Any]:
    """One snapshot and two restores of GetPostFunction, asked by its author for a draft (which
    only a verified token of the author may read)."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        author = make_user()
        draft = make_post(author, title="Draft before the snapshot")
        tokens = [_token(author.id, key, monkeypatch) for key in SIGNING_KEYS]
    finally:
        monkeypatch.undo()
    url = make_url(database_url)
    event = json.loads((EVENTS / "get_post.json").read_text())
    event["pathParameters"] = {"post_id": str(draft.id)}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/posts/{draft.id}"
    job = {
        "repo": str(REPO),
        "db_secret": {
            "username": url.username or "postgres",
            "password": "not-used-by-trust-auth",
            "host": url.host,
            "port": url.port,
            "dbname": url.database,
        },
        "signing_keys": SIGNING_KEYS,
        "tokens": tokens,
        "event": event,
        "draft": {"id": draft.id, "title": draft.title},
    }
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "JWT_SIGNING_KEY"}}
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(HERE / "snapstart_restore.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    _forget_rows(author.id)  # committed for the restores: no other test may see them
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found["draft"] = job["draft"]
    return found


def _forget_rows(user_id: int) -> None:
    from blog import db

    with db.get_engine().begin() as conn:
        conn.execute(text("DELETE FROM posts WHERE author_id = :id"), {"id": user_id})
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})


def test_the_snapshot_holds_no_connection_secret_or_token(report: dict[str, Any]) -> None:
    assert report["held_after_import"] == NOTHING_HELD
    assert report["snapshot"]["held"] == NOTHING_HELD
    # and it holds the models a first request would otherwise build
    assert "PostOut" in report["snapshot"]["deferred_after_import"]
    assert "/posts/<post_id>" in report["snapshot"]["deferred_after_import"]
    assert report["snapshot"]["deferred"] == []
    assert report["snapshot"]["runtime_hooks"] is False  # the local registry ran them
    # Nothing was invoked before the snapshot: Powertools still has its first call to report.
    assert all(report["snapshot"]["cold_start"].values())


def test_each_restore_draws_its_own_random_sequence(report: dict[str, Any]) -> None:
    first, second = (restore["draws"] for restore in report["restores"])
    # Both started from the snapshot's random state, which alone would draw this in both:
    assert first != report["unreseeded_draws"]
    assert second != report["unreseeded_draws"]
    assert first != second


def test_each_restore_opens_its_own_connection_and_fetches_its_own_secrets(
    report: dict[str, Any],
) -> None:
    first, second = report["restores"]
    assert first["pid"] != second["pid"]
    for restore in (first, second):
        # Nothing inherited: the hooks dropped it all; the request fetched the database
        # credentials and the signing key, and connected once.
        assert restore["held_after_hooks"] == NOTHING_HELD
        assert restore["held_after_request"]["secrets"] == 2
        assert restore["held_after_request"]["connections"] == 0  # NullPool closed it
        assert len(restore["connections"]) == 1
        assert len(restore["secret_ids"]) == 2
    one, other = first["connections"][0], second["connections"][0]
    assert one["backend_pid"] != other["backend_pid"]
    assert one["local_port"] != other["local_port"]


def test_both_restores_answer_correctly_the_second_with_the_rotated_key(
    report: dict[str, Any],
) -> None:
    # The draft is shown only to its author: the token was verified with the key each restore
    # fetched (the second one's token is signed with the key rotated after the snapshot).
    for restore in report["restores"]:
        assert restore["status"] == 200, restore["body"]
        assert restore["body"]["id"] == report["draft"]["id"]
        assert restore["body"]["title"] == report["draft"]["title"]
        assert restore["body"]["published"] is False


def test_the_first_invocation_after_each_restore_is_reported_as_a_cold_start(
    report: dict[str, Any],
) -> None:
    # Powertools' logger and the traces (whose ColdStart annotation a sampled invocation carries)
    # each count the invocation, sampled or not (these are not).
    flags = {"aws_lambda_powertools.logging.logger", "blog.tracing"}
    for restore in report["restores"]:
        assert set(restore["cold_start_before"]) == flags
        assert all(restore["cold_start_before"].values())
        assert restore["cold_start_after"] == dict.fromkeys(flags, False)


def test_after_restore_the_traces_open_a_socket_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from blog import tracing

    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "{}:{}".format(*daemon.getsockname()))
    with daemon:
        # Given: a process that sent a trace and handled an invocation, as a snapshot's could
        tracing.daemon.close()
        tracing.daemon.send(b"before")
        _, before = daemon.recvfrom(64)
        with tracing.invocation("handler"):  # the process's first
            pass
        assert tracing.daemon.is_open
        assert tracing.cold_start() is False

        # When: it is restored
        snapstart.refresh()

        # Then: the socket is gone, the next invocation is a cold start again, and the next trace
        # leaves from a socket of its own
        assert not tracing.daemon.is_open
        assert snapstart.cold_start_flags()["blog.tracing"] is True
        tracing.daemon.send(b"after")
        data, after = daemon.recvfrom(64)
    assert data == b"after"
    assert after[1] != before[1]
    tracing.daemon.close()


def test_after_restore_forgets_cached_credentials_and_reseeds(aws: None) -> None:
    import random

    import boto3
    from aws_lambda_powertools.utilities import parameters

    # Given a fetched secret and a random state as a snapshot would hold them
    # (secrets an earlier test of the process fetched may be cached too)
    cached = snapstart.held()["secrets"]
    arn = boto3.client("secretsmanager").create_secret(Name="k", SecretString="v" * 32)["ARN"]
    assert parameters.get_secret(arn) == "v" * 32
    assert snapstart.held()["secrets"] == cached + 1
    random.seed(7)
    state = random.getstate()

    # When the process is restored
    snapstart.refresh()

    # Then the secret is gone (fetched again on next use) and the sequence is new
    assert snapstart.held()["secrets"] == 0
    random.setstate(state)
    expected = [random.random() for _ in range(3)]
    random.setstate(state)
    snapstart.reseed_random()
    assert [random.random() for _ in range(3)] != expected


def test_hooks_run_in_the_runtimes_order() -> None:
    # Before the snapshot last registered first; after restore in registration order.
    ran: list[str] = []
    before, after = len(snapstart.get_before_snapshot()), len(snapstart.get_after_restore())
    try:
        snapstart.register_before_snapshot(ran.append, "before 1")
        snapstart.register_before_snapshot(ran.append, "before 2")
        snapstart.register_after_restore(ran.append, "after 1")
        snapstart.register_after_restore(ran.append, "after 2")
        for func, args, kwargs in reversed(snapstart.get_before_snapshot()[before:]):
            func(*args, **kwargs)
        for func, args, kwargs in snapstart.get_after_restore()[after:]:
            func(*args, **kwargs)
    finally:
        del snapstart._before_snapshot[before:]
        del snapstart._after_restore[after:]
    assert ran == ["before 2", "before 1", "after 1", "after 2"]
    # and the layer's own: prime before the snapshot, refresh after each restore
    assert [hook[0] for hook in snapstart.get_before_snapshot()] == [snapstart.prime]
    assert [hook[0] for hook in snapstart.get_after_restore()] == [snapstart.refresh]


def test_prime_builds_what_a_first_request_would_and_keeps_no_credential(database_url: str) -> None:
    from pydantic import BaseModel

    from blog import db, schemas
    from local.functions import functions, load_module

    # Given a function's module, imported (its routes' models are built on first request)
    module = load_module(functions()["CreatePostFunction"])
    routes = [*module.app._static_routes, *module.app._dynamic_routes]
    deferred = [
        model
        for model in vars(schemas).values()
        if isinstance(model, type)
        and issubclass(model, BaseModel)
        and model.__module__ == schemas.__name__
        and not model.__pydantic_generic_metadata__["parameters"]  # Page: its parametrizations
    ]
    # and a connection made, which leaves parsed credentials behind
    with db.transaction() as conn:
        conn.execute(text("SELECT 1"))
    assert snapstart.held()["credentials"] >= 1

    # When the snapshot is primed
    snapstart.prime()

    # Then every model is built, every route's validation models too, the TLS context exists,
    # and no credential is kept
    assert deferred and all(model.__pydantic_complete__ for model in deferred)
    assert routes and all(route._dependant is not None for route in routes)
    assert db.ssl_context.cache_info().currsize >= 1
    held = snapstart.held()
    assert (held["secrets"], held["scram_keys"], held["credentials"]) == (0, 0, 0)


PRIME_IN_A_FRESH_PROCESS = """
import gc
import app
from blog import snapstart
before = "boto3" in sys.modules
snapstart.prime()
clients = credentials = 0
if "botocore" in sys.modules:
    from botocore.client import BaseClient
    from botocore.credentials import Credentials
    objects = gc.get_objects()
    clients = sum(isinstance(o, BaseClient) for o in objects)
    credentials = sum(isinstance(o, Credentials) for o in objects)
print(json.dumps({"before": before, "after": "boto3" in sys.modules,
                  "parameters": "aws_lambda_powertools.utilities.parameters" in sys.modules,
                  "held": snapstart.held(), "clients": clients, "credentials": credentials}))
"""


@pytest.mark.parametrize(
    ("secret_env", "imported"),
    [
        ({"DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:blog/db"}, True),
        ({"JWT_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt"}, True),
        ({"DATABASE_URL": "postgresql+pg8000://blog@127.0.0.1:1/blog"}, False),
    ],
    ids=["database-secret", "signing-key-secret", "no-secret"],
)
def test_prime_imports_the_aws_sdk_only_where_a_secret_is_read_and_creates_no_client(
    secret_env: dict[str, str], imported: bool
) -> None:
    from tests.unit.test_cold_path import run_function

    # Given: a function's module, freshly imported, with its secrets in Secrets Manager or not
    found = run_function(
        "get_post",
        PRIME_IN_A_FRESH_PROCESS,
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "get_post"),
        AWS_DEFAULT_REGION="eu-west-1",
        **({"DATABASE_URL": ""} | secret_env),
    )

    # Then: the import did not load the SDK; the snapshot holds it only where a secret will be
    # read on the first call, and holds no client, no credentials, no connection, no secret
    assert found["before"] is False
    assert (found["after"], found["parameters"]) == (imported, imported)
    assert (found["clients"], found["credentials"]) == (0, 0)
    assert found["held"] == NOTHING_HELD
