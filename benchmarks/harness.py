"""What the benchmark's parts share: the database world, the Lambda environment, the events.

The world is an embedded PostgreSQL behind the TLS front of :mod:`local.pg_tls` (run in its own
process, so its relaying competes with the measured code for CPU, not for a GIL), reached by host
name with ``DB_SSLMODE=verify-full`` and a throwaway CA, as the functions reach RDS Proxy. When
the local server supports it, clients authenticate with SCRAM-SHA-256, as on RDS.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
EVENTS: Final = REPO / "events"
SEARCH_TERM: Final = "serverless"
USERS: Final = 50
POSTS: Final = 400  # every other one published; every third one mentions SEARCH_TERM

#: Route name -> (events/ template, function folder, expected status).
ROUTES: Final = {
    "get_user": ("get_user.json", "get_user", 200),
    "search_posts": ("list_posts.json", "list_posts", 200),
    "create_post": ("create_post.json", "create_post", 201),
    "list_users": ("list_users.json", "list_users", 200),
    "list_posts": ("list_posts.json", "list_posts", 200),
    "list_user_posts": ("list_user_posts.json", "list_user_posts", 200),
}
#: Routes of the warm and cold comparisons (the FastAPI app implements these).
COMPARED: Final = ("get_user", "search_posts", "create_post")
ROUTE_LABELS: Final = {
    "get_user": "GET /users/{id}",
    "search_posts": "GET /posts?q=",
    "create_post": "POST /posts",
    "list_users": "GET /users",
    "list_posts": "GET /posts",
    "list_user_posts": "GET /users/{id}/posts",
}


@dataclass(frozen=True)
class Seed:
    """What the events refer to: the caller and the author of the listed posts."""

    user_id: int
    search_term: str = SEARCH_TERM


def event(route: str, seed: Seed, page_size: int | None = None) -> dict[str, Any]:
    """A payload-2.0 event for ``route``, from its sample in ``events/``, aimed at the seed data.

    Authorized routes carry the Lambda authorizer's context for ``seed.user_id``, as API Gateway
    passes it after the authorizer said yes.
    """
    template, _, _ = ROUTES[route]
    built: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / template).read_text()))
    user = str(seed.user_id)
    query: dict[str, str] = {}
    if route == "get_user":
        built["pathParameters"] = {"user_id": user}
        built["rawPath"] = f"/users/{user}"
    elif route == "list_user_posts":
        built["pathParameters"] = {"user_id": user}
        built["rawPath"] = f"/users/{user}/posts"
        query = {"page": "1", "page_size": str(page_size or 20)}
    elif route in ("search_posts", "list_posts"):
        query = {"page": "1", "page_size": str(page_size or 20)}
        if route == "search_posts":
            query["q"] = seed.search_term
    elif route == "list_users":
        query = {"page": "1", "page_size": str(page_size or 20)}
    elif route == "create_post":
        body = json.dumps({"title": "Benchmark post", "content": "Written by the benchmark.\n"})
        built["body"] = body
        built["headers"]["content-length"] = str(len(body.encode()))
    if query or "queryStringParameters" in built:
        built["queryStringParameters"] = query
        built["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    built["requestContext"]["http"]["path"] = built["rawPath"]
    authorizer = built["requestContext"].get("authorizer")
    if authorizer is not None:
        # What the authorizer passes on for a fresh token of the seeded user (token version 0).
        authorizer["lambda"] = {"user_id": seed.user_id, "token_version": 0, "expires_at": 2**31}
    built["headers"].pop("authorization", None)  # checked by the authorizer, not the function
    built["requestContext"]["requestId"] = uuid.uuid4().hex
    return built


def expected_status(route: str) -> int:
    """The success status of ``route``."""
    return ROUTES[route][2]


ARN_PREFIX = "arn:aws:lambda:eu-west-1:123456789012:function"


class Context:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, memory_mb: int = 512, timeout_s: float = 10.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"{ARN_PREFIX}:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (emulated) timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def trace_header(sampled: bool) -> str:
    """A fresh ``_X_AMZN_TRACE_ID``, as the Lambda runtime sets it for each invocation."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled={int(sampled)}"


