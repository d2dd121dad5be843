"""An in-process API client: requests go through the local gateway's API Gateway emulation
(route matching, payload-2.0 events, the Lambda authorizer) into the real handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

TEST_SIGNING_KEY = "test-signing-key-that-is-long-enough-0123456789"


@dataclass
class Reply:
    """A response as a client sees it."""

    status: int
    headers: dict[str, str]
    body: Any
    text: str


class Client:
    """Calls the API like an HTTP client would, without sockets."""

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        """Send one request; ``raw`` is sent as the body verbatim."""
        from local.gateway import handle

        sent = {"host": "localhost", "user-agent": "tests"}
        body = b""
        if raw is not None:
            body = raw
            sent["content-type"] = "application/json"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            sent["content-type"] = "application/json"
        if token:
            sent["authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        result = handle(method, path, list(sent.items()), body)
        text = result.get("body") or ""
        response_headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        parsed = (
            json.loads(text)
            if text and "json" in response_headers.get("content-type", "")
            else None
        )
        return Reply(int(result["statusCode"]), response_headers, parsed, text)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PATCH", path, json_body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

    def signup(
        self, name: str, *, admin: bool = False, password: str = "password-123"
    ) -> tuple[dict[str, Any], str]:
        """Register ``name`` (optionally made admin) and sign in; the user and a token."""
        reply = self.post(
            "/users", {"email": f"{name}@example.com", "username": name, "password": password}
        )
        assert reply.status == 201, reply.text
        if admin:
            from blog import db
            from blog.repositories import UserRepository

            with db.transaction() as session:
                UserRepository(session).update(reply.body["id"], is_admin=True)
        token = self.post("/auth/token", {"login": name, "password": password})
        assert token.status == 200, token.text
        return reply.body, token.body["access_token"]


@pytest.fixture
def api(db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A client on a rolled-back database, with a local token signing key."""
    from blog.config import get_settings

    monkeypatch.setenv("JWT_SIGNING_KEY", TEST_SIGNING_KEY)
    get_settings.cache_clear()
    yield Client()
    monkeypatch.undo()
    get_settings.cache_clear()
