"""The schema, as SQLAlchemy Core tables: its single source.

Repositories build their statements on these tables; the ORM classes of :mod:`blog.models` are
mapped onto them (for code that wants the unit of work), and Alembic compares the migrations
with this ``metadata``. Importing this module costs no ORM: a handler's cold start stays free
of ``sqlalchemy.orm`` (its import and its mapper configuration).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from blog.domain import (
    EMAIL_MAX,
    IDEMPOTENCY_KEY_MAX,
    PASSWORD_HASH_MAX,
    SIGN_IN_CLIENT_MAX,
    STATUS_ACTIVE,
    STATUS_INACTIVE,
    TITLE_MAX,
    USERNAME_MAX,
)

#: The predicate of the partial indexes over published posts; queries must say it the same way.
PUBLISHED: Final = text("published")

# Stable constraint names, so Alembic autogenerate and hand-written migrations agree.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)


def _timestamps() -> tuple[Column[object], Column[object]]:
    """``created_at``/``updated_at`` set by the database; ``updated_at`` refreshed on update."""
    return (
        Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        Column(
            "updated_at",
            DateTime(timezone=True),
            server_default=func.now(),
            onupdate=func.now(),
            nullable=False,
        ),
    )


def _version() -> Column[int]:
    """``version``: 1 on insert, one more on every write (repositories add it); the ETag."""
    return Column("version", Integer, server_default=text("1"), nullable=False)


#: Registered users. Emails and usernames are stored lower-case, so uniqueness ignores case.
users: Final = Table(
    "users",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("email", String(EMAIL_MAX), nullable=False, unique=True, index=True),
    Column("username", String(USERNAME_MAX), nullable=False, unique=True, index=True),
    Column("hashed_password", String(PASSWORD_HASH_MAX), nullable=False),
    Column("is_active", Boolean, server_default=text("true"), nullable=False),
    Column("status", String(20), server_default=text(f"'{STATUS_ACTIVE}'"), nullable=False),
    Column("is_admin", Boolean, server_default=text("false"), nullable=False),
    # Carried by every access token; moving it on voids all tokens issued before.
    Column("token_version", Integer, server_default=text("0"), nullable=False),
    # The per-account sign-in slowing of revision 0010, unused since 0017 (the state is now per
    # account and client, `sign_in_failures`); kept, unread and unwritten, so code of the
    # previous release still runs beside this one, until a later revision drops both columns.
    Column("failed_sign_ins", Integer, server_default=text("0"), nullable=False),
    Column("sign_in_blocked_until", DateTime(timezone=True), nullable=True),
    *_timestamps(),
    _version(),
    # GET /users: active users by id, walked in that order by keyset (revision 0007).
    Index("ix_users_active_id", "id", postgresql_where=text("is_active")),
    CheckConstraint("email = lower(email)", name="email_lowercase"),
    CheckConstraint("username = lower(username)", name="username_lowercase"),
    CheckConstraint(f"status IN ('{STATUS_ACTIVE}', '{STATUS_INACTIVE}')", name="status_allowed"),
    CheckConstraint(f"is_active = (status = '{STATUS_ACTIVE}')", name="status_matches_is_active"),
)

#: Blog posts; drafts (``published = false``) are visible to their author only. Every list is
#: walked by keyset on an index in exactly its order (newest first is a backward scan); search
#: reads trigram indexes (revisions 0007 and 0008). Only published posts are listed publicly or
#: searched, so those indexes leave drafts out.
posts: Final = Table(
    "posts",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("title", String(TITLE_MAX), nullable=False),
    Column("content", Text, nullable=False),
    Column("published", Boolean, server_default=text("false"), nullable=False),
    # Indexed by ix_posts_author_id_created_at_id (its leading column serves the cascade too).
    Column("author_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    *_timestamps(),
    _version(),
    Index("ix_posts_published_created_at_id", "created_at", "id", postgresql_where=PUBLISHED),
    Index("ix_posts_author_id_created_at_id", "author_id", "created_at", "id"),
    Index(
        "ix_posts_title_trgm",
        "title",
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
        postgresql_where=PUBLISHED,
    ),
    Index(
        "ix_posts_content_trgm",
        "content",
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
        postgresql_where=PUBLISHED,
    ),
)

#: The first answer to a ``POST`` sent with an ``Idempotency-Key``, kept for its retries.
#: Written in the transaction of the write it answers: the row exists (committed) exactly when
#: the write does. ``scope`` is the caller (``user:<id>``, or ``anonymous`` on public routes),
#: ``fingerprint`` identifies the request (route, path, body); the response columns are set
#: before the commit, so a committed row always has them.
idempotency_keys: Final = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(40), primary_key=True),
    Column("key", String(IDEMPOTENCY_KEY_MAX), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", SmallInteger, nullable=True),
    Column("headers", JSONB, nullable=True),
    Column("body", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

#: Wrong passwords per account and client (an IPv4 address, an IPv6 /64) and, on the row with
#: client :data:`~blog.domain.ACCOUNT_WIDE`, per account from every client; until when sign-in
#: is paused for that pair or, milder, for the account. A row is forgotten at ``expires_at``
#: (and purged). No ORM class: only ``SignInFailureRepository`` reads it.
sign_in_failures: Final = Table(
    "sign_in_failures",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("client", String(SIGN_IN_CLIENT_MAX), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("blocked_until", DateTime(timezone=True)),
    # A password of this pair is being checked until then (parallel guesses wait their turn).
    Column("attempt_until", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sign_in_failures_expires_at", "expires_at"),
)
