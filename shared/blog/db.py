"""Engine, sessions and transactions: one NullPool engine per execution environment.

Lambda runs one request at a time per process, so a client-side pool only holds connections
that RDS Proxy (or the server) would otherwise reuse; NullPool opens a connection per unit of work
and closes it at the end. The expensive parts of a connect are done once per process instead:
the TLS context is built once, credentials are cached, and TCP_NODELAY avoids the Nagle/delayed-ACK
stall on the TLS handshake.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, Final, ParamSpec, TypeVar

import pg8000.dbapi
from sqlalchemy import Engine, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from blog.config import SSLMode, get_settings
from blog.errors import (
    ConflictError,
    DatabaseError,
    DomainError,
    DuplicateError,
    TransactionError,
    UnavailableError,
    ValidationError,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# SQLSTATE classes and codes (PostgreSQL appendix A) that decide how an error is reported.
RETRYABLE_SQLSTATES: Final = frozenset({"40P01", "40001"})  # deadlock, serialization failure
AUTH_FAILED_SQLSTATES: Final = frozenset({"28P01", "28000"})
UNAVAILABLE_SQLSTATES: Final = frozenset(
    {"57014", "57P01", "57P02", "57P03", "53300", "53400", "55P03", "25P03"}
)
UNAVAILABLE_CLASSES: Final = ("08", "53", "58")  # connection, resources, system errors
INVALID_INPUT_CLASSES: Final = ("22",)  # data exceptions: too long, out of range, bad encoding
# not null, check; and protocol violation, which is what a NUL inside a statement causes
INVALID_INPUT_SQLSTATES: Final = frozenset({"23502", "23514", "08P01"})

#: Unique constraint (index) name → the field reported to the client.
UNIQUE_FIELDS: Final = {"ix_users_email": "email", "ix_users_username": "username"}


class RetryableError(TransactionError):
    """A deadlock or serialization failure: the whole transaction may succeed if run again."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where and as whom to connect."""

    host: str
    port: int
    user: str
    password: str | None
    database: str


def _credentials_from_url(url: str) -> Credentials:
    parsed = make_url(url)
    return Credentials(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database or "postgres",
    )


def get_credentials(*, refresh: bool = False) -> Credentials:
    """Connection credentials: from ``DATABASE_URL``, else the Secrets Manager secret (cached).

    ``refresh=True`` bypasses the cache, which is how a rotated password is picked up.
    """
    settings = get_settings()
    settings.require_database()
    if settings.database_url:
        base = _credentials_from_url(settings.database_url)
    else:
        # Imported here: it pulls in boto3, which local runs with a URL never need.
        from aws_lambda_powertools.utilities import parameters

        assert settings.db_secret_arn is not None  # checked by require_database()
        secret: dict[str, Any] = parameters.get_secret(
            settings.db_secret_arn,
            transform="json",
            force_fetch=refresh,
            max_age=settings.db_secret_max_age,
        )
        base = Credentials(
            host=str(secret.get("host") or ""),
            port=int(secret.get("port") or 5432),
            user=str(secret["username"]),
            password=str(secret["password"]),
            database=str(secret.get("dbname") or "postgres"),
        )
    return Credentials(
        host=settings.db_host or base.host,
        port=settings.db_port or base.port,
        user=base.user,
        password=base.password,
        database=settings.db_name or base.database,
    )


@lru_cache(maxsize=4)
def ssl_context(mode: SSLMode, ca_file: str | None) -> ssl.SSLContext | bool:
    """The TLS context for ``mode``, built once per process (building one costs ~15 ms)."""
    if mode is SSLMode.DISABLE:
        return False
    context = ssl.create_default_context(cafile=ca_file)
    if mode is SSLMode.REQUIRE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error (wrapped by SQLAlchemy or not), or None."""
    orig = getattr(error, "orig", error)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
        return str(code) if code else None
    return None


def _server_field(error: BaseException, key: str) -> str | None:
    orig = getattr(error, "orig", error)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):
        value = args[0].get(key)
        return str(value) if value else None
    return None


class _Connection(pg8000.dbapi.Connection):  # type: ignore[misc] # pg8000 has no type hints
    """pg8000's DBAPI connection, ending transactions in one round trip instead of three.

    pg8000 sends COMMIT and ROLLBACK like parameterized statements (parse, describe, execute:
    a round trip each); as a simple query each takes one. Every request ends a transaction on a
    fresh connection, so this takes two of its round trips off each request.
    """

    def commit(self) -> None:
        self.execute_simple("commit")

    def rollback(self) -> None:
        if self._in_transaction:
            self.execute_simple("rollback")


def _open_connection(credentials: Credentials) -> pg8000.dbapi.Connection:
    settings = get_settings()
    try:
        sock = socket.create_connection(
            (credentials.host, credentials.port), timeout=settings.db_connect_timeout
        )
    except OSError as error:
        # Raised as the driver's own error so SQLAlchemy wraps it like any other DBAPI failure.
        raise pg8000.dbapi.InterfaceError(f"cannot connect to the database: {error}") from error
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    try:
        connection = _Connection(
            user=credentials.user,
            password=credentials.password,
            host=credentials.host,  # used for the TLS server name check
            port=credentials.port,
            database=credentials.database,
            sock=sock,
            ssl_context=ssl_context(settings.db_sslmode, settings.db_ssl_ca_file),
            application_name="blog-api",
            startup_params={"statement_timeout": str(settings.db_statement_timeout_ms)},
        )
    except BaseException:
        sock.close()
        raise
    # The handshake ran under the connect timeout; queries may take up to the statement timeout,
    # after which the server cancels them itself. The grace covers the round trip of that reply.
    usock = getattr(connection, "_usock", None)
    if usock is not None:
        usock.settimeout(settings.db_statement_timeout_ms / 1000 + settings.db_connect_timeout)
    return connection


def _connect() -> pg8000.dbapi.Connection:
    """Open a DBAPI connection; on an authentication failure refetch the secret once (rotation)."""
    try:
        return _open_connection(get_credentials())
    except pg8000.dbapi.DatabaseError as error:
        if sqlstate(error) not in AUTH_FAILED_SQLSTATES or get_settings().database_url:
            raise
        logger.warning("database authentication failed; refetching the credentials secret")
        return _open_connection(get_credentials(refresh=True))


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The process's engine: NullPool, pg8000, connections made by :func:`_connect`."""
    return create_engine("postgresql+pg8000://", creator=_connect, poolclass=NullPool)


