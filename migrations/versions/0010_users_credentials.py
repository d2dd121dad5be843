"""Users: a token version and the state of sign-in slowing.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01

- ``token_version``: the version every access token carries (claim ``ver``). Changing the
  password, deactivating the account and "sign out everywhere" move it on, so every token
  issued before is refused at once, wherever it is cached.
- ``failed_sign_ins`` and ``sign_in_blocked_until``: wrong passwords in a row and, after a few,
  until when sign-in is paused for the account (the pause doubles with each further failure,
  up to a cap, and ends by itself).

All three are added with constant defaults (no table rewrite since PostgreSQL 11), so code of
the previous revision keeps working. Tokens issued before this revision carry no ``ver`` and are
refused by the new code: their holders sign in again (tokens live 15 minutes).

Downgrade drops the three columns.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("token_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "users",
        sa.Column("failed_sign_ins", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "users", sa.Column("sign_in_blocked_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("users", "sign_in_blocked_until")
    op.drop_column("users", "failed_sign_ins")
    op.drop_column("users", "token_version")
