"""One first invocation for every function of ``template.yaml``, for the cold-start table.

Each cold sample is a fresh process that handles one event, so an event must succeed however
many samples came before it: the functions that change or delete a row get rows of their own,
made for each round (:meth:`Fixtures.round`). The events are those of ``events/`` (what API
Gateway and SQS send), aimed at those rows as :func:`benchmarks.harness.event` aims the warm ones.
The migration function is left out (:data:`EXCLUDED`).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Final

from benchmarks.harness import EVENTS, ROUTES, Seed, event

#: Functions of the template not in the table, and why.
EXCLUDED: Final = {
    "MigrationsFunction": "runs once per deploy (a CloudFormation custom resource, or an "
    "operator's manual action), never on a request's path: its cold start is nobody's latency",
    "PurgeIdempotencyKeysFunction": "an hourly EventBridge schedule that no caller waits for: "
    "its cold start is nobody's latency",
}
#: The warm routes whose events :func:`benchmarks.harness.event` already builds, by function.
HARNESS_ROUTES: Final = {
    "GetUserFunction": "get_user",
    "ListUsersFunction": "list_users",
    "ListPostsFunction": "search_posts",
    "ListUserPostsFunction": "list_user_posts",
    "CreatePostFunction": "create_post",
}
#: The signing key of the tokens the benchmark issues (for the authorizer and IssueToken).
SIGNING_KEY: Final = "bench-cold-signing-key-that-is-long-enough-0123"
PASSWORD: Final = "benchmark-password"  # the seeded users' (benchmarks.harness.seed)
#: What a successful first invocation answers, by kind of function (see ``cold_child``).
AUTHORIZED: Final = "authorized"
ONE_FAILED: Final = "1 failed"  # the import batch: one good message, one invalid


@dataclass(frozen=True)
class Round:
    """The rows one round of samples changes: each function that writes gets its own."""

    owner: int  # updated; author of the posts below
    signed_out: int
    deactivated: int
    deleted: int
    donor: int  # whose posts an admin transfers
    edited_post: int
    published_post: int
    deleted_post: int
    shown_post: int  # published, for an anonymous GET
    token: str  # an access token of the seeded user, for the authorizer
    tag: str  # unique per round, for new emails and names


@dataclass
class Fixtures:
    """The seeded world, an admin, and the rows of each round."""

    url: str  # the database itself (not through the TLS front), for set-up
    seed: Seed
    admin: int = 0

    def __post_init__(self) -> None:
        # The access tokens: signed in this process with the key the functions are given.
        os.environ["JWT_SIGNING_KEY"] = SIGNING_KEY
        from blog.config import get_settings

        get_settings.cache_clear()
        self.admin = self._users(1, admin=True)[0]

    def _users(self, count: int, *, admin: bool = False) -> list[int]:
        from blog.security import hash_password

        hashed = hash_password(PASSWORD)
        return self._insert(
            "INSERT INTO users (email, username, hashed_password, is_admin) "
            "VALUES (:email, :username, :hashed, :admin) RETURNING id",
            [
                {
                    "email": f"cold-{tag}@example.com",
                    "username": f"cold_{tag}",
                    "hashed": hashed,
                    "admin": admin,
                }
                for tag in (secrets.token_hex(6) for _ in range(count))
            ],
        )

    def _posts(self, author: int, count: int, *, published: bool = False) -> list[int]:
        return self._insert(
            "INSERT INTO posts (title, content, published, author_id) "
            "VALUES ('Cold post', 'For the cold-start table.', :published, :author) RETURNING id",
            [{"author": author, "published": published}] * count,
        )

    def _insert(self, sql: str, rows: list[dict[str, Any]]) -> list[int]:
        """Each of ``rows`` inserted by ``sql`` (``… RETURNING id``) in one transaction: the ids."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                return [int(conn.scalar(text(sql), row)) for row in rows]
        finally:
            engine.dispose()

    def round(self) -> Round:
        """Fresh rows for one round of samples, and a fresh token (tokens are short-lived)."""
        from blog.auth import issue_token

        owner, signed_out, deactivated, deleted, donor = self._users(5)
        edited, published, deleted_post = self._posts(owner, 3)
        (shown,) = self._posts(owner, 1, published=True)
        self._posts(donor, 1)
        token, _ = issue_token(self.seed.user_id, 0)
        return Round(
            owner, signed_out, deactivated, deleted, donor, edited, published, deleted_post,
            shown, token, secrets.token_hex(6),
        )  # fmt: skip


