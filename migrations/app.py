"""Deploy-time migrations: a CloudFormation custom resource, and Alembic's commands by hand.

As ``Custom::DatabaseMigrations`` (its properties carry a digest of the scripts, so any change of
the migrations updates the resource and runs this on ``sam deploy``):

* ``Create``/``Update``: waits until the database (or its proxy) accepts connections, then
  ``upgrade head`` under a PostgreSQL advisory lock so that two runs cannot interleave; answers
  SUCCESS with the new revision as ``Data.Revision``. The revisions run in one transaction,
  except that one building an index ``CONCURRENTLY`` (which PostgreSQL runs outside any) first
  commits those before it; such a revision is resumable (see 0007).
* An ``Update`` whose ``ScriptsDigest`` is not the digest of the scripts packaged with this code
  is a rollback: CloudFormation sends the previous properties to the new code after a later step
  of the update failed. It answers SUCCESS and leaves the schema alone (running ``upgrade head``
  again would fail the same way and strand the stack in ``UPDATE_ROLLBACK_FAILED``); the newer
  schema stays, which the expand/contract migrations keep compatible with the previous code.
* ``Delete``: answers SUCCESS and touches nothing (a stack delete never drops data).
* Any failure answers FAILED with a short reason, and the transaction leaves the schema as it
  was (or at the last revision committed before a concurrent index build). It always answers,
  also when an exception escapes, and a guard answers FAILED shortly before Lambda's timeout,
  so a stack never waits an hour for a response.

Invoked by hand with ``{"action": "current" | "history" | "upgrade" | "downgrade" | "sql",
"revision": …}`` it does what that Alembic command does and returns the result as JSON; with
``{"action": "grant-admin" | "revoke-admin", "email": …}`` it changes a user's admin rights and
logs who was changed (the first admin of a new deployment, without database access).
"""

from __future__ import annotations

import hashlib
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

from blog import services
from blog.db import get_engine, translate_error
from blog.errors import DomainError, UnavailableError

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
#: Time kept for the migration itself: waiting for the database gives up this long before the
#: guard would answer.
MIGRATION_RESERVE_MS: Final = 60_000
#: Backoff between connection attempts while the database (or its proxy) is not reachable yet.
WAIT_FIRST_DELAY_S: Final = 0.5
WAIT_MAX_DELAY_S: Final = 5.0
ADMIN_ACTIONS: Final = {"grant-admin": True, "revoke-admin": False}


class DatabaseNotReachableError(Exception):
    """The database did not accept a connection within the time the deployment can wait."""


def scripts_digest(folder: Path = HERE) -> str:
    """sha256 over the names and contents of env.py and every revision, in a stable order.

    The template passes this digest of the scripts as the resource's ``ScriptsDigest``; the code
    compares it with the digest of the scripts it was packaged with to recognise a rollback.
    """
    files = [folder / "env.py", *sorted((folder / "versions").glob("*.py"))]
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(f"migrations/{path.relative_to(folder).as_posix()}".encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    return f"sha256:{hasher.hexdigest()}"


def wait_for_database(deadline: float) -> int:
    """Connect until the database answers or ``time.monotonic()`` passes ``deadline``.

    A new Aurora cluster, a paused Serverless v2 one (resuming takes seconds) or a proxy whose
    target is still registering refuses connections for a while; only such unavailability is
    waited for, any other error (a wrong password, a missing database) fails at once. Returns
    the number of attempts it took.
    """
    delay = WAIT_FIRST_DELAY_S
    attempt = 0
    while True:
        attempt += 1
        try:
            with get_engine().connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - classified by _not_reachable_yet
            if not _not_reachable_yet(error):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseNotReachableError(
                    f"Database not reachable after {attempt} attempts: {_short(error)}"
                ) from error
            logger.info(
                "database not reachable yet",
                extra={"attempt": attempt, "retry_in_s": round(min(delay, left), 2)},
            )
            time.sleep(min(delay, left))
            delay = min(delay * 2, WAIT_MAX_DELAY_S)
            continue
        if attempt > 1:
            logger.info("database reachable", extra={"attempts": attempt})
        return attempt


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


def set_admin(email: object, *, is_admin: bool) -> dict[str, Any]:
    """Grant or revoke a user's admin rights by email; the change is logged (the audit trail)."""
    if not isinstance(email, str) or not email.strip():
        return {"error": "grant-admin and revoke-admin need the user's email"}
    try:
        user = services.set_admin(email, is_admin=is_admin)
    except DomainError as error:
        return {"error": error.message}
    # The Lambda request id ties this line to the invocation (and its caller, in CloudTrail).
    logger.warning(
        "admin rights changed",
        extra={"audit": True, "user_id": user.id, "email": user.email, "is_admin": is_admin},
    )
    return {"user_id": user.id, "email": user.email, "is_admin": user.is_admin}


def manual(event: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 - one branch per action
    """A hand invocation: one Alembic command (or an admin change), its result as JSON."""
    action = event.get("action")
    revision = event.get("revision")
    if action in ADMIN_ACTIONS:
        return set_admin(event.get("email"), is_admin=ADMIN_ACTIONS[str(action)])
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
    return {
        "error": f"unknown action {action!r}; use current, history, upgrade, downgrade, sql, "
        "grant-admin, revoke-admin"
    }


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
        elif request_type == "Update" and _is_rollback(event):
            revision = _revision_if_reachable()
            reply.send(
                "SUCCESS",
                f"Rollback: schema left at revision {revision}",
                {"Revision": revision},
            )
        elif request_type in ("Create", "Update"):
            budget_ms = context.get_remaining_time_in_millis() - TIMEOUT_MARGIN_MS
            wait_for_database(time.monotonic() + (budget_ms - MIGRATION_RESERVE_MS) / 1000)
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


def _not_reachable_yet(error: BaseException) -> bool:
    """Unavailable by the layer's SQLSTATE mapping, or no connection to an AWS endpoint yet.

    The credentials come from Secrets Manager through an interface endpoint whose private DNS
    name may answer a little after CloudFormation reports it created; Powertools wraps that
    connection error (as the context of its GetParameterError). An error the service answered
    (access denied, no such secret) is not waited for.
    """
    from botocore.exceptions import ConnectionError as AwsConnectionError  # type: ignore[import-untyped]

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, AwsConnectionError):
            return True
        cause = cause.__cause__ or cause.__context__
    return isinstance(translate_error(error), UnavailableError)


def _is_rollback(event: dict[str, Any]) -> bool:
    """Whether an Update carries another digest than the scripts packaged with this code."""
    requested = (event.get("ResourceProperties") or {}).get("ScriptsDigest")
    packaged = scripts_digest()
    if requested == packaged:
        return False
    logger.warning(
        "update with another scripts digest than this code's: a rollback, schema not touched",
        extra={
            "requested_digest": requested,
            "packaged_digest": packaged,
            "previous_digest": (event.get("OldResourceProperties") or {}).get("ScriptsDigest"),
        },
    )
    return True


def _revision_if_reachable() -> str:
    """The database's revision for the rollback's answer, or "unknown" (never waited for)."""
    try:
        with get_engine().connect() as connection:
            return current_revision(connection) or "base"
    except Exception as error:  # noqa: BLE001 - a rollback must succeed regardless
        logger.warning("revision unknown during rollback", extra={"error": _short(error)})
        return "unknown"


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
