"""Lambda SnapStart: what runs before the snapshot is taken and after each restore from it.

With SnapStart on (the template's ``SnapStart`` parameter), Lambda initializes a function once,
when it publishes a version, snapshots the process, and starts every later execution environment
from that snapshot. So the work done before the snapshot is paid once per deployment, not per cold
start; and whatever the process held at that moment is held by every environment restored from
it, at once and for as long as the version lives.

- :func:`prime` (before the snapshot) does what a first request would otherwise pay for: ORM
  mapper configuration (where a function loads the ORM), the deferred pydantic models, the routes'
  validation models, the TLS context, the modules the layer imports on first use. It opens no
  connection and fetches no secret, and it drops whatever such state it finds, so the snapshot holds
  none (:func:`held`).
- :func:`refresh` (after each restore) gives the process its own identity back: it reseeds
  ``random`` (the snapshot's state would give every environment the same sequence), drops cached
  connections and credentials (a secret may have rotated since the snapshot) and the traces'
  socket, and makes the next invocation count as the cold start it is.

The hooks are registered with ``snapshot_restore_py``, which the managed runtime provides; where
it is missing (locally, tests) they go to a registry of this module, which
:func:`run_before_snapshot` and :func:`run_after_restore` run in the runtime's order.
"""

from __future__ import annotations

import importlib
import os
import random
import socket
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Final

from blog import tracing

Hook = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]

#: Modules that the layer imports on first use (to spare the functions that never need them);
#: the snapshot may as well hold them.
FIRST_USE_MODULES: Final = (
    "jwt",
    "argon2",
    "argon2.exceptions",
    "argon2.low_level",
    "idna",
    "unicodedata",
)

#: Where the function reads a secret from Secrets Manager (``DB_SECRET_ARN``, ``JWT_SECRET_ARN``):
#: the AWS SDK, which the first such read imports (Powertools' parameters utility imports boto3,
#: which imports botocore): 111 of the 175 ms of a first read. Imported only: a client is not
#: created before the snapshot, as it would hold the credentials it resolved.
AWS_SDK_MODULES: Final = ("aws_lambda_powertools.utilities.parameters", "boto3")

try:  # the managed runtime ships it; nothing else does
    import snapshot_restore_py as _runtime  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    _runtime = None

#: Whether the hooks go to the Lambda runtime (else to the local registry below).
RUNTIME_HOOKS: Final = _runtime is not None
_before_snapshot: list[Hook] = []
_after_restore: list[Hook] = []


