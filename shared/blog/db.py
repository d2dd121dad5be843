"""Engine, connections and transactions: one NullPool engine per execution environment.

Lambda runs one request at a time per process, so a client-side pool only holds connections
that RDS Proxy (or the server) would otherwise reuse; NullPool opens a connection per unit of work
and closes it at the end. The expensive parts of a connect are done once per process instead:
the TLS context is built once, credentials and the SCRAM key derivation are cached, and
TCP_NODELAY avoids the Nagle/delayed-ACK stall on the TLS handshake. After connecting, a unit of
work that reads takes one round trip and one that writes two (see :class:`_Connection`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, wraps
from typing import Any, Final, ParamSpec, TypeVar

import pg8000.converters
import pg8000.core
import pg8000.dbapi
import scramp.core  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
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
from blog.secrets_manager import SecretUnavailableError, extension_usable, is_kept, read_secret

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# SQLSTATE classes and codes (PostgreSQL appendix A) that decide how an error is reported.
RETRYABLE_SQLSTATES: Final = frozenset({"40P01", "40001"})  # deadlock, serialization failure
UNIQUE_VIOLATION: Final = "23505"
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


@lru_cache(maxsize=4)  # parsed once, not on every connect
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
        assert settings.db_secret_arn is not None  # checked by require_database()
        text = read_secret(
            settings.db_secret_arn, max_age=settings.db_secret_max_age, refresh=refresh
        )
        try:
            secret: dict[str, Any] = json.loads(text)
            if not isinstance(secret, dict):
                raise TypeError(type(secret).__name__)
        except (ValueError, TypeError) as error:
            raise SecretUnavailableError("The database secret is not a JSON object") from error
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
    """pg8000's DBAPI connection, sending what it can in fewer round trips.

    Stock pg8000 takes seven round trips for a one-statement transaction: ``BEGIN``; parse,
    describe and bind/execute of the statement, each waiting for the server; ``COMMIT`` as a
    parameterized statement, three more. Here:

    - a statement's parse, describe, bind and execute go in one batch (the server answers them
      in order, row description before the rows, as libpq's extended query does);
    - ``BEGIN`` is held back and sent in front of the transaction's first statement; a
      transaction that sends no statement sends neither ``BEGIN`` nor its end;
    - ``COMMIT`` and ``ROLLBACK`` go as simple queries, one round trip each;
    - the ``COMMIT`` of a transaction that ran only ``SELECT`` statements is held back too: it
      goes out in front of the connection's next statement (waited for, as before) or, when the
      connection closes next (NullPool: every unit of work), together with the close, without
      waiting for an answer that could change nothing. The server commits it all the same.

    So a unit of work that reads takes one round trip after connecting, one that writes two.
    Everything is encoded before anything is written, so a value the driver cannot encode (a lone
    surrogate) fails with nothing sent, as in pg8000. ``COPY`` (a ``stream``) and named prepared
    statements keep pg8000's own paths.
    """

    _begin_pending = False
    _commit_pending = False
    _wrote = False  # whether the transaction ran anything but SELECT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pg_types[_TIMESTAMPTZ_OID] = _timestamptz_in

    def commit(self) -> None:
        if self._begin_pending:
            self._begin_pending = False  # nothing ran: nothing to commit
            return
        if self._commit_pending:
            return
        if self._transaction_status == _IN_TRANSACTION and not self._wrote:
            self._commit_pending = True
            return
        self.execute_simple("commit")

    def rollback(self) -> None:
        if self._begin_pending:
            self._begin_pending = False
            return
        if self._commit_pending:  # committed already, as far as the caller is concerned
            return
        if self._in_transaction:
            self.execute_simple("rollback")

    def close(self) -> None:
        if self._commit_pending and self._sock is not None:
            self._commit_pending = False
            self._sock.write(_COMMIT_QUERY)  # flushed with the Terminate message
        super().close()

    def execute_simple(self, statement: str) -> Any:
        if statement == _BEGIN:  # what pg8000's cursor sends before a transaction's first statement
            self._begin_pending = True
            return pg8000.core.Context(statement)
        return self._exchange(
            _message(_QUERY, _encode(statement, self._client_encoding)), statement
        )

    def execute_unnamed(
        self, statement: str, vals: Any = (), oids: Any = (), stream: Any = None
    ) -> Any:
        if stream is not None:
            self._send_held_back()
            self._wrote = True
            return super().execute_unnamed(statement, vals=vals, oids=oids, stream=stream)
        encoding = self._client_encoding
        parse = bytearray(b"\x00")
        parse += _encode(statement, encoding)
        parse += _H_PACK(len(oids))
        for oid in oids:
            parse += _I_PACK(0 if oid == -1 else oid)
        params = pg8000.converters.make_params(self.py_types, vals)
        bind = bytearray(b"\x00\x00")  # the unnamed portal, of the unnamed statement
        bind += _H_PACK(0) + _H_PACK(len(params))  # parameters all as text
        for value in params:
            if value is None:
                bind += _I_PACK(-1)
            else:
                encoded = value.encode(encoding)
                bind += _I_PACK(len(encoded)) + encoded
        bind += _H_PACK(0)  # results all as text
        batch = b"".join(
            (
                _message(_PARSE, parse),
                _DESCRIBE_UNNAMED,
                _message(_BIND, bind),
                _EXECUTE_ALL,
                _SYNC,
            )
        )
        return self._exchange(batch, statement)

    def execute_named(self, *args: Any, **kwargs: Any) -> Any:
        self._send_held_back()
        self._wrote = True
        return super().execute_named(*args, **kwargs)

    def prepare_statement(self, *args: Any, **kwargs: Any) -> Any:
        self._send_held_back()
        self._wrote = True
        return super().prepare_statement(*args, **kwargs)

    def _end_held_back_commit(self) -> None:
        """Send a held-back ``COMMIT`` and wait for it; the next statement opens a transaction
        (pg8000 did not ask for one: it took the held-back one for still open)."""
        if self._commit_pending:
            self._commit_pending = False
            super().execute_simple("commit")
            self._begin_pending = not self.autocommit

    def _send_held_back(self) -> None:
        """Send what is held back, for pg8000's own paths."""
        self._end_held_back_commit()
        if self._begin_pending:
            self._begin_pending = False
            self._wrote = False
            super().execute_simple(_BEGIN)

    def _exchange(self, batch: bytes, statement: str) -> Any:
        """Send ``batch`` (after the held-back ``BEGIN``, if any) and read the answers."""
        self._end_held_back_commit()
        context = pg8000.core.Context(statement)
        begin = None
        if self._begin_pending:
            self._begin_pending = False
            self._wrote = False
            begin = pg8000.core.Context(_BEGIN)
            batch = _BEGIN_QUERY + batch
        if not statement.lstrip()[:6].upper() == "SELECT":
            self._wrote = True
        if self._sock is None:
            raise pg8000.dbapi.InterfaceError("connection is closed")
        try:
            self._sock.write(batch)
            self._sock.flush()
        except ValueError as error:  # written to a closed file
            raise pg8000.dbapi.InterfaceError("connection is closed") from error
        except OSError as error:
            raise pg8000.dbapi.InterfaceError("network error") from error
        if begin is not None:
            try:
                self.handle_messages(begin)
            except Exception as error:
                if error is begin.error:  # the server's answer: the statement's is still due
                    with suppress(Exception):
                        self.handle_messages(context)
                raise
        self.handle_messages(context)
        return context


