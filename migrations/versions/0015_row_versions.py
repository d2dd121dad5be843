"""Users and posts: a ``version`` per row, the entity tag of its representation.

Revision ID: 0015
Revises: 0011
Create Date: 2026-12-01

Every write of a row adds one to its ``version``; responses carry it as ``ETag: "v<version>"``
and ``If-Match`` compares against it, so two editors cannot overwrite each other unnoticed.

``ADD COLUMN … NOT NULL DEFAULT 1`` rewrites nothing (PostgreSQL 11 and later keep a constant
default in the catalogue), so it is instant on a big table and safe with old code running: old
inserts omit the column and get 1, old updates leave it as it is (their writes go unnoticed by
``If-Match`` until the new code runs, as before this revision).

Downgrade drops both columns; the entity tags clients hold then no longer match anything.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("users", "posts"):
        op.add_column(
            table, sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )


def downgrade() -> None:
    for table in ("posts", "users"):
        op.drop_column(table, "version")
