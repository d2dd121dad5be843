"""Repositories: every query of the domain, and the only place SQL is built.

Core statements on the tables of :mod:`blog.tables`, executed on the unit of work's
``Connection`` (:func:`blog.db.transaction`); rows come back as the immutable records of
:mod:`blog.records` (lists as result rows of their columns). Repositories never commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable, DropTable

from blog.config import get_settings
from blog.db import UNIQUE_VIOLATION, sqlstate
from blog.domain import (
    ACCOUNT_WIDE,
    STATUS_ACTIVE,
    STATUS_INACTIVE,
    normalize_email,
    normalize_username,
)
from blog.errors import ValidationError
from blog.pagination import decode_cursor, encode_cursor
from blog.records import IdempotencyRecord, PostRecord, UserRecord, UserWithPosts
from blog.tables import idempotency_keys, posts, sign_in_failures, users

if TYPE_CHECKING:
    from sqlalchemy import Connection, Row
    from sqlalchemy.engine import Dialect

RecordT = TypeVar("RecordT")
T = TypeVar("T")

#: ``page``/``page_size`` reach only this far into a list: past it, the client follows
#: ``next_cursor`` (an ``OFFSET`` reads and drops every row it skips, so deep offsets cost what
#: the table holds).
MAX_OFFSET: Final = 1_000
#: A total up to this many rows is counted exactly (reading at most this many index entries);
#: past it, the planner's estimate is given, and said to be one.
TOTAL_EXACT_MAX: Final = 1_000
#: Characters of a post's content that a list reads; the excerpt is cut from them.
EXCERPT_SOURCE_CHARS: Final = 301


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which page of a list: by ``cursor`` (from a previous page's ``next_cursor``) or by number."""

    page: int = 1
    page_size: int | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, the total across pages (exact, or an estimate) and the next cursor."""

    items: Sequence[T]
    total: int
    total_exact: bool
    page: int | None
    page_size: int
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list: its rows (``stmt``, filtered, unordered), its unique sort key and direction, and
    its ``scope`` (the list and its filters, which a cursor must match)."""

    stmt: Select[*tuple[Any, ...]]
    keys: tuple[Column[Any], ...]
    descending: bool
    scope: str


@lru_cache(maxsize=8)
def _select_by_id(table: Table) -> Select[Any]:
    """``SELECT … WHERE id = :id`` of ``table``, built once: executing one statement object
    again spares the building and cache-key work of a new one on every call."""
    return select(table).where(table.c.id == bindparam("id"))


@lru_cache(maxsize=8)
def _select_by_ids(table: Table) -> Select[Any]:
    """``SELECT … WHERE id = ANY(:ids)`` of ``table``, built once (one parameter, an array,
    whatever the number of ids)."""
    return select(table).where(table.c.id == func.any(bindparam("ids", type_=ARRAY(Integer))))


def page_bounds(page: int, page_size: int | None) -> tuple[int, int]:
    """Validated ``(offset, limit)`` for a 1-based page; the page size is capped by the settings,
    the offset by ``MAX_OFFSET``."""
    settings = get_settings()
    size = settings.page_size_default if page_size is None else page_size
    if page < 1:
        raise ValidationError("page must be at least 1", details={"field": "page"})
    if size < 1:
        raise ValidationError("page_size must be at least 1", details={"field": "page_size"})
    size = min(size, settings.page_size_max)
    offset = (page - 1) * size
    if offset > MAX_OFFSET:
        raise ValidationError(
            f"page {page} starts past row {MAX_OFFSET}: follow next_cursor to go deeper",
            details={"field": "page", "max_offset": MAX_OFFSET},
        )
    return offset, size


