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
    document = json.loads(openapi.OPENAPI_FILE.read_text())
    assert "ErrorOut" in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, method)
            assert "503" in operation["responses"], (path, method)
