"""What every HTTP handler shares: the resolver, body checks, error mapping, identity, logging.

A function's ``app.py`` builds its resolver with :func:`make_app`, declares its one route and
exports ``lambda_handler = http_handler(app)``.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from functools import partial, wraps
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    ResponseValidationError,
    ValidationException,
)
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.json_encoder import Encoder
from pydantic_core import core_schema

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import (
        OpenAPIResponse,
        OpenAPIResponseHeader,
    )
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from pydantic import BaseModel, GetCoreSchemaHandler

import blog.snapstart  # noqa: F401 - registers the SnapStart runtime hooks
from blog import services
from blog.auth import LEEWAY_S, bearer_token, verify_token
from blog.domain import IDEMPOTENCY_KEY_MAX
from blog.errors import AuthenticationError, DomainError
from blog.idempotency import IdempotentRequest, StoredReply, fingerprint, scope_for
from blog.pagination import CURSOR_MAX_CHARS
from blog.preconditions import Precondition, etag, not_modified, parse
from blog.repositories import MAX_OFFSET, PageRequest
from blog.schemas import ID_MAX
from blog.services import Caller
from blog.telemetry import lambda_entry, logger, metrics

JSON: Final = "application/json"
#: Request bodies past this are refused before any parsing (posts are at most ~100k characters).
MAX_BODY_BYTES: Final = 512 * 1024
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
#: Nesting of arrays and objects past this is refused (bodies are at most two levels deep): a
#: deeper document would exhaust the recursion limit of a JSON parser further down.
MAX_JSON_DEPTH: Final = 32
# Fields whose values must never be echoed back in an error.
SECRET_FIELDS: Final = frozenset({"password", "hashed_password", "access_token", "token"})


#: At most this many problems are reported for one request; the rest are counted, not listed.
MAX_REPORTED_ERRORS: Final = 10
#: Headers on every response: browsers must not guess a type other than the one declared.
ALWAYS_HEADERS: Final = {"X-Content-Type-Options": "nosniff"}
#: On every response but a public read (a GET without credentials that succeeded): answers that
#: carry tokens or personal data must not be kept by browsers or shared caches.
PRIVATE_HEADERS: Final = {"Cache-Control": "no-store"}

# Path and query numbers in their one canonical spelling: ASCII digits, no sign, no spaces, no
# separators, no leading zero (pydantic alone would take " 12", "+12", "1_2" and "012").
_CANONICAL_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")


def canonical_number(value: object) -> object:
    """Refuse a path or query number in any but its canonical ASCII-digit spelling."""
    if isinstance(value, str) and _CANONICAL_NUMBER.fullmatch(value) is None:
        raise ValueError(
            "must be a whole number in ASCII digits, without sign, spaces, separators or "
            "leading zeros"
        )
    return value


@dataclass(frozen=True, slots=True)
class CanonicalNumber:
    """``Annotated[int, CanonicalNumber(ge, le)]``: an integer from a path or query string,
    spelled canonically, within ``[ge, le]``.

    The bounds live in the integer's own schema (not the ``Path``/``Query`` marker), so the
    OpenAPI document keeps them as ``minimum``/``maximum``.
    """

    ge: int
    le: int

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """The integer schema behind the spelling check."""
        return core_schema.no_info_before_validator_function(
            canonical_number, core_schema.int_schema(ge=self.ge, le=self.le)
        )


UserId = Annotated[int, CanonicalNumber(1, ID_MAX), Path(description="A user's id")]
PostId = Annotated[int, CanonicalNumber(1, ID_MAX), Path(description="A post's id")]
PageNumber = Annotated[
    int,
    CanonicalNumber(1, MAX_OFFSET + 1),
    Query(
        description=f"1-based page number, for shallow pages: a page must start within the "
        f"first {MAX_OFFSET:,} rows (422 past that); deeper, follow next_cursor",
    ),
]
PageSize = Annotated[
    Annotated[int, CanonicalNumber(1, 1000)] | None,
    Query(description="Items per page (default 20, capped at 100)"),
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=CURSOR_MAX_CHARS,
        description="The next_cursor of the previous page (opaque; tied to this list and its "
        "filters). Not with page. A cursor that is malformed, altered, of another list or of "
        "an older version is a 400 invalid_cursor",
    ),
]

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1024,
        description="The ETag of the version you read (or `*`): the change is made only if it "
        "is still the current one, else 412. Required (428 without it) when an admin changes "
        "another user's user or post.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique value per request (e.g. a UUID), sent again with each retry: "
        "the first answer is returned again (with `Idempotent-Replayed: true`) and the work is "
        "done once; the same key with another request is a 422. Kept 24 hours.",
    ),
]
#: Set on an answer that is the kept first answer to an earlier request with the same key.
REPLAYED: Final = "Idempotent-Replayed"
REPLAYED_HEADER: Final[OpenAPIResponseHeader] = {
    "description": "`true` when this is the kept answer to an earlier request with the same "
    "Idempotency-Key (the work was not done again)",
    "schema": {"type": "string", "enum": ["true"]},
}
F = TypeVar("F", bound=Callable[..., Any])

#: The ETag response header, as documented on every response that carries one.
ETAG_HEADER: Final[OpenAPIResponseHeader] = {
    "description": "The version of the resource (send it back in If-Match or If-None-Match)",
    "schema": {"type": "string"},
}

_ERROR_DESCRIPTIONS: Final = {
    400: "Malformed JSON body, or an invalid list cursor",
    401: "Missing, invalid or expired token, or bad credentials",
    403: "Not allowed for this caller",
    404: "No such resource",
    409: "Conflicts with an existing resource",
    412: "If-Match names a version that is no longer current; the resource is unchanged",
    413: "Body too large",
    415: "Body is not application/json (in UTF-8)",
    422: "Validation failed",
    428: "If-Match is required for this change (an admin changing another user's resource)",
    429: "Sign-in paused for this account after wrong passwords; retry after Retry-After seconds",
    503: "Database unavailable; retry after the Retry-After seconds",
}


def error_responses(
    *statuses: int,
    success: int = 200,
    no_content: bool = False,
    paged: bool = False,
    etag: bool = False,
    idempotent: bool = False,
) -> dict[int, OpenAPIResponse]:
    """OpenAPI descriptions of a route's responses: its success and the error statuses it
    documents (plus the ones all share).

    ``success`` is the status of a successful answer, whose body Powertools describes from the
    route's return type (201 also sends ``Location``); ``no_content`` documents a 204 with no body
    instead, for routes that answer with none; ``paged`` documents a list's ``Link`` header;
    ``etag``: the success carries an ``ETag``; ``idempotent``: the route takes an
    ``Idempotency-Key`` (see :func:`idempotent`).
    """
    shared = {503} | ({400, 413, 415} if 422 in statuses else set())
    responses: dict[int, OpenAPIResponse] = {
        status: {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for status in sorted(set(statuses) | shared)
    }
    if no_content:
        responses[204] = {"description": "Done; no content", "content": {}}
    elif success == 201:
        responses[201] = {
            "description": "Created",
            "headers": {
                "Location": {"description": "The new resource", "schema": {"type": "string"}}
            },
        }
    elif paged:
        link = 'The next page, as <path?query&cursor=next_cursor>; rel="next" (RFC 8288)'
        responses[success] = {
            "description": "One page of the list",
            "headers": {"Link": {"description": link, "schema": {"type": "string"}}},
        }
    else:
        responses[success] = {"description": "OK"}
    if etag and not no_content:
        responses[success].setdefault("headers", {})["ETag"] = ETAG_HEADER
    if idempotent:
        answered = 204 if no_content else success
        responses[answered].setdefault("headers", {})[REPLAYED] = REPLAYED_HEADER
    return responses


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    """The one error shape: ``{"error": {"code", "message", "details"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps({"error": error}, ensure_ascii=False),
        headers=headers or {},
    )


def _domain_error(error: DomainError) -> Response[Any]:
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if error.status >= 500:
        logger.warning("request failed", extra={"error_code": error.code})
        metrics.add_metric(name="ServerSideErrors", unit=MetricUnit.Count, value=1)
    return error_response(error.status, error.code, error.message, error.details, headers)


def _validation_errors(error: ValidationException) -> Response[Any]:
    problems = []
    errors = error.errors()
    for item in errors[:MAX_REPORTED_ERRORS]:
        kind = item.get("type", "")
        if kind == "json_invalid":
            return error_response(400, "malformed_json", "The body is not valid JSON")
        if kind == "unsupported_content_type" or isinstance(error, RequestUnsupportedContentType):
            return error_response(415, "unsupported_media_type", "Send application/json")
        location = [str(part) for part in item.get("loc", ())]
        field = ".".join(location[1:]) if location[:1] in (["body"], ["query"], ["path"]) else ""
        problem = {
            "in": location[0] if location else "body",
            "field": field,
            "message": str(item.get("msg", "Invalid value")),
        }
        if location and location[-1] not in SECRET_FIELDS and "input" in item:
            problem["type"] = kind
        problems.append(problem)
    message = "; ".join(f"{p['field'] or p['in']}: {p['message']}" for p in problems)
    omitted = len(errors) - len(problems)
    if omitted > 0:
        # Reporting every problem of a body with thousands of them would cost as much as the
        # body again: the first few are listed, the rest counted.
        problems.append(
            {
                "in": "body",
                "field": "",
                "message": f"{omitted} more problems not listed",
                "type": "too_many_errors",
            }
        )
        message += f"; and {omitted} more"
    return error_response(422, "validation_error", message or "Validation failed", problems)


def _service_error(error: ServiceError) -> Response[Any]:
    # Raised by the resolver itself (e.g. a body it cannot decode): its status, our error shape.
    status = error.status_code if 400 <= error.status_code < 600 else 500  # noqa: PLR2004
    code = "bad_request" if status < 500 else "internal_error"  # noqa: PLR2004
    message = error.msg if isinstance(error.msg, str) and status < 500 else "Request refused"  # noqa: PLR2004
    return error_response(status, code, message)


def _unexpected(error: Exception) -> Response[Any]:
    # A bug, not the client's fault: log it with its stack, tell the client nothing of it.
    logger.exception("unhandled error", extra={"error_type": type(error).__name__})
    return error_response(500, "internal_error", "Internal error")


def make_app() -> APIGatewayHttpResolver:
    """A resolver with validation on and every error mapped to the standard JSON error body."""
    # Non-ASCII text as UTF-8, not \uXXXX escapes (up to 12 bytes a character, against
    # Lambda's 6 MB response limit).
    serializer = partial(json.dumps, separators=(",", ":"), cls=Encoder, ensure_ascii=False)
    app = APIGatewayHttpResolver(enable_validation=True, serializer=serializer)
    app.exception_handler(DomainError)(_domain_error)
    app.exception_handler(ValidationException)(_validation_errors)
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(ResponseValidationError)(_unexpected)  # a bug of ours, not the input
    app.not_found(lambda _error: error_response(404, "not_found", "No such route"))
    app.exception_handler(Exception)(_unexpected)
    return app


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _nesting(value: Any) -> int:
    """How deeply parsed JSON nests arrays and objects (iteratively: the input may be deep)."""
    deepest = 0
    stack = [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_body(event: dict[str, Any]) -> dict[str, Any] | Response[Any]:  # noqa: PLR0911
    """Refuse what validation would misread: oversized, non-JSON, malformed or ambiguous bodies.

    Returns the event to route (with a base64 body decoded) or the error response.
    """
    raw = event.get("body")
    if raw is None or raw == "":
        return event
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return error_response(400, "malformed_body", "The body is not valid base64")
    else:
        body = raw.encode("utf-8", "surrogatepass")
    if len(body) > MAX_BODY_BYTES:
        return error_response(
            413, "payload_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes"
        )
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if not is_json_media_type(headers.get("content-type", "")):
        return error_response(
            415, "unsupported_media_type", "Send the body as application/json in UTF-8"
        )
    too_deep = f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
    try:
        text = body.decode("utf-8")
        parsed = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except UnicodeDecodeError:
        return error_response(400, "malformed_json", "The body is not valid UTF-8")
    except ValueError as error:  # JSONDecodeError is a ValueError
        duplicate = str(error).startswith("duplicate key")
        message = str(error) if duplicate else "The body is not valid JSON"
        return error_response(400, "malformed_json", message)
    except RecursionError:
        return error_response(400, "malformed_json", too_deep)
    if _nesting(parsed) > MAX_JSON_DEPTH:
        return error_response(400, "malformed_json", too_deep)
    if not isinstance(parsed, dict):
        # Every request body is an object; Powertools would validate an array's first item.
        problem = {"in": "body", "field": "", "message": "Input should be a JSON object"}
        return error_response(422, "validation_error", "The body must be a JSON object", [problem])
    # The resolver compares the media type case-sensitively: it gets the canonical spelling.
    headers["content-type"] = JSON
    checked = {**event, "headers": headers}
    if event.get("isBase64Encoded"):
        checked.update(body=text, isBase64Encoded=False)
    return checked


def is_json_media_type(value: str) -> bool:
    """Whether a ``Content-Type`` says JSON in UTF-8: type, subtype and parameter names in any
    case (RFC 9110), a ``charset`` parameter, if any, UTF-8 (JSON has no other, RFC 8259)."""
    if not value or "," in value:  # no type, or several Content-Type headers joined
        return False
    if not (value.isascii() and value.isprintable()):  # header values are visible ASCII
        return False
    parsed = Message()
    parsed["content-type"] = value
    # Message falls back to text/plain for what is not type/subtype: so that is refused too.
    if parsed.get_content_type() != JSON or value.split(";", maxsplit=1)[0].strip().lower() != JSON:
        return False
    charset = parsed.get_param("charset")
    return charset is None or (isinstance(charset, str) and charset.lower() in {"utf-8", "utf8"})


def http_handler(
    app: APIGatewayHttpResolver,
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point for ``app``: body checks, correlation id, metrics, then routing."""

    @lambda_entry(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        checked = check_body(event)
        if isinstance(checked, Response):
            result: dict[str, Any] = {
                "statusCode": checked.status_code,
                "headers": {"Content-Type": JSON, **checked.headers},
                "body": checked.body,
                "isBase64Encoded": False,
            }
        else:
            result = _conditional(checked, app.resolve(checked, context))
        return with_security_headers(event, result)

    return lambda_handler


def _conditional(event: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A 200 to a ``GET`` whose ``If-None-Match`` names the response's ETag becomes a 304."""
    if result.get("statusCode") != 200 or event.get("requestContext", {}).get("http", {}).get(
        "method"
    ) not in ("GET", "HEAD"):
        return result
    headers = result.get("headers") or {}
    current = next((v for k, v in headers.items() if k.lower() == "etag"), None)
    asked = next(
        (v for k, v in (event.get("headers") or {}).items() if k.lower() == "if-none-match"), None
    )
    if not not_modified(asked, current):
        return result
    kept = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
    return {**result, "statusCode": 304, "headers": kept, "body": ""}


def precondition(if_match: str | None) -> Precondition | None:
    """The parsed ``If-Match`` header, or None when the request has none."""
    return None if if_match is None else parse(if_match)


def with_security_headers(event: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``nosniff``, and ``no-store`` unless it answers a public read."""
    headers = result.setdefault("headers", {})
    headers.update(ALWAYS_HEADERS)
    method = (event.get("requestContext") or {}).get("http", {}).get("method", "")
    status = int(result.get("statusCode", 500))
    public_read = (
        method in {"GET", "HEAD"}
        and 200 <= status < 400  # noqa: PLR2004
        and bearer_token(event.get("headers")) is None
        and not any(name.lower() == "authorization" for name in event.get("headers") or {})
    )
    if not public_read:
        headers.update(PRIVATE_HEADERS)
    return result


def ok(
    model: BaseModel,
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    version: int | None = None,
) -> Response[Any]:
    """A JSON response with ``model`` as its body; with ``version``, its ``ETag``.

    The model itself, not a dump of it: the resolver's response validation takes an instance of
    the route's model as it is and serializes it once (a dict would be validated all over again).
    """
    if version is not None:
        headers = {**(headers or {}), "ETag": etag(version)}
    return Response(status_code=status, content_type=JSON, body=model, headers=headers)


def created(model: BaseModel, location: str, *, version: int | None = None) -> Response[Any]:
    """201 Created with the new resource, its ``Location`` and (with ``version``) its ``ETag``."""
    return ok(model, 201, {"Location": location}, version=version)


def page_request(page: int, page_size: int | None, cursor: str | None) -> PageRequest:
    """The page a list route was asked for."""
    return PageRequest(page=page, page_size=page_size, cursor=cursor)


def page_response(app: APIGatewayHttpResolver, page: BaseModel) -> Response[Any]:
    """A list page, with ``Link: <…?cursor=…>; rel="next"`` (RFC 8288) when there is a next one:
    the request's own path and query, its ``page`` dropped and its ``cursor`` replaced."""
    next_cursor = getattr(page, "next_cursor", None)
    if next_cursor is None:
        return ok(page)
    event = app.current_event
    query = {
        key: value
        for key, value in (event.query_string_parameters or {}).items()
        if key not in {"cursor", "page"}
    }
    query["cursor"] = next_cursor
    link = f'<{event.raw_path}?{urlencode(query)}>; rel="next"'
    return ok(page, headers={"Link": link})


def no_content() -> Response[Any]:
    """204 No Content."""
    return Response(status_code=204, body=None)


def _context_number(value: object) -> int | None:
    """A whole number of the authorizer's context (API Gateway may pass it as a string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _CANONICAL_NUMBER.fullmatch(value):
        return int(value)
    return None


def client_address(app: APIGatewayHttpResolver) -> str | None:
    """The address the request came from, as API Gateway saw it (``requestContext.http.
    sourceIp``: the TCP peer, not a header a client could set)."""
    context = app.current_event.raw_event.get("requestContext") or {}
    address = (context.get("http") or {}).get("sourceIp")
    return address if isinstance(address, str) else None


def current_actor(app: APIGatewayHttpResolver) -> Caller:
    """The caller, as the Lambda authorizer verified their token; 401 when there is none.

    The authorizer checks the token alone; the use case checks the caller's row (active, token
    version current) in its own transaction. The expiry is checked again here, as API Gateway
    may answer from its cache of the authorizer's verdicts after the token expired.
    """
    context = app.current_event.request_context.authorizer.get_lambda or {}
    user_id = _context_number(context.get("user_id"))
    version = _context_number(context.get("token_version"))
    expires_at = _context_number(context.get("expires_at"))
    if user_id is None or version is None or expires_at is None:
        raise AuthenticationError("Sign in first")
    if expires_at + LEEWAY_S < time.time():
        raise AuthenticationError("Invalid or expired token")
    return Caller(user_id=user_id, token_version=version)


def optional_actor(app: APIGatewayHttpResolver) -> Caller | None:
    """On routes open to anyone: the caller if the request carries a token, else None.

    These routes have no authorizer in front of them, so the token is checked here; a token that
    is present but invalid is a 401, not silently anonymous.
    """
    token = bearer_token(app.current_event.headers)
    if token is None:
        return None
    claims = verify_token(token)
    return Caller(user_id=claims.user_id, token_version=claims.token_version)


def _kept(result: Any) -> StoredReply:
    """A route's answer as it is kept for retries."""
    body: Any = result
    status, headers = 200, {}
    if isinstance(result, Response):
        body, status = result.body, result.status_code
        headers = {
            k: str(v) for k, v in (result.headers or {}).items() if k.lower() != "content-type"
        }
    if hasattr(body, "model_dump_json"):
        text = body.model_dump_json()
    else:
        text = "" if body is None else json.dumps(body)
    return StoredReply(status, headers, text)


def _replay(reply: StoredReply) -> Response[Any]:
    body = json.loads(reply.body) if reply.body else None
    headers = {**reply.headers, REPLAYED: "true"}
    return Response(reply.status, JSON if body is not None else None, body, headers)


def idempotent(app: APIGatewayHttpResolver) -> Callable[[F], F]:
    """For a ``POST`` route (below its route decorator): with an ``Idempotency-Key`` header, the
    route runs at most once per key of the caller, and retries get its first answer again
    (:func:`blog.services.run_once`). The header is added to the route's parameters, so it is
    validated and documented like any other."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        header = inspect.Parameter(
            "idempotency_key", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=IdempotencyKey,
        )  # fmt: skip
        params = [*signature.parameters.values(), header]

        @wraps(func)
        def route(*args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
            if idempotency_key is None:
                return func(*args, **kwargs)
            event = app.current_event
            try:  # the authorizer's caller; none on public routes (the route itself says 401)
                caller: int | None = current_actor(app).user_id
            except AuthenticationError:
                caller = None
            scope = scope_for(caller)
            request = IdempotentRequest(
                scope=scope,
                key=idempotency_key,
                fingerprint=fingerprint(
                    scope=scope, key=idempotency_key, method=event.http_method,
                    path=event.raw_path, body=event.body,
                ),
            )  # fmt: skip
            first: dict[str, Any] = {}

            def work() -> StoredReply:
                first["result"] = func(*args, **kwargs)
                return _kept(first["result"])

            reply = services.run_once(request, work)
            return _replay(reply) if reply.replayed else first["result"]

        route.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return route  # type: ignore[return-value]

    return decorate
