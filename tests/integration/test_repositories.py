"""Repositories against the real, migrated PostgreSQL; every test rolls back (``db`` fixture)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from sqlalchemy import event, select, text

from blog import db as layer_db
from blog import tables
from blog.domain import STATUS_INACTIVE
from blog.errors import DuplicateError, ValidationError
from blog.repositories import (
    _APPLY_STAGED,
    _COPY_INTO_STAGING,
    MAX_OFFSET,
    PageRequest,
    PostRepository,
    UserRepository,
    _staging_ddl,
    copy_columns,
    like_pattern,
    page_bounds,
)
from tests.factories import make_post, make_user, user_values

pytestmark = pytest.mark.usefixtures("db")


class StatementCounter:
    """Counts SQL statements sent on the test's connection."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, PLR0913
        self.statements.append(statement)


def copy_upsert_counting(rows: list[dict[str, Any]]) -> tuple[list[int], StatementCounter]:
    """``copy_upsert(rows)`` in a unit of work of its own; the ids, and the statements it sent."""
    counter = StatementCounter()
    with layer_db.transaction() as conn:
        event.listen(conn, "before_cursor_execute", counter)
        try:
            ids = UserRepository(conn).copy_upsert(rows)
        finally:
            event.remove(conn, "before_cursor_execute", counter)
    return ids, counter


# --- generic repository -------------------------------------------------------------------------


def test_create_returns_the_whole_row_with_id_and_server_defaults() -> None:
    with layer_db.transaction() as conn:
        user = UserRepository(conn).create(**user_values())
        assert user.id is not None
        assert user.is_active is True
        assert user.status == "active"
        assert user.created_at is not None
        assert user.created_at.tzinfo is not None


def test_get_returns_row_or_none() -> None:
    user = make_user()
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        assert repo.get(user.id).email == user.email
        assert repo.get(user.id + 10_000) is None


def test_get_by_ids_reads_several_rows_in_one_statement_and_leaves_out_missing_ones() -> None:
    one, other = make_user(), make_user()
    counter = StatementCounter()
    with layer_db.transaction() as conn:
        event.listen(conn, "before_cursor_execute", counter)
        found = UserRepository(conn).get_by_ids([other.id, one.id, one.id, other.id + 10_000])
        nothing = UserRepository(conn).get_by_ids([])
        event.remove(conn, "before_cursor_execute", counter)
    assert {id_: user.email for id_, user in found.items()} == {
        one.id: one.email,
        other.id: other.email,
    }
    assert nothing == {}
    assert len(counter.statements) == 1


def test_get_many_uses_offset_and_limit_in_id_order() -> None:
    users = [make_user() for _ in range(5)]
    with layer_db.transaction() as conn:
        rows = UserRepository(conn).get_many(offset=1, limit=3)
    assert [u.id for u in rows] == [u.id for u in users[1:4]]


def test_list_page_returns_items_and_total_across_pages() -> None:
    users = [make_user() for _ in range(7)]
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        query = repo.active_users_list()
        first = repo.list_page(query, PageRequest(page=1, page_size=3))
        last = repo.list_page(query, PageRequest(page=3, page_size=3))
        past_end = repo.list_page(query, PageRequest(page=10, page_size=3))
    assert [u.id for u in first.items] == [u.id for u in users[:3]]
    assert (first.total, first.total_exact) == (7, True)
    assert first.next_cursor is not None
    assert [u.id for u in last.items] == [users[6].id]
    assert (last.total, last.next_cursor) == (7, None)
    assert list(past_end.items) == []
    assert (past_end.total, past_end.next_cursor) == (7, None)


def test_list_page_of_empty_table_has_zero_total() -> None:
    with layer_db.transaction() as conn:
        page = PostRepository(conn).list_page(PostRepository.feed_list(), PageRequest(page_size=5))
    assert (list(page.items), page.total, page.total_exact, page.next_cursor) == ([], 0, True, None)


