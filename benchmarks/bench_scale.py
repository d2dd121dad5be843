"""``make bench-scale``: every route at two data sizes, side by side, with the plans at the largest.

    .venv/bin/python -m benchmarks.bench_scale [--sizes S=1000:10000,L=100000:1000000]
        [--samples 40] [--deep 1000] [--admin-url URL] [--reuse] [--out .bench/scale.json]

For each size (``LABEL=USERS:POSTS``) a database is migrated to revision 0006 (the schema before
the list and search indexes), seeded with ``COPY`` (:mod:`benchmarks.scale_seed`), and migrated
to head, which builds the indexes ``CONCURRENTLY`` as a deploy would; each step is timed. Then,
through each function's own ``lambda_handler`` called directly in this process (warm, as a warm
Lambda environment calls it; plain TCP to an embedded PostgreSQL, one connection per request as
NullPool opens it), every route is timed at every size, samples round-robin over routes and
sizes (so the machine's noise, however it changes, hits all alike): median and p95, and the
largest size's median over the smallest's. Deep pages are reached by following ``next_cursor``
(``--deep`` pages, fewer where a list ends first). The writes are also timed on a twin of each
database holding the same rows with the indexes as before revision 0007, samples interleaved
with the indexed one: their cost with and without the new indexes, side by side.

Also: the statements each list sends at page sizes 1 and 100, and ``EXPLAIN (ANALYZE, BUFFERS)``
of every statement of every list and search route, as sent, at the largest size. Prints the
tables and writes everything as JSON. Asserts nothing: the targets are judged and printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import local  # noqa: F401 - puts the layer on sys.path
from benchmarks import scale_seed
from benchmarks.harness import REPO

DEFAULT_OUT: Final = REPO / ".bench" / "scale.json"
DEFAULT_SIZES: Final = "S=1000:10000,L=100000:1000000"
#: The revision before the list and search indexes: seeding happens there, then head builds them.
BEFORE_INDEXES: Final = "0006"
#: The indexes that revisions 0007 and 0008 add, and those they replace (for the write cost).
NEW_INDEXES: Final = (
    "ix_posts_published_created_at_id",
    "ix_posts_author_id_created_at_id",
    "ix_users_active_id",
    "ix_posts_title_trgm",
    "ix_posts_content_trgm",
)
OLD_INDEXES: Final = (
    "CREATE INDEX ix_posts_published_created_at ON posts (published, created_at)",
    "CREATE INDEX ix_posts_author_id ON posts (author_id)",
)
#: Targets of the scale issue: judged and printed, never enforced.
RATIO_MAX: Final = 1.5
SEARCH_HIT_MS_MAX: Final = 150.0
WRITE_SLOWDOWN_MAX: Final = 1.2
WRITES: Final = ("create_post", "publish_post", "update_post")
LISTS: Final = ("list_posts", "search_hit", "search_miss", "list_users", "list_user_posts")
EVENTS: Final = REPO / "events"


def _log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Size:
    """One seeded database and what its requests refer to."""

    label: str
    users: int
    posts: int
    plain: bool = False  # the same rows, with the indexes as before revision 0007
    url: str = ""
    timings: dict[str, Any] = field(default_factory=dict)
    engine: Any = None
    author: int = 0  # the user whose posts are listed and who writes
    post: int = 0  # a published post of theirs
    deep_posts: str = ""  # cursors deep into GET /posts and GET /users
    deep_users: str = ""
    drafts: list[int] = field(default_factory=list)  # to publish, one per sample
    doomed: list[int] = field(default_factory=list)  # users (with posts) to delete, one per sample


def _parse_sizes(text: str) -> list[Size]:
    sizes = []
    for part in text.split(","):
        label, counts = part.split("=")
        users, posts = counts.split(":")
        sizes.append(Size(label.strip(), int(users), int(posts)))
    return sizes


# --- the databases ---------------------------------------------------------------------------


@contextlib.contextmanager
def _server(admin_url: str | None) -> Iterator[str]:
    """``admin_url``, else a throwaway embedded PostgreSQL for the duration."""
    if admin_url:
        yield admin_url
        return
    from local.embedded_pg import EmbeddedPostgres

    home = Path(tempfile.mkdtemp(prefix="blog-api-scale-"))
    home.chmod(0o711)
    server = EmbeddedPostgres(home / "data").start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _admin(admin_url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def _migrate(url: str, revision: str, *, downgrade: bool = False) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:  # outside a transaction: Alembic begins its own
        cfg = Config(toml_file=str(REPO / "pyproject.toml"))
        cfg.attributes["connection"] = connection
        (command.downgrade if downgrade else command.upgrade)(cfg, revision)
    engine.dispose()


def _sql(size: Size, statement: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    with size.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def _seeded(size: Size) -> bool:
    with contextlib.suppress(Exception):
        rows = _sql(size, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts)")
        users, posts = rows[0]
        # The rows a run adds (posts written, drafts to publish, users to delete) are few.
        return bool(
            size.users <= users <= 1.1 * size.users and size.posts <= posts <= 1.1 * size.posts
        )
    return False


def _database_name(size: Size) -> str:
    return f"bench_scale_{size.label.lower()}" + ("_plain" if size.plain else "")


def _indexed(size: Size) -> bool:
    found = _sql(
        size,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = ANY(:names) AND i.indisvalid",
        names=list(NEW_INDEXES),
    )
    return int(found[0][0]) == len(NEW_INDEXES)


def _prepare(size: Size, admin_url: str, *, reuse: bool) -> None:
    """Create, seed and index the size's database (or reuse one seeded before)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    name = _database_name(size)
    size.url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    size.engine = create_engine(size.url, poolclass=NullPool)
    if size.plain:
        # The schema at head with the indexes as before 0007, then the same rows: the writes'
        # cost without the new indexes, measured beside the indexed database.
        if not (reuse and _seeded(size)):
            size.engine.dispose()
            _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            _admin(admin_url, f'CREATE DATABASE "{name}"')
            _migrate(size.url, "head")
            _drop_new_indexes(size)
            _log(f"{size.label}: seeding the same rows, without the new indexes")
            size.timings.update(scale_seed.seed(size.url, users=size.users, posts=size.posts))
    elif reuse and _seeded(size):
        _log(f"{size.label}: reusing database {name}")
        if not _indexed(size):  # a run stopped while building them
            _migrate(size.url, BEFORE_INDEXES, downgrade=True)
            began = time.perf_counter()
            _migrate(size.url, "head")
            size.timings["migrate_head_s"] = round(time.perf_counter() - began, 1)
    else:
        size.engine.dispose()
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(admin_url, f'CREATE DATABASE "{name}"')
        began = time.perf_counter()
        _migrate(size.url, BEFORE_INDEXES)
        _log(f"{size.label}: seeding {size.users:,} users and {size.posts:,} posts with COPY")
        size.timings.update(scale_seed.seed(size.url, users=size.users, posts=size.posts))
        _log(f"{size.label}: seeded; migrating to head (building the indexes CONCURRENTLY)")
        began = time.perf_counter()
        _migrate(size.url, "head")
        size.timings["migrate_head_s"] = round(time.perf_counter() - began, 1)
        _sql(size, "ANALYZE")
    size.timings["index_mb"] = {
        name: round(float(mb), 1)
        for name, mb in _sql(
            size,
            "SELECT indexrelname, pg_relation_size(indexrelid) / 1e6 FROM pg_stat_user_indexes"
            " WHERE indexrelname = ANY(:names)",
            names=list(NEW_INDEXES),
        )
    }
    # The author with the most posts (a full first page), one published post of theirs.
    size.author = int(
        _sql(
            size,
            "SELECT author_id FROM posts GROUP BY author_id ORDER BY count(*) DESC, author_id"
            " LIMIT 1",
        )[0][0]
    )
    size.post = int(
        _sql(size, "SELECT max(id) FROM posts WHERE published AND author_id = :a", a=size.author)[
            0
        ][0]
    )


