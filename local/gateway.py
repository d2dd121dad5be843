"""A Docker-free stand-in for API Gateway (HTTP API) and Lambda, for local runs and tests.

Each HTTP request becomes a payload-2.0 event for the function whose route in ``template.yaml``
matches; protected routes first go through the Lambda authorizer, as API Gateway would do it
(401 without an ``Authorization`` header, 403 when the authorizer says no). Invocations run in
worker processes, one at a time per process, like Lambda execution environments.

The limits of Lambda and API Gateway hold here as on AWS, so that what would fail there fails
here first: an event or a response past Lambda's 6 MB, a function past its configured Timeout
or MemorySize (its process is killed and replaced), API Gateway's 10 MB body limit and 30 s
integration timeout; and malformed HTTP framing gets a JSON 4xx, never a dropped connection.
"""

from __future__ import annotations

import base64
import contextlib
import http
import json
import multiprocessing
import os
import re
import resource
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.functions import REPO, Function, functions, load_handler

#: The layer's code: a change there means new execution environments for every function.
LAYER = REPO / "shared" / "blog"

AUTHORIZER_ID = "AuthorizerFunction"
ROUTE_ARN_PREFIX = "arn:aws:execute-api:eu-west-1:123456789012:local/$default"
#: API Gateway refuses bodies past 10 MB before any function runs ("Payload size", 10 MB, in
#: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html).
GATEWAY_MAX_BODY = 10 * 1024 * 1024
#: Lambda's limit for a synchronous invocation, its event and its response alike (the figure its
#: own error messages name).
LAMBDA_MAX_PAYLOAD = 6_291_556
#: How long an HTTP API waits for its integration before answering 503 ("Maximum integration
#: timeout", 30 seconds, on the same page).
INTEGRATION_TIMEOUT_S = 30.0
#: How often a running invocation's process is checked (alive, memory, time).
_WATCH_S = 0.02
#: How long a connection may stay silent in the middle of a request.
READ_TIMEOUT_S = 30.0
#: A body past API Gateway's limit but below this is read and dropped before the 413.
DRAIN_MAX = 64 * 1024 * 1024


class InvocationError(Exception):
    """An invocation that Lambda reports as failed (``errorType``, ``errorMessage``)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def payload(self) -> dict[str, str]:
        """What ``sam local invoke`` and Lambda's Invoke API print for it."""
        return {"errorMessage": self.message, "errorType": self.error_type}


class IntegrationTimeout(InvocationError):  # noqa: N818 - API Gateway's name for it
    """The function did not answer within API Gateway's integration timeout."""


@dataclass(frozen=True)
class Route:
    """One HTTP API route and the function behind it."""

    method: str
    path: str
    pattern: re.Pattern[str]
    function: Function

    @property
    def route_key(self) -> str:
        """``METHOD /path/{param}``, as API Gateway names routes."""
        return f"{self.method} {self.path}"


