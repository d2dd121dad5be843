"""The local gateway over real HTTP: every route for every kind of caller, and the error statuses.

The gateway runs as ``make local`` runs it (worker processes per function, the authorizer in
front of protected routes) on its own migrated database, on 127.0.0.1 and an ephemeral port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.e2e.conftest import TEST_SIGNING_KEY, Http, start_gateway, stop_gateway
from tests.e2e.conftest import HttpReply as Reply

ROLES = ("anonymous", "owner", "other", "inactive", "admin")


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
# Changes of someone else's user or post need If-Match from an admin (428 without it, see
# test_conditional_requests.py); here every caller sends one that matches any version.
ANY_VERSION = {"If-Match": "*"}


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
        {"anonymous": 401, "owner": 200, "other": 200, "inactive": 401, "admin": 200},
    ),
    "GET /users/{id}": (
        lambda h, w, t: h.call("GET", f"/users/{w.owner['id']}", token=t),
        {"anonymous": 401, "owner": 200, "other": 200, "inactive": 401, "admin": 200},
    ),
    "PATCH /users/{id}": (
        lambda h, w, t: h.call(
            "PATCH",
            f"/users/{w.owner['id']}",
            {"password": "new-pass-1", "current_password": "password-123"},
            token=t,
            headers=ANY_VERSION,
        ),
        {"anonymous": 401, "owner": 200, "other": 403, "inactive": 401, "admin": 200},
    ),
    "POST /users/{id}/deactivate": (
        lambda h, w, t: h.call("POST", f"/users/{w.owner['id']}/deactivate", token=t),
        {"anonymous": 401, "owner": 200, "other": 403, "inactive": 401, "admin": 200},
    ),
    "POST /users/{id}/sign-out": (
        lambda h, w, t: h.call("POST", f"/users/{w.owner['id']}/sign-out", token=t),
        {"anonymous": 401, "owner": 204, "other": 403, "inactive": 401, "admin": 204},
    ),
    "DELETE /users/{id}": (
        lambda h, w, t: h.call("DELETE", f"/users/{w.owner['id']}", token=t, headers=ANY_VERSION),
        {"anonymous": 401, "owner": 204, "other": 403, "inactive": 401, "admin": 204},
    ),
    "GET /users/{id}/posts?include_drafts=true": (
        lambda h, w, t: h.call("GET", f"/users/{w.owner['id']}/posts?include_drafts=true", token=t),
        {"anonymous": 401, "owner": 200, "other": 403, "inactive": 401, "admin": 200},
    ),
    "GET /users/{id}/posts": (
        lambda h, w, t: h.call("GET", f"/users/{w.owner['id']}/posts", token=t),
        {"anonymous": 401, "owner": 200, "other": 200, "inactive": 401, "admin": 200},
    ),
    "POST /users/{id}/posts/transfer": (
        lambda h, w, t: h.call(
            "POST",
            f"/users/{w.owner['id']}/posts/transfer",
            {"to_user_id": w.target["id"]},
            token=t,
        ),
        {"anonymous": 401, "owner": 403, "other": 403, "inactive": 401, "admin": 200},
    ),
    "POST /posts": (
        lambda h, w, t: h.call("POST", "/posts", {"title": "t", "content": "c"}, token=t),
        {"anonymous": 401, "owner": 201, "other": 201, "inactive": 401, "admin": 201},
    ),
    "GET /posts": (lambda h, w, t: h.call("GET", "/posts", token=t), dict.fromkeys(ROLES, 200)),
    "GET /posts/{draft}": (
        lambda h, w, t: h.call("GET", f"/posts/{w.draft['id']}", token=t),
        {"anonymous": 404, "owner": 200, "other": 404, "inactive": 401, "admin": 200},
    ),
    "PATCH /posts/{draft}": (
        lambda h, w, t: h.call(
            "PATCH", f"/posts/{w.draft['id']}", {"title": "new"}, token=t, headers=ANY_VERSION
        ),
        {"anonymous": 401, "owner": 200, "other": 404, "inactive": 401, "admin": 200},
    ),
    "POST /posts/{draft}/publish": (
        lambda h, w, t: h.call("POST", f"/posts/{w.draft['id']}/publish", token=t),
        {"anonymous": 401, "owner": 200, "other": 404, "inactive": 401, "admin": 200},
    ),
    "DELETE /posts/{draft}": (
        lambda h, w, t: h.call("DELETE", f"/posts/{w.draft['id']}", token=t, headers=ANY_VERSION),
        {"anonymous": 401, "owner": 204, "other": 404, "inactive": 401, "admin": 204},
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


def test_wrong_passwords_are_counted_against_the_tcp_peer_not_a_header(http: Http) -> None:
    user, _ = http.user()
    # A forwarding header is the client's to write: it must not choose the client key
    spoofed = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"}
    body = {"login": user["username"], "password": "guess-guess"}
    assert http.call("POST", "/auth/token", body, headers=spoofed).status == 401
    engine = create_engine(http.database_url, poolclass=NullPool)
    with engine.connect() as conn:
        clients = conn.execute(
            text("SELECT client FROM sign_in_failures WHERE user_id = :id ORDER BY client"),
            {"id": user["id"]},
        ).scalars()
        assert list(clients) == ["*", "127.0.0.1"]
    engine.dispose()


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
    nowhere = "postgresql+pg8000://postgres@127.0.0.1:9/nowhere"
    gateway, base, saved = start_gateway(
        {
            "DATABASE_URL": nowhere,
            "DB_CONNECT_TIMEOUT": "1",
            "JWT_SIGNING_KEY": TEST_SIGNING_KEY,
        }
    )
    from blog.auth import issue_token
    from blog.config import get_settings

    try:
        get_settings.cache_clear()  # the gateway's signing key, as its functions read it
        token, _ = issue_token(1, 0)
        client = Http(base, nowhere)
        # Public and protected routes alike: the authorizer needs no database
        replies = [
            client.call("GET", "/posts"),
            client.call("GET", "/users", token=token),
            client.call("GET", "/users/1", token=token),
            client.call("POST", "/posts", {"title": "t", "content": "c"}, token=token),
            client.call("POST", "/users/1/sign-out", token=token),
        ]
    finally:
        stop_gateway(gateway, saved)
        get_settings.cache_clear()
    for reply in replies:
        assert reply.status == 503, reply.body
        assert int(reply.headers["retry-after"]) > 0
        assert reply.body["error"]["code"] == "service_unavailable"