def _make_targets(size: Size, count: int) -> None:
    """Rows for the writes that use one up per sample: drafts to publish, users to delete."""
    size.drafts = [
        int(r[0])
        for r in _sql(
            size,
            "INSERT INTO posts (title, content, author_id) SELECT 'Draft ' || n,"
            " repeat('To be published. ', 60), :a FROM generate_series(1, :n) AS n RETURNING id",
            a=size.author,
            n=count,
        )
    ]
    tag = uuid.uuid4().hex[:8]
    size.doomed = [
        int(r[0])
        for r in _sql(
            size,
            "INSERT INTO users (email, username, hashed_password) SELECT"
            " 'doomed' || :tag || n || '@example.com', 'doomed' || :tag || n, :hash"
            " FROM generate_series(1, :n) AS n RETURNING id",
            tag=tag,
            n=count,
            hash=scale_seed.PASSWORD_HASH,
        )
    ]
    _sql(
        size,
        "INSERT INTO posts (title, content, published, author_id) SELECT 'Doomed', "
        "repeat('Gone with its author. ', 50), true, u FROM unnest(CAST(:ids AS int[])) AS u,"
        " generate_series(1, 10)",
        ids=size.doomed,
    )


# --- the requests ----------------------------------------------------------------------------


def _event(
    sample: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    user: int | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{sample}.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(query or {})
    event["queryStringParameters"] = query or None
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = json.dumps(body)
    event["headers"].pop("authorization", None)
    if "authorizer" in event["requestContext"]:
        # A fresh token's claims, as the authorizer passes them on.
        context = {"user_id": user, "token_version": 0, "expires_at": 2**31}
        event["requestContext"]["authorizer"]["lambda"] = context
    event["requestContext"]["requestId"] = uuid.uuid4().hex
    return event


#: Route name -> (label, function logical id, expected status).
ROUTES: Final = {
    "get_user": ("GET /users/{id}", "GetUserFunction", 200),
    "get_post": ("GET /posts/{id}", "GetPostFunction", 200),
    "list_posts": ("GET /posts, page 1", "ListPostsFunction", 200),
    "list_posts_deep": ("GET /posts, deep cursor", "ListPostsFunction", 200),
    "list_posts_page_cap": ("GET /posts, deepest page number", "ListPostsFunction", 200),
    "search_hit": (f"GET /posts?q={scale_seed.HIT_WORD} (1%)", "ListPostsFunction", 200),
    "search_miss": (f"GET /posts?q={scale_seed.MISS_WORD} (none)", "ListPostsFunction", 200),
    "list_users": ("GET /users, page 1", "ListUsersFunction", 200),
    "list_users_deep": ("GET /users, deep cursor", "ListUsersFunction", 200),
    "list_user_posts": ("GET /users/{id}/posts", "ListUserPostsFunction", 200),
    "create_post": ("POST /posts", "CreatePostFunction", 201),
    "publish_post": ("POST /posts/{id}/publish", "PublishPostFunction", 200),
    "update_post": ("PATCH /posts/{id}", "UpdatePostFunction", 200),
    "delete_user": ("DELETE /users/{id} (cascade, 10 posts)", "DeleteUserFunction", 204),
}


def _request(route: str, size: Size, page_size: int = 20) -> dict[str, Any]:  # noqa: PLR0911, PLR0912
    """The event of one request of ``route`` against ``size``'s rows."""
    author, post = str(size.author), str(size.post)
    query = {"page_size": str(page_size)}
    if route == "get_user":
        return _event(
            "get_user", f"/users/{author}", path_parameters={"user_id": author}, user=size.author
        )
    if route == "get_post":
        return _event("get_post", f"/posts/{post}", path_parameters={"post_id": post})
    if route in ("list_posts", "list_posts_deep", "list_posts_page_cap"):
        if route == "list_posts_deep" and size.deep_posts:
            query["cursor"] = size.deep_posts
        if route == "list_posts_page_cap":
            from blog.repositories import MAX_OFFSET

            query["page"] = str(MAX_OFFSET // page_size + 1)
        return _event("list_posts", "/posts", query=query)
    if route in ("search_hit", "search_miss"):
        word = scale_seed.HIT_WORD if route == "search_hit" else scale_seed.MISS_WORD
        return _event("list_posts", "/posts", query={**query, "q": word})
    if route in ("list_users", "list_users_deep"):
        if route == "list_users_deep" and size.deep_users:
            query["cursor"] = size.deep_users
        return _event("list_users", "/users", query=query, user=size.author)
    if route == "list_user_posts":
        return _event(
            "list_user_posts",
            f"/users/{author}/posts",
            query=query,
            path_parameters={"user_id": author},
            user=size.author,
        )
    if route == "create_post":
        body = {"title": "Benchmark post", "content": "Written by the benchmark. " * 40}
        return _event("create_post", "/posts", body=body, user=size.author)
    if route == "publish_post":
        draft = str(size.drafts.pop())
        return _event(
            "publish_post",
            f"/posts/{draft}/publish",
            path_parameters={"post_id": draft},
            user=size.author,
        )
    if route == "update_post":
        body = {"content": f"Edited by the benchmark {uuid.uuid4().hex}. " * 30}
        return _event(
            "update_post",
            f"/posts/{post}",
            path_parameters={"post_id": post},
            body=body,
            user=size.author,
        )
    if route == "delete_user":
        doomed = str(size.doomed.pop())
        return _event(
            "delete_user", f"/users/{doomed}", path_parameters={"user_id": doomed}, user=int(doomed)
        )
    raise LookupError(route)


class Runner:
    """Calls the functions' handlers against one size's database or another."""

    def __init__(self) -> None:
        from local.functions import functions, load_handler

        self._functions = functions()
        self._load = load_handler
        self._handlers: dict[str, Callable[..., dict[str, Any]]] = {}
        self._engines: dict[str, Any] = {}
        self.statements: list[tuple[str, Any]] | None = None
        self._listen()

    def _listen(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if self.statements is not None:
                self.statements.append((statement, parameters))

        event.listen(Engine, "before_cursor_execute", record)
        self._record = record

    def close(self) -> None:
        """Stop recording and let the layer find its own engine again."""
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        from blog import db

        event.remove(Engine, "before_cursor_execute", self._record)
        db.use_bind(None)

    def use(self, size: Size) -> None:
        """Point the layer at ``size``'s database (a NullPool engine of the layer's own kind)."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from blog import db

        if size.label not in self._engines:
            credentials = db._credentials_from_url(size.url)  # noqa: SLF001 - the layer's connector
            engine = create_engine(
                "postgresql+pg8000://",
                creator=lambda: db._open_connection(credentials),  # noqa: SLF001
                poolclass=NullPool,
            )
            self._engines[size.label] = engine
        db.use_bind(self._engines[size.label])

    def call(self, route: str, event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """One invocation; its wall time (ms) and reply (checked)."""
        from benchmarks.harness import Context

        label, logical_id, status = ROUTES[route]
        if logical_id not in self._handlers:
            self._handlers[logical_id] = self._load(self._functions[logical_id])
        handler = self._handlers[logical_id]
        context = Context(logical_id)
        began = time.perf_counter()
        reply = handler(event, context)
        elapsed = (time.perf_counter() - began) * 1000
        if reply["statusCode"] != status:
            raise RuntimeError(f"{label}: {reply['statusCode']} {reply.get('body')}")
        return elapsed, reply


def _deep_cursor(runner: Runner, route: str, size: Size, depth: int) -> tuple[str, int]:
    """The cursor ``depth`` pages into a list (followed from the first page), and the depth."""
    cursor, reached = "", 0
    sample, path = ("list_users", "/users") if route == "users" else ("list_posts", "/posts")
    while reached < depth:
        query = {"page_size": "20", **({"cursor": cursor} if cursor else {})}
        _, reply = runner.call(f"list_{route}", _event(sample, path, query=query, user=size.author))
        following = json.loads(reply["body"])["next_cursor"]
        if following is None:
            break
        cursor, reached = following, reached + 1
    return cursor, reached


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "n": len(ordered),
    }


def _measure(
    runner: Runner, sizes: list[Size], routes: tuple[str, ...], samples: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """Each route at each size, after untimed warm-ups: round-robin over routes and sizes, so
    that the load of a shared machine, however it changes, weighs on all of them alike."""
    times: dict[str, dict[str, list[float]]] = {r: {s.label: [] for s in sizes} for r in routes}
    for index in range(warmup + samples):
        for route in routes:
            for size in sizes:
                runner.use(size)
                elapsed, _ = runner.call(route, _request(route, size))
                if index >= warmup:
                    times[route][size.label].append(elapsed)
    return {
        route: {label: _stats(values) for label, values in by_size.items()}
        for route, by_size in times.items()
    }


def _statements(runner: Runner, size: Size) -> dict[str, dict[str, int]]:
    """SQL statements per request of each list at page sizes 1 and 100."""
    runner.use(size)
    counts: dict[str, dict[str, int]] = {}
    for route in LISTS:
        counts[route] = {}
        for page_size in (1, 100):
            runner.statements = []
            runner.call(route, _request(route, size, page_size))
            counts[route][str(page_size)] = len(runner.statements)
            runner.statements = None
    return counts


def _plans(runner: Runner, size: Size) -> dict[str, list[str]]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of every statement each list and search route sends."""
    runner.use(size)
    plans: dict[str, list[str]] = {}
    for route in (*LISTS, "list_posts_deep", "list_users_deep"):
        runner.statements = []
        runner.call(route, _request(route, size))
        sent, runner.statements = runner.statements, None
        plans[route] = []
        with size.engine.connect() as conn:
            for statement, parameters in sent:
                if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    rows = conn.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
                    ).all()
                    plans[route].append("\n".join(row[0] for row in rows))
            conn.rollback()
    return plans


def _drop_new_indexes(size: Size) -> None:
    """The schema's indexes as before revision 0007: the new ones dropped, the old ones back."""
    with size.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("SET statement_timeout = 0")
        for name in NEW_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        for statement in OLD_INDEXES:
            conn.exec_driver_sql(statement.replace("INDEX", "INDEX IF NOT EXISTS", 1))


# --- report ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _table(results: dict[str, Any]) -> str:
    small, large = results["sizes"][0]["label"], results["sizes"][-1]["label"]
    rows = [("route", f"{small} median", f"{small} p95", f"{large} median", f"{large} p95",
             f"{large}/{small}", "target", "result")]  # fmt: skip
    for route, by_size in results["routes"].items():
        s, big = by_size[small], by_size[large]
        ratio = big["median_ms"] / s["median_ms"] if s["median_ms"] else float("inf")
        target, ok = f"<= {RATIO_MAX}x", ratio <= RATIO_MAX
        if route == "search_hit":  # it reads every matching row: judged by its own time
            target, ok = (
                f"{large} <= {SEARCH_HIT_MS_MAX:.0f} ms",
                big["median_ms"] <= SEARCH_HIT_MS_MAX,
            )
        rows.append((ROUTES[route][0], f"{s['median_ms']:.1f}", f"{s['p95_ms']:.1f}",
                     f"{big['median_ms']:.1f}", f"{big['p95_ms']:.1f}", f"{ratio:.2f}x", target,
                     _verdict(ok)))  # fmt: skip
    for deep, first in (("list_posts_deep", "list_posts"), ("list_users_deep", "list_users")):
        pages = results["deep_pages"][large]["posts" if deep == "list_posts_deep" else "users"]
        deep_ms, first_ms = (results["routes"][r][large]["median_ms"] for r in (deep, first))
        ratio = deep_ms / first_ms
        rows.append((f"{ROUTES[first][0].split(',')[0]}: page {pages + 1} / page 1, {large}",
                     f"{first_ms:.1f}", "", f"{deep_ms:.1f}", "", f"{ratio:.2f}x",
                     f"<= {RATIO_MAX}x", _verdict(ratio <= RATIO_MAX)))  # fmt: skip
    for route, by_size in results["writes_with_and_without_new_indexes"].items():
        for size in results["sizes"]:
            label = size["label"]
            with_ = by_size[label]["median_ms"]
            without = by_size[f"{label} without"]
            ratio = with_ / without["median_ms"]
            ok = ratio <= WRITE_SLOWDOWN_MAX
            rows.append((f"{ROUTES[route][0]} with/without new indexes, {label}",
                         f"{with_:.1f}", "", f"{without['median_ms']:.1f}", "", f"{ratio:.2f}x",
                         f"<= {WRITE_SLOWDOWN_MAX}x", _verdict(ok)))  # fmt: skip
    for route, counts in results["statements"].items():
        constant = counts["1"] == counts["100"]
        rows.append((f"statements: {ROUTES[route][0]}", "", "", "", "",
                     f"{counts['1']} / {counts['100']} (size 1 / 100)", "constant",
                     _verdict(constant)))  # fmt: skip
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale")
    parser.add_argument(
        "--sizes", default=DEFAULT_SIZES, help="LABEL=USERS:POSTS,... (smallest first)"
    )
    parser.add_argument("--samples", type=int, default=40, help="timed calls per route and size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--deep", type=int, default=1000, help="pages deep for the deep cursors")
    parser.add_argument("--admin-url", help="a PostgreSQL superuser URL (default: embedded)")
    parser.add_argument("--reuse", action="store_true", help="keep databases seeded at these sizes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """The whole run; returns the results (also written to ``--out``)."""
    args = _arguments(argv)
    sizes = _parse_sizes(args.sizes)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BenchScale")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("DB_SSLMODE", "disable")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with _server(args.admin_url) as admin_url:
        os.environ.setdefault("DATABASE_URL", admin_url)  # the settings want one; unused
        plains = [Size(f"{s.label} without", s.users, s.posts, plain=True) for s in sizes]
        for size in [*sizes, *plains]:
            _prepare(size, admin_url, reuse=args.reuse)
        runner = Runner()
        depth: dict[str, dict[str, int]] = {}
        for size in sizes:  # as deep as asked, or as the list goes (a small list ends sooner)
            runner.use(size)
            size.deep_posts, posts_depth = _deep_cursor(runner, "posts", size, args.deep)
            size.deep_users, users_depth = _deep_cursor(runner, "users", size, args.deep)
            depth[size.label] = {"posts": posts_depth, "users": users_depth}
        for size in [*sizes, *plains]:
            _make_targets(size, 2 * (args.warmup + args.samples) + 2)
        _log(f"timing {len(ROUTES)} routes x {len(sizes)} sizes x {args.samples} samples")
        results["routes"] = _measure(runner, sizes, tuple(ROUTES), args.samples, args.warmup)
        results["statements"] = _statements(runner, sizes[-1])
        _log(f"plans at {sizes[-1].label}")
        results["plans"] = _plans(runner, sizes[-1])
        _log("writes with and without the new indexes, side by side")
        writes = _measure(runner, [*sizes, *plains], WRITES, args.samples, args.warmup)
        results["writes_with_and_without_new_indexes"] = writes
        runner.close()
        results["sizes"] = [
            {"label": s.label, "users": s.users, "posts": s.posts, **s.timings} for s in sizes
        ]
        results["sizes_without_new_indexes"] = [{"label": s.label, **s.timings} for s in plains]
        results["deep_pages"] = depth
        for size in [*sizes, *plains]:
            size.engine.dispose()
            if not args.reuse:
                _admin(admin_url, f'DROP DATABASE IF EXISTS "{_database_name(size)}"')
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["meta"] = {
        "summary": f"{os.cpu_count()} cores ({platform.machine()}), load average {load}; "
        f"CPython {platform.python_version()}; deep pages (posts, users): "
        + ", ".join(f"{label} {d['posts']}, {d['users']}" for label, d in depth.items()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run, print the plans and the table."""
    results = run(argv)
    for route, plans in results["plans"].items():
        print(f"\n=== {ROUTES[route][0]}: EXPLAIN (ANALYZE, BUFFERS) at the largest size ===")  # noqa: T201
        for plan in plans:
            print(plan + "\n")  # noqa: T201
    print()  # noqa: T201
    for size in results["sizes"]:
        print(f"{size['label']}: {json.dumps(size)}")  # noqa: T201
    print(f"\n{results['meta']['summary']}; {results['meta']['seconds']} s\n")  # noqa: T201
    print(_table(results))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
