"""Accounts end to end: credentials, revocation, sign-in slowing, privacy and response headers.

Requests go through the local gateway's API Gateway emulation (route matching, the Lambda
authorizer in front of protected routes) into the real handlers, in this process.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.e2e.conftest import Client, Reply

PASSWORD = "password-123"


def _error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.text
    assert reply.body["error"]["code"] == code, reply.text
    return dict(reply.body["error"])


def _sql(query: str, **params: Any) -> Any:
    from blog import db

    with db.transaction() as conn:
        result = conn.execute(text(query), params)
        return result.one() if result.returns_rows else None


# --- what a protected request costs --------------------------------------------------------------


def test_a_protected_request_opens_one_database_connection_and_the_authorizer_none(
    committed_api: Client,
) -> None:
    from blog import db

    # Given a user with a post, and a count of every new database connection
    user, token = committed_api.signup("counted")
    post = committed_api.post("/posts", {"title": "t", "content": "c"}, token=token).body
    opened: list[str] = []
    engine = db.get_engine()
    listener = lambda *_: opened.append("connect")  # noqa: E731
    event.listen(engine, "connect", listener)
    try:
        requests = [
            ("GET", f"/users/{user['id']}", None),
            ("GET", "/users", None),
            ("GET", f"/users/{user['id']}/posts?include_drafts=true", None),
            ("PATCH", f"/posts/{post['id']}", {"title": "new"}),
            ("POST", f"/posts/{post['id']}/publish", None),
            ("POST", "/posts", {"title": "t2", "content": "c2"}),
        ]
        for method, path, body in requests:
            # When one protected request goes through the authorizer and the handler
            opened.clear()
            reply = committed_api.request(method, path, body, token=token)
            # Then it succeeded on exactly one connection: the handler's (with the caller's row)
            assert reply.status < 300, (path, reply.text)
            assert len(opened) == 1, (method, path, len(opened))
        opened.clear()
        from local.gateway import authorizer_event, invoke, match

        route, _ = match("GET", "/users")  # type: ignore[misc]
        verdict = invoke(
            "AuthorizerFunction",
            authorizer_event(_event_for(route, token), route),
        )
        assert verdict["isAuthorized"] is True
        assert opened == []  # the authorizer alone reads no database
    finally:
        event.remove(engine, "connect", listener)


def _event_for(route: Any, token: str) -> dict[str, Any]:
    from local.gateway import build_event

    headers = [("host", "localhost"), ("authorization", f"Bearer {token}")]
    return build_event("GET", "/users", "", headers, b"", route, {})


# --- credentials ---------------------------------------------------------------------------------


def test_changing_email_or_password_needs_the_current_password(api: Client) -> None:
    user, token = api.signup("careful")
    path = f"/users/{user['id']}"
    for change in ({"email": "stolen@example.com"}, {"password": "attacker-pass"}):
        # Without current_password: 422 naming it; with a wrong one: 403; nothing changes
        problem = _error(api.patch(path, change, token=token), 422, "validation_error")
        assert "current_password" in problem["message"]
        wrong = {**change, "current_password": "not-my-password"}
        _error(api.patch(path, wrong, token=token), 403, "current_password_invalid")
        me = api.get(path, token=token).body
        assert me["email"] == "careful@example.com"
    assert api.post("/auth/token", {"login": "careful", "password": PASSWORD}).status == 200
    # A username alone needs no password; with the right one the email changes
    assert api.patch(path, {"username": "careful2"}, token=token).status == 200
    right = {"email": "Careful@Example.com", "current_password": PASSWORD}
    reply = api.patch(path, right, token=token)
    assert (reply.status, reply.body["email"]) == (200, "careful@example.com"), reply.text


def test_a_password_change_voids_every_earlier_token_at_once(api: Client) -> None:
    # Given a user signed in twice (two devices) with a draft
    user, first = api.signup("rotating")
    second = api.post("/auth/token", {"login": "rotating", "password": PASSWORD}).body
    draft = api.post("/posts", {"title": "t", "content": "c"}, token=first).body
    # When the password changes from one device
    change = {"password": "brand-new-pass", "current_password": PASSWORD}
    assert api.patch(f"/users/{user['id']}", change, token=first).status == 200
    # Then both tokens are refused on every route at once, the public read of a draft included
    for token in (first, second["access_token"]):
        _error(api.get(f"/users/{user['id']}", token=token), 401, "unauthorized")
        _error(api.post("/posts", {"title": "t", "content": "c"}, token=token), 401, "unauthorized")
        _error(api.get(f"/posts/{draft['id']}", token=token), 401, "unauthorized")
    # And a new sign-in with the new password works
    new = api.post("/auth/token", {"login": "rotating", "password": "brand-new-pass"}).body
    assert api.get(f"/posts/{draft['id']}", token=new["access_token"]).status == 200


def test_deactivation_is_refused_at_once_even_by_a_cached_authorizer_verdict(api: Client) -> None:
    from local.gateway import AUTHORIZER_ID, handle, invoke

    user, token = api.signup("cached")
    verdicts: dict[str, Any] = {}

    def cached_run(logical_id: str, built: dict[str, Any]) -> Any:
        # API Gateway's authorizer cache: a verdict is reused for the same Authorization header
        if logical_id == AUTHORIZER_ID:
            key = built["headers"]["authorization"]
            verdicts.setdefault(key, invoke(logical_id, built))
            return verdicts[key]
        return invoke(logical_id, built)

    headers = [("host", "localhost"), ("authorization", f"Bearer {token}")]
    assert handle("GET", "/users", headers, b"", cached_run)["statusCode"] == 200
    assert api.post(f"/users/{user['id']}/deactivate", token=token).status == 200
    refused = handle("GET", "/users", headers, b"", cached_run)
    assert len(verdicts) == 1  # the second request was authorized from the cache
    assert refused["statusCode"] == 401
    assert json.loads(refused["body"])["error"]["code"] == "unauthorized"


def test_sign_out_everywhere_voids_every_token_of_the_user(api: Client) -> None:
    user, token = api.signup("leaver")
    other = api.post("/auth/token", {"login": "leaver", "password": PASSWORD}).body
    _, stranger = api.signup("stranger")
    _, admin = api.signup("boss", admin=True)
    # Nobody else may sign a user out; an unknown user is 404
    _error(api.post(f"/users/{user['id']}/sign-out", token=stranger), 403, "forbidden")
    _error(api.post(f"/users/{user['id'] + 999}/sign-out", token=admin), 404, "not_found")
    reply = api.post(f"/users/{user['id']}/sign-out", token=token)
    assert (reply.status, reply.text) == (204, "")
    for old in (token, other["access_token"]):
        _error(api.get("/users", token=old), 401, "unauthorized")
    fresh = api.post("/auth/token", {"login": "leaver", "password": PASSWORD}).body
    assert api.get("/users", token=fresh["access_token"]).status == 200
    # An admin may sign someone else out (a stolen device)
    assert api.post(f"/users/{user['id']}/sign-out", token=admin).status == 204
    _error(api.get("/users", token=fresh["access_token"]), 401, "unauthorized")


# --- sign-in slowing -----------------------------------------------------------------------------


GUESSER = "203.0.113.7"
OWNER = "198.51.100.20"
WRONG = "guess-guess"


def _sign_in(api: Client, login: str, password: str, client: str = GUESSER) -> Reply:
    return api.post("/auth/token", {"login": login, "password": password}, source_ip=client)


def _state(user_id: int, client: str = GUESSER) -> tuple[int, Any]:
    """Failures and pause end of the (account, client) row; (0, None) when there is none."""
    row = _sql(
        "SELECT coalesce(max(failures), 0), max(blocked_until) FROM sign_in_failures"
        " WHERE user_id = :id AND client = :client AND expires_at > now()",
        id=user_id,
        client=client,
    )
    return int(row[0]), row[1]


def _end_pauses(user_id: int) -> None:
    """Let time pass to the end of every pause of the account (the failures stay counted)."""
    _sql(
        "UPDATE sign_in_failures SET blocked_until = now() - interval '1 second'"
        " WHERE user_id = :id AND blocked_until IS NOT NULL",
        id=user_id,
    )


def _retry_after(reply: Reply) -> int:
    _error(reply, 429, "too_many_attempts")
    return int(reply.headers["retry-after"])


def test_sign_in_pauses_per_account_and_client_after_repeated_wrong_passwords(
    api: Client,
) -> None:
    from blog.config import get_settings

    free = get_settings().sign_in_free_attempts
    user, _ = api.signup("target")
    _, bystander = api.signup("bystander")
    # Given free - 1 wrong passwords from one client: each an ordinary 401, no pause yet
    for _ in range(free - 1):
        _error(_sign_in(api, "target", WRONG), 401, "unauthorized")
    assert _state(user["id"]) == (free - 1, None)
    # When the next one is wrong too, that client is paused: even the right password gets 429
    _error(_sign_in(api, "target", WRONG), 401, "unauthorized")
    failures, until = _state(user["id"])
    assert 1 <= _retry_after(_sign_in(api, "target@example.com", PASSWORD)) <= 2
    # And guessing during the pause neither counts nor makes the pause longer
    for _ in range(5):
        _error(_sign_in(api, "target", WRONG), 429, "too_many_attempts")
    assert _state(user["id"]) == (failures, until)
    # Other accounts sign in as ever
    assert _sign_in(api, "bystander", PASSWORD).status == 200
    assert api.get("/users", token=bystander).status == 200
    # The right password after the pause signs in and forgets that client's failures
    _end_pauses(user["id"])
    assert _sign_in(api, "target", PASSWORD).status == 200
    assert _state(user["id"]) == (0, None)


def test_a_guesser_is_slowed_while_the_owner_signs_in_from_another_client_at_once(
    api: Client,
) -> None:
    from blog.config import get_settings

    cap = get_settings().sign_in_max_pause_s
    free = get_settings().sign_in_free_attempts
    user, _ = api.signup("besieged")
    # Given a guesser who keeps guessing from one client, each pause ended by the clock
    pauses = []
    for _ in range(free - 1):
        _error(_sign_in(api, "besieged", WRONG), 401, "unauthorized")
    for _ in range(12):
        _error(_sign_in(api, "besieged", WRONG), 401, "unauthorized")
        pauses.append(_retry_after(_sign_in(api, "besieged", WRONG)))
        # Then, all the while, the owner from elsewhere signs in at once
        assert _sign_in(api, "besieged", PASSWORD, client=OWNER).status == 200
        _end_pauses(user["id"])
    # The guesser's pause doubles with each further wrong password, up to the cap
    expected = [min(2**n, cap) for n in range(12)]
    assert all(want <= got <= want + 1 for want, got in zip(expected, pauses, strict=True)), pauses
    # And however long it went on, one more wrong password pauses for the cap, not 2^1000000 s
    _sql(
        "UPDATE sign_in_failures SET failures = 1000000 WHERE user_id = :id AND client = :c",
        id=user["id"],
        c=GUESSER,
    )
    _error(_sign_in(api, "besieged", WRONG), 401, "unauthorized")
    assert cap - 5 <= _retry_after(_sign_in(api, "besieged", PASSWORD)) <= cap
    assert _sign_in(api, "besieged", PASSWORD, client=OWNER).status == 200
    # And a pause ends by itself: the guesser's client then gets through with the right password
    _end_pauses(user["id"])
    assert _sign_in(api, "besieged", PASSWORD).status == 200


def test_an_ipv6_client_is_one_client_across_its_64(api: Client) -> None:
    from blog.config import get_settings

    user, _ = api.signup("six")
    # Given wrong passwords from addresses all over one /64
    for n in range(get_settings().sign_in_free_attempts):
        _error(_sign_in(api, "six", WRONG, client=f"2001:db8:1:2::{n + 1:x}"), 401, "unauthorized")
    # Then any address of that /64 is paused, while the next /64 is not
    _retry_after(_sign_in(api, "six", PASSWORD, client="2001:db8:1:2:ffff:ffff:ffff:ffff"))
    assert _sign_in(api, "six", PASSWORD, client="2001:db8:1:3::1").status == 200
    assert _state(user["id"], "2001:db8:1:2::/64")[0] == get_settings().sign_in_free_attempts


def test_guessing_from_many_clients_meets_a_mild_account_wide_pause_with_a_small_cap(
    api: Client,
) -> None:
    from blog.config import get_settings

    settings = get_settings()
    account_free, account_cap = (
        settings.sign_in_account_free_attempts,
        settings.sign_in_account_max_pause_s,
    )
    assert account_cap <= 60  # the documented bound: never more than a minute
    user, _ = api.signup("swarmed")
    bots = [f"192.0.2.{n}" for n in range(1, account_free + 1)]
    # Given one wrong password from each of many clients: none of them paused on its own
    for bot in bots[:-1]:
        _error(_sign_in(api, "swarmed", WRONG, client=bot), 401, "unauthorized")
    assert _state(user["id"], "*")[1] is None
    _error(_sign_in(api, "swarmed", WRONG, client=bots[-1]), 401, "unauthorized")
    # Then the account-wide pause engages for every client that guessed before
    first = _retry_after(_sign_in(api, "swarmed", PASSWORD, client=bots[0]))
    assert 1 <= first <= 2
    # And however long the swarm goes on, the pause stays within its cap
    pauses = []
    for _ in range(10):
        _end_pauses(user["id"])
        _error(_sign_in(api, "swarmed", WRONG, client=bots[1]), 401, "unauthorized")
        pauses.append(_retry_after(_sign_in(api, "swarmed", WRONG, client=bots[2])))
    assert max(pauses) == account_cap, pauses
    assert all(1 <= p <= account_cap for p in pauses), pauses
    # And the owner signing in from a client of their own is not paused by it at all
    assert _sign_in(api, "swarmed", PASSWORD, client=OWNER).status == 200


def test_parallel_guesses_from_one_client_are_checked_one_at_a_time(
    committed_api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blog import services
    from blog.config import get_settings

    free = get_settings().sign_in_free_attempts
    user, _ = committed_api.signup("raced")
    # Given a password check slow enough for parallel requests to overlap it
    check = services.verify_password

    def slow_check(hashed: str, password: str) -> bool:
        time.sleep(0.3)
        return check(hashed, password)

    monkeypatch.setattr(services, "verify_password", slow_check)
    # When a guesser sends many wrong passwords at once, from one client
    count = 3 * free
    barrier = threading.Barrier(count)

    def guess(_: int) -> int:
        barrier.wait()
        return _sign_in(committed_api, "raced", WRONG).status

    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(guess, range(count)))
    # Then no more were checked than are free before the pause, the rest waited (429), and
    # every one checked was counted
    assert set(statuses) <= {401, 429}, statuses
    assert 1 <= statuses.count(401) <= free, statuses
    assert _state(user["id"])[0] == statuses.count(401)
    # And once the turn is over, the owner from elsewhere signs in as ever
    assert _sign_in(committed_api, "raced", PASSWORD, client=OWNER).status == 200


def test_wrong_current_passwords_are_slowed_like_sign_ins_of_the_caller(api: Client) -> None:
    from blog.config import get_settings

    user, token = api.signup("tokenthief")
    change = {"email": "mine@example.com", "current_password": WRONG}

    def patch(body: dict[str, Any], client: str = GUESSER) -> Reply:
        return api.request("PATCH", f"/users/{user['id']}", body, token=token, source_ip=client)

    # Given a stolen token guessing the current password from one client
    for _ in range(get_settings().sign_in_free_attempts):
        _error(patch(change), 403, "current_password_invalid")
    # Then that client is paused, for changes and sign-ins alike, even with the right password
    right = {**change, "current_password": PASSWORD}
    assert 1 <= _retry_after(patch(right)) <= 2
    _retry_after(_sign_in(api, "tokenthief", PASSWORD))
    # And the pause grows with each further wrong guess once it has ended
    _end_pauses(user["id"])
    _error(patch(change), 403, "current_password_invalid")
    assert 2 <= _retry_after(patch(change)) <= 3
    # While the owner, elsewhere, signs in and changes their email
    assert _sign_in(api, "tokenthief", PASSWORD, client=OWNER).status == 200
    changed = patch(right, client=OWNER)
    assert changed.status == 200, changed.text
    assert changed.body["email"] == "mine@example.com"


def test_expired_sign_in_failures_are_forgotten_and_purged(api: Client) -> None:
    from blog import services
    from blog.config import get_settings

    user, _ = api.signup("forgetful")
    free = get_settings().sign_in_free_attempts
    for _ in range(free):
        _error(_sign_in(api, "forgetful", WRONG), 401, "unauthorized")
    _retry_after(_sign_in(api, "forgetful", PASSWORD))
    # Given rows whose window has passed
    _sql(
        "UPDATE sign_in_failures SET expires_at = now() - interval '1 second',"
        " blocked_until = now() - interval '2 seconds' WHERE user_id = :id",
        id=user["id"],
    )
    # Then they no longer count: one more wrong password starts again from one
    _error(_sign_in(api, "forgetful", WRONG), 401, "unauthorized")
    assert _state(user["id"]) == (1, None)
    # And the purge deletes the expired ones (the account-wide row here) and keeps the live one
    _sql(
        "UPDATE sign_in_failures SET expires_at = now() - interval '1 second'"
        " WHERE user_id = :id AND client = '*'",
        id=user["id"],
    )
    assert services.purge_sign_in_failures(batch=1) == 1
    left = _sql("SELECT array_agg(client) FROM sign_in_failures WHERE user_id = :id", id=user["id"])
    assert left[0] == [GUESSER]


# --- privacy -------------------------------------------------------------------------------------


PRIVATE_FIELDS = {"email", "is_admin"}


def test_emails_are_shown_only_to_their_owner_and_to_admins(api: Client) -> None:
    alice, alice_token = api.signup("alice")
    _, bob_token = api.signup("bob")
    _, admin_token = api.signup("boss", admin=True)
    # Bob sees Alice without email or role; Alice and an admin see all of it
    seen_by_bob = api.get(f"/users/{alice['id']}", token=bob_token).body
    assert not PRIVATE_FIELDS & set(seen_by_bob), seen_by_bob
    assert seen_by_bob["username"] == "alice"
    for token in (alice_token, admin_token):
        seen = api.get(f"/users/{alice['id']}", token=token).body
        assert seen["email"] == "alice@example.com"
        assert seen["is_admin"] is False
    # In the list, Bob sees only his own email; the admin sees everyone's
    listed = api.get("/users?page_size=100", token=bob_token).body["items"]
    assert [u.get("email") for u in listed if "email" in u] == ["bob@example.com"]
    by_admin = api.get("/users?page_size=100", token=admin_token).body["items"]
    assert all("email" in u for u in by_admin) and len(by_admin) == 3
    # No response to anyone carries the email of another user in any field
    assert "alice@example.com" not in api.get("/users", token=bob_token).text


def test_every_response_is_nosniff_and_private_ones_are_not_stored(api: Client) -> None:
    user, token = api.signup("headers")
    post = api.post("/posts", {"title": "t", "content": "c"}, token=token).body
    api.post(f"/posts/{post['id']}/publish", token=token)
    private = [
        api.post("/auth/token", {"login": "headers", "password": PASSWORD}),
        api.post("/auth/token", {"login": "headers", "password": "wrong-pass"}),
        api.get(f"/users/{user['id']}", token=token),
        api.get("/users", token=token),
        api.post("/users", {"email": "n@example.com", "username": "newbie", "password": PASSWORD}),
        api.get(f"/posts/{post['id']}", token=token),
        api.post("/posts", raw=b"{", token=token),  # refused before routing
        api.request(
            "POST", "/posts", raw=b"{}", token=token, headers={"content-type": "text/plain"}
        ),
    ]
    for reply in private:
        assert reply.headers["x-content-type-options"] == "nosniff", reply
        assert reply.headers["cache-control"] == "no-store", reply
    # The gateway's own answers (no token, no route) are nosniff too
    for reply in (api.post("/posts", {"title": "t"}), api.get("/nowhere")):
        assert reply.status in {401, 404}
        assert reply.headers["x-content-type-options"] == "nosniff", reply
    public = [api.get("/posts"), api.get(f"/posts/{post['id']}")]
    for reply in public:
        assert reply.status == 200
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert "cache-control" not in reply.headers  # a public read may be cached


# --- transfers -----------------------------------------------------------------------------------


def test_posts_cannot_be_transferred_to_a_deactivated_user(api: Client) -> None:
    source, source_token = api.signup("source")
    gone, gone_token = api.signup("gone")
    _, admin = api.signup("boss", admin=True)
    api.post("/posts", {"title": "t", "content": "c"}, token=source_token)
    assert api.post(f"/users/{gone['id']}/deactivate", token=gone_token).status == 200
    path = f"/users/{source['id']}/posts/transfer"
    problem = _error(api.post(path, {"to_user_id": gone["id"]}, token=admin), 409, "user_inactive")
    assert problem["details"] == {"field": "to_user_id"}
    assert _sql("SELECT count(*) FROM posts WHERE author_id = :id", id=gone["id"])[0] == 0
    # Moving posts off a deactivated account is what transfers are for
    back = api.post(
        f"/users/{gone['id']}/posts/transfer", {"to_user_id": source["id"]}, token=admin
    )
    assert (back.status, back.body) == (200, {"moved": 0})


# --- UTF-8 out -----------------------------------------------------------------------------------


def test_non_ascii_text_goes_out_as_utf8_not_escapes(api: Client) -> None:
    _, token = api.signup("writer")
    title = "Grüße, 世界 🌍"
    content = "é" * 1000
    created = api.post("/posts", {"title": title, "content": content}, token=token)
    assert created.status == 201
    assert title in created.text and "\\u" not in created.text
    # Each é costs its two UTF-8 bytes, not the six of \u00e9
    assert len(created.text.encode()) < 2 * len(content) + 500
    # Errors too
    reply = api.patch(f"/posts/{created.body['id']}", {"title": "ü" * 201}, token=token)
    assert reply.status == 422 and "\\u" not in reply.text
