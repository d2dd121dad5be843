"""What the layer's pg8000 connection sends, and in how many round trips, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pg8000.dbapi
import pytest
from sqlalchemy import func, select, text

from blog import db as layer_db
from blog import services
from blog.errors import ValidationError
from blog.repositories import PageRequest, PostRepository, UserRepository
from local.pg_wire import WireTap
from tests.factories import user_values


def _transaction_control(tap: WireTap) -> list[str]:
    """The ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` written, in order."""
    ends = ("begin transaction", "commit", "rollback")
    return [query for query in tap.queries() if query in ends]


@pytest.fixture
def counted(committed_db: None) -> Iterator[list[WireTap]]:
    """Every connection the layer opens meanwhile, tapped once connected (after the engine's
    first connection, which also reads the server's settings)."""
    with layer_db.transaction() as conn:
        conn.execute(text("SELECT 1"))
    counters: list[WireTap] = []
    original = layer_db._open_connection

    def tapped(credentials: layer_db.Credentials) -> Any:
        connection = original(credentials)
        counters.append(WireTap.install(connection))
        return connection

    layer_db._open_connection = tapped  # type: ignore[assignment]
    try:
        yield counters
    finally:
        layer_db._open_connection = original  # type: ignore[assignment]


def _add_user(**values: Any) -> int:
    with layer_db.transaction() as conn:
        return UserRepository(conn).create(**user_values(**values)).id


def test_a_read_takes_one_round_trip_and_is_committed_with_the_close(
    counted: list[WireTap],
) -> None:
    user_id = _add_user()
    (writer,) = counted
    assert writer.round_trips == 2  # BEGIN + INSERT, then COMMIT
    assert _transaction_control(writer) == ["begin transaction", "commit"]
    with layer_db.transaction() as conn:
        assert UserRepository(conn).get(user_id) is not None
    reader = counted[1]
    assert reader.round_trips == 1  # BEGIN + SELECT; the COMMIT went with the close
    assert _transaction_control(reader) == ["begin transaction", "commit"]


def _parsed(tap: WireTap) -> list[str]:
    """The statements sent with the extended protocol (every SQL statement but BEGIN/COMMIT)."""
    return [sql for how, sql in tap.statements if how == "execute_unnamed"]


def test_a_search_that_finds_posts_takes_one_statement_as_a_list_does(
    counted: list[WireTap],
) -> None:
    # Given a published post
    author_id = _add_user()
    with layer_db.transaction() as conn:
        PostRepository(conn).create(
            author_id=author_id, title="Kumquat season", content="c", published=True
        )
    tapped = len(counted)
    # When the feed is listed, searched with a hit, with a miss, and with no trigram at all
    assert len(services.list_published_posts(PageRequest(page_size=5)).items) == 1
    found = services.list_published_posts(PageRequest(page_size=5), query="kumquat")
    missed = services.list_published_posts(PageRequest(page_size=5), query="xylophone")
    with pytest.raises(ValidationError) as refused:
        services.list_published_posts(PageRequest(page_size=5), query="%%%")
    # Then a search with a hit is one statement and one round trip, as the plain list is; the
    # trigram check is asked separately only when the page comes back empty
    listing, hit, miss, no_trigram = counted[tapped:]
    assert (len(found.items), len(missed.items), refused.value.details) == (1, 0, {"field": "q"})
    assert len(_parsed(listing)) == len(_parsed(hit)) == 1
    assert listing.round_trips == hit.round_trips == 1
    assert "show_trgm" in _parsed(hit)[0]
    assert len(_parsed(miss)) == len(_parsed(no_trigram)) == 3  # the page, its count, the check


def test_a_lock_taken_by_a_read_is_released_when_its_unit_of_work_ends(
    counted: list[WireTap],
) -> None:
    user_id = _add_user()
    with layer_db.transaction() as conn:
        assert UserRepository(conn).lock(user_id) is not None
    with layer_db.transaction() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '2s'"))
        assert UserRepository(conn).lock(user_id) is not None  # no wait, no timeout


def test_a_connection_reused_after_a_read_starts_a_new_transaction(
    counted: list[WireTap],
) -> None:
    user_id = _add_user(username="before")
    engine = layer_db.get_engine()
    with engine.connect() as connection:
        first = connection.execute(text("SELECT txid_current()")).scalar_one()
        connection.commit()  # held back: nothing but SELECT ran
        connection.execute(
            text("UPDATE users SET username = 'after' WHERE id = :id"), {"id": user_id}
        )
        second = connection.execute(text("SELECT txid_current()")).scalar_one()
        connection.commit()
        connection.execute(text("SELECT 1"))
        connection.rollback()
    assert second != first
    with layer_db.transaction() as conn:
        assert UserRepository(conn).get(user_id).username == "after"  # type: ignore[union-attr]
    assert _transaction_control(counted[1]) == [
        "begin transaction",
        "commit",
        "begin transaction",
        "commit",
        "begin transaction",
        "rollback",
    ]


def test_a_unit_of_work_that_runs_nothing_sends_nothing(counted: list[WireTap]) -> None:
    engine = layer_db.get_engine()
    with engine.connect() as connection:
        connection.commit()
    assert counted[0].round_trips == 0
    assert counted[0].queries() == []


def test_errors_after_a_held_back_begin_leave_the_connection_usable(
    counted: list[WireTap],
) -> None:
    engine = layer_db.get_engine()
    with engine.connect() as connection:
        with pytest.raises(Exception, match="division by zero"):
            connection.execute(text("SELECT 1 / 0"))
        connection.rollback()
        assert connection.execute(text("SELECT 2")).scalar_one() == 2
        connection.commit()
    with pytest.raises(ValidationError):
        with layer_db.transaction() as conn:
            conn.execute(text("SELECT :value"), {"value": "\ud800"})
    assert _add_user() > 0


def test_timestamps_come_back_as_pg8000_would_read_them(committed_db: None) -> None:
    cases = {
        "2024-05-01 12:00:00.123456+00": datetime(2024, 5, 1, 12, 0, 0, 123456, UTC),
        "2024-05-01 12:00:00+00": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "2024-05-01 12:00:00.5-03": datetime(
            2024, 5, 1, 12, 0, 0, 500000, timezone(timedelta(hours=-3))
        ),
    }
    for sent, expected in cases.items():
        assert layer_db._timestamptz_in(sent) == expected
        assert layer_db._timestamptz_in(sent) == pg8000.converters.timestamptz_in(sent)
    for odd in ("infinity", "-infinity", "2024-05-01 12:00:00+05:30", "0044-03-15 12:00:00+00 BC"):
        assert layer_db._timestamptz_in(odd) == pg8000.converters.timestamptz_in(odd)
    with layer_db.transaction() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        now = conn.execute(select(func.now())).scalar_one()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)


def test_statements_are_rewritten_once_and_alike() -> None:
    query = "SELECT %s::INTEGER, '%%s', 'it''s', E'\\'%s' WHERE a = %s"
    stock = layer_db._convert_paramstyle("format", query, (1, 2))
    assert layer_db._memoized_paramstyle("format", query, (1, 2)) == stock
    assert pg8000.dbapi.convert_paramstyle is layer_db._memoized_paramstyle
    named = layer_db._memoized_paramstyle("named", "SELECT :a, :b, :a", {"a": 1, "b": 2})
    assert named == ("SELECT $1, $2, $1", (1, 2))
