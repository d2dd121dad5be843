"""The committed OpenAPI document is generated from the handlers and matches the template."""

from __future__ import annotations

import json

from local import openapi
from local.functions import functions


def test_committed_openapi_json_is_up_to_date() -> None:
    assert openapi.OPENAPI_FILE.read_text() == openapi.render(), (
        "openapi.json is stale: run `.venv/bin/python -m local.openapi`"
    )


def test_every_template_route_is_documented_with_its_security() -> None:
    document = json.loads(openapi.OPENAPI_FILE.read_text())
    for function in functions().values():
        for method, path in function.routes:
            operation = document["paths"][path][method.lower()]
            expected = [{openapi.BEARER: []}] if function.authorizer else None
            assert operation.get("security") == expected, (method, path)


def test_every_error_response_uses_the_standard_error_body() -> None:
    """Our errors have ErrorOut's shape; a status API Gateway may answer itself (401/403 on
    protected routes, 413, 503) documents its ``{"message"}`` body as the alternative."""
    document = json.loads(openapi.OPENAPI_FILE.read_text())
    assert "ErrorOut" in document["components"]["schemas"]
    ours = {"$ref": openapi.ERROR_REF}
    either = {"anyOf": [ours, {"$ref": f"#/components/schemas/{openapi.GATEWAY_ERROR}"}]}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            protected = "security" in operation
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                by_gateway = status in openapi.GATEWAY_STATUSES and (
                    protected or status not in openapi.PROTECTED_ONLY
                )
                schema = response["content"]["application/json"]["schema"]
                assert schema == (either if by_gateway else ours), (path, method, status)
            assert "503" in operation["responses"], (path, method)
