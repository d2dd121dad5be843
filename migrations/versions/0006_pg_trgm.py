"""Search: the ``pg_trgm`` extension, whose trigram operator classes index substring search.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``pg_trgm`` is a trusted extension (PostgreSQL 13+, RDS and Aurora included): the database
owner may create it without superuser rights. Creating it takes a moment and no table lock, so
it runs in the migration's transaction. The indexes that use it come in their own revision
(0008), built ``CONCURRENTLY``.

Downgrade drops the extension; it refuses while an index still uses it (downgrade 0008 first,
which Alembic's order does).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")


def downgrade() -> None:
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
