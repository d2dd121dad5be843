"""Users: add the ``is_admin`` flag (admins may act on any user's account and posts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

``ADD COLUMN … NOT NULL DEFAULT false`` is safe with old code running: since PostgreSQL 11 a
constant default is stored in the catalogue, so no table rewrite happens and old inserts, which
omit the column, get ``false``. Nobody becomes an admin by migration; grant it explicitly
(``UPDATE users SET is_admin = true WHERE email = …``).

Downgrade drops the column, and with it every admin grant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("users", "is_admin")
