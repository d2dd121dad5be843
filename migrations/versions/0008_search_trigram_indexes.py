"""Search: trigram GIN indexes on the titles and contents of published posts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

``GET /posts?q=`` is a case-insensitive substring search (``ILIKE '%q%'`` with ``%``, ``_``
and ``\\`` literal) of published posts. ``gin_trgm_ops`` indexes every trigram of a value, and
an ``ILIKE`` whose pattern holds a trigram is answered from the index: a miss costs a few index
pages, a hit reads only the rows holding all of the pattern's trigrams (rechecked against the
pattern). Only published posts are searched, so drafts stay out of the indexes and creating one
(a draft) writes no trigram at all. ``fastupdate`` stays on (the default): a write appends to the
index's pending list, merged by vacuum or when it outgrows ``gin_pending_list_limit``.

Both are built ``CONCURRENTLY`` (writes go on) and resumably, as in 0007. At 1,000,000 posts
(700,000 published, 200-2,000 characters each; 690 MB of content index, 100 MB of title index)
on two cores the title index took 10 s and the content index 166 s on a quiet machine, and the
whole upgrade 482 s with the cores shared four ways (``make bench-scale`` times it). That is why
the migration function's timeout is Lambda's maximum, 900 s (and the custom resource's
``ServiceTimeout`` above it): a million posts fit with room, a few million may not. A build that outlasts the function is not lost: PostgreSQL finishes a
statement whose client has gone, and the next run (the next deploy, or the function invoked by
hand with ``{"action": "upgrade"}``) waits for a build still in progress, finds a finished one
valid, or drops an interrupted (INVALID) one and builds it again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POLL_S = 5


def _outside_transaction() -> None:
    """End the transaction that pg8000 opened when Alembic read the isolation level on entering
    the autocommit block (it sends ``BEGIN`` before any statement outside autocommit)."""
    if not op.get_context().as_sql:
        op.execute("COMMIT")


def _build(name: str, definition: str) -> None:
    """``CREATE INDEX CONCURRENTLY name definition``, resumable; call in an autocommit block."""
    if not op.get_context().as_sql:
        bind = op.get_bind()
        state = sa.text(
            "SELECT i.indisvalid, EXISTS (SELECT FROM pg_stat_progress_create_index p"
            " WHERE p.index_relid = i.indexrelid) FROM pg_index i"
            " WHERE i.indexrelid = to_regclass(quote_ident(:name))"
        )
        while (found := bind.execute(state, {"name": name}).first()) is not None:
            valid, building = found
            if valid:
                return
            if not building:  # an interrupted build's leftover
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                break
            bind.execute(sa.text("SELECT pg_sleep(:s)"), {"s": POLL_S})
    op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _outside_transaction()
        op.execute("SET statement_timeout = 0")  # an index build may take minutes
        _build("ix_posts_title_trgm", "ON posts USING gin (title gin_trgm_ops) WHERE published")
        _build("ix_posts_content_trgm", "ON posts USING gin (content gin_trgm_ops) WHERE published")
        op.execute("RESET statement_timeout")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _outside_transaction()
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_posts_content_trgm")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_posts_title_trgm")
