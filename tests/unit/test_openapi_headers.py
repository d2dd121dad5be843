"""openapi.json describes the conditional-request and idempotency headers where they apply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local import openapi

SINGLE = ["/users/{user_id}", "/posts/{post_id}"]
KEYED_POSTS = [
    "/users",
    "/posts",
    "/posts/{post_id}/publish",
    "/users/{user_id}/deactivate",
    "/users/{user_id}/posts/transfer",
    "/users/{user_id}/sign-out",
]


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(openapi.OPENAPI_FILE.read_text())
    return loaded


def headers_in(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}


@pytest.mark.parametrize("path", SINGLE)
def test_single_resources_document_etag_if_match_and_if_none_match(path: str) -> None:
    item = document()["paths"][path]
    get = item["get"]
    assert "ETag" in get["responses"]["200"]["headers"]
    assert "ETag" in get["responses"]["304"]["headers"]
    assert headers_in(get)["if-none-match"]["schema"] == {"type": "string"}
    for method in ("patch", "delete"):
        operation = item[method]
        if_match = headers_in(operation)["if-match"]
        assert if_match["required"] is False
        assert {"412", "428"} <= set(operation["responses"]), (method, path)
    assert "ETag" in item["patch"]["responses"]["200"]["headers"]


@pytest.mark.parametrize("path", KEYED_POSTS)
def test_writing_posts_take_an_idempotency_key_and_say_when_they_replay(path: str) -> None:
    operation = document()["paths"][path]["post"]
    key = headers_in(operation)["idempotency-key"]
    assert key["required"] is False
    assert key["schema"]["maxLength"] == 255
    success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
    assert "Idempotent-Replayed" in success["headers"]


def test_signing_in_takes_no_idempotency_key() -> None:
    operation = document()["paths"]["/auth/token"]["post"]
    assert "idempotency-key" not in headers_in(operation)


def test_no_header_is_documented_as_nullable() -> None:
    for operations in document()["paths"].values():
        for operation in operations.values():
            for name, parameter in headers_in(operation).items():
                assert "anyOf" not in parameter["schema"], (operation["operationId"], name)
