"""Lists by keyset: cursors that survive concurrent writes, refuse what is not theirs, totals that
switch from exact to estimated, shallow page numbers, search that needs a trigram, and the size
of the largest page. Each call goes through the function's own ``lambda_handler``."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import text

from blog import db as layer_db
from blog.domain import CONTENT_MAX, EMAIL_MAX, TITLE_MAX, USERNAME_MAX
from blog.pagination import CURSOR_VERSION, encode_cursor
from blog.records import PostRecord, UserRecord
from blog.repositories import MAX_OFFSET, TOTAL_EXACT_MAX
from blog.schemas import EXCERPT_CHARS
from local.functions import REPO, functions, load_handler
from local.gateway import LambdaContext
from tests.factories import make_post, make_user

EVENTS = REPO / "events"
FUNCTIONS = {
    "/posts": ("list_posts", "ListPostsFunction"),
    "/users": ("list_users", "ListUsersFunction"),
}
#: Lambda's limit on a synchronous response (payload), which no page may approach.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def get(path: str, as_user: int | None = None, **query: Any) -> dict[str, Any]:
    """GET ``path`` with ``query`` through its function, as API Gateway would call it."""
    if path.startswith("/users/") and path.endswith("/posts"):
        sample, logical_id = "list_user_posts", "ListUserPostsFunction"
        event = json.loads((EVENTS / f"{sample}.json").read_text())
        event["pathParameters"] = {"user_id": path.split("/")[2]}
    else:
        sample, logical_id = FUNCTIONS[path]
        event = json.loads((EVENTS / f"{sample}.json").read_text())
    params = {k: str(v) for k, v in query.items()}
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(params)
    event["queryStringParameters"] = params or None
    if "authorizer" in event["requestContext"]:
        context = {"user_id": as_user, "token_version": 0, "expires_at": 2**31}
        event["requestContext"]["authorizer"]["lambda"] = context
    event["headers"].pop("authorization", None)
    handler = load_handler(functions()[logical_id])
    reply: dict[str, Any] = handler(event, LambdaContext(logical_id))
    reply["json"] = json.loads(reply["body"])
    return reply


def walk(path: str, as_user: int | None = None, **query: Any) -> list[dict[str, Any]]:
    """Every page of a list, following ``next_cursor`` from the first."""
    pages = [get(path, as_user, **query)]
    while (cursor := pages[-1]["json"]["next_cursor"]) is not None:
        assert len(pages) < 1000
        pages.append(get(path, as_user, **{**query, "cursor": cursor}))
    return pages


def ids(reply: dict[str, Any]) -> list[int]:
    return [item["id"] for item in reply["json"]["items"]]


def assert_error(reply: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    assert reply["statusCode"] == status, reply["body"]
    assert set(reply["json"]) == {"error"}
    error: dict[str, Any] = reply["json"]["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def published_posts(count: int, **values: Any) -> tuple[UserRecord, list[PostRecord]]:
    author = make_user()
    return author, [make_post(author, published=True, **values) for _ in range(count)]


def insert_posts(author_id: int, count: int, *, published: bool = True) -> None:
    """``count`` posts in one statement (for counts a factory would take long to make)."""
    with layer_db.transaction() as conn:
        conn.execute(
            text(
                "INSERT INTO posts (title, content, published, author_id)"
                " SELECT 'Bulk ' || n, 'Bulk content ' || n, :published, :author"
                " FROM generate_series(1, :count) AS n"
            ),
            {"author": author_id, "count": count, "published": published},
        )


# --- walking by cursor ---------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_following_next_cursor_visits_every_published_post_once_newest_first() -> None:
    # Given 25 published posts (created in one transaction: equal created_at, so id breaks ties)
    # and a draft
    author, posts = published_posts(25)
    make_post(author)
    # When the feed is walked 10 at a time
    pages = walk("/posts", page_size=10)
    # Then every published post comes exactly once, newest first, in three pages
    assert [len(ids(p)) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in ids(p)] == sorted((p.id for p in posts), reverse=True)
    assert [p["json"]["page"] for p in pages] == [1, None, None]
    assert all(p["json"]["total"] == 25 and p["json"]["total_exact"] for p in pages)


@pytest.mark.usefixtures("db")
def test_the_link_header_points_at_the_next_page_with_the_same_filters() -> None:
    published_posts(3, title="Serverless notes")
    first = get("/posts", q="serverless", page_size=2)
    link = first["headers"]["Link"]
    assert link.endswith('>; rel="next"')
    target = urlsplit(link[1 : link.index(">")])
    assert target.path == "/posts"
    assert parse_qs(target.query) == {
        "q": ["serverless"],
        "page_size": ["2"],
        "cursor": [first["json"]["next_cursor"]],
    }
    last = get("/posts", q="serverless", page_size=2, cursor=first["json"]["next_cursor"])
    assert len(ids(last)) == 1
    assert last["json"]["next_cursor"] is None
    assert "Link" not in (last.get("headers") or {})


@pytest.mark.usefixtures("db")
def test_rows_inserted_and_deleted_between_pages_skip_nothing_and_repeat_nothing() -> None:
    # Given 30 published posts, and the first page of 10 read
    author, posts = published_posts(30)
    newest_first = sorted((p.id for p in posts), reverse=True)
    first = get("/posts", page_size=10)
    assert ids(first) == newest_first[:10]
    # When, before the next page, new posts appear at the top, a post already seen and one not yet
    # seen are deleted, and an old draft is published (it sorts among the unseen rows)
    new = [make_post(author, published=True).id for _ in range(5)]
    draft = make_post(author)
    with layer_db.transaction() as conn:
        conn.execute(
            text("DELETE FROM posts WHERE id IN (:seen, :unseen)"),
            {"seen": newest_first[3], "unseen": newest_first[15]},
        )
        conn.execute(
            text(
                "UPDATE posts SET published = true, created_at = created_at - interval '1 day'"
                " WHERE id = :id"
            ),
            {"id": draft.id},
        )
    rest = walk("/posts", page_size=10, cursor=first["json"]["next_cursor"])
    # Then the rest holds every unseen post exactly once, in order, and nothing seen or new again
    seen = ids(first)
    later = [i for page in rest for i in ids(page)]
    expected = [i for i in newest_first[10:] if i != newest_first[15]] + [draft.id]
    assert later == expected
    assert not set(later) & (set(seen) | set(new))


@pytest.mark.usefixtures("db")
def test_users_and_a_users_posts_are_walked_by_cursor_too() -> None:
    users = [make_user() for _ in range(7)]
    author = users[0]
    posts = [make_post(author, published=n % 2 == 0) for n in range(9)]
    everyone = walk("/users", as_user=author.id, page_size=3)
    assert [i for p in everyone for i in ids(p)] == [u.id for u in users]
    mine = walk(f"/users/{author.id}/posts", as_user=author.id, page_size=2, include_drafts="true")
    assert [i for p in mine for i in ids(p)] == sorted((p.id for p in posts), reverse=True)
    public = walk(f"/users/{author.id}/posts", as_user=users[1].id, page_size=2)
    assert [i for p in public for i in ids(p)] == sorted(
        (p.id for p in posts if p.published), reverse=True
    )


# --- cursors that are not for this list ----------------------------------------------------------


def _forged(document: dict[str, Any]) -> str:
    """A cursor built as the API builds them, with a valid checksum, around ``document``."""
    payload = json.dumps(document, separators=(",", ":")).encode()
    checksum = hashlib.blake2b(payload, digest_size=6).digest()
    return base64.urlsafe_b64encode(checksum + payload).rstrip(b"=").decode()


def _scope(scope: str) -> str:
    return hashlib.blake2b(scope.encode(), digest_size=8).hexdigest()


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered", "checksum"),
        ("truncated", "checksum"),
        ("not base64", "malformed"),
        ("from GET /users", "other_list"),
        ("from another search", "other_list"),
        ("from an older version", "stale"),
        ("key of the wrong type", "malformed"),
        ("id out of range", "malformed"),
        ("naive timestamp", "malformed"),
        ("not an object", "malformed"),
    ],
)
def test_a_cursor_not_issued_for_this_list_is_a_400(case: str, reason: str) -> None:
    published_posts(3, title="Serverless notes")
    caller = make_user()  # a second user: GET /users has a next page too
    good = get("/posts", q="serverless", page_size=1)["json"]["next_cursor"]
    key = ["2026-01-01T00:00:00+00:00", 5]
    scope = _scope("posts?q=serverless")
    cursor = {
        "tampered": good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1],
        "truncated": good[:-3],
        "not base64": "!!not*base64!!",
        "from GET /users": get("/users", as_user=caller.id, page_size=1)["json"]["next_cursor"],
        "from another search": get("/posts", q="notes", page_size=1)["json"]["next_cursor"],
        "from an older version": _forged({"v": CURSOR_VERSION - 1, "s": scope, "k": key}),
        "key of the wrong type": _forged({"v": CURSOR_VERSION, "s": scope, "k": [5, 5]}),
        "id out of range": _forged({"v": CURSOR_VERSION, "s": scope, "k": [key[0], 2**40]}),
        "naive timestamp": _forged(
            {"v": CURSOR_VERSION, "s": scope, "k": ["2026-01-01T00:00:00", 5]}
        ),
        "not an object": _forged([1, 2]),  # type: ignore[arg-type]
    }[case]
    assert cursor  # every case has one to send
    reply = get("/posts", q="serverless", cursor=cursor)
    error = assert_error(reply, 400, "invalid_cursor")
    assert error["details"] == {"in": "query", "field": "cursor", "reason": reason}


@pytest.mark.usefixtures("db")
def test_a_cursor_longer_than_any_the_api_issues_is_refused_by_validation() -> None:
    error = assert_error(get("/posts", cursor="A" * 300), 422, "validation_error")
    assert error["details"][0]["field"] == "cursor"


@pytest.mark.usefixtures("db")
def test_a_cursor_of_another_authors_posts_is_refused() -> None:
    one, two = make_user(), make_user()
    for _ in range(2):
        make_post(one, published=True)
        make_post(two, published=True)
    cursor = get(f"/users/{one.id}/posts", as_user=one.id, page_size=1)["json"]["next_cursor"]
    reply = get(f"/users/{two.id}/posts", as_user=one.id, cursor=cursor)
    assert assert_error(reply, 400, "invalid_cursor")["details"]["reason"] == "other_list"
    with_drafts = get(
        f"/users/{one.id}/posts", as_user=one.id, include_drafts="true", cursor=cursor
    )
    assert_error(with_drafts, 400, "invalid_cursor")


@pytest.mark.usefixtures("db")
def test_cursor_and_page_together_are_a_422() -> None:
    published_posts(2)
    cursor = get("/posts", page_size=1)["json"]["next_cursor"]
    assert_error(get("/posts", page=2, cursor=cursor), 422, "validation_error")


def test_an_encoded_cursor_holds_no_more_than_its_position() -> None:
    cursor = encode_cursor("posts?q=" + "x" * 200, (10**9,))
    assert len(cursor) < 100  # the scope travels as a digest: a long q makes no long cursor


# --- page numbers --------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_page_numbers_work_for_shallow_pages_and_stop_at_the_offset_cap() -> None:
    author, _posts = published_posts(1)
    insert_posts(author.id, 30)
    by_number = [ids(get("/posts", page=n, page_size=10)) for n in (1, 2, 3, 4)]
    by_cursor = [ids(p) for p in walk("/posts", page_size=10)]
    assert by_number == by_cursor
    last_page = MAX_OFFSET // 10 + 1
    assert get("/posts", page=last_page, page_size=10)["statusCode"] == 200
    error = assert_error(get("/posts", page=last_page + 1, page_size=10), 422, "validation_error")
    assert "next_cursor" in error["message"]


# --- totals --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_the_total_is_exact_up_to_the_bound_then_an_estimate_said_to_be_one() -> None:
    # Given exactly as many published posts as are counted exactly
    author = make_user()
    insert_posts(author.id, TOTAL_EXACT_MAX)
    insert_posts(author.id, 50, published=False)
    at_bound = get("/posts", page_size=5)["json"]
    assert (at_bound["total"], at_bound["total_exact"]) == (TOTAL_EXACT_MAX, True)
    # When one more is published
    insert_posts(author.id, 1)
    past = get("/posts", page_size=5)["json"]
    # Then the total is an estimate, and says so; it never claims fewer rows than were counted
    assert past["total_exact"] is False
    assert past["total"] > TOTAL_EXACT_MAX
    assert len(past["items"]) == 5
    # And filtered lists past the bound switch the same way: a user's posts, a search
    by_author = get(f"/users/{author.id}/posts", as_user=author.id, page_size=5)["json"]
    assert by_author["total_exact"] is False
    found = get("/posts", q="bulk content", page_size=5)["json"]
    assert (found["total_exact"], len(found["items"])) == (False, 5)
    assert found["total"] > TOTAL_EXACT_MAX
    assert get("/posts", q="bulk content 1000", page_size=5)["json"]["total"] == 1


# --- search --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize("q", ["ab", "a b c", "%%%", "_\\%", "  x  "])
def test_a_search_without_three_letters_or_digits_in_a_row_is_a_422(q: str) -> None:
    published_posts(1, title="ab a b c %%% _\\%")
    error = assert_error(get("/posts", q=q), 422, "validation_error")
    assert "q" in json.dumps(error)


@pytest.mark.usefixtures("db")
def test_a_search_keeps_wildcards_literal_and_ignores_case() -> None:
    _author, posts = published_posts(1, title="Save 50%_off\\now")
    published_posts(1, title="Save 50 percent off now")
    assert ids(get("/posts", q="50%_OFF\\")) == [posts[0].id]
    assert ids(get("/posts", q="xylophone")) == []


# --- list items ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_list_items_carry_an_excerpt_not_the_content() -> None:
    author = make_user()
    long = make_post(author, published=True, content="word " * 1000)
    short = make_post(author, published=True, content="Short and sweet.")
    items = {item["id"]: item for item in get("/posts")["json"]["items"]}
    assert "content" not in items[long.id]
    assert items[short.id]["excerpt"] == "Short and sweet."
    excerpt = items[long.id]["excerpt"]
    assert len(excerpt) <= EXCERPT_CHARS
    assert excerpt.endswith("\u2026")
    assert long.content.startswith(excerpt[:-1].rstrip())


@pytest.mark.usefixtures("db")
def test_the_largest_possible_page_stays_far_below_lambdas_response_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the largest posts there can be, all of 4-byte characters, a full page of them
    author = make_user()
    with layer_db.transaction() as conn:
        conn.execute(
            text(
                "INSERT INTO posts (title, content, published, author_id)"
                " SELECT repeat(:char, :title_max), repeat(:char, :content_max), true, :author"
                " FROM generate_series(1, 100)"
            ),
            {
                "char": "\U0001f600",
                "title_max": TITLE_MAX,
                "content_max": CONTENT_MAX,
                "author": author.id,
            },
        )
        # And a page of users with the longest usernames (4-byte characters) and emails, seen
        # by an admin (who sees the emails)
        conn.execute(
            text(
                "INSERT INTO users (username, email, hashed_password)"
                " SELECT repeat(:char, :username_max - 4) || lpad(n::text, 4, '0'),"
                " lpad(n::text, 64, 'a') || '@' || repeat('b', :email_max - 69) || '.com', 'x'"
                " FROM generate_series(1, 100) AS n"
            ),
            {"char": "\U0001f600", "username_max": USERNAME_MAX, "email_max": EMAIL_MAX},
        )
    admin = make_user(is_admin=True)
    # When the largest page is asked for, of every list
    replies = {
        "GET /posts": get("/posts", page_size=100),
        "GET /users/{id}/posts": get(
            f"/users/{author.id}/posts", as_user=author.id, page_size=100, include_drafts="true"
        ),
        "GET /users": get("/users", as_user=admin.id, page_size=100),
    }
    # Then each holds 100 items and stays far below Lambda's 6 MB (an excerpt, not the content)
    for route, reply in replies.items():
        assert len(reply["json"]["items"]) == 100, route
        size = len(reply["body"].encode())
        assert size < LAMBDA_RESPONSE_LIMIT / 10
        with capsys.disabled():
            print(f"\nlargest page of {route}: {size:,} bytes")  # noqa: T201
