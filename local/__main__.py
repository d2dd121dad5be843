"""The local runner: ``python -m local [serve|invoke|db]`` (``make local`` runs ``serve``).

- ``serve``: the whole HTTP API on http://127.0.0.1:3000 (Swagger UI at ``/docs``), every route
  of ``template.yaml`` handled by its own function, the authorizer in front of protected routes.
- ``invoke FunctionLogicalId --event events/x.json``: one function on one event, like
  ``sam local invoke``, result on stdout.
- ``db``: only the database, migrated, printing its URL.

Without ``DATABASE_URL`` it uses an embedded PostgreSQL whose data stays in ``.local/`` between
runs, and migrates it to the latest revision first.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from local.functions import REPO

STATE = REPO / ".local"
#: The embedded PostgreSQL's port unless LOCAL_DB_PORT says otherwise (or it is taken).
DEFAULT_DB_PORT = 54329


class LocalError(Exception):
    """Something the user can fix; reported in one line, without a traceback."""


def _port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now."""
    with socket.socket() as probe:
        # As PostgreSQL binds: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def database_port() -> int:
    """LOCAL_DB_PORT if set (it must be free), else the default, else any free port."""
    chosen = os.environ.get("LOCAL_DB_PORT")
    if chosen:
        if not chosen.isdigit() or not 0 < int(chosen) < 65536:
            raise LocalError(f"LOCAL_DB_PORT must be a port number (1-65535), not {chosen!r}")
        if not _port_free(int(chosen)):
            raise LocalError(
                f"port {chosen} (LOCAL_DB_PORT) is taken: set LOCAL_DB_PORT to a free port, "
                "or unset it to let make local pick one"
            )
        return int(chosen)
    if _port_free(DEFAULT_DB_PORT):
        return DEFAULT_DB_PORT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    print(  # noqa: T201
        f"Port {DEFAULT_DB_PORT} is taken; the embedded PostgreSQL uses {port} "
        "(set LOCAL_DB_PORT to choose one)",
        file=sys.stderr,
        flush=True,
    )
    return port


def _signing_key() -> str:
    """A local token signing key, made once, kept in .local/ (on AWS: Secrets Manager)."""
    path = STATE / "jwt-signing-key"
    if not path.exists():
        STATE.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _secret(name: str, state: Path = STATE) -> str:
    """A random secret made once and kept in ``state/name``, readable by its owner only."""
    path = state / name
    if not path.exists():
        state.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _start_database(state: Path = STATE, port: int | None = None) -> tuple[str, Any]:
    """``DATABASE_URL`` if set, else the embedded server in ``state``/pgdata (started here).

    Its superuser needs a password over TCP (SCRAM-SHA-256), made once and kept in
    ``state``/pg-password: another user of this machine cannot connect as superuser.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    from local.embedded_pg import AlreadyRunningError, EmbeddedPostgres, reachable_data_dir

    state.mkdir(exist_ok=True)
    server = EmbeddedPostgres(
        reachable_data_dir(state / "pgdata"),
        persistent=True,
        port=port or database_port(),
        password=_secret("pg-password", state),
    )
    try:
        server.start()
    except AlreadyRunningError as error:
        raise LocalError(
            f"{error}: another make local uses this checkout's database; stop it, or point "
            "DATABASE_URL at a database"
        ) from None
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise LocalError(f"{first} (server log: {server.data_dir / 'server.log'})") from None
    return server.url("postgres"), server


def _migrate(url: str) -> str:
    """Upgrade the database to the latest migration; returns the revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:  # not in a transaction: Alembic begins its own
            cfg = Config(toml_file=str(REPO / "pyproject.toml"))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return revision or "base"


