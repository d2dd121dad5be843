"""Traces: a sampled invocation shows the handler, each database statement and the AWS SDK;
an unsampled one loads no X-Ray SDK and sends nothing. On a real PostgreSQL, in a fresh
interpreter per case with Lambda's environment, the segments sent to a local UDP socket."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO
from tests.unit.test_cold_path import run_function

TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled={}"

CALL_GET_POST = """
import app
from blog.config import trace_aws_sdk
event = json.load(open({event!r}))
event["pathParameters"] = {{"post_id": "2147483000"}}
event["rawPath"] = event["requestContext"]["http"]["path"] = "/posts/2147483000"
os.environ["_X_AMZN_TRACE_ID"] = {trace!r}
response = app.lambda_handler(event, Context())
trace_aws_sdk()  # as before the first secret is fetched
patched = []
if "aws_xray_sdk" in sys.modules:
    from aws_xray_sdk.core import patcher
    patched = sorted(patcher._PATCHED_MODULES)
print(json.dumps({{"status": response["statusCode"], "patched": patched,
                  "xray": "aws_xray_sdk" in sys.modules}}))
"""


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


def _documents(sink: socket.socket) -> list[dict[str, Any]]:
    found = []
    while True:
        try:
            datagram = sink.recv(65536).decode()
        except TimeoutError:
            return found
        header, _, body = datagram.partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        found.append(json.loads(body))


def _get_post(database_url: str, sink: socket.socket, sampled: int) -> dict[str, Any]:
    host, port = sink.getsockname()
    return run_function(
        "get_post",
        CALL_GET_POST.format(event=str(REPO / "events" / "get_post.json"),
                             trace=TRACE.format(sampled)),
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "get_post"),
        AWS_LAMBDA_FUNCTION_NAME="GetPostFunction",
        AWS_XRAY_DAEMON_ADDRESS=f"{host}:{port}",
        AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
        DATABASE_URL=database_url,
    )  # fmt: skip


def test_a_sampled_invocation_traces_the_handler_and_each_statement_without_parameters(
    database_url: str, daemon: socket.socket
) -> None:
    # When: a sampled request for a post that does not exist
    result = _get_post(database_url, daemon, 1)
    documents = _documents(daemon)
    # Then: the answer is as ever, and the trace holds the handler and the statement it sent
    assert result["status"] == 404
    assert result["xray"] is True
    by_name = {document["name"]: document for document in documents}
    handler = by_name["## lambda_handler"]
    assert handler["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert handler["annotations"]["ColdStart"] is True
    statement = by_name["PostgreSQL"]
    assert statement["namespace"] == "remote"
    assert statement["parent_id"] == handler["id"]
    assert statement["end_time"] >= statement["start_time"]
    query = statement["sql"]["sanitized_query"]
    assert "posts" in query
    assert "2147483000" not in query  # the text with its placeholders, never the values
    # and the AWS SDK is patched once the process is about to call AWS
    assert result["patched"] == ["botocore"]


def test_an_unsampled_invocation_loads_no_xray_sdk_and_sends_nothing(
    database_url: str, daemon: socket.socket
) -> None:
    result = _get_post(database_url, daemon, 0)
    assert result["status"] == 404
    assert result["xray"] is False
    assert result["patched"] == []
    assert _documents(daemon) == []
