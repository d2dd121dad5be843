"""No lost updates: ETag on single users and posts, If-Match on PATCH and DELETE (412 stale,
428 when an admin changes someone else's resource without one), If-None-Match on GET (304)."""

from __future__ import annotations

import threading

import pytest

from blog import services
from blog.errors import PreconditionFailedError
from blog.preconditions import parse
from blog.services import Actor
from tests.e2e.conftest import Client
from tests.factories import make_post, make_user


def _draft(api: Client, token: str) -> dict[str, object]:
    reply = api.post("/posts", {"title": "First", "content": "draft"}, token=token)
    assert reply.status == 201
    assert reply.headers["etag"] == '"v1"'
    return reply.body


def test_every_write_gives_a_post_a_new_etag(api: Client) -> None:
    _, token = api.signup("writer")
    post = _draft(api, token)
    path = f"/posts/{post['id']}"
    assert api.get(path, token=token).headers["etag"] == '"v1"'
    assert api.patch(path, {"title": "Second"}, token=token).headers["etag"] == '"v2"'
    assert api.post(f"{path}/publish", token=token).headers["etag"] == '"v3"'
    assert api.get(path).headers["etag"] == '"v3"'


def test_stale_if_match_is_412_and_the_post_is_unchanged(api: Client) -> None:
    # Given two editors who read the same version
    _, token = api.signup("editor")
    post = _draft(api, token)
    path = f"/posts/{post['id']}"
    read = api.get(path, token=token)
    # When the first saves, and then the second, with the tag each read
    first = api.patch(
        path, {"title": "Mine"}, token=token, headers={"If-Match": read.headers["etag"]}
    )
    second = api.patch(
        path, {"title": "Theirs"}, token=token, headers={"If-Match": read.headers["etag"]}
    )
    # Then the second is refused, told the current tag, and the first edit stands
    assert first.status == 200
    assert second.status == 412
    assert second.body["error"]["code"] == "precondition_failed"
    assert second.body["error"]["details"] == {"etag": first.headers["etag"]}
    after = api.get(path, token=token)
    assert after.body == first.body
    assert after.headers["etag"] == first.headers["etag"]


def test_current_if_match_or_any_lets_the_edit_through(api: Client) -> None:
    _, token = api.signup("fresh")
    post = _draft(api, token)
    path = f"/posts/{post['id']}"
    assert api.patch(path, {"title": "A"}, token=token, headers={"If-Match": '"v1"'}).status == 200
    assert (
        api.patch(path, {"title": "B"}, token=token, headers={"If-Match": '"v0", "v2"'}).status
        == 200
    )
    assert api.patch(path, {"title": "C"}, token=token, headers={"If-Match": "*"}).status == 200
    weak = api.patch(path, {"title": "D"}, token=token, headers={"If-Match": 'W/"v4"'})
    assert weak.status == 412
    assert api.get(path, token=token).body["title"] == "C"


def test_stale_if_match_on_delete_is_412_and_the_post_stays(api: Client) -> None:
    _, token = api.signup("keeper")
    post = _draft(api, token)
    path = f"/posts/{post['id']}"
    api.patch(path, {"title": "moved on"}, token=token)
    refused = api.delete(path, token=token, headers={"If-Match": '"v1"'})
    assert (refused.status, refused.body["error"]["code"]) == (412, "precondition_failed")
    assert api.get(path, token=token).status == 200
    assert api.delete(path, token=token, headers={"If-Match": '"v2"'}).status == 204


def test_admin_changing_someone_elses_post_needs_if_match(api: Client) -> None:
    _, author = api.signup("author")
    _, admin = api.signup("moderator", admin=True)
    post = _draft(api, author)
    path = f"/posts/{post['id']}"
    for reply in (
        api.patch(path, {"title": "moderated"}, token=admin),
        api.delete(path, token=admin),
    ):
        assert (reply.status, reply.body["error"]["code"]) == (428, "precondition_required")
    assert api.get(path, token=author).body["title"] == "First"
    # The author need not send one (their own edits: last write wins)
    assert api.patch(path, {"title": "own"}, token=author).status == 200
    assert (
        api.patch(path, {"title": "moderated"}, token=admin, headers={"If-Match": '"v2"'}).status
        == 200
    )


def test_user_etag_and_preconditions(api: Client) -> None:
    user, token = api.signup("account")
    _, admin = api.signup("root", admin=True)
    path = f"/users/{user['id']}"
    read = api.get(path, token=token)
    assert read.headers["etag"] == '"v1"'
    assert api.patch(path, {"username": "renamed"}, token=token).headers["etag"] == '"v2"'
    # An admin without If-Match, or with the stale tag, changes nothing
    no_tag = api.patch(path, {"username": "taken-over"}, token=admin)
    stale = api.patch(path, {"username": "taken-over"}, token=admin, headers={"If-Match": '"v1"'})
    gone = api.delete(path, token=admin, headers={"If-Match": '"v1"'})
    assert [no_tag.status, stale.status, gone.status] == [428, 412, 412]
    assert api.get(path, token=token).body["username"] == "renamed"
    assert api.post(f"{path}/deactivate", token=token).headers["etag"] == '"v3"'
    assert api.delete(path, token=admin, headers={"If-Match": '"v3"'}).status == 204


def test_if_none_match_with_the_current_tag_is_304_without_a_body(api: Client) -> None:
    user, token = api.signup("reader")
    post = _draft(api, token)
    api.post(f"/posts/{post['id']}/publish", token=token)
    for path in (f"/posts/{post['id']}", f"/users/{user['id']}"):
        current = api.get(path, token=token).headers["etag"]
        cached = api.get(path, token=token, headers={"If-None-Match": current})
        assert (cached.status, cached.text) == (304, "")
        assert cached.headers["etag"] == current
        assert "content-type" not in cached.headers
        weak = api.get(path, token=token, headers={"If-None-Match": f"W/{current}"})
        assert weak.status == 304
        stale = api.get(path, token=token, headers={"If-None-Match": '"v0"'})
        assert (stale.status, stale.headers["etag"]) == (200, current)


def test_if_none_match_does_not_reveal_a_draft(api: Client) -> None:
    _, token = api.signup("secretive")
    post = _draft(api, token)
    reply = api.get(f"/posts/{post['id']}", headers={"If-None-Match": "*"})
    assert reply.status == 404


@pytest.mark.usefixtures("committed_db")
def test_racing_edits_with_the_same_if_match_have_one_winner() -> None:
    # Given two editors holding version 1 of a post, saving at the same moment
    author = make_user()
    post = make_post(author)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def edit(title: str) -> None:
        barrier.wait()
        try:
            services.update_post(
                post.id, actor=Actor(user_id=author.id), title=title, if_match=parse('"v1"')
            )
            outcomes.append("saved")
        except PreconditionFailedError:
            outcomes.append("412")

    threads = [threading.Thread(target=edit, args=(t,)) for t in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one saves and the other is told the post changed; the post is at version 2
    assert sorted(outcomes) == ["412", "saved"]
    stored = services.get_post(post.id, actor=Actor(user_id=author.id))
    assert stored.version == 2
    assert stored.title in ("one", "two")