@pytest.mark.parametrize(
    ("page", "page_size", "field"),
    [(0, 10, "page"), (-1, 10, "page"), (1, 0, "page_size"), (1, -5, "page_size")],
)
def test_paginate_rejects_non_positive_page_or_size(page: int, page_size: int, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        page_bounds(page, page_size)
    assert caught.value.details == {"field": field}


def test_paginate_caps_page_size_and_refuses_offsets_past_the_cap() -> None:
    assert page_bounds(1, 10_000) == (0, 100)
    assert page_bounds(3, None) == (40, 20)
    assert page_bounds(11, 100) == (MAX_OFFSET, 100)
    with pytest.raises(ValidationError) as caught:
        page_bounds(12, 100)
    assert caught.value.details == {"field": "page", "max_offset": MAX_OFFSET}
    with pytest.raises(ValidationError):
        page_bounds(2**31, 100)


def test_update_returns_new_values_and_none_for_missing_row() -> None:
    user = make_user()
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        updated = repo.update(user.id, username="renamed")
        assert updated is not None
        assert updated.username == "renamed"
        assert updated.updated_at >= user.updated_at
        assert repo.update(user.id + 10_000, username="ghost") is None
    with layer_db.transaction() as conn:
        assert UserRepository(conn).get(user.id).username == "renamed"


def test_delete_reports_whether_a_row_was_deleted() -> None:
    user = make_user()
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        assert repo.delete(user.id) is True
        assert repo.delete(user.id) is False
        assert repo.get(user.id) is None


def test_count_with_and_without_criteria() -> None:
    author = make_user()
    make_post(author, published=True)
    make_post(author)
    with layer_db.transaction() as conn:
        repo = PostRepository(conn)
        assert repo.count() == 2
        assert repo.count(tables.posts.c.published.is_(True)) == 1


# --- users ---------------------------------------------------------------------------------------


def test_get_by_email_ignores_case_and_surrounding_space() -> None:
    user = make_user(email="Mixed.Case@Example.COM")
    assert user.email == "mixed.case@example.com"
    with layer_db.transaction() as conn:
        found = UserRepository(conn).get_by_email("  MIXED.case@example.com ")
    assert found is not None
    assert found.id == user.id


def test_get_by_username_ignores_case() -> None:
    user = make_user(username="Alice")
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        assert repo.get_by_username("ALICE").id == user.id
        assert repo.get_by_username("bob") is None


def test_email_uniqueness_ignores_case() -> None:
    make_user(email="dup@example.com")
    with pytest.raises(DuplicateError) as caught:
        make_user(email="DUP@example.com")
    assert caught.value.details == {"field": "email"}


def test_get_with_posts_loads_posts_eagerly_in_two_queries() -> None:
    author = make_user()
    posts = [make_post(author) for _ in range(3)]
    counter = StatementCounter()
    with layer_db.transaction() as conn:
        event.listen(conn, "before_cursor_execute", counter)
        user = UserRepository(conn).get_with_posts(author.id)
        titles = [p.title for p in user.posts]
        event.remove(conn, "before_cursor_execute", counter)
    assert titles == [p.title for p in posts]
    assert len([s for s in counter.statements if s.lstrip().upper().startswith("SELECT")]) == 2


def test_get_with_posts_of_a_user_without_posts_and_of_no_user() -> None:
    author = make_user()
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        found = repo.get_with_posts(author.id)
        assert repo.get_with_posts(author.id + 10_000) is None
    assert found is not None
    assert (found.id, found.email, found.posts) == (author.id, author.email, ())


def test_a_user_read_without_posts_cannot_be_asked_for_them() -> None:
    # A record holds what was read and nothing more: no lazy load can fire an N+1 later.
    author = make_user()
    make_post(author)
    with layer_db.transaction() as conn:
        user = UserRepository(conn).get(author.id)
    with pytest.raises(AttributeError):
        _ = user.posts  # type: ignore[union-attr]
    with pytest.raises(FrozenInstanceError):
        user.username = "changed"  # type: ignore[misc, union-attr]


def test_get_active_users_and_deactivate() -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        deactivated = repo.deactivate(bob.id)
        assert deactivated is not None
        assert (deactivated.is_active, deactivated.status) == (False, STATUS_INACTIVE)
        assert repo.deactivate(10_000_000) is None
        active = repo.get_active_users()
        page = repo.list_page(repo.active_users_list(), PageRequest(page_size=1))
    assert [u.id for u in active] == [alice.id, carol.id]
    assert ([u.id for u in page.items], page.total) == ([alice.id], 2)


def test_bulk_insert_returns_ids_in_input_order() -> None:
    rows = [user_values() for _ in range(25)]
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        ids = repo.bulk_insert(rows)
        stored = {
            u.id: u.email
            for u in conn.execute(select(tables.users).where(tables.users.c.id.in_(ids)))
        }
    assert len(ids) == 25
    assert [stored[i] for i in ids] == [r["email"] for r in rows]


def test_bulk_insert_of_nothing_is_a_no_op() -> None:
    with layer_db.transaction() as conn:
        assert UserRepository(conn).bulk_insert([]) == []


def test_upsert_inserts_new_and_updates_existing_on_email() -> None:
    existing = make_user(email="keep@example.com", username="oldname")
    new_hash = existing.hashed_password + "x"
    rows = [
        {"email": "KEEP@example.com", "username": "newname", "hashed_password": new_hash},
        user_values(email="fresh@example.com"),
    ]
    with layer_db.transaction() as conn:
        ids = UserRepository(conn).upsert(rows)
    assert ids[0] == existing.id
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        kept = repo.get(existing.id)
        assert (kept.username, kept.hashed_password) == ("newname", new_hash)
        assert repo.get_by_email("fresh@example.com").id == ids[1]
        assert repo.count() == 2


def test_upsert_collapses_repeated_emails_to_the_last_row() -> None:
    rows = [user_values(email="same@example.com", username=f"name{i}") for i in range(3)]
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        ids = repo.upsert(rows)
        assert len(ids) == 1
        assert repo.get(ids[0]).username == "name2"


def test_upsert_with_username_of_another_email_is_a_duplicate() -> None:
    make_user(email="a@example.com", username="taken")
    with pytest.raises(DuplicateError) as caught:
        with layer_db.transaction() as conn:
            UserRepository(conn).upsert([user_values(email="b@example.com", username="taken")])
    assert caught.value.details == {"field": "username"}


def test_copy_upsert_inserts_new_and_updates_existing_on_email() -> None:
    existing = make_user(email="keep@example.com", username="oldname")
    new_hash = existing.hashed_password + "x"
    rows = [
        user_values(email="fresh@example.com"),
        {"email": " KEEP@example.com", "username": "NewName", "hashed_password": new_hash},
    ]
    with layer_db.transaction() as conn:
        ids = UserRepository(conn).copy_upsert(rows)
    assert ids[1] == existing.id
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        kept = repo.get(existing.id)
        assert (kept.username, kept.hashed_password) == ("newname", new_hash)
        assert repo.get_by_email("fresh@example.com").id == ids[0]
        assert repo.count() == 2


def test_copy_upsert_collapses_repeated_emails_to_the_last_row_at_the_first_place() -> None:
    rows = [
        user_values(email="same@example.com", username="name0"),
        user_values(email="other@example.com"),
        user_values(email="SAME@example.com", username="name2"),
    ]
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        ids = repo.copy_upsert(rows)
        assert len(ids) == 2
        assert ids[0] < ids[1]  # inserted in first-seen order
        assert repo.get(ids[0]).username == "name2"


def test_copy_upsert_with_username_of_another_email_is_a_duplicate_and_writes_nothing() -> None:
    make_user(email="a@example.com", username="taken")
    rows = [user_values(email="first@example.com"), user_values(username="taken")]
    with pytest.raises(DuplicateError) as caught:
        with layer_db.transaction() as conn:
            UserRepository(conn).copy_upsert(rows)
    assert caught.value.details == {"field": "username"}
    with layer_db.transaction() as conn:
        assert UserRepository(conn).count() == 1


def test_copy_upsert_applies_rows_in_order() -> None:
    # The second row takes the username the first gives up: fine in this order only.
    make_user(email="a@example.com", username="old-a")
    make_user(email="b@example.com", username="old-b")
    freed_first = [
        user_values(email="a@example.com", username="new-a"),
        user_values(email="b@example.com", username="old-a"),
    ]
    with pytest.raises(DuplicateError):
        with layer_db.transaction() as conn:
            UserRepository(conn).copy_upsert(freed_first[::-1])
    with layer_db.transaction() as conn:
        UserRepository(conn).copy_upsert(freed_first)
        names = conn.execute(
            select(tables.users.c.email, tables.users.c.username).order_by(tables.users.c.email)
        ).all()
    assert [tuple(r) for r in names] == [("a@example.com", "new-a"), ("b@example.com", "old-a")]


def test_copy_upsert_gives_a_new_user_a_username_freed_earlier_in_the_rows() -> None:
    # An existing user's new name frees the old one for a new user: fine in this order only.
    existing = make_user(email="a@example.com", username="old-a")
    freed_first = [
        user_values(email="a@example.com", username="new-a"),
        user_values(email="c@example.com", username="old-a"),
    ]
    with pytest.raises(DuplicateError):
        with layer_db.transaction() as conn:
            UserRepository(conn).copy_upsert(freed_first[::-1])
    with layer_db.transaction() as conn:
        ids = UserRepository(conn).copy_upsert(freed_first)
        names = conn.execute(
            select(tables.users.c.id, tables.users.c.username).order_by(tables.users.c.email)
        ).all()
    assert ids[0] == existing.id
    assert [tuple(r) for r in names] == [(existing.id, "new-a"), (ids[1], "old-a")]


def test_copy_upsert_with_one_new_username_twice_is_a_duplicate_and_writes_nothing() -> None:
    existing = make_user(email="a@example.com", username="old-a")
    rows = [
        user_values(email="a@example.com", username="same"),
        user_values(email="b@example.com", username="same"),
        user_values(),
    ]
    with pytest.raises(DuplicateError) as caught:
        with layer_db.transaction() as conn:
            UserRepository(conn).copy_upsert(rows)
    assert caught.value.details == {"field": "username"}
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        assert repo.count() == 1
        assert repo.get(existing.id).username == "old-a"


def test_copy_upsert_mixes_new_changed_and_unchanged_rows_in_order() -> None:
    unchanged = make_user()
    changed = make_user()
    same = {
        "email": unchanged.email,
        "username": unchanged.username,
        "hashed_password": unchanged.hashed_password,
    }
    rows = [user_values(), same, {**user_values(), "email": changed.email}, user_values()]
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        ids = repo.copy_upsert(rows)
        assert ids[1:3] == [unchanged.id, changed.id]
        assert ids[0] < ids[3]  # new users numbered in input order
        assert repo.get(changed.id).username == rows[2]["username"]
        assert repo.get(unchanged.id).updated_at == unchanged.updated_at
        assert repo.count() == 4


@pytest.mark.parametrize(
    "text",
    ["tab\there", "line\nfeed", "cr\rlf", "back\\slash", "\\n", "\\.", "\\", "é😀ж", 'a,"b";c'],
)
def test_copy_upsert_stores_any_text_as_given(text: str) -> None:
    row = {"email": f"{text}@example.com", "username": f"u{text}", "hashed_password": f"h{text}"}
    with layer_db.transaction() as conn:
        id_, _ = UserRepository(conn).copy_upsert([row, user_values()])
        stored = conn.execute(
            select(
                tables.users.c.email, tables.users.c.username, tables.users.c.hashed_password
            ).where(tables.users.c.id == id_)
        ).one()
    assert tuple(stored) == (row["email"], row["username"], row["hashed_password"])


@pytest.mark.parametrize("bad", ["nul\x00", "surrogate\ud800"])
def test_copy_upsert_refuses_text_postgresql_cannot_store(bad: str) -> None:
    with pytest.raises(ValidationError):
        with layer_db.transaction() as conn:
            UserRepository(conn).copy_upsert([user_values(hashed_password=bad)])
    with layer_db.transaction() as conn:
        assert UserRepository(conn).count() == 0


def test_copy_upsert_leaves_an_unchanged_row_alone() -> None:
    user = make_user()
    same = {"email": user.email, "username": user.username, "hashed_password": user.hashed_password}
    location = select(tables.users.c.id, text("ctid::text")).where(tables.users.c.id == user.id)
    with layer_db.transaction() as conn:
        before = conn.execute(location).one()
        assert UserRepository(conn).copy_upsert([same]) == [user.id]
        assert conn.execute(location).one() == before  # no new row version
        UserRepository(conn).copy_upsert([{**same, "username": "changed"}])
        assert conn.execute(location).one() != before


def test_copy_upsert_twice_in_one_transaction_and_after_a_failure() -> None:
    make_user(username="taken")
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        first = repo.copy_upsert([user_values()])
        with pytest.raises(DuplicateError), layer_db.savepoint(conn):
            repo.copy_upsert([user_values(username="taken")])
        second = repo.copy_upsert([user_values(), user_values()])
        assert repo.copy_upsert([]) == []
    assert len(first + second) == len(set(first + second)) == 3


def test_copy_upsert_ids_match_their_emails_whatever_characters_the_emails_hold() -> None:
    # Every candidate separator is in some email: the ids are then looked up, not taken as written.
    odd = ["new\nline@example.com", "a\ttab@example.com", "a space@example.com", "a,b@example.com"]
    existing = make_user(email="old@example.com")
    for emails in (odd, [*odd, existing.email], ["x@example.com", existing.email]):
        rows = [user_values(email=email) for email in emails]
        with layer_db.transaction() as conn:
            ids = UserRepository(conn).copy_upsert(rows)
            stored = {
                row.email: row.id
                for row in conn.execute(select(tables.users.c.email, tables.users.c.id))
            }
        assert ids == [stored[email] for email in emails]


@pytest.mark.parametrize("existing", [False, True])
def test_copy_upsert_is_a_fixed_number_of_statements(existing: bool) -> None:
    rows = [user_values(hashed_password="h") for _ in range(500)]
    if existing:  # every row then exists and changes
        with layer_db.transaction() as conn:
            UserRepository(conn).copy_upsert(rows)
        rows = [{**row, "hashed_password": "changed"} for row in rows]
    _, counter = copy_upsert_counting(rows)
    # CREATE TEMPORARY TABLE, SAVEPOINT, the update and insert with the ids, RELEASE SAVEPOINT,
    # DROP TABLE (the COPY is the driver's): all rows are new or all change, so the ids come with
    # the statement, nothing is looked up afterwards and nothing is applied a second time
    assert [s.split(None, 1)[0] for s in counter.statements] == [
        "CREATE",
        "SAVEPOINT",
        "WITH",
        "RELEASE",
        "DROP",
    ]
    assert not any("example.com" in statement for statement in counter.statements)


def test_copy_upsert_applies_rows_in_order_the_slow_way_only_when_it_must() -> None:
    # A new user takes the username an existing one gives up: the fast way leaves that row
    # alone, finds it missing, is rolled back, and the rows are applied one by one in their
    # order (test_copy_upsert_is_a_fixed_number_of_statements: batches without such a row stay
    # on the fast way).
    make_user(email="a@example.com", username="old-a")
    _, counter = copy_upsert_counting(
        [
            user_values(email="a@example.com", username="new-a"),
            user_values(email="c@example.com", username="old-a"),
        ]
    )
    words = [s.split(None, 1)[0] for s in counter.statements]
    assert words == ["CREATE", "SAVEPOINT", "WITH", "SELECT", "ROLLBACK", "WITH", "DROP"]
    with layer_db.transaction() as conn:
        assert UserRepository(conn).get_by_email("c@example.com").username == "old-a"


def test_copy_upsert_mixes_new_changed_unchanged_and_repeated_rows() -> None:
    unchanged, changed, renamed = make_user(), make_user(), make_user()
    same = {
        "email": unchanged.email,
        "username": unchanged.username,
        "hashed_password": unchanged.hashed_password,
    }
    first_new, second_new = user_values(), user_values()
    rows = [
        first_new,
        {**user_values(), "email": changed.email},  # replaced by the repeat below
        same,
        {**second_new, "email": second_new["email"].upper()},
        {"email": renamed.email, "username": "renamed", "hashed_password": "h"},
        {**user_values(), "email": changed.email.upper(), "username": "changed-last"},
        second_new,  # the same as its first row, once normalized
    ]
    with layer_db.transaction() as conn:
        repo = UserRepository(conn)
        ids = repo.copy_upsert(rows)
        assert len(ids) == 5
        assert ids[1:3] == [changed.id, unchanged.id]
        assert ids[4] == renamed.id
        assert unchanged.id < ids[0] < ids[3]  # new users numbered in first-seen order
        stored = {user.id: user for user in repo.get_by_ids(ids).values()}
    assert stored[changed.id].username == "changed-last"
    assert stored[changed.id].version == changed.version + 1
    assert stored[renamed.id].username == "renamed"
    assert stored[unchanged.id] == unchanged  # neither written nor versioned
    assert (stored[ids[0]].email, stored[ids[3]].email) == (first_new["email"], second_new["email"])
    with layer_db.transaction() as conn:
        assert UserRepository(conn).copy_upsert(rows) == ids  # again: nothing changes
        assert UserRepository(conn).get_by_ids([changed.id])[changed.id] == stored[changed.id]


@pytest.mark.parametrize("first_exists", [False, True])
def test_copy_upsert_of_new_and_changed_rows_gives_the_ids_in_input_order(
    first_exists: bool,
) -> None:
    # The first row's email decides which way is tried first (the insert's or the update's):
    # both give the same result.
    old = [make_user() for _ in range(3)]
    rows = [
        user_values(),
        {**user_values(), "email": old[2].email},
        user_values(),
        {**user_values(), "email": old[0].email},
        user_values(),
    ]
    if first_exists:
        rows.insert(0, {**user_values(), "email": old[1].email})
    ids, counter = copy_upsert_counting(rows)
    with layer_db.transaction() as conn:
        by_email = {
            row.email: row.id
            for row in conn.execute(select(tables.users.c.email, tables.users.c.id))
        }
        stored = UserRepository(conn).get_by_ids(ids)
    assert ids == [by_email[row["email"]] for row in rows]
    new = [id_ for id_ in ids if id_ not in {user.id for user in old}]
    assert new == sorted(new)  # new users numbered in input order
    assert [stored[id_].username for id_ in ids] == [row["username"] for row in rows]
    assert not any(s.startswith("ROLLBACK") for s in counter.statements)  # no second try


def test_copy_upsert_the_update_way_with_unchanged_and_new_rows() -> None:
    # First row exists: the changed row is updated, the new one inserted, the unchanged one left
    # alone and found stored as given; its row keeps its version and updated_at.
    changed, unchanged = make_user(), make_user()
    rows = [
        {**user_values(), "email": changed.email},
        {
            "email": unchanged.email,
            "username": unchanged.username,
            "hashed_password": unchanged.hashed_password,
        },
        user_values(),
    ]
    ids, counter = copy_upsert_counting(rows)
    with layer_db.transaction() as conn:
        stored = UserRepository(conn).get_by_ids(ids)
    assert ids[:2] == [changed.id, unchanged.id]
    assert stored[ids[2]].email == rows[2]["email"]
    assert stored[changed.id].version == changed.version + 1
    assert stored[unchanged.id] == unchanged
    words = [s.split(None, 1)[0] for s in counter.statements]
    assert words == ["CREATE", "SAVEPOINT", "WITH", "SELECT", "RELEASE", "DROP"]


def test_copy_upsert_looks_users_up_per_staged_row_whatever_the_statistics() -> None:
    # The fast way's plan reads users only through its indexes, even where reading the whole
    # table would look cheaper to the planner (small tables, statistics on both): with 1,000,000
    # users it must not read them all for 10,000 rows.
    with layer_db.transaction() as conn:
        UserRepository(conn).copy_upsert([user_values() for _ in range(2_000)])
    rows = [user_values() for _ in range(1_000)]
    with layer_db.transaction() as conn:
        known = conn.execute(select(tables.users.c.email).limit(1_000)).scalars().all()
        rows += [{**user_values(), "email": email} for email in known]
        create, _ = _staging_ddl(conn.dialect)
        conn.exec_driver_sql(create)
        cursor = conn.connection.driver_connection.cursor()
        columns = (
            [str(n) for n in range(len(rows))],
            *([row[name] for row in rows] for name in ("email", "username", "hashed_password")),
        )
        cursor.execute(_COPY_INTO_STAGING, stream=[copy_columns(*columns)])
        conn.exec_driver_sql("ANALYZE users")
        conn.exec_driver_sql("ANALYZE pg_temp.user_import")
        compiled = _APPLY_STAGED.compile(dialect=conn.dialect)
        params = {"count": len(rows), "sep": "\n"}
        values = tuple(
            params.get(name, compiled.params[name]) for name in compiled.positiontup or ()
        )
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", values).scalar()
    reads = [
        node
        for node in _plan_nodes(plan[0]["Plan"])
        if node.get("Relation Name") == "users" and node["Node Type"] != "ModifyTable"
    ]
    assert {node.get("Index Name") for node in reads} == {"ix_users_email", "ix_users_username"}
    assert {node["Node Type"] for node in reads} <= {"Index Scan", "Index Only Scan"}


# --- posts ---------------------------------------------------------------------------------------


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


@pytest.mark.parametrize(("q", "reads_posts"), [("kumquat", True), ("%%%", False), ("ab", False)])
def test_a_search_reads_posts_only_when_its_text_holds_a_trigram(q: str, reads_posts: bool) -> None:
    make_post(make_user(), published=True, title="kumquat %%% ab")
    stmt = PostRepository.feed_list(q).stmt
    with layer_db.transaction() as conn:
        connection = conn
        compiled = stmt.compile(dialect=connection.dialect)
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        plan = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", params
        ).scalar()
        found = conn.execute(stmt).all()
    scans = [n for n in _plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == "posts"]
    assert scans
    assert any(n["Actual Loops"] > 0 for n in scans) is reads_posts
    assert len(found) == (1 if reads_posts else 0)


