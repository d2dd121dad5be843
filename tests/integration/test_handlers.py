"""Each function's ``lambda_handler`` called directly with its sample event from ``events/``,
edited per case (ids of real rows, the authorizer's context), as Lambda would call it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blog import auth
from local.functions import REPO, functions, load_handler
from local.gateway import LambdaContext
from tests.e2e.conftest import TEST_SIGNING_KEY
from tests.factories import make_post, make_user

EVENTS = REPO / "events"


@pytest.fixture
def world(db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An author with a published post, another user, and the signing key the handlers use."""
    from blog.config import get_settings

    monkeypatch.setenv("JWT_SIGNING_KEY", TEST_SIGNING_KEY)
    get_settings.cache_clear()
    author = make_user(username="author", email="author@example.com")
    other = make_user()
    yield {"author": author, "other": other, "post": make_post(author, published=True)}
    monkeypatch.undo()
    get_settings.cache_clear()


def _grant_admin(user_id: int) -> None:
    from blog import db
    from blog.repositories import UserRepository

    with db.transaction() as conn:
        UserRepository(conn).update(user_id, is_admin=True)


def _function_for(route_key: str) -> str:
    method, path = route_key.split(" ", 1)
    for logical_id, function in functions().items():
        if (method, path) in function.routes:
            return logical_id
    raise LookupError(route_key)


def _edited(name: str, world: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    ids = {"user_id": world["author"].id, "post_id": world["post"].id}
    params = {key: str(ids[key]) for key in event.get("pathParameters") or {}}
    if params:
        event["pathParameters"] = params
        path = event["routeKey"].split(" ", 1)[1]
        for key, value in params.items():
            path = path.replace("{" + key + "}", value)
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if "authorizer" in event["requestContext"]:
        event["requestContext"]["authorizer"]["lambda"] = {
            "user_id": world["author"].id,
            "token_version": world["author"].token_version,
            "expires_at": int(time.time()) + 60,
        }
    if name == "transfer_posts":  # admins only: rights come from the caller's row
        _grant_admin(world["author"].id)
    token, _ = auth.issue_token(world["author"].id, world["author"].token_version)
    event["headers"] = {
        k: (f"Bearer {token}" if k == "authorization" else v) for k, v in event["headers"].items()
    }
    if name == "transfer_posts":
        event["body"] = json.dumps({"to_user_id": world["other"].id})
    return event


ROUTE_EVENTS = sorted(
    p.stem
    for p in EVENTS.glob("*.json")
    if p.stem != "authorizer" and "routeKey" in json.loads(p.read_text())
)
EXPECTED = {
    "register_user": 201,
    "create_post": 201,
    "delete_user": 204,
    "delete_post": 204,
    "sign_out": 204,
}


@pytest.mark.parametrize("name", ROUTE_EVENTS)
def test_each_handler_answers_its_sample_event(name: str, world: dict[str, Any]) -> None:
    event = _token_event(world) if name == "issue_token" else _edited(name, world)
    handler = load_handler(functions()[_function_for(event["routeKey"])])
    result = handler(event, LambdaContext(name))
    assert result["statusCode"] == EXPECTED.get(name, 200), result.get("body")
    if result["statusCode"] != 204:
        body = json.loads(result["body"])
        assert "hashed_password" not in json.dumps(body)


def _token_event(world: dict[str, Any]) -> dict[str, Any]:
    """The sign-in event, with the author's credentials (their password is set here)."""
    from blog import db
    from blog.repositories import UserRepository
    from blog.security import hash_password

    with db.transaction() as conn:
        UserRepository(conn).update(
            world["author"].id, hashed_password=hash_password("pw-12345678")
        )
    event: dict[str, Any] = json.loads((EVENTS / "issue_token.json").read_text())
    event["body"] = json.dumps({"login": "author", "password": "pw-12345678"})
    return event


def test_authorizer_accepts_a_valid_token_and_refuses_others(world: dict[str, Any]) -> None:
    event: dict[str, Any] = json.loads((EVENTS / "authorizer.json").read_text())
    handler = load_handler(functions()["AuthorizerFunction"])
    token, _ = auth.issue_token(world["author"].id, 0)
    event["headers"]["authorization"] = f"Bearer {token}"
    event["identitySource"] = [f"Bearer {token}"]
    allowed = handler(event, LambdaContext("AuthorizerFunction"))
    assert allowed["isAuthorized"] is True
    assert allowed["context"] == {
        "user_id": world["author"].id,
        "token_version": 0,
        "expires_at": allowed["context"]["expires_at"],
    }
    assert allowed["context"]["expires_at"] > time.time()
    event["headers"]["authorization"] = "Bearer " + token[:-2] + "xx"
    assert handler(event, LambdaContext("AuthorizerFunction")) == {"isAuthorized": False}
    del event["headers"]["authorization"]
    assert handler(event, LambdaContext("AuthorizerFunction")) == {"isAuthorized": False}


def test_every_route_event_is_covered() -> None:
    routes = {r for f in functions().values() for r in f.routes}
    covered = {
        tuple(json.loads((EVENTS / f"{n}.json").read_text())["routeKey"].split(" ", 1))
        for n in ROUTE_EVENTS
    }
    assert covered == routes
    assert Path(EVENTS / "authorizer.json").exists()