def like_pattern(text: str) -> str:
    """An ``ILIKE`` pattern matching ``text`` anywhere, with ``%``, ``_`` and ``\\`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _key_kinds(keys: tuple[Column[Any], ...]) -> tuple[type, ...]:
    return tuple(datetime if isinstance(k.type, DateTime) else int for k in keys)


class Repository(Generic[RecordT]):
    """Generic data access for one table with an integer ``id`` primary key; rows come back as
    ``record`` instances."""

    table: ClassVar[Table]
    record: ClassVar[Callable[..., Any]]

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _record(self, row: Row[Any] | None) -> RecordT | None:
        return None if row is None else self._one(row)

    def _one(self, row: Row[Any]) -> RecordT:
        made: RecordT = self.record(**row._mapping)
        return made

    def get(self, id_: int) -> RecordT | None:
        """The row with this id, or None."""
        return self._record(
            self.connection.execute(_select_by_id(self.table), {"id": id_}).one_or_none()
        )

    def get_by_ids(self, ids: Iterable[int]) -> dict[int, RecordT]:
        """The rows with these ids, by id (missing ones absent), in one statement."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self.connection.execute(_select_by_ids(self.table), {"ids": wanted})
        return {row.id: self._one(row) for row in rows}

    def lock(self, id_: int, *, key_share: bool = False) -> RecordT | None:
        """The row with this id, locked until the transaction ends; None if missing.

        ``FOR UPDATE`` by default; ``key_share=True`` takes ``FOR KEY SHARE``, enough to keep the
        row from being deleted while letting others update it.
        """
        stmt = select(self.table).where(self.table.c.id == id_)
        stmt = stmt.with_for_update(read=key_share, key_share=key_share)
        return self._record(self.connection.execute(stmt).one_or_none())

    def _all(self, stmt: Select[Any]) -> list[RecordT]:
        return [self._one(row) for row in self.connection.execute(stmt)]

    def get_many(self, *, offset: int = 0, limit: int = 100) -> list[RecordT]:
        """Rows ordered by id, ``limit`` of them from ``offset``."""
        return self._all(select(self.table).order_by(self.table.c.id).offset(offset).limit(limit))

    def list_page(self, query: ListQuery, request: PageRequest) -> Page[Any]:
        """One page of ``query``'s rows in its key order, the total, and the next cursor.

        Keyset pagination: a cursor's page starts right after the key it holds, so it reads only
        its own rows from an index in the key's order, however deep it is; a row inserted or
        deleted elsewhere shifts nothing. The page and a count bounded by ``TOTAL_EXACT_MAX``
        are one statement (the count reads at most that many index entries); only an empty page
        (no row to carry the count) or a count past the bound (then the planner's estimate)
        costs one more. ``page``/``page_size`` work too, as far as ``MAX_OFFSET``.
        """
        if request.cursor is not None and request.page != 1:
            raise ValidationError(
                "give either cursor or page, not both", details={"field": "cursor"}
            )
        offset, size = page_bounds(request.page, request.page_size)
        order = [key.desc() if query.descending else key.asc() for key in query.keys]
        stmt = query.stmt.order_by(*order)
        if request.cursor is not None:
            after = decode_cursor(request.cursor, query.scope, _key_kinds(query.keys))
            row_key, bound = tuple_(*query.keys), tuple_(*after)
            stmt = stmt.where(row_key < bound if query.descending else row_key > bound)
        matching: Select[Any] = query.stmt.with_only_columns(literal_column("1"))
        matching = matching.limit(TOTAL_EXACT_MAX + 1)
        count = select(func.count()).select_from(matching.subquery())
        rows = self.connection.execute(
            stmt.add_columns(count.scalar_subquery().label("total_")).offset(offset).limit(size + 1)
        ).all()
        counted = int(rows[0].total_) if rows else int(self.connection.scalar(count) or 0)
        total, exact = counted, counted <= TOTAL_EXACT_MAX
        if not exact:
            total = max(self._estimate(query.stmt), counted)
        next_cursor = None
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_cursor = encode_cursor(
                query.scope, tuple(getattr(last, k.key) for k in query.keys)
            )
        return Page(
            items=rows,
            total=total,
            total_exact=exact,
            page=None if request.cursor is not None else request.page,
            page_size=size,
            next_cursor=next_cursor,
        )

    def _estimate(self, stmt: Select[*tuple[Any, ...]]) -> int:
        """The planner's estimate of how many rows ``stmt`` returns (no row is read)."""
        connection = self.connection
        compiled = stmt.with_only_columns(literal_column("1")).compile(dialect=connection.dialect)
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", params).scalar()
        document: Any = json.loads(plan) if isinstance(plan, str) else plan
        return int(document[0]["Plan"]["Plan Rows"])

    def create(self, **values: Any) -> RecordT:
        """Insert a row; it comes back whole (id and server defaults) through ``RETURNING``."""
        stmt = insert(self.table).values(**values).returning(*self.table.c)
        return self._one(self.connection.execute(stmt).one())

    def update(self, id_: int, **values: Any) -> RecordT | None:
        """``UPDATE … RETURNING`` the row with this id, one version on; None when there is none."""
        stmt = (
            update(self.table)
            .where(self.table.c.id == id_)
            .values(**values, version=self.table.c.version + 1)
            .returning(*self.table.c)
        )
        return self._record(self.connection.execute(stmt).one_or_none())

    def delete(self, id_: int) -> bool:
        """Delete the row with this id; whether there was one."""
        result = self.connection.execute(delete(self.table).where(self.table.c.id == id_))
        return bool(result.rowcount)

    def count(self, *criteria: ColumnElement[bool]) -> int:
        """Number of rows matching ``criteria`` (all rows when none)."""
        stmt = select(func.count()).select_from(self.table).where(*criteria)
        return int(self.connection.scalar(stmt) or 0)


