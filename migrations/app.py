"""Deploy-time migrations: a CloudFormation custom resource, and Alembic's commands by hand.

As ``Custom::DatabaseMigrations`` (its properties carry a digest of the scripts, so any change of
the migrations updates the resource and runs this on ``sam deploy``):

* ``Create``/``Update``: ``upgrade head`` under a PostgreSQL advisory lock so that two runs cannot
  interleave; answers SUCCESS with the new revision as ``Data.Revision``. The revisions run in one
  transaction, except that one building an index ``CONCURRENTLY`` (which PostgreSQL runs outside
  any) first commits those before it; such a revision is resumable (see 0007).
* ``Delete``: answers SUCCESS and touches nothing (a stack delete never drops data).
* Any failure answers FAILED with a short reason, and the transaction leaves the schema as it
  was (or at the last revision committed before a concurrent index build). It always answers,
  also when an exception escapes, and a guard answers FAILED shortly before Lambda's timeout,
  so a stack never waits an hour for a response.

Invoked by hand with ``{"action": "current" | "history" | "upgrade" | "downgrade" | "sql",
"revision": …}`` it does what that Alembic command does and returns the result as JSON.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from aws_lambda_powertools import Logger
from sqlalchemy import Connection, text

from blog.db import get_engine

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="blog-api-migrations")

HERE: Final = Path(__file__).resolve().parent
PHYSICAL_RESOURCE_ID: Final = "blog-api-database-migrations"
#: Any 64-bit number that no other code uses as an advisory lock key ("blog-api" in ASCII).
ADVISORY_LOCK_KEY: Final = int.from_bytes(b"blog-api", "big") & 0x7FFF_FFFF_FFFF_FFFF
#: The guard answers FAILED when this little time is left, leaving time for the request itself.
TIMEOUT_MARGIN_MS: Final = 10_000
RESPONSE_TIMEOUT_S: Final = 10
REASON_MAX: Final = 500
LOCK_POLL_S: Final = 0.5


def alembic_config(
    connection: Connection | None = None, output: io.StringIO | None = None
) -> Config:
    """Alembic configured from this folder (the function's package has no pyproject.toml)."""
    cfg = Config(output_buffer=output, stdout=output or io.StringIO())
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None before the first migration)."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(target: str = "head", *, downgrade: bool = False) -> dict[str, Any]:
    """Upgrade (or downgrade) to ``target``, holding the advisory lock.

    Alembic gets the connection outside a transaction and begins its own, so that a revision can
    leave it for a ``CREATE INDEX CONCURRENTLY`` (``autocommit_block``).
    """
    key = {"key": ADVISORY_LOCK_KEY}
    with get_engine().connect() as connection:
        # Session-scoped, as it must outlive the commits around an autocommit block: released
        # below, or when the connection closes (also if the process dies). Waited for outside
        # any transaction: a CREATE INDEX CONCURRENTLY of the run holding it waits for every
        # open transaction to end, so blocking in one would deadlock the two runs.
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
            connection.rollback()
            time.sleep(LOCK_POLL_S)
        before = current_revision(connection)
        connection.commit()
        try:
            cfg = alembic_config(connection)
            if downgrade:
                command.downgrade(cfg, target)
            else:
                command.upgrade(cfg, target)
            after = current_revision(connection)
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            connection.commit()
    logger.info("migrated", extra={"from_revision": before, "to_revision": after})
    return {"from_revision": before, "revision": after}


