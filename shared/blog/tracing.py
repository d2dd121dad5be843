"""X-Ray traces of the functions, sent to the daemon Lambda runs next to them.

Lambda collects trace segments over UDP (``AWS_XRAY_DAEMON_ADDRESS``): a datagram is the header
line ``{"format": "json", "version": 1}`` and one segment document. Lambda itself records the
function's segment; a sampled invocation adds to it:

- the handler's subsegment (``## <handler name>``), annotated ``ColdStart`` and ``Service``,
  with a fault and its cause (the exception's type, message and frames, never local variables)
  when an exception escapes it. Neither the request nor the response is recorded: they may
  carry personal data. Nested in it:
- a ``remote`` subsegment ``PostgreSQL`` per statement sent to the database (SQLAlchemy engine
  events): its text with the placeholders, never the parameters;
- an ``aws`` subsegment per AWS SDK call (botocore), once :func:`trace_aws_sdk` was called, whose
  id goes out in the request's ``X-Amzn-Trace-Id`` header so the service's segment joins it.

Each subsegment is sent on its own when it ends (an independent subsegment of the document
format, with its ``parent_id`` and ``trace_id``): nothing is buffered, a document never grows
with the request, and a send that fails (no daemon) is dropped, never the request's problem.

Why not the X-Ray SDK (through Powertools' ``Tracer``): it is in maintenance mode since
2026-02-25 and out of support from 2027-02-25, and importing it (with wrapt) and building the
tracer cost 11-15 ms of each sampled cold start. This module is the standard library only, and
an invocation that is not sampled imports nothing more and sends nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import socket

#: The trace header Lambda sets for each invocation, and the daemon's address.
TRACE_HEADER_ENV: Final = "_X_AMZN_TRACE_ID"
DAEMON_ADDRESS_ENV: Final = "AWS_XRAY_DAEMON_ADDRESS"
DEFAULT_DAEMON: Final = ("127.0.0.1", 2000)
#: What precedes each document in a datagram (the daemon's protocol).
DATAGRAM_HEADER: Final = b'{"format": "json", "version": 1}\n'
#: A datagram's largest size: a segment document may be 64 KB, and a UDP datagram over IPv4 at
#: most 65,507 bytes; a bigger document is cut (:func:`encode`), never sent whole.
DATAGRAM_MAX: Final = 64_000
#: At most this much of a statement's text goes into its subsegment (parameters never do).
SQL_TEXT_MAX: Final = 2_000
#: At most this much of an exception's message, and this many of its innermost frames.
MESSAGE_MAX: Final = 2_000
STACK_MAX: Final = 20
#: X-Ray's limit on a subsegment's name.
NAME_MAX: Final = 200
#: The name of a statement's subsegment.
STATEMENT: Final = "PostgreSQL"
#: The fields a document keeps when it is too big for a datagram.
ESSENTIAL: Final = (
    "type", "id", "trace_id", "parent_id", "name", "namespace", "start_time", "end_time",
    "fault", "error", "throttle",
)  # fmt: skip
_HEADER_HANDLER_ID: Final = "blog.tracing.trace-header"


def new_id() -> str:
    """A random 64-bit id, 16 hex digits; from the operating system, not ``random``, whose state
    every environment restored from a SnapStart snapshot would share."""
    return os.urandom(8).hex()


@dataclass(frozen=True)
class TraceHeader:
    """The parts of Lambda's trace header (``Root=...;Parent=...;Sampled=1``) a trace needs."""

    root: str
    parent: str
    sampled: bool

    @classmethod
    def parse(cls, value: str) -> TraceHeader | None:
        """The header's parts, or ``None`` without a root and a parent."""
        parts = dict(
            part.strip().split("=", 1) for part in value.split(";") if "=" in part
        )  # fmt: skip
        root, parent = parts.get("Root", ""), parts.get("Parent", "")
        if not root or not parent:
            return None
        return cls(root=root, parent=parent, sampled=parts.get("Sampled") == "1")


def daemon_address(value: str | None) -> tuple[str, int]:
    """The daemon's UDP address from ``AWS_XRAY_DAEMON_ADDRESS``: ``host:port``, or the form
    ``tcp:host:port udp:host:port`` (its UDP part); the default when unset or unreadable."""
    for part in (value or "").split():
        if part.count(":") == 2:
            protocol, host, port = part.split(":")
            if protocol.lower() != "udp":
                continue
        elif part.count(":") == 1:
            host, port = part.split(":")
        else:
            continue
        if host and port.isdigit():
            return host, int(port)
    return DEFAULT_DAEMON


