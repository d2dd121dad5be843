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
    '`{"error": {"code", "message", "details"?}}`.'
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
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) in protected:
                operation["security"] = [{BEARER: []}]
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
    return document


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