def history() -> list[dict[str, Any]]:
    """Every revision, newest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [
        {
            "revision": rev.revision,
            "down_revision": rev.down_revision,
            "message": (rev.doc or "").split("\n")[0],
            "is_head": rev.is_head,
        }
        for rev in script.walk_revisions()
    ]


def offline_sql(revision: str = "head", *, downgrade: bool = False) -> str:
    """The SQL that ``upgrade`` (or ``downgrade``) would run, without touching the database."""
    output = io.StringIO()
    cfg = alembic_config(output=output)
    (command.downgrade if downgrade else command.upgrade)(cfg, revision, sql=True)
    return output.getvalue()


def manual(event: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 - one branch per action
    """A hand invocation: one Alembic command, its result as JSON."""
    action = event.get("action")
    revision = event.get("revision")
    if action == "current":
        with get_engine().connect() as connection:
            return {"revision": current_revision(connection)}
    if action == "history":
        return {"history": history()}
    if action == "upgrade":
        return migrate(str(revision or "head"))
    if action == "downgrade":
        if not revision:
            return {"error": "downgrade needs a revision (e.g. -1, 0003 or base)"}
        return migrate(str(revision), downgrade=True)
    if action == "sql":
        return {"sql": offline_sql(str(revision or "head"), downgrade=bool(event.get("downgrade")))}
    return {"error": f"unknown action {action!r}; use current, history, upgrade, downgrade, sql"}


class CloudFormationReply:
    """Sends the custom resource's one answer to CloudFormation's pre-signed URL, exactly once."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self._lock = threading.Lock()
        self.sent = False
        self.delivered = False

    def send(self, status: str, reason: str = "", data: dict[str, Any] | None = None) -> bool:
        """PUT the response; False if one was already sent."""
        with self._lock:
            if self.sent:
                return False
            self.sent = True
        body = json.dumps(
            {
                "Status": status,
                "Reason": (reason or status)[:REASON_MAX],
                "PhysicalResourceId": self.event.get("PhysicalResourceId") or PHYSICAL_RESOURCE_ID,
                "StackId": self.event["StackId"],
                "RequestId": self.event["RequestId"],
                "LogicalResourceId": self.event["LogicalResourceId"],
                "NoEcho": False,
                "Data": data or {},
            }
        ).encode()
        url = str(self.event.get("ResponseURL") or "")
        # CloudFormation's pre-signed https URL (http in local tests); urlopen would also read a
        # file: or ftp: URL, so nothing else is opened.
        if urllib.parse.urlsplit(url).scheme not in {"https", "http"}:
            logger.error("ResponseURL is not an http(s) URL; no answer sent")
            return True
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            url,
            data=body,
            method="PUT",
            headers={"Content-Type": "", "Content-Length": str(len(body))},
        )
        for attempt in range(1, 4):
            try:
                # http(s) only, checked above (bandit B310)
                opened = urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_S)  # nosec B310
                with opened as reply:
                    logger.info(
                        "answered CloudFormation", extra={"status": status, "http": reply.status}
                    )
                    self.delivered = True
                    return True
            except OSError as error:
                logger.warning(
                    "could not answer CloudFormation",
                    extra={"attempt": attempt, "status": status, "error": repr(error)},
                )
        return True


def custom_resource(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle one CloudFormation request; always answers, at the latest just before the timeout."""
    reply = CloudFormationReply(event)
    guard_s = max(0.0, (context.get_remaining_time_in_millis() - TIMEOUT_MARGIN_MS) / 1000)
    guard = threading.Timer(
        guard_s, reply.send, args=("FAILED", "Migration did not finish before the function timeout")
    )
    guard.daemon = True
    guard.start()
    try:
        request_type = event.get("RequestType")
        if request_type == "Delete":
            reply.send("SUCCESS", "Nothing to do on delete: the data is kept")
        elif request_type in ("Create", "Update"):
            result = migrate("head")
            reply.send(
                "SUCCESS", f"At revision {result['revision']}", {"Revision": result["revision"]}
            )
        else:
            reply.send("FAILED", f"Unknown request type {request_type!r}")
    except BaseException as error:  # noqa: BLE001 - CloudFormation must hear about anything
        logger.exception("migration failed")
        reply.send("FAILED", f"{type(error).__name__}: {_short(error)}")
    finally:
        guard.cancel()
    return {"sent": reply.sent, "delivered": reply.delivered}


def _short(error: BaseException) -> str:
    # Only the server's code and message: the rest of a driver error quotes the statement, its
    # parameters and row data.
    orig = getattr(error, "orig", error)
    fields = orig.args[0] if orig.args and isinstance(orig.args[0], dict) else None
    if fields:
        return f"SQLSTATE {fields.get('C')}: {fields.get('M')}"[:REASON_MAX]
    return str(error).split("\n")[0][:REASON_MAX]


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Custom resource request (it has a ``ResponseURL``) or a manual ``action``."""
    if "ResponseURL" in event:
        return custom_resource(event, context)
    return manual(event)
