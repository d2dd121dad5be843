"""Users status, EXPAND step: add ``users.status`` (nullable) and backfill it from ``is_active``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Expand–contract, step 1 of 2 (step 2 is 0004). This step is safe while the previous application
version is still running:

* the column is nullable and has no default, so ``ADD COLUMN`` is a catalogue-only change (no table
  rewrite, the ACCESS EXCLUSIVE lock is held only briefly) and old code, which neither reads nor
  writes ``status``, keeps inserting and updating users unchanged;
* no constraint is added, so nothing the old code writes can be rejected.

The backfill is derived from ``is_active`` ('active' when true, else 'inactive'), touches only rows
whose ``status`` is still NULL, and is idempotent: it may be re-run, or run beforehand out of band
in id ranges (``... AND id BETWEEN :lo AND :hi``) on a large table, leaving nothing to do here.
Rows the old code writes after this step get a NULL status (or, if it toggles ``is_active``, a
stale one); 0004 reconciles them before enforcing anything.

Downgrade drops the column: roll the application back to a version that does not use ``status``
first.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_STATUS = """
UPDATE users
SET status = CASE WHEN is_active THEN 'active' ELSE 'inactive' END
WHERE status IS NULL
"""


def upgrade() -> None:
    op.add_column("users", sa.Column("status", sa.String(length=20), nullable=True))
    op.execute(sa.text(BACKFILL_STATUS))


def downgrade() -> None:
    op.drop_column("users", "status")
