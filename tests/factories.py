"""Factories that make rows for tests, each unique within a run."""

from __future__ import annotations

import itertools
from typing import Any

from blog import db
from blog.records import PostRecord, UserRecord
from blog.repositories import PostRepository, UserRepository
from blog.security import hash_password

_seq = itertools.count(1)


def user_values(**overrides: Any) -> dict[str, Any]:
    """Column values for a new user; unique email and username."""
    n = next(_seq)
    values: dict[str, Any] = {
        "email": f"user{n}@example.com",
        "username": f"user{n}",
        "hashed_password": hash_password(f"password-{n}"),
    }
    values.update(overrides)
    return values


def make_user(**overrides: Any) -> UserRecord:
    """Insert and commit a user."""
    with db.transaction() as connection:
        return UserRepository(connection).create(**user_values(**overrides))


def make_post(author: UserRecord, **overrides: Any) -> PostRecord:
    """Insert and commit a post by ``author`` (a draft unless ``published=True``)."""
    n = next(_seq)
    values: dict[str, Any] = {"title": f"Post {n}", "content": f"Content of post {n}"}
    values.update(overrides)
    with db.transaction() as connection:
        return PostRepository(connection).create(author_id=author.id, **values)
