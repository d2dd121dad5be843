"""Lambda's and API Gateway's limits, enforced by the local gateway and ``invoke`` as on AWS.

- an event or a response past Lambda's 6 MB: API Gateway's 413 and 500;
- a function past its configured Timeout or MemorySize: its process is killed and replaced, and
  the caller gets API Gateway's 500 (503 past the 30 s integration timeout);
- malformed HTTP framing (a bad or negative Content-Length, chunked bodies, garbage request
  lines): a JSON 4xx and a closed connection, never a dropped connection or an HTML page.

Functions that sleep or allocate are written into a temporary folder for the purpose: the
environments run them exactly as they run the template's.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from local.functions import Function, functions
from local.gateway import (
    LAMBDA_MAX_PAYLOAD,
    Environment,
    Gateway,
    IntegrationTimeout,
    InvocationError,
    handle,
)

HANDLER = """
import time

def lambda_handler(event, context):
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "allocate":
        hog = bytearray(event["mib"] * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
    if action == "big":
        return {"statusCode": 200, "body": "x" * event["bytes"]}
    return {"statusCode": 200, "body": "ok", "remaining_ms": context.get_remaining_time_in_millis(),
            "memory_mb": context.memory_limit_in_mb}
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Function:
    """A function that sleeps, allocates or answers big on demand: 2 s and 256 MB."""
    folder: Path = tmp_path_factory.mktemp("toy_function")
    (folder / "app.py").write_text(HANDLER)
    return Function(logical_id="ToyFunction", code_dir=folder, handler="app.lambda_handler",
                    timeout=2.0, memory_mb=256)  # fmt: skip


def test_the_template_gives_each_function_its_timeout_and_memory_size() -> None:
    found = functions()
    assert (found["ListPostsFunction"].timeout, found["ListPostsFunction"].memory_mb) == (10, 512)
    assert (found["ImportUsersFunction"].timeout, found["ImportUsersFunction"].memory_mb) == (
        60,
        1024,
    )


def test_an_environment_answers_with_the_functions_configured_limits(toy: Function) -> None:
    environment = Environment(toy)
    try:
        result = environment.invoke({})
        assert result["memory_mb"] == 256
        assert 0 < result["remaining_ms"] <= 2000
        assert environment.alive
    finally:
        environment.stop()


def test_a_function_past_its_timeout_is_killed_and_reported_as_lambda_does(toy: Function) -> None:
    environment = Environment(toy)
    try:
        assert environment.invoke({})["body"] == "ok"  # warm
        with pytest.raises(InvocationError) as failed:
            environment.invoke({"action": "sleep", "seconds": 60})
        assert failed.value.error_type == "Sandbox.Timedout"
        assert "Task timed out after 2.00 seconds" in failed.value.message
        assert not environment.alive
    finally:
        environment.stop()


def test_a_function_growing_past_its_memory_size_is_killed(toy: Function) -> None:
    environment = Environment(toy)
    try:
        assert environment.invoke({"action": "allocate", "mib": 16})["body"] == "ok"
        with pytest.raises(InvocationError) as failed:
            environment.invoke({"action": "allocate", "mib": 400})
        assert failed.value.error_type == "Runtime.OutOfMemory"
        assert not environment.alive
    finally:
        environment.stop()


def test_past_the_integration_timeout_the_answer_is_api_gateways_503(toy: Function) -> None:
    import time

    environment = Environment(replace(toy, timeout=60.0))
    try:
        environment.invoke({})  # warm
        with pytest.raises(IntegrationTimeout):
            environment.invoke({"action": "sleep", "seconds": 60}, time.monotonic() + 1)
    finally:
        environment.stop()


def test_a_response_past_6_mb_fails_like_lambda_and_a_smaller_one_passes(toy: Function) -> None:
    environment = Environment(toy)
    try:
        small = environment.invoke({"action": "big", "bytes": LAMBDA_MAX_PAYLOAD - 1000})
        assert len(small["body"]) == LAMBDA_MAX_PAYLOAD - 1000
        with pytest.raises(InvocationError) as failed:
            environment.invoke({"action": "big", "bytes": LAMBDA_MAX_PAYLOAD})
        assert failed.value.error_type == "Function.ResponseSizeTooLarge"
        assert "(6291556 bytes)" in failed.value.message
        assert environment.alive  # Lambda refuses the response, the environment lives on
    finally:
        environment.stop()


def _raising(error: InvocationError) -> Any:
    def run(_logical_id: str, _event: dict[str, Any]) -> Any:
        raise error

    return run


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (InvocationError("Function.ResponseSizeTooLarge", "too big"), 500, "Internal Server Error"),
        (InvocationError("Sandbox.Timedout", "Task timed out"), 500, "Internal Server Error"),
        (InvocationError("Runtime.OutOfMemory", "killed"), 500, "Internal Server Error"),
        (IntegrationTimeout("Service Unavailable", "late"), 503, "Service Unavailable"),
    ],
)
def test_api_gateway_answers_a_failed_invocation_with_its_own_json(
    error: InvocationError, status: int, message: str
) -> None:
    result = handle("GET", "/posts", [("host", "localhost")], b"", _raising(error))
    assert result["statusCode"] == status
    assert json.loads(result["body"]) == {"message": message}
    assert result["headers"]["x-content-type-options"] == "nosniff"