def sampled_header() -> TraceHeader | None:
    """This invocation's trace header if it is traced: on Lambda (not SAM local), tracing not
    disabled (``POWERTOOLS_TRACE_DISABLED``), and the request sampled (``Sampled=1``)."""
    if not os.environ.get("LAMBDA_TASK_ROOT") or os.environ.get("AWS_SAM_LOCAL"):
        return None
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in {"1", "true", "on", "y"}:
        return None
    header = TraceHeader.parse(os.environ.get(TRACE_HEADER_ENV, ""))
    return header if header is not None and header.sampled else None


@dataclass(eq=False)
class Subsegment:
    """An open subsegment: what its document holds, and the open one it is nested in."""

    name: str
    trace_id: str
    parent_id: str
    parent: Subsegment | None = None
    namespace: str | None = None
    id: str = field(default_factory=new_id)
    start_time: float = field(default_factory=time.time)
    #: The document's other fields (annotations, sql, aws, http, fault, cause...).
    fields: dict[str, Any] = field(default_factory=dict)

    def child(self, name: str, namespace: str, **fields: Any) -> Subsegment:
        """A subsegment nested in this one."""
        return Subsegment(
            name=name[:NAME_MAX], trace_id=self.trace_id, parent_id=self.id, parent=self,
            namespace=namespace, fields=fields,
        )  # fmt: skip

    def fail(self, error: BaseException, *, remote: bool, flag: str = "fault") -> None:
        """Mark it failed (``fault``: ours or the server's; ``error``: the client's, a 4xx) with
        ``error`` as its cause: type, message and innermost frames (file, line, function)."""
        import traceback

        frames = traceback.extract_tb(error.__traceback__)
        kept = frames[-STACK_MAX:][::-1]  # innermost first
        self.fields[flag] = True
        self.fields["cause"] = {
            "exceptions": [
                {
                    "id": new_id(),
                    "type": type(error).__name__[:NAME_MAX],
                    "message": describe(error),
                    "remote": remote,
                    "stack": [
                        {"path": frame.filename, "line": frame.lineno, "label": frame.name}
                        for frame in kept
                    ],
                    "truncated": len(frames) - len(kept),
                }
            ]
        }

    def document(self, end_time: float) -> dict[str, Any]:
        """Its segment document, sent on its own (an independent subsegment)."""
        document: dict[str, Any] = {
            "type": "subsegment",
            "id": self.id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "start_time": self.start_time,
            "end_time": end_time,
        }
        if self.namespace:
            document["namespace"] = self.namespace
        document.update(self.fields)
        return document


