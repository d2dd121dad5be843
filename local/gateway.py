"""A Docker-free stand-in for API Gateway (HTTP API) and Lambda, for local runs and tests.

Each HTTP request becomes a payload-2.0 event for the function whose route in ``template.yaml``
matches; protected routes first go through the Lambda authorizer, as API Gateway would do it
(401 without an ``Authorization`` header, 403 when the authorizer says no). Invocations run in
worker processes, one at a time per process, like Lambda execution environments.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import re
import secrets
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.functions import Function, functions, load_handler

AUTHORIZER_ID = "AuthorizerFunction"
ROUTE_ARN_PREFIX = "arn:aws:execute-api:eu-west-1:123456789012:local/$default"
#: API Gateway refuses bodies past 10 MB before any function runs.
GATEWAY_MAX_BODY = 10 * 1024 * 1024


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

    def __init__(self, function_name: str, timeout_s: float = 30.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
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


def invoke(logical_id: str, event: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """Run one function on one event in this process, as the Lambda runtime would."""
    function = functions()[logical_id]
    return load_handler(function)(event, LambdaContext(logical_id, timeout_s))


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
) -> dict[str, Any]:
    """An API Gateway HTTP API payload-2.0 event, as the real service builds it."""
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
                "sourceIp": "127.0.0.1",
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
    verdict = run(AUTHORIZER_ID, authorizer_event(event, route))
    if not isinstance(verdict, dict) or "statusCode" in verdict:
        # The authorizer failed or timed out (run's error result): API Gateway answers 500,
        # not a 403 that would pass an outage off as a refusal.
        return _gateway_error(500, "Internal Server Error")
    if not verdict.get("isAuthorized"):
        return _gateway_error(403, "Forbidden")
    event["requestContext"]["authorizer"] = {"lambda": verdict.get("context") or {}}
    return None


def handle(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, run: Any = invoke
) -> dict[str, Any]:
    """What API Gateway and Lambda answer to one request (a Lambda proxy result)."""
    parts = urlsplit(target)
    found = match(method, parts.path)
    if found is None:
        return _gateway_error(404, "Not Found")
    if len(body) > GATEWAY_MAX_BODY:
        return _gateway_error(413, "Request Entity Too Large")
    route, params = found
    event = build_event(method, parts.path, parts.query, headers, body, route, params)
    if route.function.authorizer:
        refused = _authorize(event, route, run)
        if refused is not None:
            return refused
    result = run(route.function.logical_id, event)
    if not isinstance(result, dict) or "statusCode" not in result:
        # A payload-2.0 integration treats anything else as a 200 with the JSON as body.
        return {"statusCode": 200, "headers": dict(GATEWAY_HEADERS), "body": json.dumps(result)}
    return result


class Gateway(ThreadingHTTPServer):
    """The HTTP server. Each function gets its own pool of worker processes, started fresh (like
    Lambda execution environments: cold on first use, then warm), with only its own folder and
    the layer on ``sys.path``; one invocation at a time per process."""

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
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.workers = workers
        self.extra_routes = extra_routes or {}
        #: A file the workers append their stdout and stderr to (Lambda's log stream), if set.
        self.worker_log = worker_log
        self._pools: dict[str, ProcessPoolExecutor] = {}
        self._pools_lock = threading.Lock()

    def _pool(self, function: Function) -> ProcessPoolExecutor:
        with self._pools_lock:
            if function.logical_id not in self._pools:
                self._pools[function.logical_id] = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_environment,
                    initargs=(str(function.code_dir), self.worker_log),
                )
            return self._pools[function.logical_id]

    def run(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Invoke a function in one of its worker processes, as the Lambda service would."""
        function = functions()[logical_id]
        pool = self._pool(function)
        try:
            future = pool.submit(invoke, logical_id, event, function.timeout)
            return future.result(timeout=function.timeout + 5)
        except FutureTimeout:
            return _gateway_error(503, "Service Unavailable")  # API Gateway's integration timeout
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the pool is unusable for good, so it is
            # dropped and the next invocation starts new environments, as Lambda would.
            with self._pools_lock:
                if self._pools.get(logical_id) is pool:
                    del self._pools[logical_id]
            pool.shutdown(wait=False, cancel_futures=True)
            return _gateway_error(500, "Internal Server Error")
        except Exception:  # noqa: BLE001 - an unhandled error in the function, as Lambda reports it
            return _gateway_error(500, "Internal Server Error")

    def server_close(self) -> None:
        """Stop serving and shut the workers down."""
        super().server_close()
        with self._pools_lock:
            # All pools at once: their workers wind down together, not one function after another.
            closing = [
                threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
                for pool in self._pools.values()
            ]
            for thread in closing:
                thread.start()
            for thread in closing:
                thread.join()
            self._pools.clear()


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

    def _serve(self) -> None:
        started = time.monotonic()
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        extra = self.server.extra_routes.get((self.command, urlsplit(self.path).path))
        if extra is not None:
            result = extra()
        else:
            result = handle(
                self.command, self.path, list(self.headers.items()), body, self.server.run
            )
        payload = result.get("body") or ""
        data = (
            base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        )
        status = int(result["statusCode"])
        self.send_response_only(status)
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, str(value))
        for cookie in result.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        elapsed_ms = (time.monotonic() - started) * 1000
        print(  # noqa: T201 - the access log
            f"{self.command} {urlsplit(self.path).path} {status} {elapsed_ms:.1f}ms",
            file=sys.stderr,
            flush=True,
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

    def __getattr__(self, name: str) -> Any:
        # Other methods (TRACE, CONNECT, invented ones) are routed too, so they get API Gateway's
        # answer to a request without a route, not http.server's HTML 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: :meth:`_serve` writes one line per request with its duration."""