def test_an_event_past_6_mb_is_refused_with_413_before_any_function_runs() -> None:
    ran: list[str] = []
    body = b'{"title": "' + b"x" * LAMBDA_MAX_PAYLOAD + b'"}'
    headers = [("host", "localhost"), ("content-type", "application/json")]
    result = handle("POST", "/users", headers, body, lambda name, _e: ran.append(name))
    assert (result["statusCode"], json.loads(result["body"])) == (
        413,
        {"message": "Request Entity Too Large"},
    )
    assert ran == []


# --- HTTP framing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A gateway for framing only: every request here is refused before any function runs."""
    gateway = Gateway(("127.0.0.1", 0), workers=1)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(gateway.server_address[1])
    finally:
        gateway.shutdown()
        gateway.server_close()
        thread.join(timeout=10)


def _exchange(
    port: int, request: bytes, *, half_close: bool = True
) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes; the status, headers and JSON body of the answer, read until the server
    closes the connection (it must, after refusing the framing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/json", head
    assert int(headers["content-length"]) == len(body), head
    return status, headers, json.loads(body)


FRAMING = {
    "Content-Length not a number": (b"Content-Length: abc\r\n", b"{}", 400),
    "negative Content-Length": (b"Content-Length: -1\r\n", b"{}", 400),
    "Content-Length with a sign": (b"Content-Length: +2\r\n", b"{}", 400),
    "Content-Length with a decimal": (b"Content-Length: 2.0\r\n", b"{}", 400),
    "two Content-Lengths that differ": (b"Content-Length: 2\r\nContent-Length: 3\r\n", b"{}", 400),
    "Content-Length list": (b"Content-Length: 2, 2\r\n", b"{}", 400),
    "huge Content-Length": (b"Content-Length: 99999999999999999999\r\n", b"{}", 400),
    "Content-Length past 10 MB": (b"Content-Length: 10485761\r\n", b"", 413),
    "body shorter than its Content-Length": (b"Content-Length: 100\r\n", b"{}", 400),
    "chunked": (b"Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n", 411),
    "chunked and a Content-Length": (
        b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
        b"2\r\n{}\r\n0\r\n\r\n",
        400,
    ),
    "another transfer coding": (b"Transfer-Encoding: gzip\r\n", b"{}", 411),
}


@pytest.mark.parametrize("name", FRAMING)
def test_malformed_framing_gets_a_json_4xx_and_a_closed_connection(port: int, name: str) -> None:
    headers, body, expected = FRAMING[name]
    request = (
        b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + headers
        + b"\r\n"
        + body
    )
    status, response_headers, parsed = _exchange(port, request)
    assert status == expected
    assert set(parsed) == {"message"}
    assert response_headers["connection"] == "close"
    assert response_headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /posts HTTP/9.9\r\nHost: x\r\n\r\n", 505),
        (b"GET /posts HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /posts HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
    ids=["request line", "HTTP version", "long header", "many headers", "long URI"],
)
def test_what_http_server_refuses_itself_is_json_too(
    port: int, request_bytes: bytes, expected: int
) -> None:
    status, _, parsed = _exchange(port, request_bytes)
    assert status == expected
    assert set(parsed) == {"message"}
    assert "<" not in json.dumps(parsed)  # no HTML, and nothing of the request echoed


def test_the_init_phase_does_not_count_against_the_timeout_and_a_failed_one_is_reported(
    tmp_path: Path,
) -> None:
    # Given a function whose module takes longer to import than its 1 s timeout
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "app.py").write_text(
        "import time\ntime.sleep(2)\n\ndef lambda_handler(event, context):\n    return 'ok'\n"
    )
    environment = Environment(Function("SlowInitFunction", slow, "app.lambda_handler", timeout=1))
    try:
        # Then its first invocation still answers: Lambda's init phase has a clock of its own
        assert environment.invoke({}) == "ok"
    finally:
        environment.stop()
    # And a module that cannot be imported fails the invocation as Lambda reports it
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "app.py").write_text("import no_such_module_anywhere\n")
    environment = Environment(Function("BrokenFunction", broken, "app.lambda_handler"))
    try:
        with pytest.raises(InvocationError) as failed:
            environment.invoke({})
        assert failed.value.error_type == "Runtime.ImportModuleError"
        assert not environment.alive
    finally:
        environment.stop()
