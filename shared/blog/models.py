"""SQLAlchemy 2.0 typed models: users and their posts."""

from __future__ import annotations

from datetime import datetime
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

EMAIL_MAX: Final = 255
USERNAME_MAX: Final = 50
PASSWORD_HASH_MAX: Final = 255
TITLE_MAX: Final = 200
CONTENT_MAX: Final = 100_000
STATUS_ACTIVE: Final = "active"
STATUS_INACTIVE: Final = "inactive"
IDEMPOTENCY_KEY_MAX: Final = 255
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


#: Longest local part (RFC 5321).
EMAIL_LOCAL_MAX: Final = 64
# Characters that change how text renders without showing: joiners and fillers that are not of
# category Cf (which is refused whole), and the variation selectors.
_INVISIBLE: Final = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
)
_VARIATION_SELECTORS: Final = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))


def invisible_character(text: str, *, unassigned: bool = True) -> str | None:
    """The first character of ``text`` that does not show or that reorders text: format
    characters (Unicode category Cf: zero-width spaces and joiners, bidi controls, the soft
    hyphen...), fillers and variation selectors; with ``unassigned`` also unassigned and
    private-use code points. None when there is none."""
    if text.isascii():
        return None  # every ASCII character is assigned, none is Cf, a filler or a selector
    import unicodedata

    refused = {"Cf", "Cn", "Co"} if unassigned else {"Cf"}
    for char in text:
        code = ord(char)
        if (
            char in _INVISIBLE
            or unicodedata.category(char) in refused
            or any(low <= code <= high for low, high in _VARIATION_SELECTORS)
        ):
            return char
    return None


def canonical_email(email: str) -> str:
    """The one spelling of an email address: trimmed, Unicode NFC, lower-case, the domain
    IDNA-encoded (IDNA 2008 with UTS 46 mapping); ``ValueError`` for what is not an address or
    too long once normalized."""
    import unicodedata

    import idna

    text = unicodedata.normalize("NFC", email.strip())
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("must be an email address like name@example.com")
    found = invisible_character(text)
    if found is not None:
        raise ValueError(
            f"must not contain an invisible or formatting character (U+{ord(found):04X})"
        )
    if domain.isascii():
        ascii_domain = domain.lower()  # already its A-labels: only case can differ
    else:
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError) as error:
            raise ValueError("the domain must be a valid internationalized domain name") from error
    local = unicodedata.normalize("NFC", local.lower())
    if len(local) > EMAIL_LOCAL_MAX:
        raise ValueError(f"the part before @ must be at most {EMAIL_LOCAL_MAX} characters")
    normalized = f"{local}@{ascii_domain}"
    if len(normalized) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters once normalized")
    return normalized


def normalize_email(email: str) -> str:
    """Emails are stored in their canonical spelling (:func:`canonical_email`), so uniqueness
    and look-ups ignore case, Unicode composition and the form of the domain; what is no valid
    address (a login to look up) is only trimmed and lower-cased."""
    if email.isascii():
        # Then NFC changes nothing, the domain is its own A-labels and nothing is invisible: the
        # canonical spelling of a valid address is the trimmed lower-case text, as is the fallback.
        return email.strip().lower()
    try:
        return canonical_email(email)
    except ValueError:
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


class VersionMixin:
    """``version``: 1 on insert, one more on every write (repositories add it); the ETag."""

    version: Mapped[int] = mapped_column(Integer, server_default=text("1"), nullable=False)


class User(TimestampMixin, VersionMixin, Base):
    """A registered user. Emails and usernames are stored lower-case, so uniqueness ignores case."""

    __tablename__ = "users"
    # Server-generated values (id, timestamps, defaults) come back through RETURNING, not a SELECT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
    __table_args__ = (
        # GET /users: active users by id, walked in that order by keyset (revision 0007).
        Index("ix_users_active_id", "id", postgresql_where=text("is_active")),
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
    #: The per-account sign-in slowing of revision 0010, unused since 0017 (the state is now per
    #: account and client, :data:`sign_in_failures`); kept, unread and unwritten, so code of the
    #: previous release still runs beside this one, until a later revision drops both columns.
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


class Post(TimestampMixin, VersionMixin, Base):
    """A blog post; drafts (``published = false``) are visible to their author only."""

    __tablename__ = "posts"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
    # Every list is walked by keyset on an index in exactly its order (newest first is a backward
    # scan); search reads trigram indexes (revisions 0007 and 0008). Only published posts are
    # listed publicly or searched, so those indexes leave drafts out.
    __table_args__ = (
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

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    content: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Indexed by ix_posts_author_id_created_at_id (its leading column serves the cascade too).
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")

    def __repr__(self) -> str:
        return f"<Post id={self.id} author_id={self.author_id}>"


class IdempotencyKey(Base):
    """The first answer to a ``POST`` sent with an ``Idempotency-Key``, kept for its retries.

    Written in the transaction of the write it answers: the row exists (committed) exactly when
    the write does. ``scope`` is the caller (``user:<id>``, or ``anonymous`` on public routes),
    ``fingerprint`` identifies the request (route, path, body); the response columns are set
    before the commit, so a committed row always has them.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<IdempotencyKey scope={self.scope!r}>"


#: Client key of the account-wide row of :data:`sign_in_failures` (no address looks like it).
ACCOUNT_WIDE: Final = "*"
SIGN_IN_CLIENT_MAX: Final = 64

#: Wrong passwords per account and client (an IPv4 address, an IPv6 /64) and, on the row with
#: client :data:`ACCOUNT_WIDE`, per account from every client; until when sign-in is paused for
#: that pair or, milder, for the account. A row is forgotten at ``expires_at`` (and purged).
#: A Core table, no ORM class: only :class:`blog.repositories.SignInFailureRepository` reads it.
sign_in_failures: Final = Table(
    "sign_in_failures",
    Base.metadata,
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("client", String(SIGN_IN_CLIENT_MAX), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("blocked_until", DateTime(timezone=True)),
    # A password of this pair is being checked until then (parallel guesses wait their turn).
    Column("attempt_until", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sign_in_failures_expires_at", "expires_at"),
)
