"""API clients for end-to-end tests.

- ``api``: in process; requests go through the local gateway's API Gateway emulation (route
  matching, payload-2.0 events, the Lambda authorizer) into the real handlers.
- ``http``: over real HTTP; the gateway runs as ``make local`` runs it (worker processes per
  function, the authorizer in front of protected routes) on 127.0.0.1 and an ephemeral port, on
  a migrated database of its own (one per test module).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import create_database, drop_database, migrate

TEST_SIGNING_KEY = "test-signing-key-that-is-long-enough-0123456789"
#: Lines tests add for pytest's terminal summary (e.g. how much a fuzzer generated).
SUMMARY = pytest.StashKey[list[str]]()


#: Requests the e2e clients sent, and the answers of 500 or more other than a 503 with
#: ``Retry-After`` (a database outage's documented answer), per test module.
SENT: Counter[str] = Counter()
SERVER_ERRORS: Counter[str] = Counter()


def _count(status: int, headers: dict[str, str]) -> None:
    module = os.environ.get("PYTEST_CURRENT_TEST", "?::").split("::")[0]
    SENT[module] += 1
    if status >= 500 and not (status == 503 and "retry-after" in headers):
        SERVER_ERRORS[module] += 1


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if SENT:
        lines = [
            *lines,
            "requests per module (unexpected 5xx): "
            + ", ".join(f"{m} {n} ({SERVER_ERRORS[m]})" for m, n in sorted(SENT.items())),
        ]
        out = Path(str(config.rootpath)) / ".bench" / "e2e_requests.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(
            json.dumps(
                {m: {"requests": n, "5xx": SERVER_ERRORS[m]} for m, n in sorted(SENT.items())},
                indent=2,
            )
        )
    if lines:
        terminalreporter.section("end-to-end summary")
        for line in lines:
            terminalreporter.write_line(line)


@dataclass
class Reply:
    """A response as a client sees it."""

    status: int
    headers: dict[str, str]
    body: Any
    text: str


class Client:
    """Calls the API like an HTTP client would, without sockets."""

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        source_ip: str = "127.0.0.1",
    ) -> Reply:
        """Send one request from ``source_ip``; ``raw`` is sent as the body verbatim."""
        from local.gateway import handle

        sent = {"host": "localhost", "user-agent": "tests"}
        body = b""
        if raw is not None:
            body = raw
            sent["content-type"] = "application/json"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            sent["content-type"] = "application/json"
        if token:
            sent["authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        result = handle(method, path, list(sent.items()), body, source_ip=source_ip)
        text = result.get("body") or ""
        response_headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        parsed = (
            json.loads(text)
            if text and "json" in response_headers.get("content-type", "")
            else None
        )
        _count(int(result["statusCode"]), response_headers)
        return Reply(int(result["statusCode"]), response_headers, parsed, text)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PATCH", path, json_body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

    def signup(
        self, name: str, *, admin: bool = False, password: str = "password-123"
    ) -> tuple[dict[str, Any], str]:
        """Register ``name`` (optionally made admin) and sign in; the user and a token."""
        reply = self.post(
            "/users", {"email": f"{name}@example.com", "username": name, "password": password}
        )
        assert reply.status == 201, reply.text
        if admin:
            from blog import db
            from blog.repositories import UserRepository

            with db.transaction() as conn:
                UserRepository(conn).update(reply.body["id"], is_admin=True)
        token = self.post("/auth/token", {"login": name, "password": password})
        assert token.status == 200, token.text
        return reply.body, token.body["access_token"]


def _client_with_signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    from blog.config import get_settings

    monkeypatch.setenv("JWT_SIGNING_KEY", TEST_SIGNING_KEY)
    get_settings.cache_clear()
    yield Client()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def api(db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A client on a rolled-back database, with a local token signing key."""
    yield from _client_with_signing_key(monkeypatch)


@pytest.fixture
def committed_api(committed_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The same on a database that really commits, a connection per request (races, counts of
    connections); the tables are emptied afterwards."""
    yield from _client_with_signing_key(monkeypatch)


# --- the local gateway over real HTTP ---------------------------------------------------------


@dataclass
class HttpReply:
    """A response over HTTP."""

    status: int
    headers: dict[str, str]
    body: Any


class Http:
    """A tiny HTTP client for a running gateway (and its database, for admin grants)."""

    def __init__(self, base: str, database_url: str) -> None:
        self.base = base
        self.database_url = database_url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> HttpReply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, headers, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, dict(error.headers), error.read()
        parsed = json.loads(payload) if payload else None
        lowered = {k.lower(): v for k, v in headers.items()}
        _count(status, lowered)
        return HttpReply(status, lowered, parsed)

    def user(self, *, admin: bool = False) -> tuple[dict[str, Any], str]:
        """Register a new user (optionally made admin) and sign in; the user and a token."""
        name = f"u{uuid.uuid4().hex[:10]}"
        created = self.call(
            "POST",
            "/users",
            {"email": f"{name}@example.com", "username": name, "password": "password-123"},
        )
        assert created.status == 201, created.body
        if admin:
            self.grant_admin(created.body["id"])
        token = self.call("POST", "/auth/token", {"login": name, "password": "password-123"})
        assert token.status == 200, token.body
        return created.body, token.body["access_token"]

    def grant_admin(self, user_id: int) -> None:
        engine = create_engine(self.database_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": user_id})
        engine.dispose()


def start_gateway(
    env: dict[str, str], *, workers: int = 2, worker_log: str | None = None, reload: bool = False
) -> tuple[Any, str, dict[str, tuple[str | None, str]]]:
    """A gateway on an ephemeral port with ``env`` set; the gateway, its URL, and per variable
    the value it replaced and the one it set.

    With ``worker_log``, the functions' output (their log lines) goes to that file.
    """
    from local.gateway import Gateway

    saved = {k: (os.environ.get(k), v) for k, v in env.items()}
    os.environ.update(env)  # the worker processes inherit it when they start
    gateway = Gateway(("127.0.0.1", 0), workers=workers, worker_log=worker_log, reload=reload)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    return gateway, f"http://127.0.0.1:{gateway.server_address[1]}", saved


def stop_gateway(gateway: Any, saved: dict[str, tuple[str | None, str]]) -> None:
    """Stop the gateway and its workers; restore the environment, except a variable that was
    set again meanwhile (the session's ``DATABASE_URL``, set up by a later test of the module,
    is the session's, not the gateway's to remove)."""
    gateway.shutdown()
    gateway.server_close()
    for key, (value, ours) in saved.items():
        if os.environ.get(key) != ours:
            continue
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def http(pg_admin_url: str) -> Iterator[Http]:
    """The gateway over real HTTP on a migrated database of this module's own."""
    name = f"blog_live_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, name)
    migrate(url)
    gateway, base, saved = start_gateway({"DATABASE_URL": url, "JWT_SIGNING_KEY": TEST_SIGNING_KEY})
    try:
        yield Http(base, url)
    finally:
        stop_gateway(gateway, saved)
        drop_database(pg_admin_url, name)
