"""Safe retries: POST with an Idempotency-Key does its work once per key of the caller; retries
get the first answer (status, body, Location, ETag); another request with the key is a 422."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from blog import db
from local.functions import REPO
from tests.e2e.conftest import Client, Http, Reply


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _count(table: str) -> int:
    with db.transaction() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def test_a_retry_with_the_same_key_gets_the_first_answer_without_a_second_post(
    api: Client,
) -> None:
    # Given a client that sends a post with a key, and (its answer lost) sends it again
    _, token = api.signup("retrier")
    key = _key()
    body = {"title": "Once", "content": "only once"}
    first = api.post("/posts", body, token=token, headers=key)
    # When it retries, even with its JSON written differently
    again = api.post(
        "/posts", token=token, headers=key, raw=b'{ "content": "only once", "title": "Once" }'
    )
    # Then it gets the first answer again, marked as replayed, and there is one post
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count("posts") == 1


def test_the_same_key_with_another_body_is_422_and_does_nothing(api: Client) -> None:
    _, token = api.signup("mixer")
    key = _key()
    assert (
        api.post("/posts", {"title": "A", "content": "a"}, token=token, headers=key).status == 201
    )
    reused = api.post("/posts", {"title": "B", "content": "b"}, token=token, headers=key)
    assert (reused.status, reused.body["error"]["code"]) == (422, "idempotency_key_reused")
    assert _count("posts") == 1


def test_the_same_key_on_another_route_is_422(api: Client) -> None:
    _, token = api.signup("router")
    key = _key()
    post = api.post("/posts", {"title": "A", "content": "a"}, token=token, headers=key).body
    reused = api.post(f"/posts/{post['id']}/publish", token=token, headers=key)
    assert (reused.status, reused.body["error"]["code"]) == (422, "idempotency_key_reused")
    assert api.get(f"/posts/{post['id']}", token=token).body["published"] is False


def test_keys_are_scoped_to_the_caller(api: Client) -> None:
    _, ann = api.signup("ann")
    _, bob = api.signup("bob")
    key = _key()
    body = {"title": "Same", "content": "same"}
    mine = api.post("/posts", body, token=ann, headers=key)
    theirs = api.post("/posts", body, token=bob, headers=key)
    assert (mine.status, theirs.status) == (201, 201)
    assert mine.body["id"] != theirs.body["id"]
    assert "idempotent-replayed" not in theirs.headers


def test_a_failed_request_keeps_nothing_so_its_retry_does_the_work(api: Client) -> None:
    # Given a registration refused because the email is taken
    api.signup("taken")
    key = _key()
    body = {"email": "taken@example.com", "username": "newcomer", "password": "password-123"}
    assert api.post("/users", body, headers=key).status == 409
    assert _count("idempotency_keys") == 0
    # When the client retries with the same key, the work is done again (and refused again)
    assert api.post("/users", body, headers=key).status == 409
    # And a corrected request may use the key, since nothing was kept for it
    fixed = {**body, "email": "newcomer@example.com"}
    assert api.post("/users", fixed, headers=key).status == 201


def test_anonymous_registration_replays_only_the_very_same_body(api: Client) -> None:
    key = _key()
    body = {"email": "reg@example.com", "username": "reg", "password": "password-123"}
    first = api.post("/users", body, headers=key)
    again = api.post("/users", body, headers=key)
    other_password = api.post("/users", {**body, "password": "password-456"}, headers=key)
    assert (first.status, again.status, again.body) == (201, 201, first.body)
    assert other_password.status == 422
    # What is kept holds neither the password nor a fast hash of it
    with db.transaction() as conn:
        kept = conn.execute(text("SELECT fingerprint, body FROM idempotency_keys")).one()
    assert "password-123" not in kept.body
    assert "password-123" not in kept.fingerprint


def test_a_transfer_retried_reports_what_the_first_moved(api: Client) -> None:
    source, source_token = api.signup("source")
    target, _ = api.signup("target")
    _, admin = api.signup("admin", admin=True)
    for n in range(2):
        api.post("/posts", {"title": f"t{n}", "content": "c"}, token=source_token)
    key = _key()
    path = f"/users/{source['id']}/posts/transfer"
    first = api.post(path, {"to_user_id": target["id"]}, token=admin, headers=key)
    again = api.post(path, {"to_user_id": target["id"]}, token=admin, headers=key)
    assert first.body == again.body == {"moved": 2}
    # Without the key, the second transfer really runs again, and finds nothing to move
    assert api.post(path, {"to_user_id": target["id"]}, token=admin).body == {"moved": 0}


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "has space", "tab\there", "é"],
    ids=["empty", "long", "space", "tab", "non-ascii"],
)
def test_a_malformed_key_is_422_and_does_nothing(api: Client, key: str) -> None:
    _, token = api.signup("malformed")
    reply = api.post(
        "/posts", {"title": "t", "content": "c"}, token=token, headers={"Idempotency-Key": key}
    )
    assert reply.status == 422, reply.text
    assert reply.body["error"]["details"][0]["in"] == "header"
    assert _count("posts") == 0


def test_an_expired_key_is_taken_anew(api: Client) -> None:
    _, token = api.signup("later")
    key = _key()
    api.post("/posts", {"title": "A", "content": "a"}, token=token, headers=key)
    with db.transaction() as conn:
        conn.execute(text("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'"))
    later = api.post("/posts", {"title": "B", "content": "b"}, token=token, headers=key)
    assert later.status == 201
    assert "idempotent-replayed" not in later.headers
    assert _count("posts") == 2


def test_the_scheduled_purge_deletes_expired_keys_only(api: Client) -> None:
    from local.gateway import invoke

    _, token = api.signup("purger")
    for _ in range(3):
        api.post("/posts", {"title": "t", "content": "c"}, token=token, headers=_key())
    with db.transaction() as conn:
        conn.execute(
            text(
                "UPDATE idempotency_keys SET expires_at = :past"
                " WHERE key IN (SELECT key FROM idempotency_keys LIMIT 2)"
            ),
            {"past": datetime.now(UTC) - timedelta(hours=1)},
        )
    scheduled = json.loads((REPO / "events" / "purge_idempotency_keys.json").read_text())
    assert invoke("PurgeIdempotencyKeysFunction", scheduled) == {
        "deleted": 2,
        "sign_in_failures_deleted": 0,
    }
    assert _count("idempotency_keys") == 1


# --- racing duplicates, on real commits -------------------------------------------------------


def _race(count: int, send: Any) -> list[Any]:
    """``send(i)`` from ``count`` threads released at once; their results in order."""
    barrier = threading.Barrier(count)
    replies: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        replies[i] = send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return replies


def test_racing_duplicates_with_one_key_create_one_post(committed_api: Client) -> None:
    # Given eight copies of one request with one key, sent at the same moment (threads of one
    # process, each request on its own connection)
    _, token = committed_api.signup("racer")
    key = _key()
    body = {"title": "Raced", "content": "eight times"}
    replies: list[Reply] = _race(
        8, lambda _: committed_api.post("/posts", body, token=token, headers=key)
    )
    # Then one did the work and the seven others waited for it and got its answer
    assert {r.status for r in replies} == {201}
    assert len({r.body["id"] for r in replies}) == 1
    assert Counter(r.headers.get("idempotent-replayed") for r in replies) == {None: 1, "true": 7}
    assert _count("posts") == 1


def test_racing_registrations_with_one_key_create_one_user(committed_api: Client) -> None:
    key = _key()
    body = {"email": "once@example.com", "username": "once", "password": "password-123",
            "welcome_post": True}  # fmt: skip
    replies: list[Reply] = _race(6, lambda _: committed_api.post("/users", body, headers=key))
    assert {r.status for r in replies} == {201}
    assert len({r.body["id"] for r in replies}) == 1
    assert (_count("users"), _count("posts")) == (1, 1)


def test_racing_duplicates_over_http_across_worker_processes_create_one_post(http: Http) -> None:
    # The gateway as make local runs it: two worker processes for the function, each its own
    # connection; the requests race across them
    _, token = http.user()
    key = _key()
    body = {"title": "Across processes", "content": "six times"}
    replies = _race(6, lambda _: http.call("POST", "/posts", body, token=token, headers=key))
    assert {r.status for r in replies} == {201}
    ids = {r.body["id"] for r in replies}
    assert len(ids) == 1
    engine = create_engine(http.database_url, poolclass=NullPool)
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM posts WHERE title = 'Across processes'")
        ).scalar_one()
    engine.dispose()
    assert count == 1