def routes() -> list[Route]:
    """Every HTTP route of the template; literal segments win over parameters, as in API Gateway."""
    found = []
    for function in functions().values():
        for method, path in function.routes:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
            found.append(Route(method, path, re.compile(f"^{regex}$"), function))
    return sorted(found, key=lambda r: (r.path.count("{"), -len(r.path)))


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for ``method path`` and its path parameters."""
    for route in routes():
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
    return None


class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_s: float = 30.0, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (emulated) timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def invoke(logical_id: str, event: dict[str, Any], timeout_s: float | None = None) -> Any:
    """Run one function on one event in this process, as the Lambda runtime would; an event or
    a result past Lambda's payload limit raises :class:`InvocationError`, as Lambda refuses it.

    (Time and memory are enforced where a process can be killed: :class:`Environment`.)
    """
    return invoke_function(functions()[logical_id], event, timeout_s)


def invoke_function(
    function: Function, event: dict[str, Any], timeout_s: float | None = None
) -> Any:
    """:func:`invoke` for a function given as such (not necessarily one of the template's)."""
    if payload_size(event) > LAMBDA_MAX_PAYLOAD:
        raise InvocationError(
            "RequestEntityTooLargeException",
            f"Request must be smaller than {LAMBDA_MAX_PAYLOAD} bytes for the InvokeFunction "
            "operation",
        )
    context = LambdaContext(
        function.logical_id,
        function.timeout if timeout_s is None else timeout_s,
        function.memory_mb,
    )
    result = load_handler(function)(event, context)
    if payload_size(result) > LAMBDA_MAX_PAYLOAD:
        raise InvocationError(
            "Function.ResponseSizeTooLarge",
            f"Response payload size exceeded maximum allowed payload size ({LAMBDA_MAX_PAYLOAD} "
            "bytes).",
        )
    return result


def payload_size(value: Any) -> int:
    """The size of ``value`` as Lambda carries it: its JSON, in UTF-8."""
    return len(json.dumps(value, default=str).encode("utf-8", "surrogatepass"))


def _join(pairs: list[tuple[str, str]]) -> dict[str, str]:
    # API Gateway (payload 2.0) joins repeated headers and query parameters with commas.
    joined: dict[str, str] = {}
    for key, value in pairs:
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def build_event(  # noqa: PLR0917 - the parts of one HTTP request
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route,
    path_parameters: dict[str, str],
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway HTTP API payload-2.0 event, as the real service builds it (``source_ip``:
    the TCP peer, as API Gateway gives it; never a forwarding header)."""
    now = datetime.now(UTC)
    header_map = _join([(k.lower(), v) for k, v in headers if k.lower() != "cookie"])
    cookies = [c.strip() for k, v in headers if k.lower() == "cookie" for c in v.split(";")]
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": header_map.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": header_map.get("user-agent", ""),
            },
            "requestId": secrets.token_hex(8),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if raw_query:
        event["queryStringParameters"] = _join(parse_qsl(raw_query, keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def authorizer_event(event: dict[str, Any], route: Route) -> dict[str, Any]:
    """The REQUEST authorizer event (payload 2.0) for a request to ``route``."""
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"{ROUTE_ARN_PREFIX}/{route.method}{route.path}",
        "identitySource": [event["headers"].get("authorization", "")],
        "routeKey": event["routeKey"],
        "rawPath": event["rawPath"],
        "rawQueryString": event["rawQueryString"],
        "headers": event["headers"],
        "queryStringParameters": event.get("queryStringParameters"),
        "pathParameters": event.get("pathParameters"),
        "requestContext": event["requestContext"],
    }


#: On every answer the gateway gives itself. (On AWS, API Gateway's own answers are its own; a
#: CloudFront response-headers policy in front is where the header would be added there.)
GATEWAY_HEADERS = {"content-type": "application/json", "x-content-type-options": "nosniff"}


def _gateway_error(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": dict(GATEWAY_HEADERS),
        "body": json.dumps({"message": message}),
    }


def _authorize(event: dict[str, Any], route: Route, run: Any) -> dict[str, Any] | None:
    """Run the authorizer as API Gateway does: None when allowed (its context is added to the
    event), else the gateway's answer."""
    if not event["headers"].get("authorization"):
        return _gateway_error(401, "Unauthorized")
    try:
        verdict = run(AUTHORIZER_ID, authorizer_event(event, route))
    except InvocationError:
        verdict = None
    if not isinstance(verdict, dict) or "statusCode" in verdict:
        # The authorizer failed or timed out (run's error result): API Gateway answers 500,
        # not a 403 that would pass an outage off as a refusal.
        return _gateway_error(500, "Internal Server Error")
    if not verdict.get("isAuthorized"):
        return _gateway_error(403, "Forbidden")
    event["requestContext"]["authorizer"] = {"lambda": verdict.get("context") or {}}
    return None


def handle(  # noqa: PLR0911 - each of API Gateway's own answers
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    run: Any = invoke,
    *,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """What API Gateway and Lambda answer to one request (a Lambda proxy result) from the client
    at ``source_ip``."""
    parts = urlsplit(target)
    found = match(method, parts.path)
    if found is None:
        return _gateway_error(404, "Not Found")
    if len(body) > GATEWAY_MAX_BODY:
        return _gateway_error(413, "Request Entity Too Large")
    route, params = found
    event = build_event(method, parts.path, parts.query, headers, body, route, params, source_ip)
    if payload_size(event) > LAMBDA_MAX_PAYLOAD:
        # Lambda refuses the invocation (the event, a body base64-encoded, past 6 MB) and API
        # Gateway answers 413, as for a body past its own limit.
        return _gateway_error(413, "Request Entity Too Large")
    if route.function.authorizer:
        refused = _authorize(event, route, run)
        if refused is not None:
            return refused
    try:
        result = run(route.function.logical_id, event)
    except IntegrationTimeout:
        return _gateway_error(503, "Service Unavailable")
    except InvocationError:
        # A function error, a timeout, a crash, a payload past Lambda's limit: HTTP APIs answer
        # every failed Lambda integration alike.
        return _gateway_error(500, "Internal Server Error")
    if not isinstance(result, dict) or "statusCode" not in result:
        # A payload-2.0 integration treats anything else as a 200 with the JSON as body.
        return {"statusCode": 200, "headers": dict(GATEWAY_HEADERS), "body": json.dumps(result)}
    return result


class Gateway(ThreadingHTTPServer):
    """The HTTP server. Each function gets its own execution environments (worker processes,
    started fresh: cold on first use, then warm), at most ``workers`` at once, with only its own
    folder and the layer on ``sys.path``; one invocation at a time per environment."""

    daemon_threads = True
    # The listen backlog: socketserver's default of 5 resets or drops connections when a few
    # dozen clients connect at once.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        workers: int,
        extra_routes: Any = None,
        worker_log: str | None = None,
        *,
        reload: bool = False,
    ) -> None:
        self.workers = workers
        self.extra_routes = extra_routes or {}
        #: A file the workers append their stdout and stderr to (Lambda's log stream), if set.
        self.worker_log = worker_log
        #: Whether a change of a function's code or of the layer starts new environments.
        self.reload = reload
        self._pools: dict[str, _Pool] = {}
        self._stamps: dict[str, int] = {}
        self._pools_lock = threading.Lock()
        # Last: a port that is taken fails here, and server_close (which socketserver calls
        # then) needs the attributes above.
        super().__init__(address, _RequestHandler)

    def _pool(self, function: Function) -> _Pool:
        with self._pools_lock:
            stale = self._pools.get(function.logical_id)
            if stale is not None and self.reload:
                stamp = code_stamp(function)
                if stamp != self._stamps.get(function.logical_id):
                    # Requests already running finish in the old environments; new ones start
                    # fresh processes, which import the code as it is now.
                    del self._pools[function.logical_id]
                    stale.close()
                    print(  # noqa: T201
                        f"{function.logical_id}: code changed, new execution environments",
                        file=sys.stderr,
                        flush=True,
                    )
            if function.logical_id not in self._pools:
                if self.reload:
                    self._stamps[function.logical_id] = code_stamp(function)
                self._pools[function.logical_id] = _Pool(function, self.workers, self.worker_log)
            return self._pools[function.logical_id]

    def run(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Invoke a function in one of its environments, as the Lambda service would; a failed
        invocation raises :class:`InvocationError`."""
        return self._pool(functions()[logical_id]).invoke(event)

    def worker_pids(self) -> dict[str, frozenset[int]]:
        """The processes of each function's environments."""
        with self._pools_lock:
            return {name: pool.pids() for name, pool in self._pools.items()}

    def stop_workers(self) -> None:
        """Shut every environment down, all at once (each exit costs a warm worker CPU)."""
        with self._pools_lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
        for pool in pools:
            pool.join()

    def server_close(self) -> None:
        """Stop serving and shut the workers down."""
        super().server_close()
        self.stop_workers()


class _Pool:
    """The execution environments of one function: reused while warm, at most ``size`` at
    once (a request beyond waits for one), replaced when one dies."""

    def __init__(self, function: Function, size: int, worker_log: str | None) -> None:
        self.function = function
        self.size = size
        self.worker_log = worker_log
        self._idle: list[Environment] = []
        self._all: set[Environment] = set()
        self._starting = 0
        self._closed = False
        self._changed = threading.Condition()

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run one invocation in an idle environment, or a new one."""
        deadline = time.monotonic() + INTEGRATION_TIMEOUT_S
        environment = self._acquire(deadline)
        try:
            return environment.invoke(event, deadline)
        finally:
            self._release(environment)

    def _acquire(self, deadline: float) -> Environment:
        with self._changed:
            while not self._idle and len(self._all) + self._starting >= self.size:
                if not self._changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise IntegrationTimeout("Service Unavailable", "no environment in time")
            if self._idle:
                return self._idle.pop()
            self._starting += 1
        try:
            environment = Environment(self.function, self.worker_log)
        finally:
            with self._changed:
                self._starting -= 1
        with self._changed:
            self._all.add(environment)
        return environment

    def _release(self, environment: Environment) -> None:
        with self._changed:
            if environment.alive and not self._closed:
                self._idle.append(environment)
            else:
                self._all.discard(environment)
                environment.stop()
            self._changed.notify()

    def pids(self) -> frozenset[int]:
        """The processes of the live environments."""
        with self._changed:
            return frozenset(e.pid for e in self._all if e.pid is not None)

    def close(self) -> None:
        """Tell every environment to stop (idle ones at once, busy ones when done)."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            for environment in idle:
                self._all.discard(environment)
                environment.stop(wait=False)
            self._stopping = idle

    def join(self) -> None:
        """Wait for the environments told to stop."""
        for environment in getattr(self, "_stopping", []):
            environment.join()


class Environment:
    """One execution environment of a function: a process that runs one invocation at a time.

    Like Lambda, it is killed (and not reused) when an invocation outlasts the function's
    Timeout or its resident memory grows past the function's MemorySize.
    """

    def __init__(self, function: Function, worker_log: str | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.function = function
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_invocations,
            args=(child, function, worker_log),
            name=f"lambda-{function.logical_id}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self.alive = True
        self._ready = False

    @property
    def pid(self) -> int | None:
        """The process id."""
        return self._process.pid

    def invoke(self, event: dict[str, Any], deadline: float | None = None) -> Any:
        """The function's result for ``event``; :class:`InvocationError` if the invocation
        failed, :class:`IntegrationTimeout` if no answer came by ``deadline`` (monotonic)."""
        if not self.alive:
            raise InvocationError("Runtime.ExitError", "The environment has stopped")
        if not self._ready:
            self._wait_until_ready(deadline)
        timeout = self.function.timeout
        started = time.monotonic()
        try:
            self._connection.send((event, timeout))
        except (OSError, ValueError) as error:
            self.kill()
            raise InvocationError("Runtime.ExitError", "Runtime exited") from error
        limit = self.function.memory_mb * 1024 * 1024
        while not self._connection.poll(_WATCH_S):
            now = time.monotonic()
            if not self._process.is_alive():
                self.kill()
                raise InvocationError("Runtime.ExitError", "Runtime exited without answering")
            if resident_bytes(self._process.pid) > limit:
                self.kill()
                raise InvocationError(
                    "Runtime.OutOfMemory",
                    f"Runtime exited with error: signal: killed (memory past "
                    f"{self.function.memory_mb} MB)",
                )
            if now - started > timeout:
                self.kill()
                raise InvocationError(
                    "Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"
                )
            if deadline is not None and now > deadline:
                self.kill()
                raise IntegrationTimeout("Service Unavailable", "integration timed out")
        try:
            status, value = self._connection.recv()
        except (EOFError, OSError) as error:
            self.kill()
            raise InvocationError(
                "Runtime.ExitError", "Runtime exited without answering"
            ) from error
        if status == "ok":
            return value
        raise InvocationError(*value)

    def _wait_until_ready(self, deadline: float | None) -> None:
        """Wait for the init phase (start-up and the handler's import), which Lambda does not
        count against the function's timeout; API Gateway's integration timeout still runs."""
        while not self._connection.poll(_WATCH_S):
            if not self._process.is_alive():
                self.kill()
                raise InvocationError("Runtime.ExitError", "Runtime exited during init")
            if deadline is not None and time.monotonic() > deadline:
                self.kill()
                raise IntegrationTimeout("Service Unavailable", "init outlasted the integration")
        try:
            status, value = self._connection.recv()
        except (EOFError, OSError) as error:
            self.kill()
            raise InvocationError("Runtime.ExitError", "Runtime exited during init") from error
        if status != "ready":
            self.kill()
            raise InvocationError(*value)  # Runtime.ImportModuleError and the like
        self._ready = True

    def kill(self) -> None:
        """Kill the process at once, as Lambda ends an environment that failed."""
        self.alive = False
        with contextlib.suppress(OSError, AttributeError):
            self._process.kill()
        self._process.join(timeout=5)
        self._connection.close()

    def stop(self, *, wait: bool = True) -> None:
        """Let the process exit (it does when its connection closes)."""
        self.alive = False
        with contextlib.suppress(OSError):
            self._connection.close()
        if wait:
            self.join()

    def join(self) -> None:
        """Wait for the process to exit; kill it if it does not in time."""
        self._process.join(timeout=10)
        if self._process.is_alive():
            self.kill()


def resident_bytes(pid: int | None) -> int:
    """The resident memory of process ``pid`` (0 where procfs is not available)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _serve_invocations(connection: Connection, function: Function, worker_log: str | None) -> None:
    """An environment's process: start as Lambda would, then answer invocations until the
    connection closes."""
    _start_environment(str(function.code_dir), worker_log)
    try:
        load_handler(function)  # the init phase: the handler's module and what it imports
    except Exception as error:  # noqa: BLE001 - reported as Lambda reports a failed init
        connection.send(("error", ("Runtime.ImportModuleError", str(error)[:1000])))
        return
    connection.send(("ready", None))
    while True:
        try:
            event, timeout = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            reply: tuple[str, Any] = ("ok", invoke_function(function, event, timeout))
        except InvocationError as error:
            reply = ("error", (error.error_type, error.message))
        except Exception as error:  # noqa: BLE001 - an unhandled error, as Lambda reports it
            reply = ("error", (type(error).__name__, str(error)[:1000]))
        try:
            connection.send(reply)
        except (OSError, ValueError):
            return


def code_stamp(function: Function) -> int:
    """A digest of the paths and modification times of the Python files of the function's folder
    and the layer: it changes when a file is saved, added or removed."""
    seen = []
    for path in sorted([*function.code_dir.rglob("*.py"), *LAYER.rglob("*.py")]):
        try:
            seen.append((str(path), path.stat().st_mtime_ns))
        except FileNotFoundError:  # removed meanwhile: its absence tells
            continue
    return hash(tuple(seen))


def _start_environment(code_dir: str, worker_log: str | None = None) -> None:
    # Lambda puts the function's own folder first on the path (/var/task), then the layer.
    sys.path.insert(0, code_dir)
    if worker_log:
        # Everything the function prints or logs goes to the file, as to CloudWatch on Lambda.
        fd = os.open(worker_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(fd, stream.fileno())
        os.close(fd)


class _RequestHandler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"
    #: Seconds a connection may stay silent mid-request (a body that never comes).
    timeout = READ_TIMEOUT_S

    def _serve(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            return  # refused; the connection closes
        extra = self.server.extra_routes.get((self.command, urlsplit(self.path).path))
        if extra is not None:
            result = extra()
        else:
            result = handle(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.server.run,
                source_ip=str(self.client_address[0]),
            )
        self._send(result)
        elapsed_ms = (time.monotonic() - started) * 1000
        print(  # noqa: T201 - the access log
            f"{self.command} {urlsplit(self.path).path} {result['statusCode']} {elapsed_ms:.1f}ms",
            file=sys.stderr,
            flush=True,
        )

    def _read_body(self) -> bytes | None:  # noqa: PLR0911 - one answer per framing fault
        """The body as its framing says, or None once a JSON 4xx went out for bad framing."""
        lengths = self.headers.get_all("content-length") or []
        if self.headers.get_all("transfer-encoding"):
            # Chunked bodies (and Content-Length beside Transfer-Encoding, the stuff of request
            # smuggling) are refused: API Gateway's Lambda integration needs the whole body.
            return self._refuse(411 if not lengths else 400)
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not re.fullmatch(r"[0-9]{1,19}", lengths[0].strip()):
            return self._refuse(400)  # negative, not a number, several that differ
        length = int(lengths[0])
        try:
            if length > GATEWAY_MAX_BODY:
                # Read (and drop) a body of a sane size first, so that its client, still
                # sending, gets the answer rather than a broken pipe; refuse a huge one at once.
                remaining = length if length <= DRAIN_MAX else 0
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 20))):
                    remaining -= len(chunk)
                return self._refuse(413)
            body = self.rfile.read(length)
        except TimeoutError:
            return self._refuse(408)
        if len(body) != length:
            return self._refuse(400)  # the client closed before the whole body came
        return body

    def _refuse(self, status: int) -> bytes | None:
        """API Gateway's JSON for ``status``, and the connection closes; None (no body)."""
        self.close_connection = True
        self._send(_gateway_error(status, http.HTTPStatus(status).phrase), close=True)
        return None

    def _send(self, result: dict[str, Any], *, close: bool = False) -> None:
        payload = result.get("body") or ""
        data = (
            base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        )
        self.send_response_only(int(result["statusCode"]))
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, str(value))
        for cookie in result.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, headers too long or too many, an
        unsupported HTTP version) as API Gateway's JSON, not an HTML page; the input is not
        echoed."""
        del message, explain
        self.close_connection = True
        if not getattr(self, "command", None):
            self.command = "GET"  # the request line was unreadable; a body goes out all the same
        # An unreadable request line leaves http.server assuming HTTP/0.9, which has no status
        # line nor headers: the answer is HTTP/1.1 all the same.
        self.request_version = self.protocol_version
        with contextlib.suppress(OSError):
            self._send(_gateway_error(code, http.HTTPStatus(code).phrase), close=True)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

    def __getattr__(self, name: str) -> Any:
        # Other methods (TRACE, CONNECT, invented ones) are routed too, so they get API Gateway's
        # answer to a request without a route, not http.server's HTML 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: :meth:`_serve` writes one line per request with its duration."""