_BEGIN: Final = "begin transaction"
_IN_TRANSACTION: Final = b"T"  # ReadyForQuery's status in a transaction block
_I_PACK: Final = struct.Struct("!i").pack
_H_PACK: Final = struct.Struct("!H").pack
_QUERY, _PARSE, _BIND = b"Q", b"P", b"B"


def _message(code: bytes, data: bytes | bytearray) -> bytes:
    """One protocol message: its type byte, its length (itself included), its content."""
    return code + _I_PACK(len(data) + 4) + data


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding) + b"\x00"


_BEGIN_QUERY: Final = _message(_QUERY, _encode(_BEGIN, "ascii"))
_COMMIT_QUERY: Final = _message(_QUERY, _encode("commit", "ascii"))
_DESCRIBE_UNNAMED: Final = _message(b"D", b"S\x00")
_EXECUTE_ALL: Final = _message(b"E", b"\x00" + _I_PACK(0))  # the unnamed portal, every row
_SYNC: Final = _message(b"S", b"")

# SCRAM-SHA-256 derives the client's keys from the password with 4096 rounds of PBKDF2 (~0.8 ms
# of CPU), for every connection. The server sends the same salt and iteration count every time,
# so the result is the same every time: kept in memory, as RFC 5802 (section 5.1) allows, with the
# password it comes from (a rotated password, or a new salt, makes a new entry). SASLprep of the
# user name and password is memoized too. Both are pure functions.
_salted_password = lru_cache(maxsize=4)(scramp.core.hi)


