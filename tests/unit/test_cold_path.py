"""The cold path: what a function imports before its first call, and what that call leaves.

Each case runs in a fresh interpreter, as a Lambda execution environment starts, with only the
function's folder and the layer on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

#: What the database layer, the resolver, the AWS SDK's clients and the X-Ray SDK (which no
#: function loads any more) bring: none of it in the authorizer.
HEAVY = (
    "sqlalchemy",
    "pg8000",
    "aws_lambda_powertools.event_handler",
    "botocore.client",
    "aws_xray_sdk",
    "wrapt",
    "argon2",
)

#: A sampled invocation's trace header.
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

PRELUDE = """
import gc, json, os, sys
sys.path[:0] = [{function!r}, {shared!r}]

class Context:
    function_name = "test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "0f3e5d1c-7c2b-4f0a-9d3e-1b2c3d4e5f60"
"""


def run_function(function: str, code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` after the prelude in a fresh interpreter; it prints one JSON object."""
    script = PRELUDE.format(
        function=str(REPO / "functions" / function), shared=str(REPO / "shared")
    ) + textwrap.dedent(code)
    # Lambda's environment, not what earlier tests of this process left in it (a local tool
    # run in-process turns tracing off, as it must outside Lambda).
    left_out = {"LAMBDA_TASK_ROOT", "PYTHONPATH", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL"}
    base = {k: v for k, v in os.environ.items() if k not in left_out}
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        env={**base, "JWT_SIGNING_KEY": "a-test-signing-key-long-enough-0123456789", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_authorizer_imports_neither_the_database_layer_nor_the_resolver() -> None:
    # Given / When: the authorizer's module is imported, as Lambda does at its cold start
    found = run_function(
        "authorizer",
        f"""
        import app
        print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))
        """,
    )
    # Then: it verifies tokens without the ORM, the driver, the resolver or the X-Ray SDK
    assert found == []


def test_the_authorizer_still_verifies_a_token_and_refuses_a_bad_one() -> None:
    result = run_function(
        "authorizer",
        """
        import app
        from blog.auth import issue_token
        token, _ = issue_token(7, 3)
        good = app.lambda_handler({"headers": {"authorization": f"Bearer {token}"}}, Context())
        bad = app.lambda_handler({"headers": {"authorization": f"Bearer {token}x"}}, Context())
        print(json.dumps({"good": good, "bad": bad}))
        """,
    )
    assert result["good"]["isAuthorized"] is True
    assert result["good"]["context"]["user_id"] == 7
    assert result["good"]["context"]["token_version"] == 3
    assert result["bad"] == {"isAuthorized": False}


@pytest.mark.parametrize(
    ("function", "event"),
    [
        ("authorizer", {"headers": {}}),  # anonymous: refused
        ("get_post", {"pathParameters": {"post_id": "not-a-number"}}),  # refused, no database
    ],
)
def test_no_function_loads_the_xray_sdk_even_when_traced(
    function: str, event: dict[str, Any]
) -> None:
    # Given: a function where Lambda runs it, a sampled trace header, and a daemon
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    with daemon:
        found = run_function(
            function,
            f"""
            import app
            request = {event!r}
            if "pathParameters" in request:  # an HTTP API event
                request = {{**json.load(open({str(REPO / "events" / "get_post.json")!r})),
                           **request}}
            os.environ["_X_AMZN_TRACE_ID"] = {TRACE!r}
            app.lambda_handler(request, Context())
            print(json.dumps(sorted(m for m in sys.modules
                                    if m.startswith(("aws_xray_sdk", "wrapt")))))
            """,
            LAMBDA_TASK_ROOT=str(REPO / "functions" / function),
            AWS_XRAY_DAEMON_ADDRESS="{}:{}".format(*daemon.getsockname()),
        )
        names = []
        with contextlib.suppress(TimeoutError):  # each subsegment is a datagram, sent as it ends
            while True:
                names.append(json.loads(daemon.recv(65536).partition(b"\n")[2])["name"])
                daemon.settimeout(0.5)
    # When / Then: its invocation was traced, without the X-Ray SDK or its wrapper library
    assert "## lambda_handler" in names
    assert found == []


def test_the_tracing_module_imports_the_standard_library_only() -> None:
    found = run_function(
        "authorizer",
        """
        before = set(sys.modules)
        import blog.tracing
        print(json.dumps(sorted(m for m in set(sys.modules) - before
                                if m.split(".")[0] not in sys.stdlib_module_names)))
        """,
    )
    assert found == ["blog", "blog.tracing"]


def test_on_lambda_the_collector_is_paused_until_the_first_invocation_ends() -> None:
    # Given: a function imported where Lambda runs it
    states = run_function(
        "authorizer",
        """
        import app
        imported = gc.isenabled()
        # When: it handles its first request (an anonymous one) and then a second
        first = app.lambda_handler({"headers": {}}, Context())
        after_first = (gc.isenabled(), gc.get_freeze_count())
        app.lambda_handler({"headers": {}}, Context())
        print(json.dumps({"imported": imported, "after_first": after_first,
                          "after_second": gc.isenabled(), "first": first}))
        """,
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "authorizer"),
    )
    # Then: no collection ran during the cold start; after it, what it allocated is frozen and
    # the collector runs again
    assert states["imported"] is False
    enabled, frozen = states["after_first"]
    assert enabled is True
    assert frozen > 10_000
    assert states["after_second"] is True
    assert states["first"] == {"isAuthorized": False}


def test_the_collector_resumes_when_the_first_invocation_fails() -> None:
    states = run_function(
        "authorizer",
        """
        from blog.telemetry import lambda_entry

        @lambda_entry(with_metrics=False)
        def handler(event, context):
            raise RuntimeError("boom")

        paused = not gc.isenabled()
        try:
            handler({}, Context())
        except RuntimeError:
            pass
        print(json.dumps({"paused": paused, "enabled": gc.isenabled()}))
        """,
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "authorizer"),
    )
    assert states == {"paused": True, "enabled": True}


