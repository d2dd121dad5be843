"""One OpenAPI 3 document for the whole API, built from the functions' own routes and models.

``python -m local.openapi`` rewrites ``openapi.json``; a test fails when the file is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from local.functions import REPO, functions, load_module

OPENAPI_FILE = REPO / "openapi.json"
TITLE = "Blog API"
VERSION = "1.0.0"
BEARER = "bearerAuth"
DESCRIPTION = (
    "Users and posts. Sign in with `POST /auth/token` and send the token as "
    "`Authorization: Bearer <token>`. Every error has the body "
    '`{"error": {"code", "message", "details"?}}`, except the ones API Gateway answers itself, '
    'whose body is `{"message"}`.'
)
ERROR_REF = "#/components/schemas/ErrorOut"
GATEWAY_ERROR = "GatewayError"
#: API Gateway's own answers, before or instead of a function: on every route, 413 past its 10 MB
#: limit and 503 when the function does not answer in time; on protected routes, 401 without an
#: Authorization header and 403 when the authorizer refuses the token.
GATEWAY_STATUSES: dict[str, str] = {
    "401": "API Gateway: no Authorization header",
    "403": "API Gateway: the authorizer refused the token (invalid, expired, inactive account)",
    "413": "Body too large",
    "503": "API Gateway: the function did not answer in time",
}
PROTECTED_ONLY = frozenset({"401", "403"})
#: The tags operations are grouped by (a generated client makes one module per tag).
TAGS: tuple[dict[str, str], ...] = (
    {"name": "auth", "description": "Signing in"},
    {"name": "users", "description": "Registration and accounts"},
    {"name": "posts", "description": "Writing, publishing and reading posts"},
)


def build() -> dict[str, Any]:
    """The merged document: paths of every HTTP function, security from the template."""
    from blog.schemas import ErrorOut

    merge = OpenAPIMerge(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        security_schemes={BEARER: HTTPBearer(scheme="bearer", bearerFormat="JWT")},
        on_conflict="error",
    )
    protected: set[tuple[str, str]] = set()
    for function in functions().values():
        if not function.routes:
            continue
        app = load_module(function).app
        merge.add_schema(app.get_openapi_schema(title=TITLE, version=VERSION))
        if function.authorizer:
            protected.update((path, method.lower()) for method, path in function.routes)
    document: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
    document["tags"] = list(TAGS)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) in protected:
                operation["security"] = [{BEARER: []}]
            _add_gateway_errors(operation, protected=(path, method) in protected)
            if method == "get":
                _add_conditional_get(operation)
            _headers_are_never_null(operation)
    document.setdefault("components", {}).setdefault("schemas", {})["ErrorOut"] = (
        ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    for name, schema in (
        ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        .get("$defs", {})
        .items()
    ):
        document["components"]["schemas"][name] = schema
    document["components"]["schemas"]["ErrorOut"].pop("$defs", None)
    document["components"]["schemas"][GATEWAY_ERROR] = {
        "title": GATEWAY_ERROR,
        "description": "The body of an error API Gateway answers itself, e.g. "
        '`{"message": "Unauthorized"}`.',
        "type": "object",
        "properties": {"message": {"type": "string", "title": "Message"}},
        "required": ["message"],
    }
    return document


def _add_gateway_errors(operation: dict[str, Any], *, protected: bool) -> None:
    """Document the statuses API Gateway may answer itself, with either error body."""
    for status, description in GATEWAY_STATUSES.items():
        if status in PROTECTED_ONLY and not protected:
            continue
        response = operation["responses"].setdefault(status, {"description": description})
        if description not in response["description"]:
            response["description"] += f"; or: {description}"
        either = [{"$ref": ERROR_REF}, {"$ref": f"#/components/schemas/{GATEWAY_ERROR}"}]
        response["content"] = {"application/json": {"schema": {"anyOf": either}}}


def _headers_are_never_null(operation: dict[str, Any]) -> None:
    """An optional header is absent or a string: drop the ``null`` alternative that Powertools
    derives from ``str | None`` (a header cannot carry JSON's null)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "header":
            continue
        schema = parameter["schema"]
        options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            title = schema.get("title")
            parameter["schema"] = {**options[0], **({"title": title} if title else {})}


def _add_conditional_get(operation: dict[str, Any]) -> None:
    """A GET whose 200 carries an ETag honours If-None-Match (the layer answers 304)."""
    etag = operation["responses"].get("200", {}).get("headers", {}).get("ETag")
    if etag is None:
        return
    operation.setdefault("parameters", []).append(
        {
            "name": "if-none-match",
            "in": "header",
            "required": False,
            "description": "ETags you hold (or `*`): 304 with no body when one is current",
            "schema": {"type": "string"},
        }
    )
    operation["responses"]["304"] = {
        "description": "Not modified: If-None-Match names the current ETag",
        "headers": {"ETag": etag},
    }


def render() -> str:
    """The document as committed: stable key order, two-space indent, final newline."""
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Write openapi.json (or, with ``--check``, fail when it differs)."""
    text = render()
    if "--check" in sys.argv[1:]:
        current = OPENAPI_FILE.read_text() if OPENAPI_FILE.exists() else ""
        if current != text:
            print("openapi.json is stale: run `python -m local.openapi`", file=sys.stderr)  # noqa: T201
            return 1
        return 0
    OPENAPI_FILE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