def _hi(hf: Any, password: bytes, salt: bytes, iterations: Any) -> bytes:
    salted: bytes = _salted_password(hf, bytes(password), bytes(salt), int(iterations))
    return salted


scramp.core.hi = _hi
# The channel binding data is a hash of the server's certificate, parsed for every connection.
scramp.core.CBindData.from_der = staticmethod(lru_cache(maxsize=4)(scramp.core.CBindData.from_der))

_TIMESTAMPTZ_OID: Final = 1184


def _timestamptz_in(data: str) -> Any:
    """pg8000's ``timestamptz`` parser, without its ``strptime`` (~6 µs a value) for the shape
    PostgreSQL sends with an hours-only offset (``2024-05-01 12:00:00.123456+00``): same value,
    same ``timezone``. Anything else (other offsets, BC, infinity) goes to pg8000's own."""
    if data[-3:-2] in ("+", "-") and data[-2:].isdigit():
        try:
            return datetime.fromisoformat(data)
        except ValueError:
            pass
    return pg8000.converters.timestamptz_in(data)


_convert_paramstyle = pg8000.dbapi.convert_paramstyle


@lru_cache(maxsize=512)
def _format_to_numbered(query: str) -> str:
    converted: str = _convert_paramstyle("format", query, ())[0]
    return converted


def _memoized_paramstyle(style: str, query: str, args: Any) -> tuple[str, Any]:
    """pg8000 rewrites ``%s`` to ``$1``… with a scan of the statement, char by char, on every
    execution; SQLAlchemy sends the same few statements (its compiled cache) with ``format``
    placeholders, whose rewrite depends on the statement alone: it is kept."""
    if style == "format":
        return _format_to_numbered(query), args
    result: tuple[str, Any] = _convert_paramstyle(style, query, args)
    return result


pg8000.dbapi.convert_paramstyle = _memoized_paramstyle
scramp.core.saslprep = lru_cache(maxsize=8)(scramp.core.saslprep)


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
    """Open a DBAPI connection; on an authentication failure refetch the secret once (rotation).

    A cold start's first one is the connection opened during the import, if that was started
    (see :func:`connect_during_init`): it is used if it opened and is fresh, and its error is
    this connect's error if it failed, so that an unreachable database costs one connect
    timeout, not two.
    """
    try:
        early = take_early_connection()
        if early is not None:
            return early
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


_bind_override: Engine | Connection | None = None


def use_bind(bind: Engine | Connection | None) -> None:
    """Make :func:`transaction` run on ``bind`` instead of :func:`get_engine`: another engine, or
    a connection in a transaction of its own (tests), which each unit of work then joins with a
    savepoint; None resets."""
    global _bind_override  # noqa: PLW0603 - one process-wide switch, by design
    _bind_override = bind


