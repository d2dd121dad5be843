"""Traces: a sampled invocation sends the handler's subsegment, one per database statement and
one per AWS SDK call to the X-Ray daemon; one that is not sampled sends and imports nothing.

On a real PostgreSQL, in a fresh interpreter per case with Lambda's environment; a local UDP
socket stands in for the daemon, a local HTTP server for Secrets Manager.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from blog.tracing import describe
from tests.conftest import REPO
from tests.unit.test_cold_path import run_function

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENTS = ("53995c3f42cd8ad8", "0a1b2c3d4e5f6071")
TRACE = "Root={root};Parent={parent};Sampled={sampled}"
ID = re.compile(r"^[0-9a-f]{16}$")
MISSING_POST = "2147483000"
#: What a traced process must never load: the X-Ray SDK and its wrapper library, and (unless it
#: calls AWS) the AWS SDK.
NEVER = ("aws_xray_sdk", "wrapt")

#: Two requests for a post that does not exist, each with its own trace header; the statements
#: the engine sent, in order, as the test's own listener saw them.
CALL_GET_POST = """
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
import app
from blog.tracing import trace_aws_sdk
sent = []
sa_event.listen(Engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
request = json.load(open({event!r}))
request["pathParameters"] = {{"post_id": {post!r}}}
request["rawPath"] = request["requestContext"]["http"]["path"] = "/posts/" + {post!r}
statuses = []
for trace in {traces!r}:
    os.environ["_X_AMZN_TRACE_ID"] = trace
    statuses.append(app.lambda_handler(request, Context())["statusCode"])
trace_aws_sdk()  # as before the first secret is fetched
print(json.dumps({{"statuses": statuses, "statements": sent,
                  "loaded": sorted(m for m in sys.modules if m == "botocore.client"
                                   or m.split(".")[0] in ("aws_xray_sdk", "wrapt"))}}))
"""

#: A handler that runs the statements it is given, then fails if one did.
RUN_STATEMENTS = """
from sqlalchemy import text
from blog import db
from blog.telemetry import lambda_entry

@lambda_entry(with_metrics=False)
def lambda_handler(event, context):
    with db.transaction() as conn:
        for statement, parameters in event["statements"]:
            conn.execute(text(statement), parameters)
    return {{"note": "responses are never recorded"}}

os.environ["_X_AMZN_TRACE_ID"] = {trace!r}
try:
    lambda_handler({{"statements": {statements!r}}}, Context())
    error = None
except Exception as caught:
    error = type(caught).__name__
print(json.dumps({{"error": error}}))
"""

#: GetPost with its database credentials in Secrets Manager; then a handler whose own client asks
#: for a secret that does not exist.
CALL_WITH_SECRETS = """
import app
import boto3
from blog.telemetry import lambda_entry
from blog.tracing import trace_aws_sdk

request = json.load(open({event!r}))
request["pathParameters"] = {{"post_id": {post!r}}}
request["rawPath"] = request["requestContext"]["http"]["path"] = "/posts/" + {post!r}
os.environ["_X_AMZN_TRACE_ID"] = {traces[0]!r}
status = app.lambda_handler(request, Context())["statusCode"]

@lambda_entry(with_metrics=False)
def missing_secret(event, context):
    trace_aws_sdk()
    boto3.client("secretsmanager").get_secret_value(SecretId="blog/missing")

os.environ["_X_AMZN_TRACE_ID"] = {traces[1]!r}
try:
    missing_secret({{}}, Context())
    error = None
except Exception as caught:
    error = type(caught).__name__
print(json.dumps({{"status": status, "error": error}}))
"""

#: An anonymous request to the authorizer (no database), once per trace header.
CALL_AUTHORIZER = """
import app
answers = []
for trace in {traces!r}:
    os.environ["_X_AMZN_TRACE_ID"] = trace
    answers.append(app.lambda_handler({{"headers": {{}}}}, Context()))
print(json.dumps({{"answers": answers,
                  "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & {never!r})}}))
"""


def trace(parent: str = PARENTS[0], sampled: int = 1) -> str:
    """A trace header as Lambda sets it for an invocation."""
    return TRACE.format(root=ROOT, parent=parent, sampled=sampled)


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    """A local stand-in for the X-Ray daemon."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    try:
        yield sink
    finally:
        sink.close()


def _address(sink: socket.socket) -> str:
    host, port = sink.getsockname()
    return f"{host}:{port}"


def _documents(sink: socket.socket) -> list[dict[str, Any]]:
    """The documents the daemon received, in order; each datagram is the header and one."""
    found = []
    while True:
        try:
            datagram = sink.recv(65536)
        except TimeoutError:
            return found
        assert len(datagram) <= 64_000
        header, _, body = datagram.decode().partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        found.append(json.loads(body))


def _named(documents: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["name"] == name]


def _lambda_env(function: str, address: str, **env: str) -> dict[str, str]:
    return {
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / function),
        "AWS_LAMBDA_FUNCTION_NAME": "TracedFunction",
        "AWS_XRAY_DAEMON_ADDRESS": address,
        "POWERTOOLS_SERVICE_NAME": "blog-api",
        **env,
    }


def _get_post(database_url: str, address: str, traces: list[str], **env: str) -> dict[str, Any]:
    code = CALL_GET_POST.format(
        event=str(REPO / "events" / "get_post.json"), post=MISSING_POST, traces=traces
    )
    return run_function(
        "get_post", code, **_lambda_env("get_post", address, DATABASE_URL=database_url, **env)
    )


def _assert_subsegment(document: dict[str, Any]) -> None:
    """A subsegment sent on its own, as the document format wants it."""
    assert document["type"] == "subsegment"
    assert ID.match(document["id"])
    assert document["trace_id"] == ROOT
    assert ID.match(document["parent_id"])
    assert isinstance(document["start_time"], float)
    assert document["end_time"] >= document["start_time"] > 1.7e9  # epoch seconds


def test_a_sampled_invocation_traces_the_handler_and_each_statement_without_parameters(
    database_url: str, daemon: socket.socket
) -> None:
    # When: two sampled requests, in one process, for a post that does not exist
    result = _get_post(database_url, _address(daemon), [trace(PARENTS[0]), trace(PARENTS[1])])
    documents = _documents(daemon)
    # Then: the answers are as ever, without the X-Ray SDK; botocore is hooked (so imported) only
    # when the process is about to call AWS (trace_aws_sdk, after the requests)
    assert result["statuses"] == [404, 404]
    assert result["loaded"] == ["botocore.client"]
    for document in documents:
        _assert_subsegment(document)
    # a handler subsegment per invocation, under the function's segment; cold the first time only
    first, second = _named(documents, "## lambda_handler")
    assert (first["parent_id"], second["parent_id"]) == PARENTS
    assert first["annotations"] == {"ColdStart": True, "Service": "blog-api"}
    assert second["annotations"] == {"ColdStart": False, "Service": "blog-api"}
    assert first["id"] != second["id"]
    assert "fault" not in first and "cause" not in first
    # and one PostgreSQL subsegment per statement sent, in its invocation's handler
    statements = _named(documents, "PostgreSQL")
    assert [s["sql"]["sanitized_query"] for s in statements] == result["statements"]
    assert len(statements) >= 2
    for statement in statements:
        handler = first if statement["parent_id"] == first["id"] else second
        assert statement["parent_id"] == handler["id"]
        assert handler["start_time"] <= statement["start_time"] <= handler["end_time"]
        assert statement["namespace"] == "remote"
        assert statement["sql"]["database_type"] == "PostgreSQL"
        assert statement["sql"]["driver_version"] == "pg8000"
        assert "fault" not in statement
    assert {s["parent_id"] for s in statements} == {first["id"], second["id"]}
    # with the text and its placeholders, never the values
    assert any("posts" in s["sql"]["sanitized_query"] for s in statements)
    assert not any(MISSING_POST in json.dumps(s) for s in statements)


def test_a_failing_statement_is_a_fault_and_so_is_the_handler_it_escapes(
    database_url: str, daemon: socket.socket
) -> None:
    # Given: a long statement (its text is cut), then one on a table that does not exist
    long_text = "SELECT 1 /* " + "x" * 5_000 + " */"
    failing = ("SELECT * FROM no_such_table WHERE id = :id", {"id": 424242})
    code = RUN_STATEMENTS.format(trace=trace(), statements=[(long_text, {}), failing])
    result = run_function(
        "get_post", code, **_lambda_env("get_post", _address(daemon), DATABASE_URL=database_url)
    )
    documents = _documents(daemon)
    assert result == {"error": "DatabaseError"}  # the layer's, which the data layer raises
    [handler] = _named(documents, "## lambda_handler")
    by_text = {s["sql"]["sanitized_query"][:20]: s for s in _named(documents, "PostgreSQL")}
    # Then: the long statement's text is cut at 2,000 characters, and it succeeded
    cut = by_text[long_text[:20]]
    assert cut["sql"]["sanitized_query"] == long_text[:2_000]
    assert "fault" not in cut
    # the failed statement is a remote fault, with what the server said (not the parameters)
    failed = by_text[failing[0][:20]]
    assert failed["parent_id"] == handler["id"]
    assert failed["fault"] is True
    [exception] = failed["cause"]["exceptions"]
    assert exception["remote"] is True
    assert exception["type"] == "DatabaseError"  # pg8000's
    assert exception["stack"][0]["path"].endswith("core.py")  # innermost first: pg8000's
    assert 'relation "no_such_table" does not exist' in exception["message"]
    assert "42P01" in exception["message"]
    # and the handler it escaped is a fault: the exception's type, message and frames
    assert handler["fault"] is True
    [escaped] = handler["cause"]["exceptions"]
    assert escaped["type"] == "DatabaseError"
    assert escaped["message"] == "Database operation failed"
    assert escaped["remote"] is False
    assert escaped["stack"] and {"path", "line", "label"} <= set(escaped["stack"][0])
    assert "424242" not in json.dumps(documents)  # no parameter anywhere
    assert "never recorded" not in json.dumps(documents)


def test_a_database_error_is_described_without_its_parameters(db: None) -> None:
    from blog import db as layer_db

    # Given: SQLAlchemy's error for a statement PostgreSQL refused, which quotes its parameters
    with layer_db.get_engine().connect() as conn, pytest.raises(DBAPIError) as raised:
        conn.execute(text("SELECT * FROM no_such_table WHERE id = :id"), {"id": 424242})
    assert "424242" in str(raised.value)
    # When / Then: a subsegment describes it by what the server said
    assert describe(raised.value) == 'relation "no_such_table" does not exist (SQLSTATE 42P01)'


class SecretsManager(BaseHTTPRequestHandler):
    """Secrets Manager's JSON protocol for one secret; each request's trace header is kept."""

    secret: str = ""
    seen: list[dict[str, str]] = []  # noqa: RUF012 - reset by the fixture

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(
            {
                "target": self.headers["x-amz-target"],
                "trace": self.headers.get("x-amzn-trace-id", ""),
                "secret": body["SecretId"],
            }
        )
        if body["SecretId"] == "blog/db":
            status = 200
            answer: dict[str, Any] = {
                "ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:blog/db",
                "Name": "blog/db",
                "SecretString": self.secret,
                "VersionId": "1",
            }
        else:
            status = 400
            answer = {"__type": "ResourceNotFoundException", "message": "No such secret"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-requestid", f"request-{len(self.seen)}")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


@pytest.fixture
def secrets_manager(database_url: str) -> Iterator[str]:
    """A local Secrets Manager holding the test database's credentials as ``blog/db``."""
    url = make_url(database_url)
    SecretsManager.secret = json.dumps(
        {
            "username": url.username or "postgres",
            "password": "not-used-by-trust-auth",
            "host": url.host,
            "port": url.port,
            "dbname": url.database,
        }
    )
    SecretsManager.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SecretsManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_aws_sdk_calls_are_traced_and_carry_their_subsegment_in_the_trace_header(
    daemon: socket.socket, secrets_manager: str
) -> None:
    # When: GetPost fetches its database credentials (Powertools' parameters), then a handler's
    # own client asks for a secret that does not exist
    code = CALL_WITH_SECRETS.format(
        event=str(REPO / "events" / "get_post.json"),
        post=MISSING_POST,
        traces=[trace(PARENTS[0]), trace(PARENTS[1])],
    )
    env = _lambda_env(
        "get_post",
        _address(daemon),
        DATABASE_URL="",
        DB_SECRET_ARN="blog/db",
        AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets_manager,
        AWS_REGION="eu-west-1",
    )
    result = run_function("get_post", code, **env)
    documents = _documents(daemon)
    assert result == {"status": 404, "error": "ResourceNotFoundException"}
    [first] = _named(documents, "## lambda_handler")
    [second] = _named(documents, "## missing_secret")  # a handler is named after its function
    # Then: each call is an aws subsegment of its invocation's handler
    fetched, missing = _named(documents, "SecretsManager")
    for document in (fetched, missing):
        _assert_subsegment(document)
        assert document["namespace"] == "aws"
        assert document["aws"]["operation"] == "GetSecretValue"
        assert document["aws"]["region"] == "eu-west-1"
    assert fetched["parent_id"] == first["id"]
    assert fetched["aws"]["request_id"] == "request-1"
    assert fetched["http"] == {"response": {"status": 200}}
    assert "fault" not in fetched and "error" not in fetched
    # a refused call is the caller's error (a 4xx), not a fault
    assert missing["parent_id"] == second["id"]
    assert missing["aws"]["request_id"] == "request-2"
    assert missing["http"] == {"response": {"status": 400}}
    assert missing["error"] is True
    assert "fault" not in missing
    assert missing["cause"]["exceptions"][0]["type"] == "ResourceNotFoundException"
    assert missing["cause"]["exceptions"][0]["remote"] is True
    assert second["fault"] is True  # the handler it escaped
    # and each request named its subsegment as the parent of what Secrets Manager records
    seen = SecretsManager.seen
    assert [request["secret"] for request in seen] == ["blog/db", "blog/missing"]
    assert seen[0]["trace"] == f"Root={ROOT};Parent={fetched['id']};Sampled=1"
    assert seen[1]["trace"] == f"Root={ROOT};Parent={missing['id']};Sampled=1"
    # and the statements that followed the credentials are traced too
    assert any(s["parent_id"] == first["id"] for s in _named(documents, "PostgreSQL"))


@pytest.mark.parametrize(
    ("header", "env"),
    [
        (trace(sampled=0), {}),  # not sampled
        (trace(), {"POWERTOOLS_TRACE_DISABLED": "true"}),
        (trace(), {"AWS_SAM_LOCAL": "true"}),
    ],
    ids=["not-sampled", "tracing-disabled", "sam-local"],
)
def test_an_untraced_invocation_sends_nothing_and_loads_neither_sdk(
    database_url: str, daemon: socket.socket, header: str, env: dict[str, str]
) -> None:
    result = _get_post(database_url, _address(daemon), [header], **env)
    assert result["statuses"] == [404]
    # no X-Ray SDK, and no botocore client (Powertools imports botocore's package, only) though
    # the AWS SDK's tracing was asked for
    assert result["loaded"] == []
    assert _documents(daemon) == []


def test_outside_lambda_nothing_is_sent(daemon: socket.socket) -> None:
    code = CALL_AUTHORIZER.format(traces=[trace()], never=set(NEVER))
    result = run_function("authorizer", code, AWS_XRAY_DAEMON_ADDRESS=_address(daemon))
    assert result["answers"] == [{"isAuthorized": False}]
    assert _documents(daemon) == []


@pytest.mark.parametrize(
    "form",
    ["{udp}", "tcp:127.0.0.1:9 udp:{udp}", "udp:{udp} tcp:127.0.0.1:9"],
    ids=["host-port", "tcp-then-udp", "udp-then-tcp"],
)
def test_both_forms_of_the_daemon_address_reach_it(daemon: socket.socket, form: str) -> None:
    code = CALL_AUTHORIZER.format(traces=[trace()], never=set(NEVER))
    address = form.format(udp=_address(daemon))
    result = run_function("authorizer", code, **_lambda_env("authorizer", address))
    assert result == {"answers": [{"isAuthorized": False}], "loaded": []}
    [handler] = _documents(daemon)
    _assert_subsegment(handler)
    assert handler["name"] == "## lambda_handler"
    assert handler["parent_id"] == PARENTS[0]


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:0", "127.0.0.1:9", "no-port-here"],
    ids=["refused-at-send", "nobody-listening", "unreadable-so-default"],
)
def test_a_dead_daemon_does_not_break_the_request(address: str) -> None:
    code = CALL_AUTHORIZER.format(traces=[trace(PARENTS[0]), trace(PARENTS[1])], never=set(NEVER))
    result = run_function("authorizer", code, **_lambda_env("authorizer", address))
    assert result["answers"] == [{"isAuthorized": False}] * 2


def test_in_this_process_a_traced_invocation_covers_statements_and_aws_calls(
    db: None, aws: None, daemon: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from blog import db as layer_db
    from blog import tracing

    # Given: Lambda's environment for one sampled invocation, and moto's Secrets Manager
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(REPO / "functions" / "get_post"))
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace())
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", _address(daemon))
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    client.create_secret(Name="blog/traced", SecretString="s" * 32)
    tracing.daemon.close()  # to this test's daemon
    try:
        # When: the invocation fetches a secret and runs a statement
        with tracing.invocation("lambda_handler"):
            tracing.trace_aws_sdk()
            client.get_secret_value(SecretId="blog/traced")
            with layer_db.transaction() as conn:
                conn.execute(text("SELECT :value AS answer"), {"value": 424242})
        # and then one that is not sampled does the same
        monkeypatch.setenv("_X_AMZN_TRACE_ID", trace(sampled=0))
        with tracing.invocation("lambda_handler"):
            client.get_secret_value(SecretId="blog/traced")
            with layer_db.transaction() as conn:
                conn.execute(text("SELECT 1"))
    finally:
        tracing.daemon.close()
    documents = _documents(daemon)
    # Then: the sampled one alone is traced: its handler, the call and the statement in it
    [handler] = _named(documents, "## lambda_handler")
    [call] = _named(documents, "SecretsManager")
    statements = _named(documents, "PostgreSQL")
    assert call["parent_id"] == handler["id"]
    assert call["aws"]["operation"] == "GetSecretValue"
    assert call["aws"]["request_id"]
    assert call["http"] == {"response": {"status": 200}}
    assert statements and all(s["parent_id"] == handler["id"] for s in statements)
    # (the test's transaction is joined with a savepoint)
    assert [s["sql"]["sanitized_query"] for s in statements] == [
        "SAVEPOINT sa_savepoint_1",
        "SELECT %s AS answer",
        "RELEASE SAVEPOINT sa_savepoint_1",
    ]
    assert "424242" not in json.dumps(documents)
    assert len(documents) == 2 + len(statements)
