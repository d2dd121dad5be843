"""The local gateway over real HTTP: every route for every kind of caller, and the error statuses.

The gateway runs as ``make local`` runs it (worker processes per function, the authorizer in
front of protected routes) on its own migrated database, on 127.0.0.1 and an ephemeral port.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import create_database, drop_database, migrate
from tests.e2e.conftest import TEST_SIGNING_KEY

ROLES = ("anonymous", "owner", "other", "inactive", "admin")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Http:
    """A tiny HTTP client for the gateway."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, headers, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, dict(error.headers), error.read()
        parsed = json.loads(payload) if payload else None
        return Reply(status, {k.lower(): v for k, v in headers.items()}, parsed)

    def user(self, *, admin: bool = False) -> tuple[dict[str, Any], str]:
        name = f"u{uuid.uuid4().hex[:10]}"
        created = self.call(
            "POST",
            "/users",
            {"email": f"{name}@example.com", "username": name, "password": "password-123"},
        )
        assert created.status == 201, created.body
        if admin:
            _grant_admin(created.body["id"])
        token = self.call("POST", "/auth/token", {"login": name, "password": "password-123"})
        assert token.status == 200, token.body
        return created.body, token.body["access_token"]


_live_url: str = ""


def _grant_admin(user_id: int) -> None:
    engine = create_engine(_live_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": user_id})
    engine.dispose()


def _start_gateway(env: dict[str, str]) -> tuple[Any, str, dict[str, str | None]]:
    from local.gateway import Gateway

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the worker processes inherit it when they start
    gateway = Gateway(("127.0.0.1", 0), workers=2)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    return gateway, f"http://127.0.0.1:{gateway.server_address[1]}", saved


def _stop_gateway(gateway: Any, saved: dict[str, str | None]) -> None:
    gateway.shutdown()
    gateway.server_close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def http(pg_admin_url: str) -> Iterator[Http]:
    global _live_url  # noqa: PLW0603 - the module's database, for admin grants
    name = f"blog_live_{uuid.uuid4().hex[:8]}"
    _live_url = create_database(pg_admin_url, name)
    migrate(_live_url)
    gateway, base, saved = _start_gateway(
        {"DATABASE_URL": _live_url, "JWT_SIGNING_KEY": TEST_SIGNING_KEY}
    )
    try:
        yield Http(base)
    finally:
        _stop_gateway(gateway, saved)
        drop_database(pg_admin_url, name)


# --- the authorization matrix -----------------------------------------------------------------


@dataclass
class World:
    """Fresh actors and resources for one cell of the matrix."""

    owner: dict[str, Any]
    tokens: dict[str, str | None]
    draft: dict[str, Any]
    target: dict[str, Any]


def _world(http: Http) -> World:
    owner, owner_token = http.user()
    _, other_token = http.user()
    leaving, inactive_token = http.user()
    _, admin_token = http.user(admin=True)
    assert http.call("POST", f"/users/{leaving['id']}/deactivate", token=admin_token).status == 200
    draft = http.call("POST", "/posts", {"title": "t", "content": "c"}, token=owner_token).body
    target, _ = http.user()
    tokens = {
        "anonymous": None,
        "owner": owner_token,
        "other": other_token,
        "inactive": inactive_token,
        "admin": admin_token,
    }
    return World(owner, tokens, draft, target)


Call = Callable[[Http, World, str | None], Reply]


def _register(h: Http, w: World, t: str | None) -> Reply:
    name = f"n{uuid.uuid4().hex[:10]}"
    body = {"email": f"{name}@example.com", "username": name, "password": "password-123"}
    return h.call("POST", "/users", body, token=t)


def _sign_in(h: Http, w: World, t: str | None) -> Reply:
    # Each role signs in with its own credentials; "anonymous" with a wrong password.
    return h.call("POST", "/auth/token", {"login": w.owner["username"], "password": "wrong-pass"})


# route label → (call, {role: expected status})
MATRIX: dict[str, tuple[Call, dict[str, int]]] = {
    "POST /users": (_register, dict.fromkeys(ROLES, 201)),
    "GET /users": (
        lambda h, w, t: h.call("GET", "/users", token=t),
        {"anonymous": 401, "owner": 200, "other": 200, "inactive": 403, "admin": 200},
    ),
    "GET /users/{id}": (
        lambda h, w, t: h.call("GET", f"/users/{w.owner['id']}", token=t),
        {"anonymous": 401, "owner": 200, "other": 200, "inactive": 403, "admin": 200},
    ),
    "PATCH /users/{id}": (
        lambda h, w, t: h.call(
            "PATCH", f"/users/{w.owner['id']}", {"password": "new-pass-1"}, token=t
        ),
        {"anonymous": 401, "owner": 200, "other": 403, "inactive": 403, "admin": 200},
    ),
    "POST /users/{id}/deactivate": (
        lambda h, w, t: h.call("POST", f"/users/{w.owner['id']}/deactivate", token=t),
        {"anonymous": 401, "owner": 200, "other": 403, "inactive": 403, "admin": 200},
    ),
    "DELETE /users/{id}": (
        lambda h, w, t: h.call("DELETE", f"/users/{w.owner['id']}", token=t),
        {"anonymous": 401, "owner": 204, "other": 403, "inactive": 403, "admin": 204},
    ),
    "GET /users/{id}/posts?include_drafts=true": (
        lambda h, w, t: h.call("GET", f"/users/{w.owner['id']}/posts?include_drafts=true", token=t),
        {"anonymous": 401, "owner": 200, "other": 403, "inactive": 403, "admin": 200},
    ),
    "GET /users/{id}/posts": (
        lambda h, w, t: h.call("GET", f"/users/{w.owner['id']}/posts", token=t),
        {"anonymous": 401, "owner": 200, "other": 200, "inactive": 403, "admin": 200},
    ),
    "POST /users/{id}/posts/transfer": (
        lambda h, w, t: h.call(
            "POST",
            f"/users/{w.owner['id']}/posts/transfer",
            {"to_user_id": w.target["id"]},
            token=t,
        ),
        {"anonymous": 401, "owner": 403, "other": 403, "inactive": 403, "admin": 200},
    ),
    "POST /posts": (
        lambda h, w, t: h.call("POST", "/posts", {"title": "t", "content": "c"}, token=t),
        {"anonymous": 401, "owner": 201, "other": 201, "inactive": 403, "admin": 201},
    ),
    "GET /posts": (lambda h, w, t: h.call("GET", "/posts", token=t), dict.fromkeys(ROLES, 200)),
    "GET /posts/{draft}": (
        lambda h, w, t: h.call("GET", f"/posts/{w.draft['id']}", token=t),
        {"anonymous": 404, "owner": 200, "other": 404, "inactive": 401, "admin": 200},
    ),
    "PATCH /posts/{draft}": (
        lambda h, w, t: h.call("PATCH", f"/posts/{w.draft['id']}", {"title": "new"}, token=t),
        {"anonymous": 401, "owner": 200, "other": 404, "inactive": 403, "admin": 200},
    ),
    "POST /posts/{draft}/publish": (
        lambda h, w, t: h.call("POST", f"/posts/{w.draft['id']}/publish", token=t),
        {"anonymous": 401, "owner": 200, "other": 404, "inactive": 403, "admin": 200},
    ),
    "DELETE /posts/{draft}": (
        lambda h, w, t: h.call("DELETE", f"/posts/{w.draft['id']}", token=t),
        {"anonymous": 401, "owner": 204, "other": 404, "inactive": 403, "admin": 204},
    ),
}


@pytest.mark.parametrize("route", list(MATRIX))
def test_authorization_matrix(http: Http, route: str) -> None:
    call, expected = MATRIX[route]
    observed = {}
    for role in ROLES:
        world = _world(http)
        observed[role] = call(http, world, world.tokens[role]).status
    assert observed == expected


def test_sign_in_for_each_kind_of_caller(http: Http) -> None:
    world = _world(http)
    assert _sign_in(http, world, None).status == 401
    good = http.call(
        "POST", "/auth/token", {"login": world.owner["username"], "password": "password-123"}
    )
    assert good.status == 200


# --- error statuses over HTTP -----------------------------------------------------------------


def test_error_statuses_have_the_standard_body(http: Http) -> None:
    _, token = http.user()
    cases = {
        400: http.call("POST", "/posts", raw=b'{"title": ', token=token),
        413: http.call("POST", "/posts", raw=b'{"title": "' + b"x" * 600_000 + b'"}', token=token),
        415: http.call("POST", "/posts", raw=b"title=x", content_type="text/plain", token=token),
        422: http.call("POST", "/posts", {"title": "", "content": "c"}, token=token),
        404: http.call("GET", "/posts/2000000000"),
    }
    for status, reply in cases.items():
        assert reply.status == status, (status, reply.body)
        assert set(reply.body["error"]) >= {"code", "message"}, reply.body
    user, _ = http.user()
    duplicate = http.call(
        "POST",
        "/users",
        {"email": user["email"].upper(), "username": "someone-else", "password": "password-123"},
    )
    assert (duplicate.status, duplicate.body["error"]["code"]) == (409, "duplicate")


def test_unreachable_database_is_503_with_retry_after(pg_admin_url: str) -> None:
    gateway, base, saved = _start_gateway(
        {
            "DATABASE_URL": "postgresql+pg8000://postgres@127.0.0.1:9/nowhere",
            "DB_CONNECT_TIMEOUT": "1",
            "JWT_SIGNING_KEY": TEST_SIGNING_KEY,
        }
    )
    try:
        reply = Http(base).call("GET", "/posts")
    finally:
        _stop_gateway(gateway, saved)
    assert reply.status == 503
    assert int(reply.headers["retry-after"]) > 0
    assert reply.body["error"]["code"] == "service_unavailable"