def test_get_published_is_newest_first_and_hides_drafts() -> None:
    author = make_user()
    older = make_post(author, published=True)
    make_post(author)  # draft
    newer = make_post(author, published=True)
    with layer_db.transaction() as conn:
        posts = PostRepository(conn).get_published()
    assert [p.id for p in posts] == [newer.id, older.id]


def test_get_by_author_with_and_without_drafts() -> None:
    author, other = make_user(), make_user()
    published = make_post(author, published=True)
    draft = make_post(author)
    make_post(other, published=True)
    with layer_db.transaction() as conn:
        repo = PostRepository(conn)
        assert [p.id for p in repo.get_by_author(author.id)] == [published.id]
        with_drafts = repo.get_by_author(author.id, include_drafts=True)
    assert [p.id for p in with_drafts] == [draft.id, published.id]


def test_publish_sets_flag_and_returns_none_for_missing_post() -> None:
    post = make_post(make_user())
    with layer_db.transaction() as conn:
        repo = PostRepository(conn)
        assert repo.publish(post.id).published is True
        assert repo.publish(post.id + 10_000) is None


def test_search_matches_title_or_content_ignoring_case_published_only() -> None:
    author = make_user()
    by_title = make_post(author, title="All About PostgreSQL", published=True)
    by_content = make_post(author, content="tuning postgresql for lambda", published=True)
    make_post(author, title="postgresql draft")
    make_post(author, title="unrelated", published=True)
    with layer_db.transaction() as conn:
        repo = PostRepository(conn)
        found = repo.search("POSTGRESQL")
        with_drafts = repo.search("postgresql", published_only=False)
    assert {p.id for p in found} == {by_title.id, by_content.id}
    assert len(with_drafts) == 3


@pytest.mark.parametrize("needle", ["100%", "a_b", "back\\slash"])
def test_search_treats_wildcards_and_backslash_literally(needle: str) -> None:
    author = make_user()
    hit = make_post(author, title=f"contains {needle} here", published=True)
    # Each decoy would match if the character were a wildcard or an escape.
    make_post(author, title="contains 1000 here", published=True)
    make_post(author, title="contains aXb here", published=True)
    make_post(author, title="contains backslash here", published=True)
    with layer_db.transaction() as conn:
        found = PostRepository(conn).search(needle)
    assert [p.id for p in found] == [hit.id]


def test_like_pattern_escapes_every_special_character() -> None:
    assert like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"


def test_transfer_moves_all_posts_and_counts_them() -> None:
    source, target = make_user(), make_user()
    for _ in range(3):
        make_post(source)
    with layer_db.transaction() as conn:
        repo = PostRepository(conn)
        assert repo.transfer(source.id, target.id) == 3
        assert repo.count(tables.posts.c.author_id == target.id) == 3
        assert repo.transfer(source.id, target.id) == 0
