"""Seed a blog database at a given size with ``COPY``: users, then posts (for ``make bench-scale``).

    .venv/bin/python -m benchmarks.scale_seed --url URL --users 100000 --posts 1000000

Deterministic for a given ``--seed``. Posts are 70% published, their contents 200-2,000
characters of syllable words, their ``created_at`` spread over three years in id order (as a
real table grows); 1% of them contain :data:`HIT_WORD`, none contains :data:`MISS_WORD`, so a
search for either measures an index at a known selectivity. 5% of users are inactive.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import local  # noqa: F401 - puts the layer on sys.path

#: In 1% of posts (and in no other): a search hit of known selectivity.
HIT_WORD: Final = "kumquat"
#: In no post: a search miss.
MISS_WORD: Final = "xylophone"
HIT_SHARE: Final = 0.01
PUBLISHED_SHARE: Final = 0.7
INACTIVE_SHARE: Final = 0.05
CONTENT_MIN: Final = 200
CONTENT_MAX: Final = 2_000
SPAN: Final = timedelta(days=3 * 365)
END: Final = datetime(2026, 11, 1, tzinfo=UTC)
#: Rows per COPY message batch.
CHUNK: Final = 20_000
# Consonant-vowel syllables without q, x or y: no generated word shares a trigram like "umq"
# or "xyl" with HIT_WORD or MISS_WORD, as real words rarely share rare trigrams.
_CONSONANTS: Final = "bcdfghjklmnprstvwz"
_VOWELS: Final = "aeiou"
# A valid Argon2id PHC string; nobody signs in as a seeded user.
PASSWORD_HASH: Final = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVk$" + "A" * 43


def _text_buffer(rng: random.Random, size: int) -> str:
    words = [
        "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 4)))
        for _ in range(5_000)
    ]
    parts: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choices(words, k=rng.randint(5, 18))).capitalize() + ". "
        parts.append(sentence)
        length += len(sentence)
    text = "".join(parts)
    assert HIT_WORD not in text and MISS_WORD not in text
    return text


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _user_rows(count: int, rng: random.Random) -> Iterator[bytes]:
    lines: list[str] = []
    for i in range(1, count + 1):
        active = rng.random() >= INACTIVE_SHARE
        status = "active" if active else "inactive"
        lines.append(
            f"u{i}@example.com\tuser{i}\t{PASSWORD_HASH}\t{'t' if active else 'f'}\t{status}\n"
        )
        if len(lines) >= CHUNK:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


def _post_rows(count: int, users: int, rng: random.Random) -> Iterator[bytes]:
    buffer = _text_buffer(rng, 4_000_000)
    limit = len(buffer) - CONTENT_MAX
    start = END - SPAN
    step = SPAN / max(count, 1)
    lines: list[str] = []
    for i in range(count):
        created = (start + step * i).isoformat()
        offset = rng.randrange(limit)
        content = buffer[offset : offset + rng.randint(CONTENT_MIN, CONTENT_MAX)].strip() or "x"
        if rng.random() < HIT_SHARE:
            content = content[: CONTENT_MAX - len(HIT_WORD) - 2]
            cut = rng.randrange(len(content))
            content = f"{content[:cut]} {HIT_WORD} {content[cut:]}"
        title_at = rng.randrange(limit)
        title = buffer[title_at : title_at + rng.randint(20, 80)].strip() or "Untitled"
        published = "t" if rng.random() < PUBLISHED_SHARE else "f"
        author = rng.randint(1, users)
        lines.append(
            f"{_escape(title)}\t{_escape(content)}\t{published}\t{author}\t{created}\t{created}\n"
        )
        if len(lines) >= CHUNK:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


def seed(url: str, *, users: int, posts: int, seed_value: int = 11) -> dict[str, Any]:
    """Fill an empty, migrated database at ``url``; returns how long each part took (s)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    rng = random.Random(seed_value)  # noqa: S311 - test data, not secrets  # nosec B311
    engine = create_engine(url, poolclass=NullPool)
    timings: dict[str, Any] = {"users": users, "posts": posts}
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET statement_timeout = 0")
        began = time.perf_counter()
        cursor.execute(
            "COPY users (email, username, hashed_password, is_active, status) FROM STDIN",
            stream=_user_rows(users, rng),  # type: ignore[call-arg]
        )
        raw.commit()
        timings["copy_users_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        cursor.execute(
            "COPY posts (title, content, published, author_id, created_at, updated_at) FROM STDIN",
            stream=_post_rows(posts, users, rng),  # type: ignore[call-arg]
        )
        raw.commit()
        timings["copy_posts_s"] = round(time.perf_counter() - began, 1)
    finally:
        raw.close()
    began = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("VACUUM (ANALYZE) users"))
        conn.execute(text("VACUUM (ANALYZE) posts"))
    timings["vacuum_analyze_s"] = round(time.perf_counter() - began, 1)
    engine.dispose()
    return timings


def main(argv: list[str] | None = None) -> int:
    """Seed the database given by ``--url``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_seed")
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    print(seed(args.url, users=args.users, posts=args.posts, seed_value=args.seed))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