def lambda_environment(
    function_name: str, task_root: Path, database: dict[str, str], xray_address: str
) -> dict[str, str]:
    """The environment the Lambda runtime gives a function of ``template.yaml`` (prod stage).

    The template's Globals are mirrored: its variables (prod branch of ``IsProd``), the log
    format and level, the memory size and active tracing, whose segments go to ``xray_address``
    (a local UDP sink) instead of the X-Ray daemon. The database comes from ``database``
    (``DATABASE_URL`` & co.) instead of the secret, and the signing key is not needed by the
    routes measured. No AWS credentials: nothing may reach AWS.
    """
    from local.functions import template

    function = template().get("Globals", {}).get("Function", {})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC"}
    for key, value in (function.get("Environment", {}).get("Variables") or {}).items():
        if isinstance(value, str):
            env[key] = value
        elif isinstance(value, dict) and "Fn::If" in value:
            condition, if_true, _ = value["Fn::If"]
            if condition == "IsProd" and isinstance(if_true, str):
                env[key] = if_true
    logging = function.get("LoggingConfig") or {}
    env["AWS_LAMBDA_LOG_FORMAT"] = str(logging.get("LogFormat", "Text"))
    level = logging.get("ApplicationLogLevel")
    if isinstance(level, dict) and "Fn::If" in level:
        level = level["Fn::If"][1]
    if isinstance(level, str):
        env["AWS_LAMBDA_LOG_LEVEL"] = level
    region = "eu-west-1"
    env.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.get('Runtime', 'python3.13')}",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.get("MemorySize", 128)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "LAMBDA_TASK_ROOT": str(task_root),
            "_HANDLER": "app.lambda_handler",
        }
    )
    if function.get("Tracing") == "Active":
        host, port = xray_address.rsplit(":", 1)
        env.update(
            {
                "AWS_XRAY_DAEMON_ADDRESS": xray_address,
                "_AWS_XRAY_DAEMON_ADDRESS": host,
                "_AWS_XRAY_DAEMON_PORT": port,
                "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            }
        )
    env.update(database)
    return env


class UdpSink:
    """A local stand-in for the X-Ray daemon: receives and counts the segments sent to it."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.datagrams = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while self._socket.recv(65536):
                self.datagrams += 1

    def close(self) -> None:
        """Stop listening."""
        with contextlib.suppress(OSError):
            self._socket.close()


@dataclass
class World:
    """A migrated, seeded database behind a verify-full TLS front, and its clients' settings."""

    home: Path
    server: Any
    front: subprocess.Popen[str]
    url: str  # through the TLS front, by host name
    plain_url: str  # the server itself, for set-up
    ca_file: Path
    auth: str
    seed: Seed = field(default_factory=lambda: Seed(user_id=1))

    def database_env(self, url: str | None = None) -> dict[str, str]:
        """The layer's database settings for this world."""
        return {
            "DATABASE_URL": url or self.url,
            "DB_SSLMODE": "verify-full",
            "DB_SSL_CA_FILE": str(self.ca_file),
        }

    def create_database(self, name: str) -> tuple[str, str]:
        """A new migrated database: its URL through the TLS front, and the plain one."""
        from sqlalchemy.engine import make_url

        from local.__main__ import _migrate

        plain = self.server.create_database(name)
        _migrate(plain)
        tls = make_url(self.url).set(database=name).render_as_string(hide_password=False)
        return tls, plain

    def stop(self) -> None:
        """Stop the front and the server, delete everything."""
        with contextlib.suppress(OSError):
            if self.front.stdin is not None:
                self.front.stdin.close()
        try:
            self.front.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.front.kill()
            self.front.wait()
        self.server.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def start_world() -> World:
    """Start the server and its TLS front, migrate and seed."""
    from sqlalchemy.engine import make_url

    from local.__main__ import _migrate
    from local.embedded_pg import EmbeddedPostgres
    from local.pg_tls import make_certificates

    home = Path(tempfile.mkdtemp(prefix="blog-api-bench-"))
    home.chmod(0o711)  # as root, the server runs as another user and must reach its data dir
    scram = "password" in inspect.signature(EmbeddedPostgres).parameters
    options: dict[str, Any] = {"password": secrets.token_urlsafe(18)} if scram else {}
    server = EmbeddedPostgres(home / "data", **options).start()
    front: subprocess.Popen[str] | None = None
    try:
        plain = server.create_database("bench")
        _migrate(plain)
        certificates = make_certificates(home / "certs", hosts=("localhost", "127.0.0.1"))
        front = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.tls_front",
                server.host,
                str(server.port),
                str(home / "certs"),
            ],  # fmt: skip
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert front.stdout is not None
        port = int(front.stdout.readline())
        url = make_url(plain).set(host="localhost", port=port)
        world = World(
            home=home,
            server=server,
            front=front,
            url=url.render_as_string(hide_password=False),
            plain_url=plain,
            ca_file=certificates.ca_file,
            auth="scram-sha-256" if scram else "trust",
        )
        world.seed = seed(plain)
    except BaseException:
        if front is not None:
            front.kill()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
        raise
    return world


def seed(url: str) -> Seed:
    """Users, and a few hundred posts of which enough match the search for full pages."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    import local  # noqa: F401 - puts the layer on sys.path
    from blog.security import hash_password

    hashed = hash_password("benchmark-password")
    filler = "Lambda functions, PostgreSQL and a little Python. " * 12
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (email, username, hashed_password) "
                    "VALUES (:email, :username, :hashed)"
                ),
                [
                    {"email": f"user{n}@example.com", "username": f"user{n}", "hashed": hashed}
                    for n in range(USERS)
                ],
            )
            author = int(conn.scalar(text("SELECT min(id) FROM users")) or 1)
            conn.execute(
                text(
                    "INSERT INTO posts (title, content, published, author_id, created_at) "
                    "VALUES (:title, :content, :published, :author, "
                    "now() - make_interval(mins => :age))"
                ),
                [
                    {
                        "title": f"Post {n}" + (f" on {SEARCH_TERM} Python" if n % 3 == 0 else ""),
                        "content": filler,
                        "published": n % 2 == 0,
                        "author": author + n % 5,
                        "age": POSTS - n,
                    }
                    for n in range(POSTS)
                ],
            )
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return Seed(user_id=author)