def test_the_import_function_resumes_the_collector_before_its_batch() -> None:
    # A first batch may hold 10,000 users: its garbage must be collected, not frozen for good.
    states = run_function(
        "import_users",
        """
        import app
        from blog import services
        imported = gc.isenabled()
        seen = []
        services.import_user_batch = lambda users: seen.append(gc.isenabled()) or users
        body = json.dumps({"users": [{"email": "a@example.com", "username": "ada",
                                      "hashed_password": None, "password": "long-enough-1"}]})
        event = {"Records": [{"messageId": "1", "receiptHandle": "r", "body": body,
                              "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                              "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "x"}]}
        result = app.lambda_handler(event, Context())
        print(json.dumps({"imported": imported, "during": seen, "result": result}))
        """,
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "import_users"),
    )
    assert states["imported"] is False  # paused through the import, as every function
    assert states["during"] == [True]
    assert states["result"] == {"batchItemFailures": []}


def test_outside_lambda_the_collector_is_left_alone() -> None:
    states = run_function(
        "authorizer",
        """
        import app
        print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
        """,
    )
    assert states == {"enabled": True, "frozen": 0}


def test_a_function_imports_on_the_code_its_layer_recorded_and_stops_after_its_first_call(
    tmp_path: Path,
) -> None:
    # Given: the code cache of get_post, recorded by the layer's build step (with this
    # interpreter, whose bytecode it holds), as the layer ships it
    cache = tmp_path / "codecache.bin"
    packages = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    paths = [arg for path in [REPO / "shared", *packages] for arg in ("--import-path", str(path))]
    recorded = subprocess.run(
        [sys.executable, str(REPO / "lambda_build" / "record_code_cache.py"),
         str(REPO / "shared"), str(REPO / "functions"), str(cache), *paths, "--only", "get_post"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr[-3000:]

    # When: a cold start imports the function and answers a first request
    found = run_function(
        "get_post",
        f"""
        import app
        from blog import codecache
        imported = codecache.counts()
        request = {{**json.load(open({str(REPO / "events" / "get_post.json")!r})),
                   "rawPath": "/posts/not-a-number",
                   "pathParameters": {{"post_id": "not-a-number"}}}}
        status = app.lambda_handler(request, Context())["statusCode"]  # refused, no database
        import collections, dataclasses, typing
        left = [m.__name__ for m in (collections, dataclasses, typing)
                if {{"eval", "exec", "compile"}} & set(vars(m))]
        print(json.dumps({{"imported": imported, "status": status, "left": left,
                          "kept": len(codecache._codes)}}))
        """,
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "get_post"),
        CODE_CACHE=str(cache),
    )

    # Then: what its import compiled from text came from the cache, every time
    assert found["imported"]["hits"] > 300
    assert found["imported"]["misses"] == 0
    # And: it answered, and after its first invocation compiles with the built-ins again
    assert found["status"] == 422
    assert found["left"] == []
    assert found["kept"] == 0