def register_before_snapshot(func: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` before the snapshot (also as a bare decorator)."""
    if _runtime is not None:
        return _runtime.register_before_snapshot(func, *args, **kwargs)
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` after each restore (also as a bare decorator)."""
    if _runtime is not None:
        return _runtime.register_after_restore(func, *args, **kwargs)
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[Hook]:
    """The before-snapshot hooks, in registration order."""
    if _runtime is not None:
        return list(_runtime.get_before_snapshot())
    return list(_before_snapshot)


def get_after_restore() -> list[Hook]:
    """The after-restore hooks, in registration order."""
    if _runtime is not None:
        return list(_runtime.get_after_restore())
    return list(_after_restore)


def run_before_snapshot() -> None:
    """Run the before-snapshot hooks as the runtime does: last registered first."""
    for func, args, kwargs in reversed(get_before_snapshot()):
        func(*args, **kwargs)


def run_after_restore() -> None:
    """Run the after-restore hooks as the runtime does: in registration order."""
    for func, args, kwargs in get_after_restore():
        func(*args, **kwargs)


# ------------------------------------------------------------------------------ before snapshot


def prime() -> None:
    """Do the first request's one-time work now, then drop any connection or credential."""
    _database()
    _configure_mappers()
    _build_models()
    _prepare_routes()
    for name in FIRST_USE_MODULES:
        importlib.import_module(name)
    _aws_sdk()
    forget_connections_and_credentials()


def _aws_sdk() -> None:
    """The AWS SDK's modules, where a secret will be read from Secrets Manager (nothing else of
    it: no session, no client, no credentials)."""
    from blog.config import get_settings

    settings = get_settings()
    if settings.db_secret_arn or settings.jwt_secret_arn:
        for name in AWS_SDK_MODULES:
            importlib.import_module(name)


def _configure_mappers() -> None:
    # Only where the function's code uses the ORM: importing it for this alone would cost memory
    # in every restored environment and save nothing.
    if "sqlalchemy.orm" in sys.modules:
        from sqlalchemy.orm import configure_mappers

        configure_mappers()


def _pydantic_models() -> list[type[Any]]:
    from pydantic import BaseModel

    found: dict[type[Any], None] = {}  # in discovery order, each once
    pending: list[type[Any]] = [BaseModel]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found:
                found[subclass] = None
                pending.append(subclass)
    return list(found)


def _build_models() -> None:
    """Build the validators and serializers that ``defer_build`` left for their first use."""
    for model in _pydantic_models():
        generic = getattr(model, "__pydantic_generic_metadata__", {}).get("parameters")
        if not model.__pydantic_complete__ and not generic:
            # Ours must build (else the first request would fail); another package's model that
            # cannot is left to its first use, as without SnapStart.
            model.model_rebuild(force=True, raise_errors=model.__module__.startswith("blog."))


def _resolvers() -> list[Any]:
    """The HTTP resolvers of the handler modules imported so far (``app = make_app()``)."""
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

    found = []
    for module in list(sys.modules.values()):
        app = getattr(module, "app", None)
        if isinstance(app, ApiGatewayResolver) and app not in found:
            found.append(app)
    return found


def _prepare_routes() -> None:
    """The models Powertools derives from each route's signature (parameters, body), which it
    builds on the route's first request."""
    if "aws_lambda_powertools.event_handler" not in sys.modules:
        return  # not an HTTP function
    for app in _resolvers():
        for route in [*app._static_routes, *app._dynamic_routes]:  # no public list of them
            _ = route.dependant
            _ = route.body_field


def _database() -> None:
    """The TLS context (the CA bundle parsed) and the engine: neither connects. Only in a
    function that uses the database (the authorizer does not)."""
    if "blog.db" not in sys.modules:
        return
    from blog import db
    from blog.config import get_settings

    settings = get_settings()
    db.ssl_context(settings.db_sslmode, settings.db_ssl_ca_file)
    db.get_engine()


# ------------------------------------------------------------------------------ after restore


def refresh() -> None:
    """Make a restored process its own: fresh randomness, no inherited connections, credentials
    or trace socket, and its next invocation reported as a cold start."""
    reseed_random()
    forget_connections_and_credentials()
    tracing.daemon.close()  # a socket of its own: the snapshot's would be every environment's
    reset_cold_start_flags()


def reseed_random() -> None:
    """Reseed ``random`` from the operating system (the snapshot holds one state for all)."""
    random.seed(os.urandom(32))


def forget_connections_and_credentials() -> None:
    """Drop what a process caches of the database and of Secrets Manager: the engine's
    connections, the credentials and SCRAM keys derived from them, the fetched secrets (the DB
    password, the token signing key) with the SDK client and its connections."""
    db = sys.modules.get("blog.db")
    if db is not None:
        db.discard_early_connection()  # none where snapshotted: a restored process opens its own
        if db.get_engine.cache_info().currsize:
            db.get_engine().dispose(close=True)
        db._salted_password.cache_clear()  # derived from the password
        db._credentials_from_url.cache_clear()  # may hold a password
    kept = sys.modules.get("blog.secrets_manager")
    if kept is not None:
        kept.forget()
    constants = sys.modules.get("aws_lambda_powertools.utilities.parameters.constants")
    if constants is not None:
        # The providers hold the fetched values and a boto3 client with its connection pool.
        constants.DEFAULT_PROVIDERS.clear()


def _stream_sockets() -> int:
    """Open stream (TCP or Unix) sockets of the process; not datagram ones (the traces keep one,
    connectionless, to the daemon's fixed address, which a restore drops)."""
    count = 0
    with suppress(OSError):  # no procfs: nothing counted
        for name in os.listdir("/proc/self/fd"):
            with suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    probe = socket.socket(fileno=int(name))  # borrows the descriptor
                    try:
                        count += probe.type == socket.SOCK_STREAM
                    finally:
                        probe.detach()  # and gives it back, open
    return count


def held() -> dict[str, int]:
    """What the process holds that a snapshot must not (counts): open connections (stream
    sockets), fetched secrets, SCRAM keys, parsed credentials."""
    connections = _stream_sockets()
    secrets = 0
    kept = sys.modules.get("blog.secrets_manager")
    if kept is not None:
        secrets += kept.kept_count()
    constants = sys.modules.get("aws_lambda_powertools.utilities.parameters.constants")
    if constants is not None:
        secrets += sum(len(getattr(p, "store", {})) for p in constants.DEFAULT_PROVIDERS.values())
    scram = credentials = 0
    db = sys.modules.get("blog.db")
    if db is not None:
        scram = db._salted_password.cache_info().currsize
        credentials = db._credentials_from_url.cache_info().currsize
    return {
        "connections": connections,
        "secrets": secrets,
        "scram_keys": scram,
        "credentials": credentials,
    }


def reset_cold_start_flags() -> None:
    """Have Powertools and the traces report the next invocation as a cold start.

    Logger and Metrics each keep a module flag, cleared by their first invocation; they clear it
    at once only for provisioned concurrency (``AWS_LAMBDA_INITIALIZATION_TYPE``), not for
    ``snap-start``. Nothing invokes the handler before the snapshot, so the flags are still set
    there; this makes sure of it should that ever change.
    """
    for name in (
        "aws_lambda_powertools.logging.logger",
        "aws_lambda_powertools.metrics.base",
        "aws_lambda_powertools.metrics.provider.cold_start",
    ):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "is_cold_start"):
            setattr(module, "is_cold_start", True)  # noqa: B010 - a module global
    tracing.reset_cold_start()


def cold_start_flags() -> dict[str, bool]:
    """The cold-start flags, by module: Powertools' logger (if imported) and the traces'."""
    name = "aws_lambda_powertools.logging.logger"
    flags = {"blog.tracing": tracing.cold_start()}
    if name in sys.modules and hasattr(sys.modules[name], "is_cold_start"):
        flags[name] = bool(sys.modules[name].is_cold_start)
    return flags


register_before_snapshot(prime)
register_after_restore(refresh)
