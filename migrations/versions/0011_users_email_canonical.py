"""Users: stored emails in their canonical spelling (Unicode NFC, lower-case, IDNA domain).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

New emails are stored as ``blog.models.canonical_email`` spells them. Rows written before may
hold a Unicode domain (``bücher.de``) or a decomposed local part, so that the same address in
another spelling would not be found, or could be registered a second time. This revision rewrites
them. Only non-ASCII emails can differ (ASCII ones are lower-case already), so only those are
read. A row whose canonical email another row already has, or that is no valid address, is left
as it is (and counted in the migration's log output).

The normalization is written out here, frozen: the layer's may change later, this revision must
not. Each rewritten row's previous email is kept in ``migration_backup.users_email_0011`` (a
schema of its own, outside the models' schema), which downgrade puts back and drops.
"""

import unicodedata
from collections.abc import Sequence

import idna
import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EMAIL_MAX = 255


def _canonical(email: str) -> str | None:
    text = unicodedata.normalize("NFC", email.strip())
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    normalized = f"{unicodedata.normalize('NFC', local.lower())}@{domain.lower()}"
    return normalized if len(normalized) <= _EMAIL_MAX else None


def upgrade() -> None:
    op.execute(sa.text("CREATE SCHEMA IF NOT EXISTS migration_backup"))
    op.execute(
        sa.text(
            "CREATE TABLE migration_backup.users_email_0011 (user_id integer PRIMARY KEY, email text NOT NULL)"
        )
    )
    if op.get_context().as_sql:
        # Offline SQL has no rows to read: the rewrite needs a connection (alembic upgrade).
        op.execute(sa.text("-- 0011: run online to normalize the stored emails"))
        return
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, email FROM users WHERE email !~ '^[\\x01-\\x7f]*$' ORDER BY id")
    ).all()
    if not rows:
        return
    taken = {
        email
        for (email,) in connection.execute(
            sa.text("SELECT email FROM users WHERE email = ANY(:emails)"),
            {"emails": [c for c in (_canonical(e) for _, e in rows) if c]},
        )
    }
    changes, skipped = [], 0
    for user_id, email in rows:
        canonical = _canonical(email)
        if canonical == email:
            continue
        if canonical is None or canonical in taken:
            skipped += 1
            continue
        taken.add(canonical)
        changes.append({"id": user_id, "old": email, "new": canonical})
    if changes:
        connection.execute(
            sa.text(
                "INSERT INTO migration_backup.users_email_0011 (user_id, email) VALUES (:id, :old)"
            ),
            changes,
        )
        connection.execute(
            sa.text("UPDATE users SET email = :new WHERE id = :id AND email = :old"), changes
        )
    if skipped:
        print(f"0011: {len(changes)} emails normalized, {skipped} left as they were")  # noqa: T201


def downgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE users SET email = b.email FROM migration_backup.users_email_0011 b WHERE users.id = b.user_id"
        )
    )
    op.execute(sa.text("DROP TABLE migration_backup.users_email_0011"))
    op.execute(sa.text("DROP SCHEMA IF EXISTS migration_backup"))  # only if empty: no CASCADE
