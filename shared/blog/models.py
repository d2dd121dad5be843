"""SQLAlchemy 2.0 typed ORM classes, mapped onto the Core tables of :mod:`blog.tables`.

For code that wants the unit of work (identity map, relationships, flush): tests' seeding,
operators' scripts, one-off data fixes. The request path never imports this module: handlers go
through the repositories, which build Core statements on the same tables, so a cold start pays
neither the ORM's import nor its mapper configuration. Open a session on the layer's transaction
with :func:`unit_of_work`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped, Session, relationship, validates

from blog import tables
from blog.db import transaction
from blog.domain import normalize_email, normalize_username


class Base(DeclarativeBase):
    """Declarative base on the schema's ``MetaData`` (:data:`blog.tables.metadata`)."""

    metadata = tables.metadata


class User(Base):
    """A registered user (:data:`blog.tables.users`)."""

    __table__ = tables.users
    # Server-generated values (id, timestamps, defaults) come back through RETURNING, not a SELECT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[int]
    email: Mapped[str]
    username: Mapped[str]
    hashed_password: Mapped[str]
    is_active: Mapped[bool]
    status: Mapped[str]
    is_admin: Mapped[bool]
    token_version: Mapped[int]
    failed_sign_ins: Mapped[int]
    sign_in_blocked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int]

    # lazy="raise": relationships are loaded on purpose (selectinload), never by accident (N+1).
    posts: Mapped[list[Post]] = relationship(
        back_populates="author", lazy="raise", passive_deletes=True, order_by="Post.id"
    )

    @validates("email")
    def _normalize_email(self, _key: str, value: str) -> str:
        return normalize_email(value)

    @validates("username")
    def _normalize_username(self, _key: str, value: str) -> str:
        return normalize_username(value)

    def __repr__(self) -> str:
        return f"<User id={self.id} username={self.username!r}>"


class Post(Base):
    """A blog post (:data:`blog.tables.posts`)."""

    __table__ = tables.posts
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[int]
    title: Mapped[str]
    content: Mapped[str]
    published: Mapped[bool]
    author_id: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int]

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")

    def __repr__(self) -> str:
        return f"<Post id={self.id} author_id={self.author_id}>"


class IdempotencyKey(Base):
    """A kept answer to a retried ``POST`` (:data:`blog.tables.idempotency_keys`)."""

    __table__ = tables.idempotency_keys

    scope: Mapped[str]
    key: Mapped[str]
    fingerprint: Mapped[str]
    status_code: Mapped[int | None]
    headers: Mapped[dict[str, str] | None]
    body: Mapped[str | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<IdempotencyKey scope={self.scope!r}>"


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """An ORM Session on the connection of :func:`blog.db.transaction` (joined when one is open):
    flushed and committed with it on success, everything rolled back on error."""
    with transaction() as connection:
        session = Session(bind=connection, expire_on_commit=False)
        try:
            yield session
            session.commit()  # flushes; the connection's transaction is committed by transaction()
        finally:
            session.close()
