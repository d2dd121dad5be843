"""Use cases end to end on the real database: transactions, atomicity, races, authorization."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import func, select, text

from blog import db as layer_db
from blog import services, tables
from blog.domain import TITLE_MAX
from blog.errors import DuplicateError, ForbiddenError, NotFoundError, ValidationError
from blog.repositories import PostRepository, UserRepository
from blog.security import verify_password
from blog.services import Actor
from tests.factories import make_post, make_user, user_values


def _counts() -> tuple[int, int]:
    with layer_db.transaction() as conn:
        users = conn.scalar(select(func.count()).select_from(tables.users))
        posts = conn.scalar(select(func.count()).select_from(tables.posts))
    return int(users or 0), int(posts or 0)


# --- register_user ------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_register_user_stores_a_verifiable_hash_not_the_password() -> None:
    user = services.register_user(
        email="New@Example.com", username="Newbie", password="s3cret-pass"
    )
    assert (user.email, user.username) == ("new@example.com", "newbie")
    assert "s3cret-pass" not in user.hashed_password
    assert user.hashed_password.startswith("$argon2id$")
    assert verify_password(user.hashed_password, "s3cret-pass")


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize(
    ("email", "username", "field"),
    [("TAKEN@example.com", "other", "email"), ("other@example.com", "Taken", "username")],
)
def test_register_rejects_duplicate_email_or_username_case_insensitively(
    email: str, username: str, field: str
) -> None:
    services.register_user(email="taken@example.com", username="taken", password="password-1")
    with pytest.raises(DuplicateError) as caught:
        services.register_user(email=email, username=username, password="password-2")
    assert caught.value.details == {"field": field}
    assert _counts() == (1, 0)


@pytest.mark.usefixtures("db")
def test_a_taken_email_is_logged_as_information_not_as_an_incident(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a registered user
    services.register_user(email="taken@example.com", username="taken", password="password-1")
    caplog.set_level(logging.DEBUG, logger=layer_db.logger.name)
    # When someone registers the same email again
    with pytest.raises(DuplicateError):
        services.register_user(email="taken@example.com", username="other", password="password-2")
    # Then the refusal is logged with its SQLSTATE, below WARNING (alarms watch WARNING and up)
    refusals = [r for r in caplog.records if r.getMessage() == "database error"]
    assert [(r.levelno, getattr(r, "sqlstate", None)) for r in refusals] == [
        (logging.INFO, "23505")
    ]


@pytest.mark.usefixtures("committed_db")
def test_register_race_has_exactly_one_winner() -> None:
    # Given two threads that register the same email at the same moment
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def register(name: str) -> None:
        barrier.wait()
        try:
            outcomes.append(
                services.register_user(
                    email="race@example.com", username=name, password="pw-123456"
                )
            )
        except DuplicateError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=register, args=(n,)) for n in ("racer1", "racer2")]
    # When both run
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then one wins and the other is told it is a duplicate
    assert sorted(type(o).__name__ for o in outcomes) == ["DuplicateError", "UserRecord"]
    assert _counts() == (1, 0)


# --- create_user_with_welcome_post --------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_create_user_with_welcome_post_creates_both() -> None:
    user, post = services.create_user_with_welcome_post(
        email="w@example.com", username="welcomed", password="password-1"
    )
    assert post.author_id == user.id
    assert post.published is True
    assert "welcomed" in post.title
    assert _counts() == (1, 1)


@pytest.mark.usefixtures("db")
def test_create_user_with_welcome_post_is_atomic_when_the_post_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a welcome post that the database will refuse (title over its limit)
    monkeypatch.setattr(
        services,
        "welcome_post_values",
        lambda user: {"title": "x" * (TITLE_MAX + 1), "content": "c", "published": True},
    )
    # When the use case runs, then it fails and the user was not kept either
    with pytest.raises(ValidationError):
        services.create_user_with_welcome_post(
            email="w@example.com", username="welcomed", password="password-1"
        )
    assert _counts() == (0, 0)


@pytest.mark.usefixtures("db")
def test_create_user_with_welcome_post_is_atomic_when_the_user_fails() -> None:
    make_user(username="taken")
    with pytest.raises(DuplicateError):
        services.create_user_with_welcome_post(
            email="w@example.com", username="taken", password="password-1"
        )
    assert _counts() == (1, 0)


# --- transfer_posts -----------------------------------------------------------------------------

ADMIN = Actor(user_id=None, is_admin=True)


@pytest.mark.usefixtures("db")
def test_transfer_posts_moves_everything_and_returns_the_count() -> None:
    source, target = make_user(), make_user()
    for _ in range(4):
        make_post(source)
    make_post(target)
    assert services.transfer_posts(from_user_id=source.id, to_user_id=target.id, actor=ADMIN) == 4
    with layer_db.transaction() as conn:
        assert len(UserRepository(conn).get_with_posts(target.id).posts) == 5


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize("missing", ["from", "to"])
def test_transfer_posts_requires_both_users(missing: str) -> None:
    user = make_user()
    make_post(user)
    ghost = user.id + 10_000
    ids = (ghost, user.id) if missing == "from" else (user.id, ghost)
    with pytest.raises(NotFoundError) as caught:
        services.transfer_posts(from_user_id=ids[0], to_user_id=ids[1], actor=ADMIN)
    assert caught.value.details == {"user_id": ghost}
    assert _counts() == (1, 1)


@pytest.mark.usefixtures("db")
def test_transfer_posts_is_for_admins_only_and_not_to_oneself() -> None:
    source, target = make_user(), make_user()
    with pytest.raises(ForbiddenError):
        services.transfer_posts(
            from_user_id=source.id, to_user_id=target.id, actor=Actor(user_id=source.id)
        )
    with pytest.raises(ValidationError):
        services.transfer_posts(from_user_id=source.id, to_user_id=source.id, actor=ADMIN)


# --- delete_user_cascade ------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_delete_user_cascade_removes_the_user_and_their_posts_only() -> None:
    doomed, other = make_user(), make_user()
    for _ in range(3):
        make_post(doomed)
    kept = make_post(other)
    assert services.delete_user_cascade(doomed.id, actor=Actor(user_id=doomed.id)) == 3
    with layer_db.transaction() as conn:
        assert UserRepository(conn).get(doomed.id) is None
        assert [p.id for p in conn.execute(select(tables.posts))] == [kept.id]


@pytest.mark.usefixtures("db")
def test_delete_user_cascade_checks_existence_and_who_asks() -> None:
    victim, intruder = make_user(), make_user()
    with pytest.raises(ForbiddenError):
        services.delete_user_cascade(victim.id, actor=Actor(user_id=intruder.id))
    with pytest.raises(NotFoundError):
        services.delete_user_cascade(victim.id + 10_000, actor=ADMIN)
    assert _counts() == (2, 0)


# --- publish_post -------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_publish_post_by_author_or_admin() -> None:
    author = make_user()
    mine, theirs = make_post(author), make_post(author)
    assert services.publish_post(mine.id, actor=Actor(user_id=author.id)).published is True
    assert services.publish_post(theirs.id, actor=ADMIN).published is True


@pytest.mark.usefixtures("db")
def test_publish_post_hides_drafts_from_others_and_refuses_them() -> None:
    author, stranger = make_user(), make_user()
    draft = make_post(author)
    published = make_post(author, published=True)
    with pytest.raises(NotFoundError):  # a draft does not exist for anyone else
        services.publish_post(draft.id, actor=Actor(user_id=stranger.id))
    with pytest.raises(ForbiddenError):
        services.publish_post(published.id, actor=Actor(user_id=stranger.id))
    with pytest.raises(NotFoundError):
        services.publish_post(draft.id + 10_000, actor=ADMIN)
    with layer_db.transaction() as conn:
        assert PostRepository(conn).get(draft.id).published is False


# --- import_users --------------------------------------------------------------------------------


@pytest.mark.usefixtures("db")
def test_import_users_upserts_on_email() -> None:
    existing = make_user(email="one@example.com", username="one")
    rows = [user_values(email="ONE@example.com", username="one-renamed"), user_values()]
    ids = services.import_users(rows)
    assert ids[0] == existing.id
    assert len(ids) == 2
    with layer_db.transaction() as conn:
        assert UserRepository(conn).get(existing.id).username == "one-renamed"
    assert _counts() == (2, 0)


@pytest.mark.usefixtures("db")
def test_import_users_is_all_or_nothing_on_a_conflicting_username() -> None:
    make_user(email="a@example.com", username="taken")
    with pytest.raises(DuplicateError):
        services.import_users([user_values(), user_values(email="b@example.com", username="taken")])
    assert _counts() == (1, 0)


def _stored(email: str) -> tuple[object, ...]:
    with layer_db.transaction() as conn:
        row = conn.execute(
            select(
                tables.users.c.id,
                tables.users.c.username,
                tables.users.c.hashed_password,
                tables.users.c.updated_at,
            ).where(tables.users.c.email == email)
        ).one()
    return tuple(row)


@pytest.mark.usefixtures("committed_db")
def test_import_touches_updated_at_only_when_something_changed() -> None:
    # Committed transactions each, so now() moves on between them.
    batch = [{"email": "Imp@example.com", "username": "imp", "password": "password-1"}]
    services.import_user_batch(batch)
    first = _stored("imp@example.com")
    services.import_user_batch(batch)  # redelivered: the password still verifies, no rehash
    assert _stored("imp@example.com") == first
    services.import_user_batch([{**batch[0], "username": "imp2"}])
    renamed = _stored("imp@example.com")
    assert renamed[:3] == (first[0], "imp2", first[2])
    assert renamed[3] > first[3]  # type: ignore[operator]


@pytest.mark.usefixtures("committed_db")
@pytest.mark.parametrize("their_username", ["theirs", "mine"])
def test_an_import_that_waited_for_a_concurrent_insert_of_its_email_updates_that_user(
    their_username: str,
) -> None:
    # The import waits for the other transaction's uncommitted row (same email), then updates it;
    # or, the same row, leaves it: its id is then found after the statement.
    hashed = user_values()["hashed_password"]
    rows = [
        user_values(),
        {"email": "both@example.com", "username": "mine", "hashed_password": hashed},
    ]
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(services.import_users(rows))
        except Exception as error:  # reported below
            outcome.append(error)

    engine = layer_db.get_engine()
    with engine.connect() as other, engine.connect() as watcher:
        other.execute(
            tables.users.insert().values(
                email="both@example.com", username=their_username, hashed_password=hashed
            )
        )
        thread = threading.Thread(target=run)
        thread.start()
        waiting = (
            select(func.count())
            .select_from(text("pg_stat_activity"))
            .where(text("wait_event_type = 'Lock' AND query LIKE '%pg_temp.user_import%'"))
        )
        deadline = time.monotonic() + 10
        while not watcher.execute(waiting).scalar_one() and time.monotonic() < deadline:
            watcher.rollback()  # a new snapshot of pg_stat_activity next time
            time.sleep(0.01)
        assert time.monotonic() < deadline, "the import never waited for the other transaction"
        other.commit()
        thread.join()
    [ids] = outcome
    assert isinstance(ids, list), ids
    theirs = _stored("both@example.com")
    assert ids[1] == theirs[0]
    assert theirs[1] == "mine"  # the import came last
    assert _counts() == (2, 0)


@pytest.mark.usefixtures("committed_db")
def test_concurrent_imports_of_one_new_user_both_succeed() -> None:
    # ON CONFLICT waits for the other transaction, then updates: no duplicate error either way.
    barrier = threading.Barrier(2)
    errors: list[Exception] = []
    hashed = user_values()["hashed_password"]

    def run(name: str) -> None:
        row = {"email": "both@example.com", "username": name, "hashed_password": hashed}
        rows = [user_values(), row, user_values()]
        barrier.wait()
        try:
            services.import_users(rows)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _stored("both@example.com")[1] in {"first", "second"}
    assert _counts() == (5, 0)


@pytest.mark.usefixtures("committed_db")
def test_concurrent_imports_changing_the_same_users_both_succeed_one_after_the_other() -> None:
    # The second import's update waits for the first one's row locks, then writes on top of its
    # committed rows: every user ends as one of the two imports left it, both versions counted.
    existing = [make_user() for _ in range(3)]
    hashed = user_values()["hashed_password"]
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def run(suffix: str) -> None:
        rows = [
            {
                "email": user.email,
                "username": f"{user.username}-{suffix}",
                "hashed_password": hashed,
            }
            for user in existing
        ]
        barrier.wait()
        try:
            services.import_users(rows)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(suffix,)) for suffix in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with layer_db.transaction() as conn:
        stored = UserRepository(conn).get_by_ids([user.id for user in existing])
    suffixes = {stored[user.id].username.removeprefix(f"{user.username}-") for user in existing}
    assert len(suffixes) == 1
    assert suffixes <= {"one", "two"}
    assert [stored[user.id].version for user in existing] == [user.version + 2 for user in existing]