def _http(name: str, path: str, caller: int | None, **parts: Any) -> dict[str, Any]:
    """``events/<name>.json`` on ``path`` with the authorizer's context for ``caller``."""
    built: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    built["rawPath"] = built["requestContext"]["http"]["path"] = path
    if "body" in parts:
        body = json.dumps(parts.pop("body"))
        built["body"] = body
        built["headers"]["content-length"] = str(len(body.encode()))
    built.update(parts)
    authorizer = built["requestContext"].get("authorizer")
    if authorizer is not None and caller is not None:
        authorizer["lambda"] = {"user_id": caller, "token_version": 0, "expires_at": 2**31}
    built["headers"].pop("authorization", None)  # checked by the authorizer, not the function
    built["requestContext"]["requestId"] = uuid.uuid4().hex
    return built


def _authorizer(token: str) -> dict[str, Any]:
    built: dict[str, Any] = json.loads((EVENTS / "authorizer.json").read_text())
    built["headers"]["authorization"] = f"Bearer {token}"
    built["identitySource"] = [f"Bearer {token}"]
    built["requestContext"]["requestId"] = uuid.uuid4().hex
    return built


def _import_batch(tag: str) -> dict[str, Any]:
    built: dict[str, Any] = json.loads((EVENTS / "import_users.json").read_text())
    users = [
        {"email": f"import-{tag}-{n}@example.com", "username": f"import_{tag}_{n}"} for n in (1, 2)
    ]
    users[0]["password"] = "a-long-password"
    first = json.loads(built["Records"][0]["body"])
    users[1]["hashed_password"] = first["users"][1]["hashed_password"]
    built["Records"][0]["body"] = json.dumps({"users": users})
    for record in built["Records"]:
        record["messageId"] = str(uuid.uuid4())
    return built


def cold_event(logical_id: str, fixtures: Fixtures, rows: Round) -> dict[str, Any]:
    """The first event of ``logical_id`` in a round, aimed at that round's rows."""
    seed, tag = fixtures.seed, rows.tag
    if logical_id in HARNESS_ROUTES:
        return event(HARNESS_ROUTES[logical_id], seed)
    path_user = {"user_id": str(rows.owner)}
    builders: dict[str, Any] = {
        "AuthorizerFunction": lambda: _authorizer(rows.token),
        "ImportUsersFunction": lambda: _import_batch(tag),
        "RegisterUserFunction": lambda: _http(
            "register_user", "/users", None,
            body={"email": f"new-{tag}@example.com", "username": f"new_{tag}",
                  "password": "correct horse battery staple", "welcome_post": True},
        ),
        "IssueTokenFunction": lambda: _http(
            "issue_token", "/auth/token", None,
            body={"login": "user0@example.com", "password": PASSWORD},
        ),
        "UpdateUserFunction": lambda: _http(
            "update_user", f"/users/{rows.owner}", rows.owner,
            pathParameters=path_user, body={"username": f"renamed_{tag}"},
        ),
        "DeactivateUserFunction": lambda: _http(
            "deactivate_user", f"/users/{rows.deactivated}/deactivate", rows.deactivated,
            pathParameters={"user_id": str(rows.deactivated)},
        ),
        "SignOutFunction": lambda: _http(
            "sign_out", f"/users/{rows.signed_out}/sign-out", rows.signed_out,
            pathParameters={"user_id": str(rows.signed_out)},
        ),
        "DeleteUserFunction": lambda: _http(
            "delete_user", f"/users/{rows.deleted}", rows.deleted,
            pathParameters={"user_id": str(rows.deleted)},
        ),
        "TransferPostsFunction": lambda: _http(
            "transfer_posts", f"/users/{rows.donor}/posts/transfer", fixtures.admin,
            pathParameters={"user_id": str(rows.donor)}, body={"to_user_id": seed.user_id},
        ),
        "GetPostFunction": lambda: _http(
            "get_post", f"/posts/{rows.shown_post}", None,
            pathParameters={"post_id": str(rows.shown_post)},
        ),
        "UpdatePostFunction": lambda: _http(
            "update_post", f"/posts/{rows.edited_post}", rows.owner,
            pathParameters={"post_id": str(rows.edited_post)}, body={"title": f"Edited {tag}"},
        ),
        "PublishPostFunction": lambda: _http(
            "publish_post", f"/posts/{rows.published_post}/publish", rows.owner,
            pathParameters={"post_id": str(rows.published_post)},
        ),
        "DeletePostFunction": lambda: _http(
            "delete_post", f"/posts/{rows.deleted_post}", rows.owner,
            pathParameters={"post_id": str(rows.deleted_post)},
        ),
    }  # fmt: skip
    built: dict[str, Any] = builders[logical_id]()
    return built


def succeeded(logical_id: str, statuses: dict[str, int]) -> bool:
    """Whether the one invocation of a cold sample did what it was asked."""
    if logical_id == "AuthorizerFunction":
        return statuses == {AUTHORIZED: 1}
    if logical_id == "ImportUsersFunction":
        return statuses == {ONE_FAILED: 1}
    if logical_id in HARNESS_ROUTES:
        return statuses == {str(ROUTES[HARNESS_ROUTES[logical_id]][2]): 1}
    return len(statuses) == 1 and next(iter(statuses)).startswith("2")
