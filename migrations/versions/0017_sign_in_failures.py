"""Sign-in slowing per account and client: ``sign_in_failures``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

One row per (user, client) that gave wrong passwords (the client an IPv4 address or an IPv6
/64), and one per user (client ``*``) counting them from every client: a guesser's pause is
their own, and the owner signing in from elsewhere is not paused by it (docs/api.md, "Tokens,
revocation and sign-in slowing"). ``attempt_until`` marks a password being checked for the pair,
so that parallel guesses from one client are checked one at a time. Rows carry ``expires_at``; the hourly purge deletes expired
ones through ``ix_sign_in_failures_expires_at``.

A new table, empty, created in one transaction (``IF NOT EXISTS``, so a run stopped half way is
resumed): safe with the previous release running, which neither reads nor writes it.

Expand only: ``users.failed_sign_ins`` and ``users.sign_in_blocked_until`` (0010) stay, unused
by this release, so code of the previous one still runs beside it during a deployment; a later
revision drops them. Pauses counted in those columns before the upgrade are not carried over.

Downgrade drops the table: the previous release then slows sign-in by its own columns again,
starting from nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_sign_in_failures_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "client", name="pk_sign_in_failures"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_sign_in_failures_expires_at", "sign_in_failures", ["expires_at"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_expires_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
