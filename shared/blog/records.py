"""What repositories return: immutable rows, one frozen dataclass per table, with the tables'
column names, so the response models read them with ``from_attributes`` as they would read an
ORM object. Made once from a result row; no session, nothing loaded later."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A row of ``users``."""

    id: int
    email: str
    username: str
    hashed_password: str
    is_active: bool
    status: str
    is_admin: bool
    token_version: int
    failed_sign_ins: int
    sign_in_blocked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int

    def __repr__(self) -> str:  # the hash stays out of logs and tracebacks
        return f"UserRecord(id={self.id}, username={self.username!r})"


@dataclass(frozen=True, slots=True)
class PostRecord:
    """A row of ``posts``."""

    id: int
    title: str
    content: str
    published: bool
    author_id: int
    created_at: datetime
    updated_at: datetime
    version: int


@dataclass(frozen=True, slots=True, repr=False)
class UserWithPosts(UserRecord):
    """A user and all their posts, by id (``UserRepository.get_with_posts``)."""

    posts: tuple[PostRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A row of ``idempotency_keys``: the answer kept for retries of one key."""

    scope: str
    key: str
    fingerprint: str
    status_code: int | None
    headers: dict[str, str] | None
    body: str | None
    created_at: datetime
    expires_at: datetime