def translate_error(error: BaseException) -> DomainError:  # noqa: PLR0911 - one table
    """Map a driver or SQLAlchemy error to a domain error, by SQLSTATE and never by message text."""
    if isinstance(error, DomainError):
        return error
    if isinstance(error, UnicodeError):  # e.g. a lone surrogate the driver cannot encode
        return ValidationError("A value is not valid Unicode text")
    code = sqlstate(error)
    if code == UNIQUE_VIOLATION:
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
        # SQLSTATE only: the message may quote the client's data. A refusal the client caused
        # (a taken email: 409; a value out of range: 422) is an answer, not an incident.
        logger.log(
            logging.INFO if domain.status < 500 else logging.WARNING,
            "database error",
            extra={"sqlstate": sqlstate(error), "error_type": type(error).__name__},
        )
    return domain


#: The unit of work open in this context, which a nested :func:`transaction` joins.
_current: ContextVar[Connection | None] = ContextVar("blog_unit_of_work", default=None)


def in_transaction() -> bool:
    """Whether a unit of work is open in this context (a nested one would join it)."""
    return _current.get() is not None


@contextmanager
def transaction() -> Iterator[Connection]:
    """One unit of work: a Connection in a transaction, committed on success, rolled back on error.

    Driver errors leave as domain errors (see :func:`translate_error`); the connection (with
    NullPool, the database connection) is closed either way. Opened inside another one (a use
    case run as part of a larger one, e.g. with its idempotency record), it joins it: the outer
    one commits, or rolls everything back.
    """
    joined = _current.get()
    if joined is not None:
        yield joined
        return
    bind = _bind_override or get_engine()
    try:
        # A connection already in a transaction (tests): this unit of work is a savepoint.
        opened: AbstractContextManager[Connection] = (
            nullcontext(bind) if isinstance(bind, Connection) else bind.connect()
        )
        with opened as connection:
            token = _current.set(connection)
            try:
                with connection.begin_nested() if connection is bind else connection.begin():
                    yield connection
            finally:
                _current.reset(token)
    except DomainError:
        raise
    except (sa_exc.SQLAlchemyError, pg8000.dbapi.Error, OSError, UnicodeError) as error:
        raise _translated(error) from error


@contextmanager
def savepoint(connection: Connection) -> Iterator[Connection]:
    """A nested transaction: an error inside rolls back to the savepoint; the outer work stays."""
    try:
        with connection.begin_nested():
            yield connection
    except DomainError:
        raise
    except (sa_exc.SQLAlchemyError, pg8000.dbapi.Error, UnicodeError) as error:
        raise _translated(error) from error