class UserRepository(Repository[UserRecord]):
    """Queries over users."""

    table = users
    record = UserRecord

    def create(self, **values: Any) -> UserRecord:
        """Insert a user, email and username in their stored spelling (see :mod:`blog.domain`)."""
        return super().create(**_user_values(values))

    def get_by_email(self, email: str) -> UserRecord | None:
        """The user with this email, ignoring case."""
        stmt = select(users).where(users.c.email == normalize_email(email))
        return self._record(self.connection.execute(stmt).one_or_none())

    def get_by_username(self, username: str) -> UserRecord | None:
        """The user with this username, ignoring case."""
        stmt = select(users).where(users.c.username == normalize_username(username))
        return self._record(self.connection.execute(stmt).one_or_none())

    def get_with_posts(self, user_id: int) -> UserWithPosts | None:
        """The user with all their posts (by id), in one extra statement (no N+1 later)."""
        user = self.connection.execute(_select_by_id(users), {"id": user_id}).one_or_none()
        if user is None:
            return None
        stmt = select(posts).where(posts.c.author_id == user_id).order_by(posts.c.id)
        found = tuple(PostRecord(**row._mapping) for row in self.connection.execute(stmt))
        return UserWithPosts(**user._mapping, posts=found)

    def active_users_query(self) -> Select[Any]:
        """Active users, by id."""
        return select(users).where(users.c.is_active).order_by(users.c.id)

    def get_active_users(self, *, offset: int = 0, limit: int = 100) -> list[UserRecord]:
        """Active users, by id, ``limit`` of them from ``offset``."""
        return self._all(self.active_users_query().offset(offset).limit(limit))

    @staticmethod
    def active_users_list() -> ListQuery:
        """``GET /users``: active users by id (``ix_users_active_id``), without password hashes."""
        return ListQuery(
            select(*USER_LIST_COLUMNS).where(users.c.is_active), (users.c.id,), False, "users"
        )

    def deactivate(self, user_id: int) -> UserRecord | None:
        """Mark the user inactive (both the flag and the status column) and void their tokens;
        None if missing."""
        return self.update(
            user_id,
            is_active=False,
            status=STATUS_INACTIVE,
            token_version=users.c.token_version + 1,
        )

    def revoke_tokens(self, user_id: int, **changes: Any) -> UserRecord | None:
        """Move the user's token version on (every token issued so far is void), with
        ``changes``; None if missing."""
        return self.update(user_id, token_version=users.c.token_version + 1, **changes)

    def activate(self, user_id: int) -> UserRecord | None:
        """Mark the user active again; None if missing."""
        return self.update(user_id, is_active=True, status=STATUS_ACTIVE)

    def bulk_insert(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert many users in batched statements; their new ids, in input order."""
        values = [_user_values(row) for row in rows]
        if not values:
            return []
        stmt = pg_insert(users).returning(users.c.id, sort_by_parameter_order=True)
        return list(self.connection.scalars(stmt, values).all())

    def upsert(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert users, or update username and password of those whose email exists.

        One statement whatever the number of rows: the values travel as one JSON parameter and
        are unpacked on the server. Rows repeating an email collapse to the last one
        (PostgreSQL refuses to update a row twice in one statement). An update that changes
        nothing leaves ``updated_at`` alone, so applying the same rows twice is idempotent.
        Returns the ids of all given emails, in first-seen order.
        """
        by_email: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = _user_values(row)
            by_email[values["email"]] = values  # later rows win, first position kept
        if not by_email:
            return []
        columns = ("email", "username", "hashed_password")
        # All rows travel as one JSON parameter (the driver's own array escaping is slow in pure
        # Python), unpacked on the server in input order.
        source = (
            func.jsonb_array_elements(
                bindparam("rows", json.dumps(list(by_email.values())), type_=String).cast(JSONB)
            )
            .table_valued(column("value", JSONB), with_ordinality="position")
            .render_derived(name="src")
        )
        insert_stmt = pg_insert(users).from_select(
            list(columns),
            select(*(source.c.value.op("->>")(name) for name in columns)).order_by(
                source.c.position
            ),
        )
        changed = tuple_(users.c.username, users.c.hashed_password).is_distinct_from(
            tuple_(insert_stmt.excluded.username, insert_stmt.excluded.hashed_password)
        )
        stmt = insert_stmt.on_conflict_do_update(
            index_elements=[users.c.email],
            set_={
                "username": insert_stmt.excluded.username,
                "hashed_password": insert_stmt.excluded.hashed_password,
                "updated_at": case((changed, func.now()), else_=users.c.updated_at),
                "version": case((changed, users.c.version + 1), else_=users.c.version),
            },
        ).returning(users.c.id, users.c.email)
        ids = {email: id_ for id_, email in self.connection.execute(stmt).all()}
        return [ids[email] for email in by_email]

    def copy_upsert(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """:meth:`upsert` for big batches: the rows are streamed with ``COPY``, not bound.

        The rows go into a temporary table of the transaction (text ``COPY``, every value
        escaped, never part of the SQL), which is dropped at the end. As with :meth:`upsert`,
        repeated emails collapse to the last row (at the first one's place), a username taken by
        another email raises ``DuplicateError``, ``updated_at`` and ``version`` change only with
        the row, and applying the same rows twice is idempotent: a row that would not change is
        not written at all. The rows take effect as if applied one by one in their order (a
        username given up by one row may be taken by a later one, not by an earlier one), and
        new users are numbered in that order. Returns the ids of all given emails, in first-seen
        order.

        In a savepoint, one statement (:data:`_APPLY_STAGED`) first updates the rows whose email
        exists and whose values differ, in the rows' order, then, unless that covered every
        row, inserts those whose email does not exist and whose username nobody holds; no row
        lock and no sequence value is spent on a row it does not need them for. When the ids it
        returns account for every row, they are the answer; else the rows it left alone must
        now be stored exactly as given (unchanged rows; one look-up per row gives all the ids).
        Otherwise (a new row taking a username another row gives up, an email inserted
        concurrently, a unique violation, an order it cannot confirm), the savepoint is rolled
        back and the rows are applied one by one in their order by ``INSERT … SELECT … ON
        CONFLICT (email) DO UPDATE`` (:meth:`_upsert_staged_in_order`), which waits for and then
        updates a concurrently inserted email and raises ``DuplicateError`` where the order
        makes one.

        Behind RDS Proxy, a temporary table pins the client connection to its database
        connection until it closes: with NullPool, until the end of the unit of work.
        """
        rows = rows if isinstance(rows, list) else list(rows)
        emails = list(map(normalize_email, map(itemgetter("email"), rows)))
        usernames = list(map(normalize_username, map(itemgetter("username"), rows)))
        hashes: list[str] = list(map(itemgetter("hashed_password"), rows))
        if len(set(emails)) != len(emails):
            by_email: dict[str, tuple[str, str]] = {}
            for email, username, hashed in zip(emails, usernames, hashes, strict=True):
                by_email[email] = (username, hashed)  # later rows win, first position kept
            emails = list(by_email)
            usernames, hashes = (list(column) for column in zip(*by_email.values(), strict=True))
        if not emails:
            return []
        count = len(emails)
        positions = list(map(str, range(count)))
        data = copy_columns(positions, emails, usernames, hashes)
        connection = self.connection
        create, drop = _staging_ddl(connection.dialect)
        connection.exec_driver_sql(create)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            # pg8000 sends each item of ``stream`` as one CopyData message.
            cursor.execute(_COPY_INTO_STAGING, stream=[data])
        finally:
            cursor.close()
        # Emails joined with a character that none of them holds say in one comparison whether
        # rows were written in the rows' order (None: every candidate occurs in some email).
        every = "".join(emails)
        sep = next((c for c in _SEPARATORS if c not in every), None)
        result: list[int] | None = None
        try:
            with connection.begin_nested():
                result = self._apply_staged(emails, sep, ",".join(positions))
                if result is None:
                    raise _Undo
        except _Undo:
            pass
        except DBAPIError as error:
            if sqlstate(error) != UNIQUE_VIOLATION:
                raise
        if result is None:
            result = self._upsert_staged_in_order(emails, sep)
        connection.exec_driver_sql(drop)
        assert len(result) == count  # every row is inserted, updated or unchanged by now
        return result

    def _apply_staged(self, emails: list[str], sep: str | None, in_order: str) -> list[int] | None:
        """The staged rows applied by :data:`_APPLY_STAGED`; their ids, or None when it cannot
        tell that the result is the one :meth:`_upsert_staged_in_order` gives (the caller then
        rolls it back and applies the rows that way). ``in_order``: every position, in order,
        joined with commas."""
        count = len(emails)
        connection = self.connection
        updated, positions, updated_ids, inserted, inserted_ids, written = connection.execute(
            _APPLY_STAGED, {"count": count, "sep": sep or ","}
        ).one()
        if updated == count:
            # Every row existed and changed: the ids are the update's, if it went in order.
            if positions != in_order:
                return None
            return _int_list(updated_ids)
        placed: list[int | None] = [None] * count
        if updated:
            at = _int_list(positions)
            if any(b <= a for a, b in zip(at, at[1:], strict=False)):
                return None  # not in the rows' order: a username moved could differ
            for position, id_ in zip(at, _int_list(updated_ids), strict=True):
                placed[position] = id_
        if updated + inserted == count and sep is not None:
            # The rest were inserted, in the rows' order if their emails say so.
            rest = [p for p, id_ in enumerate(placed) if id_ is None]
            if written == sep.join(emails[p] for p in rest):
                for position, id_ in zip(rest, _int_list(inserted_ids), strict=True):
                    placed[position] = id_
                return cast("list[int]", placed)
        # Some rows were left alone (unchanged, or not safe to insert here): the result stands if
        # every row is now stored as given; then the ids are those rows'.
        stored = connection.execute(_STORED_AS_STAGED).scalar_one()
        ids = [] if stored is None else _int_list(stored)
        return ids if len(ids) == count else None

    def _upsert_staged_in_order(self, emails: list[str], sep: str | None) -> list[int]:
        """The staged rows applied one by one in their order (:data:`_UPSERT_RETURNING_IDS`)."""
        connection = self.connection
        ids, written = connection.execute(_UPSERT_RETURNING_IDS, {"sep": sep or ","}).one()
        if sep is None or written is None or written != sep.join(emails):
            ids = connection.execute(_IDS_FROM_STAGING).scalar_one()
        assert ids is not None
        return _int_list(ids)

    def hashes_by_email(self, emails: Iterable[str]) -> dict[str, str]:
        """The stored password hashes of those of ``emails`` that exist."""
        wanted = [normalize_email(e) for e in emails]
        stmt = select(users.c.email, users.c.hashed_password).where(users.c.email.in_(wanted))
        return {row.email: row.hashed_password for row in self.connection.execute(stmt)}


class _Undo(Exception):
    """Raised in :meth:`UserRepository.copy_upsert`'s savepoint to roll the fast way back."""


def _int_list(text: str) -> list[int]:
    """Ids (or positions) joined with commas by ``string_agg``."""
    return list(map(int, text.split(",")))


def _user_values(row: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(row)
    values["email"] = normalize_email(values["email"])
    values["username"] = normalize_username(values["username"])
    return values


_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(rows: Sequence[Sequence[str | None]]) -> bytes:
    """Rows of equal width in ``COPY``'s text format, UTF-8 encoded.

    Backslash, tab, line feed and carriage return are escaped and None is NULL (``\\N``), so
    any text arrives as it was. (NUL, which PostgreSQL text cannot hold, is refused by the
    server; a lone surrogate cannot be encoded and raises ``UnicodeEncodeError``.)
    """
    if not rows:
        return b""
    separators = len(rows[0]) - 1
    try:
        text = "\n".join(map("\t".join, rows)) + "\n"  # type: ignore[arg-type]
    except TypeError:  # a None
        text = ""
    # Only delimiters, nothing to escape: then each value is as it is, in one pass in C.
    if (
        not text
        or text.count("\t") != separators * len(rows)
        or text.count("\n") != len(rows)
        or "\\" in text
        or "\r" in text
    ):
        text = "".join(
            "\t".join("\\N" if v is None else v.translate(_COPY_ESCAPES) for v in row) + "\n"
            for row in rows
        )
    return text.encode()


def copy_columns(*columns: Sequence[str | None]) -> bytes:
    """:func:`copy_text` of the rows that these columns (of equal length) make, without making
    the rows when no value needs escaping (then the columns are joined in one pass in C)."""
    count = len(columns[0]) if columns else 0
    if not count:
        return b""
    try:
        text = "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"
    except TypeError:  # a None
        text = ""
    if (
        not text
        or text.count("\t") != (len(columns) - 1) * count
        or text.count("\n") != count
        or "\\" in text
        or "\r" in text
    ):
        return copy_text(list(zip(*columns, strict=True)))
    return text.encode()


#: Where :meth:`UserRepository.copy_upsert` stages rows: a temporary table, private to the
#: session and dropped at the latest when the transaction commits.
_STAGING: Final = Table(
    "user_import",
    MetaData(),
    Column("position", Integer, nullable=False),
    Column("email", Text, nullable=False),
    Column("username", Text, nullable=False),
    Column("hashed_password", Text, nullable=False),
    schema="pg_temp",
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_COPY_INTO_STAGING: Final = (
    "COPY pg_temp.user_import (position, email, username, hashed_password) FROM STDIN"
)


@lru_cache(maxsize=4)
def _staging_ddl(dialect: Dialect) -> tuple[str, str]:
    """``CREATE`` and ``DROP`` of the staging table, compiled once."""
    return str(CreateTable(_STAGING).compile(dialect=dialect)), str(
        DropTable(_STAGING).compile(dialect=dialect)
    )


def _upsert_from_staging(*where: ColumnElement[bool]) -> Any:
    columns = ("email", "username", "hashed_password")
    source = (
        select(*(_STAGING.c[name] for name in columns)).where(*where).order_by(_STAGING.c.position)
    )
    insert_stmt = pg_insert(users).from_select(list(columns), source)
    excluded = insert_stmt.excluded
    return insert_stmt.on_conflict_do_update(
        index_elements=[users.c.email],
        set_={
            "username": excluded.username,
            "hashed_password": excluded.hashed_password,
            "updated_at": func.now(),
            "version": users.c.version + 1,
        },
        # Still locks the row, so later messages wait as for any update.
        where=tuple_(users.c.username, users.c.hashed_password).is_distinct_from(
            tuple_(excluded.username, excluded.hashed_password)
        ),
    )


_UPSERT_FROM_STAGING: Final = _upsert_from_staging()


def _ids(user_id: ColumnElement[Any]) -> Select[Any]:
    """The ids, in the rows' order, as one text value (parsing 10,000 result rows costs more in
    the driver than this); one look-up per row, as a join could read all of ``users``."""
    return select(
        func.string_agg(
            user_id.cast(Text), aggregate_order_by(literal_column("','"), _STAGING.c.position)
        )
    ).select_from(_STAGING)


_USER_ID: Final = select(users.c.id).where(users.c.email == _STAGING.c.email).scalar_subquery()
_IDS_FROM_STAGING: Final = _ids(_USER_ID)
# The upsert, with the ids and the emails of the rows it wrote, each column as one text value in
# the order they were written (both aggregates read the same rows in one pass): no join, no sort,
# no look-up per row (together 4-5 ms of server time per 10,000 rows).
_UPSERTED: Final = _UPSERT_FROM_STAGING.returning(users.c.id, users.c.email).cte("upserted")
_UPSERT_RETURNING_IDS: Final = select(
    func.string_agg(_UPSERTED.c.id.cast(Text), literal_column("','")),
    func.string_agg(_UPSERTED.c.email, bindparam("sep", type_=Text)),
).select_from(_UPSERTED)
#: What the written emails are joined with: the first of these that no email holds.
_SEPARATORS: Final = ("\n", "\t", " ", ",")


def _probe(column: Column[Any], staged: Column[Any]) -> ColumnElement[bool]:
    """``column = ANY (ARRAY[staged])``: an index condition for each staged row, which no hash or
    merge join can use, so ``users`` is probed per staged row (a nested loop over the staging
    table, in its order) and never read whole, whatever the planner thinks of the sizes."""
    return column == any_(array([staged]))


_EXISTING: Final = users.alias("existing")
_FIRST_ROW: Final = _STAGING.alias("first_row")
#: Whether the first row's email exists (one look-up). If so, the rows are tried the update's way
#: (:data:`_UPDATED`, then :data:`_INSERTED`); if not, the insert's way (:data:`_UPSERTED_FIRST`).
#: Either gives the same result; the first row only guesses which one costs less.
_FIRST_EXISTS: Final = exists().where(
    _EXISTING.c.email
    == select(_FIRST_ROW.c.email).where(_FIRST_ROW.c.position == 0).limit(1).scalar_subquery()
)
_CHANGED: Final = tuple_(users.c.username, users.c.hashed_password).is_distinct_from(
    tuple_(_STAGING.c.username, _STAGING.c.hashed_password)
)
#: The update's way, first: the staged rows whose email exists and whose values differ, updated
#: in the staging table's order (a row that would not change is not written), without the row
#: lock that ``ON CONFLICT`` takes first; their positions and ids.
_UPDATED: Final = (
    update(users)
    .where(_FIRST_EXISTS, _probe(users.c.email, _STAGING.c.email), _CHANGED)
    .values(
        username=_STAGING.c.username,
        hashed_password=_STAGING.c.hashed_password,
        updated_at=func.now(),
        version=users.c.version + 1,
    )
    .returning(_STAGING.c.position, users.c.id)
    .cte("updated")
)
#: The update's way, then, once the update is done and only if it did not cover every row: the
#: staged rows whose email does not exist and whose username nobody holds (as the statement's
#: snapshot saw them), inserted in the rows' order. Such a row cannot depend on the order of the
#: others: its username is free before any of them and freed by none. A concurrent insert of
#: its email or username fails the statement (unique violation) rather than being waited for.
_INSERTED: Final = (
    pg_insert(users)
    .from_select(
        ["email", "username", "hashed_password"],
        select(_STAGING.c.email, _STAGING.c.username, _STAGING.c.hashed_password)
        .where(
            _FIRST_EXISTS,
            select(func.count()).select_from(_UPDATED).scalar_subquery()
            < bindparam("count", type_=Integer),
            ~exists().where(_probe(_EXISTING.c.email, _STAGING.c.email)),
            ~exists().where(_probe(_EXISTING.c.username, _STAGING.c.username)),
        )
        .order_by(_STAGING.c.position),
    )
    .returning(users.c.id, users.c.email)
    .cte("inserted")
)
#: The insert's way: all rows one by one in their order, as :data:`_UPSERT_RETURNING_IDS` (a
#: row's email looked up once, by ``ON CONFLICT``; the update's way would look a new row's email
#: up three times).
_UPSERTED_FIRST: Final = (
    _upsert_from_staging(~_FIRST_EXISTS).returning(users.c.id, users.c.email).cte("upserted")
)
_UPDATED_AGG: Final = (
    select(
        func.count().label("n"),
        func.string_agg(_UPDATED.c.position.cast(Text), literal_column("','")).label("positions"),
        func.string_agg(_UPDATED.c.id.cast(Text), literal_column("','")).label("ids"),
    )
    .select_from(_UPDATED)
    .subquery("u")
)
_WRITTEN: Final = union_all(
    select(_INSERTED.c.id, _INSERTED.c.email), select(_UPSERTED_FIRST.c.id, _UPSERTED_FIRST.c.email)
).subquery("written")  # one of the two is empty
_WRITTEN_AGG: Final = (
    select(
        func.count().label("n"),
        func.string_agg(_WRITTEN.c.id.cast(Text), literal_column("','")).label("ids"),
        func.string_agg(_WRITTEN.c.email, bindparam("sep", type_=Text)).label("emails"),
    )
    .select_from(_WRITTEN)
    .subquery("w")
)
#: The fast way to apply the staged rows (see :meth:`UserRepository.copy_upsert`), in one
#: statement. Gives the update's count, positions and ids, and the count, ids and emails
#: (joined with ``sep``) of the rows the inserts wrote, in the order they wrote them.
_APPLY_STAGED: Final = select(
    _UPDATED_AGG.c.n,
    _UPDATED_AGG.c.positions,
    _UPDATED_AGG.c.ids,
    _WRITTEN_AGG.c.n,
    _WRITTEN_AGG.c.ids,
    _WRITTEN_AGG.c.emails,
).select_from(_UPDATED_AGG.join(_WRITTEN_AGG, true()))
#: The ids of the staged rows that are stored exactly as staged, in the rows' order (one look-up
#: per row, as for :data:`_IDS_FROM_STAGING`; a row stored otherwise, or not at all, has none).
_STORED_AS_STAGED: Final = _ids(
    select(users.c.id)
    .where(
        users.c.email == _STAGING.c.email,
        users.c.username == _STAGING.c.username,
        users.c.hashed_password == _STAGING.c.hashed_password,
    )
    .scalar_subquery()
)


#: What a list shows of a user: never the password hash.
USER_LIST_COLUMNS: Final = (
    users.c.id,
    users.c.email,
    users.c.username,
    users.c.is_active,
    users.c.is_admin,
    users.c.created_at,
    users.c.updated_at,
)
#: What a list shows of a post: the start of its content, from which the excerpt is cut, so a
#: page's size does not depend on how long the posts are.
POST_LIST_COLUMNS: Final = (
    posts.c.id,
    posts.c.title,
    func.substr(posts.c.content, 1, EXCERPT_SOURCE_CHARS).label("excerpt"),
    posts.c.published,
    posts.c.author_id,
    posts.c.created_at,
    posts.c.updated_at,
)
NEWEST_FIRST: Final = (posts.c.created_at, posts.c.id)


def _has_trigram(text: ColumnElement[str]) -> ColumnElement[bool]:
    """Whether ``text`` holds a trigram: show_trgm pads each word with spaces, so a trigram
    without one comes from three word characters (letters or digits, as the locale decides)."""
    return (
        select(literal_column("1"))
        .select_from(func.unnest(func.show_trgm(text)).alias("t"))
        .where(func.strpos(literal_column("t"), " ") == 0)
        .exists()
    )


_HAS_TRIGRAM: Final = select(_has_trigram(bindparam("text", type_=Text)))


class PostRepository(Repository[PostRecord]):
    """Queries over posts. Lists are newest first, ties broken by id."""

    table = posts
    record = PostRecord

    @staticmethod
    def _newest_first(stmt: Select[Any]) -> Select[Any]:
        return stmt.order_by(posts.c.created_at.desc(), posts.c.id.desc())

    def published_query(self) -> Select[Any]:
        """Published posts, newest first."""
        return self._newest_first(select(posts).where(posts.c.published))

    def get_published(self, *, offset: int = 0, limit: int = 100) -> list[PostRecord]:
        """Published posts, newest first."""
        return self._all(self.published_query().offset(offset).limit(limit))

    def by_author_query(self, author_id: int, *, include_drafts: bool = False) -> Select[Any]:
        """The author's posts, newest first; drafts only when asked."""
        stmt = select(posts).where(posts.c.author_id == author_id)
        if not include_drafts:
            stmt = stmt.where(posts.c.published)
        return self._newest_first(stmt)

    def get_by_author(
        self, author_id: int, *, include_drafts: bool = False, offset: int = 0, limit: int = 100
    ) -> list[PostRecord]:
        """The author's posts, newest first; drafts only when asked."""
        stmt = self.by_author_query(author_id, include_drafts=include_drafts)
        return self._all(stmt.offset(offset).limit(limit))

    @staticmethod
    def matching(text: str) -> ColumnElement[bool]:
        """Title or content contains ``text``, ignoring case, wildcards literal: answered by the
        trigram indexes when ``text`` holds a trigram (see ``SEARCH_MIN``)."""
        pattern = like_pattern(text)
        return or_(
            posts.c.title.ilike(pattern, escape="\\"), posts.c.content.ilike(pattern, escape="\\")
        )

    def searchable(self, text: str) -> bool:
        """Whether ``text`` holds a trigram, so that a search is answered from the trigram indexes
        (a pattern without one would scan them whole): some run of three characters that the
        database counts as letters or digits (its locale decides which are). :meth:`feed_list`
        asks the same inside its own statement."""
        return bool(self.connection.scalar(_HAS_TRIGRAM, {"text": text}))

    def search_query(self, text: str, *, published_only: bool = True) -> Select[Any]:
        """Posts whose title or content contains ``text``, ignoring case; wildcards are literal."""
        stmt = select(posts).where(self.matching(text))
        if published_only:
            stmt = stmt.where(posts.c.published)
        return self._newest_first(stmt)

    def search(
        self, text: str, *, published_only: bool = True, offset: int = 0, limit: int = 20
    ) -> list[PostRecord]:
        """Posts whose title or content contains ``text`` (see :meth:`search_query`)."""
        stmt = self.search_query(text, published_only=published_only)
        return self._all(stmt.offset(offset).limit(limit))

    # --- the lists of the API: list items (an excerpt, not the content), by keyset ------------

    @staticmethod
    def feed_list(text: str | None = None) -> ListQuery:
        """``GET /posts``: published posts newest first (``ix_posts_published_created_at_id``);
        with ``text``, only those matching it (the trigram indexes), and none at all unless
        ``text`` holds a trigram (:meth:`searchable`, here a one-time filter of the statement, so
        a text without one reads no index): a search that finds posts needs no other question."""
        stmt = select(*POST_LIST_COLUMNS).where(posts.c.published)
        if text is None:
            return ListQuery(stmt, NEWEST_FIRST, True, "posts")
        searchable = _has_trigram(bindparam("q", text, type_=Text))
        return ListQuery(
            stmt.where(searchable, PostRepository.matching(text)),
            NEWEST_FIRST,
            True,
            f"posts?q={text}",
        )

    @staticmethod
    def author_list(author_id: int, *, include_drafts: bool) -> ListQuery:
        """``GET /users/{id}/posts``: the author's posts newest first
        (``ix_posts_author_id_created_at_id``); drafts only when asked."""
        stmt = select(*POST_LIST_COLUMNS).where(posts.c.author_id == author_id)
        if not include_drafts:
            stmt = stmt.where(posts.c.published)
        scope = f"users/{author_id}/posts?include_drafts={include_drafts}"
        return ListQuery(stmt, NEWEST_FIRST, True, scope)

    def count_by_author(self, author_id: int) -> int:
        """How many posts the author has, drafts included."""
        return self.count(posts.c.author_id == author_id)

    def publish(self, post_id: int) -> PostRecord | None:
        """Mark the post published; None if missing."""
        return self.update(post_id, published=True)

    def transfer(self, from_user_id: int, to_user_id: int) -> int:
        """Move every post of one author to another; how many moved."""
        result = self.connection.execute(
            update(posts)
            .where(posts.c.author_id == from_user_id)
            .values(author_id=to_user_id, version=posts.c.version + 1)
        )
        return int(result.rowcount)


class IdempotencyKeyRepository:
    """The answers kept for retries of requests with an ``Idempotency-Key``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def claim(self, scope: str, key: str, fingerprint: str, ttl_seconds: int) -> bool:
        """Take the key for this transaction: True if it is new (or its old answer expired).

        One ``INSERT … ON CONFLICT``: while another transaction holds the key uncommitted, this
        waits for it (the unique index decides); then False if that one committed, and the
        answer is there to read, or True if it rolled back.
        """
        claim = pg_insert(idempotency_keys).values(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            expires_at=func.now() + timedelta(seconds=ttl_seconds),
        )
        stmt = claim.on_conflict_do_update(
            index_elements=[idempotency_keys.c.scope, idempotency_keys.c.key],
            set_={
                "fingerprint": claim.excluded.fingerprint,
                "expires_at": claim.excluded.expires_at,
                "created_at": func.now(),
                "status_code": None,
                "headers": None,
                "body": None,
            },
            where=idempotency_keys.c.expires_at <= func.now(),
        ).returning(idempotency_keys.c.scope)
        return self.connection.execute(stmt).first() is not None

    def complete(
        self, scope: str, key: str, *, status: int, headers: Mapping[str, str], body: str
    ) -> None:
        """Keep the answer of the key claimed in this transaction."""
        self.connection.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            .values(status_code=status, headers=dict(headers), body=body)
        )

    def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        """The committed record of the key, if any."""
        stmt = select(idempotency_keys).where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
        )
        row = self.connection.execute(stmt).one_or_none()
        return None if row is None else IdempotencyRecord(**row._mapping)

    def purge_expired(self, limit: int) -> int:
        """Delete up to ``limit`` expired records, oldest first; how many went.

        Rows another transaction holds are skipped (``SKIP LOCKED``), so a purge never waits
        for a request, nor two purges for each other.
        """
        # By physical row id: the rows the index scan locked are deleted by a TID scan, one
        # look-up each (matching on the key columns instead would hash-join the whole table).
        table = idempotency_keys.alias("expired")
        expired: Select[Any] = (
            select(literal_column("ctid"))
            .select_from(table)
            .where(table.c.expires_at < func.now())
            .order_by(table.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = delete(idempotency_keys).where(literal_column("ctid").in_(expired))
        result = self.connection.execute(stmt)
        return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class SignInPause:
    """What the sign-in slowing says of one attempt: the seconds it must still wait (0 when it
    may go on) and whether its client has wrong passwords of its own for the account."""

    seconds: float
    client_failed: bool


@dataclass(frozen=True, slots=True)
class SlowingRule:
    """A pause of 1, 2, 4… seconds from the ``free``-th wrong password in a row on, capped."""

    free: int
    cap_s: int


class SignInFailureRepository:
    """Wrong passwords per (account, client) and per account (:data:`sign_in_failures`).

    Core statements only; times come from the database's clock. A row past ``expires_at`` counts
    as absent: its failures are forgotten.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def pause(self, user_id: int, client: str) -> SignInPause:
        """The pause for an attempt of ``client`` on the account: the pair's own, or the
        account-wide one, which applies only to a client with wrong passwords of its own."""
        table = sign_in_failures
        left = func.extract("epoch", table.c.blocked_until - func.now())
        rows = self.connection.execute(
            select(table.c.client, left, table.c.failures).where(
                table.c.user_id == user_id,
                table.c.client.in_((client, ACCOUNT_WIDE)),
                table.c.expires_at > func.now(),
            )
        ).all()
        seconds = {name: max(float(value or 0), 0.0) for name, value, _ in rows}
        if not any(name == client and failures > 0 for name, _, failures in rows):
            return SignInPause(seconds.get(client, 0.0), client_failed=False)
        return SignInPause(max(seconds.values()), client_failed=True)

    def begin_attempt(
        self, user_id: int, client: str, *, window_s: int, hold_s: int
    ) -> SignInPause:
        """The pause for an attempt of ``client`` (see :meth:`pause`); when there is none, the
        pair's turn to have a password checked, for at most ``hold_s`` (until
        :meth:`record_failure` or :meth:`clear` ends it).

        One ``INSERT … ON CONFLICT`` decides, so of parallel attempts from one client only one
        is checked at a time; the others wait a second (429), as if paused. Without this, a
        guesser sending many at once would have them all checked before the first failure
        paused the pair.
        """
        pause = self.pause(user_id, client)
        if pause.seconds > 0:
            return pause
        table = sign_in_failures
        live = table.c.expires_at > func.now()
        hold = func.now() + timedelta(seconds=hold_s)
        free = and_(
            or_(table.c.blocked_until.is_(None), table.c.blocked_until <= func.now()),
            or_(table.c.attempt_until.is_(None), table.c.attempt_until <= func.now()),
        )
        upsert = pg_insert(table).values(
            user_id=user_id,
            client=client,
            failures=0,
            attempt_until=hold,
            expires_at=func.now() + timedelta(seconds=window_s),
        )
        stmt = upsert.on_conflict_do_update(
            index_elements=[table.c.user_id, table.c.client],
            set_={
                "attempt_until": hold,
                # An expired row starts again from nothing.
                "failures": case((live, table.c.failures), else_=0),
                "blocked_until": case((live, table.c.blocked_until), else_=None),
                "expires_at": func.greatest(
                    table.c.expires_at, func.now() + timedelta(seconds=window_s)
                ),
            },
            where=or_(~live, free),
        ).returning(table.c.failures)
        if self.connection.execute(stmt).first() is None:
            return SignInPause(1.0, client_failed=True)  # another attempt of it is being checked
        return pause

    def record_failure(
        self, user_id: int, client: str, *, own: SlowingRule, account: SlowingRule, window_s: int
    ) -> None:
        """Count a wrong password of ``client`` on the account, for the pair and account-wide;
        each row is forgotten ``window_s`` after its failure or the end of its pause."""
        self._count(user_id, client, own, window_s)
        self._count(user_id, ACCOUNT_WIDE, account, window_s)

    def _count(self, user_id: int, client: str, rule: SlowingRule, window_s: int) -> None:
        table = sign_in_failures
        window = timedelta(seconds=window_s)

        def until(failures: Any) -> Any:
            # 2^(failures - free) seconds from now, capped: the exponent stops growing past the cap.
            exponent = func.least(failures - rule.free, max(rule.cap_s, 1).bit_length())
            pause = func.least(func.power(2, exponent), rule.cap_s)
            return case(
                (failures >= rule.free, func.now() + literal_column("interval '1 second'") * pause),
                else_=None,
            )

        first: Any = literal_column("1")
        # An expired row starts again from one failure.
        failures = case(
            (table.c.expires_at > func.now(), func.least(table.c.failures + 1, 1_000_000)),
            else_=first,
        )
        upsert = pg_insert(table).values(
            user_id=user_id,
            client=client,
            failures=first,
            blocked_until=until(first),
            attempt_until=None,
            expires_at=func.coalesce(until(first), func.now()) + window,
        )
        self.connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[table.c.user_id, table.c.client],
                set_={
                    "failures": failures,
                    "blocked_until": until(failures),
                    "attempt_until": None,
                    "expires_at": func.coalesce(until(failures), func.now()) + window,
                },
            )
        )

    def clear(self, user_id: int, client: str) -> None:
        """Forget the wrong passwords of ``client`` on the account, and end its attempt (after a
        right one). The account-wide count stays: it ends by itself."""
        table = sign_in_failures
        self.connection.execute(
            delete(table).where(table.c.user_id == user_id, table.c.client == client)
        )

    def purge_expired(self, limit: int) -> int:
        """Delete up to ``limit`` expired rows, oldest first, skipping rows another transaction
        holds; how many went."""
        table = sign_in_failures
        expired = table.alias("expired")
        ctids: Select[Any] = (
            select(literal_column("ctid"))
            .select_from(expired)
            .where(expired.c.expires_at < func.now())
            .order_by(expired.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = self.connection.execute(delete(table).where(literal_column("ctid").in_(ctids)))
        return int(result.rowcount)