def describe(error: BaseException) -> str:
    """An exception's message for its subsegment, without the data it may carry.

    A database error is described by what the server said of it (its message and SQLSTATE),
    not by SQLAlchemy's text, which appends the statement's parameters, nor by the server's
    detail, which may quote a row's values (``Key (email)=(...) already exists``); a pydantic
    validation error by where and why each value was refused, not by the values.
    """
    errors = getattr(error, "errors", None)
    original = getattr(error, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    if hasattr(error, "error_count") and callable(errors):  # pydantic's ValidationError
        refused = errors(include_input=False, include_url=False)
        return "; ".join(_refusal(item) for item in refused)[:MESSAGE_MAX]
    if isinstance(original, BaseException):
        error = original
    fields = error.args[0] if error.args else None
    if isinstance(fields, dict) and "M" in fields:  # pg8000: the server's error fields
        message = f"{fields['M']} (SQLSTATE {fields.get('C', '?')})"
    else:
        message = str(error)
    return message[:MESSAGE_MAX]


def _refusal(item: dict[str, Any]) -> str:
    """Where a value was refused and why (``title: String should have at most 300 characters``)."""
    return f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"


def encode(document: dict[str, Any]) -> bytes:
    """The datagram for ``document``: header line and JSON, at most :data:`DATAGRAM_MAX` bytes.

    The long fields are cut where they are recorded (statement, message, frames, name); a
    document still too big keeps only its :data:`ESSENTIAL` fields, so that the trace shows
    the subsegment, its timing and whether it failed.
    """
    data = DATAGRAM_HEADER + json.dumps(document, separators=(",", ":")).encode()
    if len(data) > DATAGRAM_MAX:
        kept = {key: document[key] for key in ESSENTIAL if key in document}
        data = DATAGRAM_HEADER + json.dumps(kept, separators=(",", ":")).encode()
    return data


class Daemon:
    """The UDP socket to the X-Ray daemon, opened on the first send of the process.

    Sending never raises: without a daemon (or with an address that does not resolve) the
    documents are dropped, and the request goes on as if untraced.
    """

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._target: Any = None
        self._unreachable = False

    def send(self, data: bytes) -> None:
        """Send one datagram, or drop it."""
        if self._unreachable:
            return
        try:
            if self._socket is None:
                self._open()
            assert self._socket is not None
            self._socket.sendto(data, self._target)
        except OSError:
            pass  # no daemon, a full buffer: the trace misses this subsegment, nothing else

    def _open(self) -> None:
        import socket

        host, port = daemon_address(os.environ.get(DAEMON_ADDRESS_ENV))
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError:
            self._unreachable = True  # resolved once per process (Lambda gives an IP address)
            raise
        family, kind, proto, _, self._target = found[0]
        self._socket = socket.socket(family, kind, proto)
        self._socket.setblocking(False)  # a full buffer drops the datagram, never waits

    @property
    def is_open(self) -> bool:
        """Whether the socket exists (it is made on the first send)."""
        return self._socket is not None

    def close(self) -> None:
        """Drop the socket (made again on the next send) and what was resolved."""
        if self._socket is not None:
            self._socket.close()
        self._socket, self._target, self._unreachable = None, None, False


@dataclass
class _Process:
    """What tracing keeps per process."""

    cold_start: bool = True
    traced: bool = False  # a sampled invocation has run
    aws_sdk_wanted: bool = False
    statements_hooked: bool = False
    aws_sdk_hooked: bool = False


daemon: Final = Daemon()
_process = _Process()
#: The open subsegment that a statement or an AWS call is nested in; ``None`` when the
#: invocation is not traced.
_current: ContextVar[Subsegment | None] = ContextVar("blog_tracing_current", default=None)


def cold_start() -> bool:
    """Whether the next invocation is the process's first (its subsegment's ``ColdStart``)."""
    return _process.cold_start


def reset_cold_start() -> None:
    """Count the next invocation as a cold start (the first after a SnapStart restore)."""
    _process.cold_start = True


@contextmanager
def invocation(handler_name: str) -> Iterator[None]:
    """One invocation of the handler: traced as ``## handler_name`` when sampled.

    Every invocation goes through it, traced or not, so that ``ColdStart`` is true on the
    process's first one only, whichever is the first sampled.
    """
    cold, _process.cold_start = _process.cold_start, False
    header = sampled_header()
    if header is None:
        yield
        return
    _process.traced = True
    _install_hooks()
    annotations = {
        "ColdStart": cold,
        "Service": os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined"),
    }
    handler = Subsegment(
        name=f"## {handler_name}"[:NAME_MAX], trace_id=header.root, parent_id=header.parent,
        fields={"annotations": annotations},
    )  # fmt: skip
    token = _current.set(handler)
    try:
        yield
    except Exception as error:
        handler.fail(error, remote=False)
        raise
    finally:
        _current.reset(token)
        _send(handler)


def start(name: str, namespace: str, **fields: Any) -> Subsegment | None:
    """Open a subsegment in the current one (``None`` when the invocation is not traced)."""
    parent = _current.get()
    return None if parent is None else _enter(parent.child(name, namespace, **fields))


def _enter(subsegment: Subsegment) -> Subsegment:
    _current.set(subsegment)
    return subsegment


def end(subsegment: Subsegment) -> None:
    """Close ``subsegment`` (sent now) and return to the one it is nested in."""
    _current.set(subsegment.parent)
    _send(subsegment)


def _send(subsegment: Subsegment) -> None:
    daemon.send(encode(subsegment.document(time.time())))


def trace_aws_sdk() -> None:
    """Trace the AWS SDK's calls; call before the process's first one.

    Hooking botocore imports it, tens of milliseconds of a cold start: it is hooked only in a
    process that is about to call AWS (a secret to fetch) and is traced, by the first traced
    invocation after this call, or now if one already ran.
    """
    _process.aws_sdk_wanted = True
    if _process.traced:
        _install_hooks()


def _install_hooks() -> None:
    """Hook what the process uses and is not hooked yet: SQLAlchemy (if imported), botocore
    (if :func:`trace_aws_sdk` was called)."""
    if not _process.statements_hooked and "sqlalchemy" in sys.modules:
        _trace_statements()
        _process.statements_hooked = True
    if _process.aws_sdk_wanted and not _process.aws_sdk_hooked:
        _trace_aws_calls()
        _process.aws_sdk_hooked = True


# ------------------------------------------------------------------------------ statements


def _trace_statements() -> None:
    """A ``remote`` subsegment per statement: engine events on every engine (the class)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", _statement_started)
    event.listen(Engine, "after_cursor_execute", _statement_ended)
    event.listen(Engine, "handle_error", _statement_failed)


def _statement_started(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    sql = {
        "database_type": "PostgreSQL",
        "driver_version": "pg8000",
        "sanitized_query": statement[:SQL_TEXT_MAX],
    }
    start(STATEMENT, "remote", sql=sql)


def _open_statement() -> Subsegment | None:
    current = _current.get()
    return current if current is not None and current.name == STATEMENT else None


def _statement_ended(*_args: Any) -> None:
    statement = _open_statement()
    if statement is not None:
        end(statement)


def _statement_failed(context: Any) -> None:
    statement = _open_statement()
    if statement is not None:
        statement.fail(context.original_exception, remote=True)
        end(statement)


# ------------------------------------------------------------------------------ AWS SDK


def _trace_aws_calls() -> None:
    """An ``aws`` subsegment per API call of every botocore client, made before or after.

    ``BaseClient._make_api_call`` is where every operation of every client goes (Powertools'
    parameter providers make their own clients and sessions, so a session's events would miss
    them); each client it sees gets a ``before-call`` handler that puts the subsegment's id in
    the request's trace header.
    """
    from botocore.client import BaseClient  # type: ignore[import-untyped,unused-ignore]

    untraced = BaseClient._make_api_call

    def _make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
        parent = _current.get()
        if parent is None:  # not traced
            return untraced(client, operation_name, api_params)
        aws = {"operation": operation_name, "region": client.meta.region_name}
        subsegment = _enter(parent.child(_service_name(client), "aws", aws=aws))
        client.meta.events.register("before-call", _add_trace_header, unique_id=_HEADER_HANDLER_ID)
        try:
            response = untraced(client, operation_name, api_params)
        except Exception as error:
            _record_response(subsegment, getattr(error, "response", None))
            status = subsegment.fields.get("http", {}).get("response", {}).get("status", 0)
            # a 4xx: the request's error; anything else: AWS's (or the network's) fault
            flag = "error" if 400 <= status < 500 else "fault"
            if status == 429:
                subsegment.fields["throttle"] = True
            subsegment.fail(error, remote=True, flag=flag)
            raise
        else:
            _record_response(subsegment, response)
            return response
        finally:
            end(subsegment)

    BaseClient._make_api_call = _make_api_call


def _service_name(client: Any) -> str:
    """The service, as X-Ray's service map names it (``SecretsManager``)."""
    model = client.meta.service_model
    try:
        return str(model.service_id).replace(" ", "")
    except Exception:  # a model without a service id: its endpoint's prefix
        return str(model.endpoint_prefix)


def _record_response(subsegment: Subsegment, response: Any) -> None:
    """The request id, retries and HTTP status of a call's response (or error response)."""
    metadata = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    aws = subsegment.fields.setdefault("aws", {})
    if "RequestId" in metadata:
        aws["request_id"] = metadata["RequestId"]
    if "RetryAttempts" in metadata:
        aws["retries"] = metadata["RetryAttempts"]
    if "HTTPStatusCode" in metadata:
        subsegment.fields["http"] = {"response": {"status": metadata["HTTPStatusCode"]}}


def _add_trace_header(params: dict[str, Any], **_kwargs: Any) -> None:
    """Name the call's subsegment as the parent of what the service records (``before-call``;
    it replaces botocore's header, which names the function's segment)."""
    current = _current.get()
    if current is not None and current.namespace == "aws":
        params.setdefault("headers", {})["X-Amzn-Trace-Id"] = (
            f"Root={current.trace_id};Parent={current.id};Sampled=1"
        )