def retry_on_conflict(
    attempts: int | None = None, base_delay: float | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a whole transaction again on deadlock (40P01) or serialization failure (40001).

    Exponential backoff with full jitter; after the last attempt a :class:`TransactionError`.
    Decorate the function that opens the transaction. Called inside an open unit of work, it
    runs once: the failed transaction is the outer one's, which its own retry runs again.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if in_transaction():
                return func(*args, **kwargs)
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


#: How long a connection opened during the import may wait for its first unit of work. An
#: on-demand cold start invokes the function right after its import; an environment Lambda
#: initialised ahead of time gets a new connection instead.
EARLY_CONNECTION_MAX_AGE_S: Final = 5.0


class _EarlyConnection:
    """A connection being opened on a thread of its own while the handler imports."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: pg8000.dbapi.Connection | None = None
        self.error: Exception | None = None
        self.opened_at = 0.0
        self.taken = False  # by the first unit of work, or given up; then the thread keeps nothing
        self.thread = threading.Thread(target=self._open, name="blog-db-connect", daemon=True)

    def _open(self) -> None:
        connection: pg8000.dbapi.Connection | None = None
        error: Exception | None = None
        try:
            connection = _open_connection(get_credentials())
        except Exception as failure:  # noqa: BLE001 - handed to the first unit of work
            error = failure
        with self.lock:
            if not self.taken:
                self.connection, self.error = connection, error
                self.opened_at = time.monotonic()
                return
        if connection is not None:
            _close_quietly(connection)

    def take(self, timeout: float) -> pg8000.dbapi.Connection | None:
        """The connection once the thread is done, if it opened and is fresh; None if it is
        stale (then closed), so that the caller connects anew; raises the error it failed with,
        or a timeout if it is still connecting after ``timeout`` s more (a second attempt would
        only wait as long again)."""
        self.thread.join(timeout)
        with self.lock:
            self.taken = True
            connection, error = self.connection, self.error
            self.connection = self.error = None
            if self.thread.is_alive():
                error = pg8000.dbapi.InterfaceError(
                    "cannot connect to the database: timed out while connecting"
                )
        if error is not None:
            raise error
        age = time.monotonic() - self.opened_at
        if connection is not None and age > EARLY_CONNECTION_MAX_AGE_S:
            _close_quietly(connection)
            return None
        return connection


_early: _EarlyConnection | None = None
_early_started = False


def _close_quietly(connection: pg8000.dbapi.Connection) -> None:
    with suppress(Exception):
        connection.close()


def connect_during_init() -> bool:
    """Start opening, on a thread, the connection the cold start's first unit of work will use;
    whether it started.

    The TLS handshake and the authentication wait on the network, and reading the secret through
    the Parameters and Secrets extension waits on Secrets Manager: done while the main thread
    imports the rest of the handler, they are off the first request's path. Only in an on-demand
    Lambda cold start (``AWS_LAMBDA_INITIALIZATION_TYPE``: a SnapStart snapshot or provisioned
    concurrency must not hold a connection), with ``DB_CONNECT_DURING_INIT`` (default true), and
    when the credentials can be had without importing anything on the thread: from
    ``DATABASE_URL``, a secret already read, or the extension (the AWS SDK would import boto3 on
    the thread, in parallel with the main thread's imports). Once per process. Nothing fails
    here: what the thread meets (an unreachable database, a refused password) is the first unit
    of work's to report, and settings that do not validate are left to it as well.
    """
    global _early, _early_started  # noqa: PLW0603 - one per process
    if (
        _early_started
        or not os.environ.get("LAMBDA_TASK_ROOT")
        or os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "on-demand"
    ):
        return False
    try:
        settings = get_settings()
    except ValueError:  # pydantic's ValidationError: reported by the first use, as ever
        return False
    if not settings.db_connect_during_init or not (settings.database_url or settings.db_secret_arn):
        return False
    if not settings.database_url:
        assert settings.db_secret_arn is not None
        if not is_kept(settings.db_secret_arn, max_age=settings.db_secret_max_age):
            if not extension_usable():
                return False
            import http.client  # noqa: F401, PLC0415 - here, not on the thread (see above)
    _early_started = True
    _early = _EarlyConnection()
    _early.thread.start()
    return True


def take_early_connection() -> pg8000.dbapi.Connection | None:
    """The connection :func:`connect_during_init` opened, once; None if there is none (never
    started, already taken, or too old); the error it failed with, raised (see
    :meth:`_EarlyConnection.take`)."""
    global _early  # noqa: PLW0603 - one per process
    early, _early = _early, None
    if early is None:
        return None
    return early.take(get_settings().db_connect_timeout)


def discard_early_connection() -> None:
    """Close the connection opened during the import, if it was not used (SnapStart, tests)."""
    with suppress(Exception):
        connection = take_early_connection()
        if connection is not None:
            _close_quietly(connection)


# The import is where a cold start's first connection begins (see connect_during_init).
connect_during_init()
