"""SQLAlchemy 2.0 typed models: users and their posts."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

EMAIL_MAX: Final = 255
USERNAME_MAX: Final = 50
PASSWORD_HASH_MAX: Final = 255
TITLE_MAX: Final = 200
CONTENT_MAX: Final = 100_000
STATUS_ACTIVE: Final = "active"
STATUS_INACTIVE: Final = "inactive"

# Stable constraint names, so Alembic autogenerate and hand-written migrations agree.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def normalize_email(email: str) -> str:
    """Emails are stored trimmed and lower-case, so uniqueness and look-ups ignore case."""
    return email.strip().lower()


def normalize_username(username: str) -> str:
    """Usernames are stored trimmed and lower-case, so ``Alice`` and ``alice`` cannot both exist."""
    return username.strip().lower()


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    """``created_at``/``updated_at`` set by the database; ``updated_at`` refreshed on update."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class User(TimestampMixin, Base):
    """A registered user. Emails and usernames are stored lower-case, so uniqueness ignores case."""

    __tablename__ = "users"
    # Server-generated values (id, timestamps, defaults) come back through RETURNING, not a SELECT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        CheckConstraint("username = lower(username)", name="username_lowercase"),
        CheckConstraint(
            f"status IN ('{STATUS_ACTIVE}', '{STATUS_INACTIVE}')", name="status_allowed"
        ),
        CheckConstraint(
            f"is_active = (status = '{STATUS_ACTIVE}')", name="status_matches_is_active"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True, index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True, index=True)
    hashed_password: Mapped[str] = mapped_column(String(PASSWORD_HASH_MAX))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    status: Mapped[str] = mapped_column(String(20), server_default=text(f"'{STATUS_ACTIVE}'"))
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: Carried by every access token; moving it on voids all tokens issued before.
    token_version: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: Wrong passwords in a row, and until when sign-in is paused after too many.
    failed_sign_ins: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    sign_in_blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

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


class Post(TimestampMixin, Base):
    """A blog post; drafts (``published = false``) are visible to their author only."""

    __tablename__ = "posts"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
    __table_args__ = (Index("ix_posts_published_created_at", "published", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    content: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")

    def __repr__(self) -> str:
        return f"<Post id={self.id} author_id={self.author_id}>"
