"""Users status, CONTRACT step: reconcile ``status`` with ``is_active``, then enforce it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Expand–contract, step 2 of 2 (step 1 is 0003). Deploy first, and wait until no older version is
still running: application code that sets ``status`` whenever it changes ``is_active`` (the
``blog`` layer's activate/deactivate do) and tolerates a NULL status until this step. Old code
changes ``is_active`` alone, which the CHECK added here rejects once the two disagree.

``status`` is recomputed from ``is_active`` wherever the two disagree: this fills the NULLs left
by code that ran between the steps, and repairs rows whose ``is_active`` old code changed after
the expand backfill. ``is_active`` is the source of truth for that because old code wrote only it.
Then ``status`` gets its server default ('active', matching ``is_active``'s default of true),
becomes NOT NULL, and two CHECKs keep it to the allowed values and in step with ``is_active``.

These statements validate every row while holding an ACCESS EXCLUSIVE lock; that is brief for
this table. For a very large one, add the CHECKs ``NOT VALID`` and ``VALIDATE`` them in a later
transaction instead.

Downgrade drops the CHECKs, the default and NOT NULL, and keeps the data: code of the expand
phase (which tolerates a NULL status) can run again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECONCILE_STATUS = """
UPDATE users
SET status = CASE WHEN is_active THEN 'active' ELSE 'inactive' END
WHERE status IS DISTINCT FROM CASE WHEN is_active THEN 'active' ELSE 'inactive' END
"""


def upgrade() -> None:
    op.execute(sa.text(RECONCILE_STATUS))
    op.alter_column(
        "users",
        "status",
        existing_type=sa.String(length=20),
        server_default=sa.text("'active'"),
        nullable=False,
    )
    op.create_check_constraint(
        op.f("ck_users_status_allowed"), "users", "status IN ('active', 'inactive')"
    )
    op.create_check_constraint(
        op.f("ck_users_status_matches_is_active"), "users", "is_active = (status = 'active')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_status_matches_is_active"), "users", type_="check")
    op.drop_constraint(op.f("ck_users_status_allowed"), "users", type_="check")
    op.alter_column(
        "users",
        "status",
        existing_type=sa.String(length=20),
        server_default=None,
        nullable=True,
    )