_session_factory_override: sessionmaker[Session] | None = None


@lru_cache(maxsize=1)
def _default_session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def get_session_factory() -> sessionmaker[Session]:
    """The session factory used by :func:`transaction`."""
    return _session_factory_override or _default_session_factory()


def use_session_factory(factory: sessionmaker[Session] | None) -> None:
    """Make :func:`transaction` use ``factory`` (tests bind it to one transaction); None resets."""
    global _session_factory_override  # noqa: PLW0603 - one process-wide switch, by design
    _session_factory_override = factory


def translate_error(error: BaseException) -> DomainError:  # noqa: PLR0911 - one table
    """Map a driver or SQLAlchemy error to a domain error, by SQLSTATE and never by message text."""
    if isinstance(error, DomainError):
        return error
    if isinstance(error, UnicodeError):  # e.g. a lone surrogate the driver cannot encode
        return ValidationError("A value is not valid Unicode text")
    code = sqlstate(error)
    if code == "23505":
        field = UNIQUE_FIELDS.get(_server_field(error, "n") or "")
        message = f"{field} is already taken" if field else "Already exists"
        return DuplicateError(message, details={"field": field} if field else None)
    if code == "23503":
        return ConflictError("A referenced row does not exist or is still referenced")
    if code in RETRYABLE_SQLSTATES:
        return RetryableError()
    if code in INVALID_INPUT_SQLSTATES or (code and code.startswith(INVALID_INPUT_CLASSES)):
        return ValidationError("A value is not acceptable to the database")
    if code in UNAVAILABLE_SQLSTATES or code in AUTH_FAILED_SQLSTATES:
        return UnavailableError()
    if code and code.startswith(UNAVAILABLE_CLASSES):
        return UnavailableError()
    if code is None and isinstance(
        error,
        sa_exc.InterfaceError | sa_exc.OperationalError | pg8000.dbapi.InterfaceError | OSError,
    ):
        return UnavailableError()
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return UnavailableError()
    return DatabaseError()


def _translated(error: Exception) -> DomainError:
    domain = translate_error(error)
    if not isinstance(error, DomainError):
        # SQLSTATE only: the message may quote the client's data.
        logger.warning(
            "database error",
            extra={"sqlstate": sqlstate(error), "error_type": type(error).__name__},
        )
    return domain


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work: a Session in a transaction, committed on success, rolled back on error.

    Driver errors leave as domain errors (see :func:`translate_error`); the session, and with
    NullPool its connection, is closed either way.
    """
    session = get_session_factory()()
    try:
        with session.begin():
            yield session
    except DomainError:
        raise
    except (sa_exc.SQLAlchemyError, pg8000.dbapi.Error, OSError, UnicodeError) as error:
        raise _translated(error) from error
    finally:
        session.close()


@contextmanager
def savepoint(session: Session) -> Iterator[Session]:
    """A nested transaction: an error inside rolls back to the savepoint; the outer work stays."""
    try:
        with session.begin_nested():
            yield session
    except DomainError:
        raise
    except (sa_exc.SQLAlchemyError, pg8000.dbapi.Error, UnicodeError) as error:
        raise _translated(error) from error


def retry_on_conflict(
    attempts: int | None = None, base_delay: float | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a whole transaction again on deadlock (40P01) or serialization failure (40001).

    Exponential backoff with full jitter; after the last attempt a :class:`TransactionError`.
    Decorate the function that opens the transaction, never code running inside one.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            settings = get_settings()
            tries = attempts or settings.db_retry_attempts
            delay = settings.db_retry_base_delay if base_delay is None else base_delay
            for attempt in range(1, tries + 1):
                try:
                    return func(*args, **kwargs)
                except RetryableError as error:
                    if attempt == tries:
                        raise TransactionError(
                            f"Gave up after {tries} attempts on conflicting concurrent work"
                        ) from error
                    logger.info("retrying after a transaction conflict", extra={"attempt": attempt})
                    time.sleep(random.uniform(0, delay * 2 ** (attempt - 1)))  # noqa: S311
            raise AssertionError("unreachable")  # pragma: no cover

        return wrapper

    return decorate
