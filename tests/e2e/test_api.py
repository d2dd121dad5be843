"""Every route through the gateway emulation, the authorizer and the real handlers."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.e2e.conftest import TEST_SIGNING_KEY, Client


def _error(reply, status: int, code: str) -> None:  # noqa: ANN001
    assert reply.status == status, reply.text
    assert reply.body["error"]["code"] == code, reply.text
    assert reply.body["error"]["message"]


# --- users ---------------------------------------------------------------------------------------


def test_register_returns_201_location_and_no_password(api: Client) -> None:
    reply = api.post(
        "/users", {"email": "Ann@Example.com", "username": "Ann", "password": "password-123"}
    )
    assert reply.status == 201
    assert reply.headers["location"] == f"/users/{reply.body['id']}"
    assert reply.body["email"] == "ann@example.com"
    assert reply.body["username"] == "ann"
    assert "password" not in reply.text and "argon2" not in reply.text


def test_register_with_welcome_post_creates_a_published_post(api: Client) -> None:
    reply = api.post(
        "/users",
        {
            "email": "w@example.com",
            "username": "welcomed",
            "password": "password-123",
            "welcome_post": True,
        },
    )
    assert reply.status == 201
    posts = api.get("/posts")
    assert posts.body["total"] == 1
    assert posts.body["items"][0]["author_id"] == reply.body["id"]


@pytest.mark.parametrize(
    ("email", "username", "field"),
    [("TAKEN@example.com", "fresh", "email"), ("fresh@example.com", "TAKEN", "username")],
)
def test_register_duplicate_is_409_naming_the_field(
    api: Client, email: str, username: str, field: str
) -> None:
    api.signup("taken")
    reply = api.post("/users", {"email": email, "username": username, "password": "password-123"})
    _error(reply, 409, "duplicate")
    assert reply.body["error"]["details"] == {"field": field}


def test_token_with_email_or_username(api: Client) -> None:
    api.signup("tok")
    for login in ("tok", "TOK@example.com"):
        reply = api.post("/auth/token", {"login": login, "password": "password-123"})
        assert reply.status == 200
        assert reply.body["token_type"] == "Bearer"
        assert reply.body["expires_in"] > 0


def test_token_refusals_look_the_same_for_unknown_user_and_wrong_password(api: Client) -> None:
    api.signup("known")
    wrong = api.post("/auth/token", {"login": "known", "password": "wrong-password"})
    unknown = api.post("/auth/token", {"login": "nobody", "password": "password-123"})
    for reply in (wrong, unknown):
        _error(reply, 401, "unauthorized")
    assert wrong.body == unknown.body


def test_inactive_user_cannot_sign_in_and_old_tokens_stop_working(api: Client) -> None:
    user, token = api.signup("leaving")
    assert api.post(f"/users/{user['id']}/deactivate", token=token).status == 200
    _error(
        api.post("/auth/token", {"login": "leaving", "password": "password-123"}),
        401,
        "unauthorized",
    )
    # The token's signature still holds; the handler, reading the caller's row, refuses it.
    _error(api.get("/users", token=token), 401, "unauthorized")


def test_list_users_is_paginated_with_total_and_needs_a_token(api: Client) -> None:
    _, token = api.signup("lister")
    for n in range(4):
        api.signup(f"member{n}")
    reply = api.get("/users?page=2&page_size=2", token=token)
    assert reply.status == 200
    assert (reply.body["total"], reply.body["page"], reply.body["page_size"]) == (5, 2, 2)
    assert len(reply.body["items"]) == 2
    assert api.get("/users").status == 401


def test_get_user_and_404(api: Client) -> None:
    user, token = api.signup("getme")
    reply = api.get(f"/users/{user['id']}", token=token)
    assert reply.status == 200
    assert reply.body["username"] == "getme"
    assert "hashed_password" not in reply.body
    _error(api.get(f"/users/{user['id'] + 999}", token=token), 404, "not_found")


def test_update_user_by_self_admin_and_others(api: Client) -> None:
    user, token = api.signup("changer")
    _, other_token = api.signup("other")
    _, admin_token = api.signup("boss", admin=True)
    reply = api.patch(f"/users/{user['id']}", {"username": "changed"}, token=token)
    assert (reply.status, reply.body["username"]) == (200, "changed")
    _error(
        api.patch(f"/users/{user['id']}", {"username": "hijack"}, token=other_token),
        403,
        "forbidden",
    )
    # An admin changes the email with their own current password, saying which version they
    # change (If-Match); the user need not
    current = api.get(f"/users/{user['id']}", token=admin_token).headers["etag"]
    new_email = {"email": "new@example.com", "current_password": "password-123"}
    as_admin = api.patch(
        f"/users/{user['id']}", new_email, token=admin_token, headers={"If-Match": current}
    )
    assert as_admin.status == 200
    _error(api.patch(f"/users/{user['id']}", {"username": "other"}, token=token), 409, "duplicate")
    # The new password works, the old one does not.
    new_password = {"password": "another-pass", "current_password": "password-123"}
    assert api.patch(f"/users/{user['id']}", new_password, token=token).status == 200
    assert api.post("/auth/token", {"login": "changed", "password": "another-pass"}).status == 200
    assert api.post("/auth/token", {"login": "changed", "password": "password-123"}).status == 401


def test_delete_user_removes_their_posts(api: Client) -> None:
    user, token = api.signup("doomed")
    post = api.post("/posts", {"title": "t", "content": "c"}, token=token).body
    _, other_token = api.signup("bystander")
    _error(api.delete(f"/users/{user['id']}", token=other_token), 403, "forbidden")
    reply = api.delete(f"/users/{user['id']}", token=token)
    assert (reply.status, reply.text) == (204, "")
    _, admin_token = api.signup("boss", admin=True)
    _error(api.get(f"/posts/{post['id']}", token=admin_token), 404, "not_found")


# --- posts ---------------------------------------------------------------------------------------


def test_post_lifecycle_draft_publish_edit_delete(api: Client) -> None:
    author, token = api.signup("writer")
    created = api.post("/posts", {"title": "Hello", "content": "World"}, token=token)
    assert created.status == 201
    post_id = created.body["id"]
    assert created.headers["location"] == f"/posts/{post_id}"
    assert (created.body["published"], created.body["author_id"]) == (False, author["id"])
    # A draft is invisible to anonymous callers and other users, visible to its author.
    _error(api.get(f"/posts/{post_id}"), 404, "not_found")
    _, stranger = api.signup("stranger")
    _error(api.get(f"/posts/{post_id}", token=stranger), 404, "not_found")
    assert api.get(f"/posts/{post_id}", token=token).status == 200
    # Publishing makes it public.
    assert api.post(f"/posts/{post_id}/publish", token=token).body["published"] is True
    assert api.get(f"/posts/{post_id}").body["title"] == "Hello"
    edited = api.patch(f"/posts/{post_id}", {"title": "Hello again"}, token=token)
    assert (edited.status, edited.body["title"], edited.body["content"]) == (
        200,
        "Hello again",
        "World",
    )
    _error(api.patch(f"/posts/{post_id}", {"title": "mine now"}, token=stranger), 403, "forbidden")
    _error(api.delete(f"/posts/{post_id}", token=stranger), 403, "forbidden")
    assert api.delete(f"/posts/{post_id}", token=token).status == 204
    _error(api.get(f"/posts/{post_id}"), 404, "not_found")


def test_admin_can_publish_edit_and_delete_any_post(api: Client) -> None:
    _, token = api.signup("author")
    _, admin = api.signup("boss", admin=True)
    post_id = api.post("/posts", {"title": "t", "content": "c"}, token=token).body["id"]
    assert api.get(f"/posts/{post_id}", token=admin).status == 200
    assert api.post(f"/posts/{post_id}/publish", token=admin).status == 200
    read = api.get(f"/posts/{post_id}", token=admin).headers["etag"]
    edited = api.patch(
        f"/posts/{post_id}", {"content": "moderated"}, token=admin, headers={"If-Match": read}
    )
    assert edited.status == 200
    deleted = api.delete(
        f"/posts/{post_id}", token=admin, headers={"If-Match": edited.headers["etag"]}
    )
    assert deleted.status == 204


def test_list_posts_newest_first_with_search_and_total(api: Client) -> None:
    _, token = api.signup("blogger")
    ids = []
    for title in ("About 100% cotton", "Lambda tips", "More lambda"):
        post_id = api.post("/posts", {"title": title, "content": "text"}, token=token).body["id"]
        api.post(f"/posts/{post_id}/publish", token=token)
        ids.append(post_id)
    api.post("/posts", {"title": "lambda draft", "content": "x"}, token=token)
    everything = api.get("/posts")
    assert [p["id"] for p in everything.body["items"]] == ids[::-1]
    assert everything.body["total"] == 3
    found = api.get("/posts?q=LAMBDA&page_size=1")
    assert (found.body["total"], len(found.body["items"])) == (2, 1)
    assert api.get("/posts?q=100%25").body["total"] == 1  # % matches only a literal %
    assert api.get("/posts?q=0%25 cot").body["total"] == 1
    # Too little to search by (no three letters or digits in a row): refused, not scanned
    _error(api.get("/posts?q=%25%25%25"), 422, "validation_error")


def test_user_posts_with_drafts_only_for_author_or_admin(api: Client) -> None:
    author, token = api.signup("poet")
    _, stranger = api.signup("reader")
    _, admin = api.signup("boss", admin=True)
    draft = api.post("/posts", {"title": "draft", "content": "c"}, token=token).body
    published = api.post("/posts", {"title": "pub", "content": "c"}, token=token).body
    api.post(f"/posts/{published['id']}/publish", token=token)
    path = f"/users/{author['id']}/posts"
    assert [p["id"] for p in api.get(path, token=stranger).body["items"]] == [published["id"]]
    with_drafts = api.get(f"{path}?include_drafts=true", token=token).body
    assert {p["id"] for p in with_drafts["items"]} == {draft["id"], published["id"]}
    assert api.get(f"{path}?include_drafts=true", token=admin).body["total"] == 2
    _error(api.get(f"{path}?include_drafts=true", token=stranger), 403, "forbidden")
    _error(api.get(f"/users/{author['id'] + 999}/posts", token=token), 404, "not_found")


def test_transfer_posts_is_admin_only_and_checks_both_users(api: Client) -> None:
    source, token = api.signup("source")
    target, _ = api.signup("target")
    _, admin = api.signup("boss", admin=True)
    for n in range(3):
        api.post("/posts", {"title": f"p{n}", "content": "c"}, token=token)
    path = f"/users/{source['id']}/posts/transfer"
    _error(api.post(path, {"to_user_id": target["id"]}, token=token), 403, "forbidden")
    _error(api.post(path, {"to_user_id": target["id"] + 999}, token=admin), 404, "not_found")
    reply = api.post(path, {"to_user_id": target["id"]}, token=admin)
    assert (reply.status, reply.body) == (200, {"moved": 3})


# --- errors and input ----------------------------------------------------------------------------


def test_malformed_json_is_400_and_nothing_is_written(api: Client) -> None:
    _error(api.request("POST", "/users", raw=b'{"email": '), 400, "malformed_json")
    _error(
        api.request("POST", "/users", raw=b'{"email": "a@b.co", "email": "c@d.co"}'),
        400,
        "malformed_json",
    )
    assert api.get("/posts").body["total"] == 0


def test_wrong_content_type_is_415_and_oversized_body_is_413(api: Client) -> None:
    reply = api.request("POST", "/users", raw=b"email=a", headers={"content-type": "text/plain"})
    _error(reply, 415, "unsupported_media_type")
    big = b'{"title": "' + b"x" * (600 * 1024) + b'"}'
    _error(api.request("POST", "/users", raw=big), 413, "payload_too_large")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "username": "valid", "password": "password-123"}, "email"),
        ({"email": "a@example.com", "username": "x" * 51, "password": "password-123"}, "username"),
        (
            {"email": "a@example.com", "username": "bad name", "password": "password-123"},
            "username",
        ),
        ({"email": "a@example.com", "username": "valid", "password": "short"}, "password"),
        ({"email": "a@example.com", "username": "valid", "password": 12345678}, "password"),
        ({"email": "a@example.com", "username": "valid"}, "password"),
        (
            {
                "email": "a@example.com",
                "username": "valid",
                "password": "password-123",
                "admin": True,
            },
            "admin",
        ),
        (
            {"email": "a\u0000@example.com", "username": "valid", "password": "password-123"},
            "email",
        ),
    ],
)
def test_invalid_registration_is_422_naming_the_field(api: Client, body: dict, field: str) -> None:
    reply = api.post("/users", body)
    _error(reply, 422, "validation_error")
    assert field in {d["field"] for d in reply.body["error"]["details"]}, reply.text
    assert "password-123" not in reply.text


@pytest.mark.parametrize("body", [[], "text", 42, None])
def test_body_of_the_wrong_json_type_is_422(api: Client, body: object) -> None:
    import json

    _error(api.request("POST", "/users", raw=json.dumps(body).encode()), 422, "validation_error")


def test_lone_surrogates_and_control_characters_are_refused(api: Client) -> None:
    _, token = api.signup("unicode")
    raw = b'{"title": "\\ud800", "content": "c"}'
    _error(api.request("POST", "/posts", raw=raw, token=token), 422, "validation_error")
    raw = b'{"title": "bell\\u0007", "content": "c"}'
    _error(api.request("POST", "/posts", raw=raw, token=token), 422, "validation_error")
    emoji = api.post("/posts", {"title": "4-byte \U0001f600", "content": "tab\tok\n"}, token=token)
    assert emoji.status == 201
    assert emoji.body["title"] == "4-byte \U0001f600"


@pytest.mark.parametrize(
    "path",
    ["/posts/0", "/posts/-1", "/posts/2147483648", "/posts/99999999999999999999", "/posts/abc"],
)
def test_ids_out_of_range_are_422_not_500(api: Client, path: str) -> None:
    _error(api.get(path), 422, "validation_error")


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page_size=0", "page=abc", "page=1&page=2", "page=99999999999"]
)
def test_bad_pagination_is_422(api: Client, query: str) -> None:
    _error(api.get(f"/posts?{query}"), 422, "validation_error")


def test_huge_page_size_is_capped(api: Client) -> None:
    reply = api.get("/posts?page_size=1000")
    assert (reply.status, reply.body["page_size"]) == (200, 100)


def test_unknown_route_is_404(api: Client) -> None:
    assert api.get("/nothing-here").status == 404


# --- tokens ------------------------------------------------------------------------------------


def _forge(claims: dict, key: str = TEST_SIGNING_KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_protected_routes_refuse_missing_tampered_expired_and_alg_none_tokens(api: Client) -> None:
    user, token = api.signup("victim")
    now = int(time.time())
    base = {"sub": str(user["id"]), "iss": "blog-api", "aud": "blog-api", "iat": now}
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    expired = _forge({**base, "exp": now - 60, "iat": now - 120})
    wrong_key = _forge({**base, "exp": now + 60}, key="another-key-that-is-also-long-enough-123")
    unsigned = jwt.encode({**base, "exp": now + 60}, key=None, algorithm="none")
    assert api.get("/users").status == 401
    for bad in (tampered, expired, wrong_key, unsigned, "not-a-jwt"):
        assert api.get("/users", token=bad).status == 403, bad
    # On public routes that read an optional token, a bad one is a 401 from the handler itself.
    _error(api.get("/posts/1", token=expired), 401, "unauthorized")
