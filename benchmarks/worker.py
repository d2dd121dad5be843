"""``python -m benchmarks.worker VARIANT``: one warm execution environment, driven over a pipe.

Variants: ``layer`` (the functions' handlers with the layer, as Lambda runs them), ``floor``
(raw pg8000: connect over TLS the way the layer's creator does, the same SQL, close) and
``fastapi`` (the comparison app). The parent sends one JSON command per line on stdin and reads
one JSON answer per line; whatever the code under test prints goes to stderr, never into the
answers. Each ``run`` times one invocation (``time.perf_counter_ns`` around the handler call
only), so the parent can interleave the variants sample by sample.
"""

from __future__ import annotations

import cProfile
import importlib.util
import io
import json
import os
import pstats
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    ROUTES,
    Context,
    Seed,
    event,
    expected_status,
    trace_header,
)
from local.pg_wire import WireTap

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class Layer:
    """The functions' own handlers (``functions/<name>/app.py``) with the layer."""

    def __init__(self, config: dict[str, Any]) -> None:
        import local  # noqa: F401 - puts the layer on sys.path
        from local.functions import load_module_from

        self.seed = Seed(**config["seed"])
        self.sampled = bool(config["sampled"])
        self.handlers: dict[str, Handler] = {}
        for route, (_, folder, _) in ROUTES.items():
            module = load_module_from(REPO / "functions" / folder)
            self.handlers[route] = module.lambda_handler

    def invoke(
        self, route: str, page_size: int | None = None
    ) -> tuple[int, int, int, dict[str, Any]]:
        """Nanoseconds (wall, then CPU) of one invocation, its status and its response."""
        request = event(route, self.seed, page_size)
        os.environ["_X_AMZN_TRACE_ID"] = trace_header(self.sampled)
        context = Context(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench"))
        handler = self.handlers[route]
        cpu, started = time.process_time_ns(), time.perf_counter_ns()
        response = handler(request, context)
        elapsed, cpu = time.perf_counter_ns() - started, time.process_time_ns() - cpu
        return elapsed, cpu, int(response["statusCode"]), response

    def run(self, route: str) -> dict[str, Any]:
        """One timed invocation."""
        elapsed, cpu, status, response = self.invoke(route)
        if status != expected_status(route):
            return {"error": f"{route}: {status} {str(response.get('body'))[:300]}"}
        return {"ns": elapsed, "cpu_ns": cpu}

    def statements(self, route: str, page_size: int | None = None) -> dict[str, Any]:
        """What one invocation sends: SQLAlchemy's statements and what reaches the server."""
        with _recording() as record:
            _, _, status, response = self.invoke(route, page_size)
        body = json.loads(response.get("body") or "{}")
        items = body.get("items") if isinstance(body, dict) else None
        return {
            **record,
            "status": status,
            "items": len(items) if isinstance(items, list) else None,
        }

    def profile(self, route: str, count: int) -> dict[str, Any]:
        """cProfile of ``count`` invocations: the top functions, by own and cumulative time."""
        for _ in range(20):
            self.invoke(route)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            self.invoke(route)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        out.write(_by_package(stats, count))
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        return {"text": out.getvalue()}


def _by_package(stats: pstats.Stats, count: int) -> str:
    """Own time per call, summed by top-level package (C functions by their name)."""
    totals: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own = row[2]
        if filename == "~":
            key = function.strip("<>").replace("built-in method ", "").split(".")[0]
            key = f"(C) {key}"
        else:
            parts = Path(filename).parts
            anchor = next(
                (i for i, part in enumerate(parts) if part in ("site-packages", "shared")), None
            )
            if anchor is not None and anchor + 1 < len(parts):
                key = parts[anchor + 1].removesuffix(".py")
            elif "functions" in parts or "benchmarks" in parts:
                key = "functions/benchmarks"
            else:
                key = "stdlib"
        totals[key] = totals.get(key, 0.0) + own
    lines = ["own time per invocation, by package (ms):"]
    for key, total in sorted(totals.items(), key=lambda item: -item[1])[:25]:
        lines.append(f"  {1000 * total / count:8.3f}  {key}")
    return "\n".join(lines) + "\n\n"


@contextmanager
def _recording() -> Iterator[dict[str, Any]]:
    """Record statements at two levels while active: SQLAlchemy's cursor executions and
    transaction events on the layer's engine, and every message pg8000 sends to the server."""
    import pg8000.core
    from sqlalchemy import event as sa_event

    from blog.db import get_engine

    record: dict[str, Any] = {"sqlalchemy": [], "connections": 0}
    engine = get_engine()

    def before_cursor_execute(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        record["sqlalchemy"].append([statement, _jsonable(parameters)])

    def on_begin(*_: Any) -> None:
        record["sqlalchemy"].append(["BEGIN (SQLAlchemy)", None])

    def on_commit(*_: Any) -> None:
        record["sqlalchemy"].append(["COMMIT (SQLAlchemy)", None])

    def on_rollback(*_: Any) -> None:
        record["sqlalchemy"].append(["ROLLBACK (SQLAlchemy)", None])

    core = pg8000.core.CoreConnection
    original_init = core.__init__
    taps: list[WireTap] = []

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        record["connections"] += 1
        original_init(self, *args, **kwargs)
        taps.append(WireTap.install(self))  # once connected: start-up and auth not counted

    listeners = [
        ("before_cursor_execute", before_cursor_execute),
        ("begin", on_begin),
        ("commit", on_commit),
        ("rollback", on_rollback),
    ]
    core.__init__ = init
    for identifier, listener in listeners:
        sa_event.listen(engine, identifier, listener)
    try:
        yield record
    finally:
        for identifier, listener in listeners:
            sa_event.remove(engine, identifier, listener)
        core.__init__ = original_init
        statements = [statement for tap in taps for statement in tap.statements]
        record["wire"] = [sql for _, sql in statements]
        record["wire_calls"] = [[how, sql] for how, sql in statements]
        record["round_trips"] = sum(tap.round_trips for tap in taps)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot replay a parameter of type {type(value).__name__}")


class Floor:
    """Raw pg8000: connect over TLS as the layer's creator does, run the SQL, close.

    The SQL of each route is what the layer sent for it (``prepare``), so the difference to the
    layer is the layer's own work: routing, validation, the ORM, serialization, observability.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import pg8000.dbapi
        from sqlalchemy.engine import make_url

        self.connect_fn = pg8000.dbapi.connect
        url = make_url(os.environ["DATABASE_URL"])
        self.host, self.port = url.host or "127.0.0.1", url.port or 5432
        self.user, self.password, self.database = url.username, url.password, url.database
        self.ssl = ssl.create_default_context(cafile=os.environ["DB_SSL_CA_FILE"])  # once
        self.sql: dict[str, tuple[list[tuple[str, Any]], str | None]] = {}
        del config

    def prepare(
        self, route: str, statements: list[list[Any]], commit: str | None
    ) -> dict[str, Any]:
        """Set the statements (SQLAlchemy's, with their parameters) a route replays, and how it
        ends: ``commit`` names the pg8000 method the layer's COMMIT went through, if any."""
        self.sql[route] = ([(sql, params) for sql, params in statements], commit)
        return {}

    def run(self, route: str) -> dict[str, Any]:
        """One timed connect, statements, (commit,) close; route ``connect``: no statements."""
        statements, commit = self.sql.get(route, ([], None))
        cpu, started = time.process_time_ns(), time.perf_counter_ns()
        sock = socket.create_connection((self.host, self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        connection = self.connect_fn(
            user=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            sock=sock,
            ssl_context=self.ssl,
            application_name="bench-floor",
            startup_params={"statement_timeout": "10000"},
        )
        cursor = connection.cursor()
        for sql, params in statements:
            cursor.execute(sql, params)
            if cursor.description is not None:
                cursor.fetchall()
        if commit == "execute_simple":
            connection.execute_simple("commit")
        elif commit:
            connection.commit()
        connection.close()
        return {"ns": time.perf_counter_ns() - started, "cpu_ns": time.process_time_ns() - cpu}


class FastApi:
    """The comparison app (``benchmarks/fastapi_app/app.py``), loaded from its folder."""

    def __init__(self, config: dict[str, Any]) -> None:
        path = REPO / "benchmarks" / "fastapi_app" / "app.py"
        spec = importlib.util.spec_from_file_location("bench_fastapi_app", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        self.handler: Handler = module.lambda_handler
        self.seed = Seed(**config["seed"])

    def run(self, route: str) -> dict[str, Any]:
        """One timed invocation."""
        request = event(route, self.seed)
        context = Context(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench"))
        cpu, started = time.process_time_ns(), time.perf_counter_ns()
        response = self.handler(request, context)
        elapsed, cpu = time.perf_counter_ns() - started, time.process_time_ns() - cpu
        status = int(response["statusCode"])
        if status != expected_status(route):
            return {"error": f"{route}: {status} {str(response.get('body'))[:300]}"}
        return {"ns": elapsed, "cpu_ns": cpu}


VARIANTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "layer": Layer,
    "floor": Floor,
    "fastapi": FastApi,
}


def main(argv: list[str]) -> int:
    """Answer commands until ``quit`` or end of input."""
    (variant,) = argv
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the code under test prints (logs, metrics) to stderr from here on
    sys.stdout = sys.stderr
    config = json.loads(sys.stdin.readline())
    target = VARIANTS[variant](config)
    answers.write(json.dumps({"ready": variant}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "quit":
            break
        try:
            answer = getattr(target, op)(**command)
        except Exception as error:  # reported to the parent, which decides
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
