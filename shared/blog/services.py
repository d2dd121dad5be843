"""Use cases. Each opens its own unit of work, so each is one transaction (retried on conflict).

Services are the only callers of :func:`blog.db.transaction`; handlers call services. Rows come
back as ORM objects with every column loaded (``expire_on_commit=False``) and relationships only
where the use case loaded them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from blog.db import retry_on_conflict, transaction
from blog.errors import ForbiddenError, NotFoundError, ValidationError
from blog.models import Post, User
from blog.repositories import PostRepository, UserRepository
from blog.security import hash_password

WELCOME_CONTENT: Final = "Thanks for joining. This is your first post: edit it or write a new one."


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: every write checks it."""

    user_id: int | None
    is_admin: bool = False

    def may_act_for(self, user_id: int) -> bool:
        """Whether the actor may change what belongs to ``user_id``."""
        return self.is_admin or self.user_id == user_id


#: Internal callers (bulk import, maintenance) act with full rights.
SYSTEM: Final = Actor(user_id=None, is_admin=True)


def _require(actor: Actor, owner_id: int) -> None:
    if not actor.may_act_for(owner_id):
        raise ForbiddenError()


@retry_on_conflict()
def register_user(*, email: str, username: str, password: str) -> User:
    """Create a user. A taken email or username raises ``DuplicateError``.

    No look-up first: the unique indexes decide, so two racing registrations cannot both win.
    """
    hashed = hash_password(password)  # outside the transaction: no connection held while hashing
    with transaction() as session:
        return UserRepository(session).create(
            email=email, username=username, hashed_password=hashed
        )


def welcome_post_values(user: User) -> dict[str, Any]:
    """Title and content of the welcome post for ``user``."""
    return {"title": f"Welcome, {user.username}!", "content": WELCOME_CONTENT, "published": True}


@retry_on_conflict()
def create_user_with_welcome_post(*, email: str, username: str, password: str) -> tuple[User, Post]:
    """Create a user and their published welcome post atomically: both or neither."""
    hashed = hash_password(password)
    with transaction() as session:
        user = UserRepository(session).create(
            email=email, username=username, hashed_password=hashed
        )
        post = PostRepository(session).create(author_id=user.id, **welcome_post_values(user))
        return user, post


@retry_on_conflict()
def transfer_posts(*, from_user_id: int, to_user_id: int, actor: Actor = SYSTEM) -> int:
    """Move every post of one user to another (admins only); returns how many moved."""
    if not actor.is_admin:
        raise ForbiddenError()
    if from_user_id == to_user_id:
        raise ValidationError(
            "Cannot transfer posts to the same user", details={"field": "to_user_id"}
        )
    with transaction() as session:
        users = UserRepository(session)
        # Both rows are locked (in id order, so two opposite transfers cannot deadlock each other),
        # which keeps either user from being deleted until the move commits.
        for user_id in sorted((from_user_id, to_user_id)):
            if users.lock(user_id, key_share=True) is None:
                raise NotFoundError(f"User {user_id} not found", details={"user_id": user_id})
        return PostRepository(session).transfer(from_user_id, to_user_id)


@retry_on_conflict()
def delete_user_cascade(user_id: int, *, actor: Actor = SYSTEM) -> int:
    """Delete a user and, by ``ON DELETE CASCADE``, all their posts; returns how many posts went."""
    _require(actor, user_id)
    with transaction() as session:
        posts = PostRepository(session)
        users = UserRepository(session)
        if users.lock(user_id) is None:
            raise NotFoundError(f"User {user_id} not found")
        post_count = posts.count(Post.author_id == user_id)
        users.delete(user_id)
        return post_count


@retry_on_conflict()
def publish_post(post_id: int, *, actor: Actor = SYSTEM) -> Post:
    """Publish a post (its author or an admin); ``NotFoundError`` when there is no such post."""
    with transaction() as session:
        posts = PostRepository(session)
        post = posts.lock(post_id)
        if post is None or not (post.published or actor.may_act_for(post.author_id)):
            raise NotFoundError(f"Post {post_id} not found")
        _require(actor, post.author_id)
        published = posts.publish(post_id)
        assert published is not None  # locked above, so it still exists
        return published


@retry_on_conflict()
def import_users(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """Upsert users on email in one statement (``email``, ``username``, ``hashed_password``)."""
    with transaction() as session:
        return UserRepository(session).upsert(rows)