def prepare_environment(url: str) -> None:
    """The settings the functions read, for a local database without TLS."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DB_SSLMODE", "disable")
    os.environ.setdefault("JWT_SIGNING_KEY", _signing_key())
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "blog-api-local")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BlogApiLocal")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    # Most requests publish no custom metric; Powertools would warn about each one. (In the
    # environment, so that the worker processes inherit it.)
    os.environ.setdefault("PYTHONWARNINGS", "ignore:No application metrics to publish")


def _docs_routes() -> dict[tuple[str, str], Any]:
    """``/openapi.json`` and Swagger UI at ``/docs``, served from the committed document."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import (
        __file__ as swagger_html,
    )

    assets = Path(swagger_html).parent
    spec = (REPO / "openapi.json").read_text()
    page = generate_swagger_html(
        spec=spec,
        swagger_js=(assets / "swagger-ui-bundle.min.js").read_text(),
        swagger_css=(assets / "swagger-ui.min.css").read_text(),
        swagger_base_url="",
        oauth2_config=None,
        persist_authorization=True,
    )

    def openapi() -> dict[str, Any]:
        headers = {"content-type": "application/json", "x-content-type-options": "nosniff"}
        return {"statusCode": 200, "headers": headers, "body": spec}

    def docs() -> dict[str, Any]:
        headers = {"content-type": "text/html", "x-content-type-options": "nosniff"}
        return {"statusCode": 200, "headers": headers, "body": page}

    return {("GET", "/openapi.json"): openapi, ("GET", "/docs"): docs}


def serve(args: argparse.Namespace) -> int:
    """Run the HTTP API until interrupted."""
    from local.gateway import Gateway

    url, server = _start_database()
    try:
        prepare_environment(url)
        revision = _migrate(url)
        try:
            gateway = Gateway(
                (args.host, args.port),
                workers=args.workers,
                extra_routes=_docs_routes(),
                reload=not args.no_reload,
            )
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise LocalError(
                f"port {args.port} on {args.host} is taken: choose another with PORT=<port> "
                "(or --port)"
            ) from None
        host, port = str(gateway.server_address[0]), int(gateway.server_address[1])
        print(f"Database: {_redact(url)} (revision {revision})", flush=True)  # noqa: T201
        print(f"API:      http://{host}:{port}   Swagger UI: http://{host}:{port}/docs", flush=True)  # noqa: T201
        stop = lambda *_: threading.Thread(target=gateway.shutdown).start()  # noqa: E731
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)  # also when started in the background
        try:
            gateway.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            gateway.server_close()
    finally:
        if server is not None:
            server.stop()
    return 0


def invoke(args: argparse.Namespace) -> int:
    """Run one function on one event file, in an execution environment of its own with the
    function's Timeout, MemorySize and Lambda's payload limits, and print its result as JSON (or
    Lambda's error, with exit status 1)."""
    from local.functions import functions
    from local.gateway import Environment, InvocationError

    event = json.loads(Path(args.event).read_text()) if args.event != "-" else json.load(sys.stdin)
    function = functions()[args.function]
    url, server = _start_database()
    try:
        prepare_environment(url)
        if not args.no_migrate:
            _migrate(url)
        environment = Environment(function)  # inherits the environment prepared above
        try:
            result, status = environment.invoke(event), 0
        except InvocationError as error:
            result, status = error.payload(), 1
        finally:
            environment.stop()
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(result, indent=2, default=str))  # noqa: T201
    return status


def database(_args: argparse.Namespace) -> int:
    """Start only the database (migrated) and wait."""
    url, server = _start_database()
    try:
        revision = _migrate(url)
        # The URL carries the password (kept in .local/pg-password): for its owner's terminal.
        print(f"DATABASE_URL={url}  (revision {revision}; Ctrl-C stops it)", flush=True)  # noqa: T201
        if server is not None:
            signal.signal(signal.SIGTERM, _interrupt)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command (``serve`` by default)."""
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve", help="run the HTTP API (default)")
    serve_cmd.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve_cmd.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    serve_cmd.add_argument(
        "--workers", type=int, default=2, help="execution environments per function (default 2)"
    )
    serve_cmd.add_argument(
        "--no-reload",
        action="store_true",
        help="keep execution environments when a function's code or the layer changes",
    )
    invoke_cmd = commands.add_parser("invoke", help="run one function on one event")
    invoke_cmd.add_argument("function", help="logical id in template.yaml, e.g. GetPostFunction")
    invoke_cmd.add_argument("--event", "-e", required=True, help="event JSON file, or - for stdin")
    invoke_cmd.add_argument("--no-migrate", action="store_true")
    commands.add_parser("db", help="run only the database")
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "serve"):
            if args.command is None:
                args = serve_cmd.parse_args([])
            return serve(args)
        if args.command == "invoke":
            return invoke(args)
        return database(args)
    except LocalError as error:
        print(f"local: {error}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
