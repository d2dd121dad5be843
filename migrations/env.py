"""Alembic environment: runs the revisions in ``versions/`` against the blog database.

Loaded by Alembic only (``alembic`` CLI, ``alembic.command`` in tests and the deploy-time
migration function); it is not importable as a module.

* Online, with ``config.attributes["connection"]``: the caller's connection, which must not be in
  a transaction (tests and the deploy function open ``engine.connect()`` and pass it). Alembic
  runs every revision in one transaction of its own, committed at the end; a revision that builds
  an index ``CONCURRENTLY`` leaves it (``autocommit_block``), committing the revisions before.
* Online, without one: the layer's own engine (:func:`blog.db.get_engine`), which reads
  ``DATABASE_URL`` locally or the Secrets Manager secret on AWS.
* Offline (``--sql``): SQL for PostgreSQL is written out; no database and no settings are needed.

Logging is left to the caller: there is no ini file to configure it from, and inside Lambda
``logging.config.fileConfig`` would silence the Powertools logger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from alembic import context

from blog.tables import metadata

if TYPE_CHECKING:
    from sqlalchemy import Connection

OFFLINE_URL: Final = "postgresql+pg8000://"

config = context.config
target_metadata = metadata

# Shared by both modes. Types and server defaults are compared too, so `alembic check` notices
# any drift between the models and the migrated schema.
CONFIGURE_OPTIONS: Final[dict[str, Any]] = {
    "target_metadata": target_metadata,
    "compare_type": True,
    "compare_server_default": True,
    "transaction_per_migration": False,
}


def run_migrations_offline() -> None:
    """Write the migration SQL to the output buffer (stdout unless the caller set one)."""
    context.configure(
        url=OFFLINE_URL,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **CONFIGURE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the given connection, else through a connection of the layer's engine."""
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        if connection.in_transaction():
            # Alembic would join it, and an autocommit block could not leave it.
            raise RuntimeError("pass a connection that is not in a transaction")
        _run_on(connection)
        return
    from blog.db import get_engine

    with get_engine().connect() as own_connection:
        _run_on(own_connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
