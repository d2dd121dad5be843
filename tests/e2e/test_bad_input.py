"""Bad input, end to end: every route gets malformed, mistyped, oversized, out-of-range and forged
requests, and must answer each with its documented 4xx.

Most requests go over real HTTP through the local gateway (a worker process per function, the
Lambda authorizer in front of protected routes) on a database of their own. A few need exact
control of the Lambda event (payload-2.0 joined query parameters, base64 bodies, raw lone
surrogates) and call the handlers directly. For every bad request:

- the status is the documented one, with the standard ``{"error": {"code", "message",
  "details"?}}`` body (API Gateway's own ``{"message"}`` for the answers the gateway gives);
- the users and posts tables are unchanged (row counts and a checksum of every row);
- neither the response nor any log line carries a password hash, a token, the signing key or SQL.

The last test prints how many bad inputs were tried and how many got a 5xx.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.client
import io
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from sqlalchemy import Engine, create_engine, text

from tests.conftest import REPO, create_database, drop_database, migrate
from tests.e2e.conftest import SUMMARY, TEST_SIGNING_KEY, Client, start_gateway, stop_gateway

JSON = "application/json"
PASSWORD = "password-123"
ID_MAX = 2**31 - 1

#: Bad inputs tried, by category, and the ones answered with a 5xx (over the whole module).
TRIED: Counter[str] = Counter()
SERVER_ERRORS: list[str] = []

# What no response body and no log line may contain (besides the run's tokens and passwords).
LEAKS = re.compile(
    r"\$argon2|Traceback|psycopg|pg8000|sqlalchemy\.exc|"
    r"\b(?:SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b"
)
CHECKSUM = text(
    "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts),"
    # Wrong passwords are counted in sign_in_failures, not here: a user row stays as it was.
    " (SELECT md5(coalesce(string_agg(u::text, '|' ORDER BY u.id), '')) FROM users u),"
    " (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.id), '')) FROM posts p)"
)


# --- the live gateway -------------------------------------------------------------------------


@dataclass
class Caller:
    """A signed-in user."""

    user: dict[str, Any]
    token: str

    @property
    def id(self) -> int:
        return int(self.user["id"])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str
    body: Any


@dataclass
class Live:
    """The gateway, its database, the callers and posts the cases are about, and its log."""

    port: int
    engine: Engine
    log: Path
    owner: Caller = field(init=False)
    other: Caller = field(init=False)
    admin: Caller = field(init=False)
    draft: dict[str, Any] = field(init=False)
    secrets: set[str] = field(default_factory=lambda: {TEST_SIGNING_KEY, PASSWORD})
    log_offset: int = 0

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read().decode("utf-8")
            status, response_headers = response.status, response.getheaders()
        finally:
            connection.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return Reply(status, {k.lower(): v for k, v in response_headers}, payload, parsed)

    def call(self, method: str, path: str, payload: Any = None, token: str | None = None) -> Reply:
        headers: list[tuple[str, str]] = []
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers.append(("Content-Type", JSON))
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        return self.send(method, path, body, tuple(headers))

    def signup(self, *, admin: bool = False) -> Caller:
        name = f"u{uuid.uuid4().hex[:10]}"
        user = self.call(
            "POST",
            "/users",
            {"email": f"{name}@example.com", "username": name, "password": PASSWORD},
        )
        assert user.status == 201, user.text
        if admin:
            with self.engine.begin() as conn:
                conn.execute(text("UPDATE users SET is_admin = true WHERE id = :id"), user.body)
        token = self.call("POST", "/auth/token", {"login": name, "password": PASSWORD})
        assert token.status == 200, token.text
        self.secrets.add(token.body["access_token"])
        return Caller(user.body, token.body["access_token"])

    def snapshot(self) -> tuple[Any, ...]:
        with self.engine.connect() as conn:
            return tuple(conn.execute(CHECKSUM).one())

    def new_log(self) -> str:
        """What the functions logged since the last call."""
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            data = log.read()
        self.log_offset += len(data)
        return data.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def live(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The gateway as ``make local`` runs it, one warm worker per function, its log in a file."""
    name = f"blog_bad_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, name)
    log = tmp_path_factory.mktemp("gateway") / "functions.log"
    log.touch()
    engine = create_engine(url, pool_size=1)
    env = {"DATABASE_URL": url, "JWT_SIGNING_KEY": TEST_SIGNING_KEY}
    try:
        migrate(url)
        gateway, base, saved = start_gateway(env, workers=1, worker_log=str(log))
        try:
            try:
                world = Live(int(base.rsplit(":", 1)[1]), engine, log)
                _populate(world)
            finally:
                # Every worker has started with ``env``; tests in this process need their own.
                os.environ.update({k: old for k, (old, _) in saved.items() if old is not None})
                for key in (k for k, (old, _) in saved.items() if old is None):
                    os.environ.pop(key, None)
            yield world
        finally:
            stop_gateway(gateway, saved)
    finally:
        engine.dispose()
        drop_database(pg_admin_url, name)


def _populate(world: Live) -> None:
    """The callers and the draft, then a cold start of every function."""
    from local.gateway import routes

    world.owner, world.other = world.signup(), world.signup()
    world.admin = world.signup(admin=True)
    post = {"title": "Draft", "content": "Draft content"}
    world.draft = world.call("POST", "/posts", post, world.owner.token).body
    # Each function starts with a request it refuses. On a busy machine a cold start may outlast
    # the gateway's integration timeout (503): then again, the worker is warm by then.
    headers = (("Content-Type", JSON), ("Authorization", f"Bearer {world.owner.token}"))
    for r in {r.function.logical_id: r for r in routes()}.values():
        for _ in range(5):
            warm = world.send(r.method, re.sub(r"{\w+}", "1", r.path), b"{", headers)
            if warm.status != 503:
                break
        assert warm.status == 400, (r.route_key, warm.text)


# --- cases and how they are judged ------------------------------------------------------------

#: The error code each status carries when the function answers.
CODES = {
    400: "malformed_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "duplicate",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_attempts",
}


@dataclass(frozen=True)
class Case:
    """One bad request and the answer it must get."""

    category: str
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    #: The status, or the statuses one of which it must be.
    status: int | tuple[int, ...] = 422
    code: str | None = None
    #: API Gateway's own answer (``{"message": …}``) rather than the function's.
    gateway: bool = False
    #: Values the request carries that must not come back (passwords, tokens).
    secrets: tuple[str, ...] = ()


def case(
    category: str,
    name: str,
    method: str,
    path: str,
    payload: Any = None,
    *,
    raw: bytes | None = None,
    token: str | None = None,
    content_type: str | None = JSON,
    headers: tuple[tuple[str, str], ...] = (),
    status: int | tuple[int, ...] = 422,
    code: str | None = None,
    gateway: bool = False,
) -> Case:
    """A case; ``payload`` is sent as JSON (lone surrogates become ``\\udXXX`` escapes)."""
    body = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    sent = list(headers)
    if body is not None and content_type is not None:
        sent.insert(0, ("Content-Type", content_type))
    if token is not None:
        sent.append(("Authorization", f"Bearer {token}"))
    if code is None and not gateway and isinstance(status, int):
        code = CODES.get(status)
    secrets = [token] if token and len(token) > 40 else []
    if isinstance(payload, dict):
        secrets += [
            v for k, v in payload.items() if k == "password" and isinstance(v, str) and len(v) > 7
        ]
    return Case(
        category, name, method, path, body, tuple(sent), status, code, gateway, tuple(secrets)
    )


def judge(status: int, body: Any, output: str, c: Case, secrets: Iterable[str] = ()) -> list[str]:
    """What is wrong with an answer to ``c``: its status, its body's shape, what it leaks
    (``secrets`` and the request's own)."""
    label = f"[{c.category}] {c.name}: {c.method} {c.path[:60]}"
    problems = []
    if status not in (c.status if isinstance(c.status, tuple) else (c.status,)):
        problems.append(f"{label}: status {status}, expected {c.status}: {output[:300]}")
    if status >= 500:
        SERVER_ERRORS.append(label)
    if c.gateway:
        if not (isinstance(body, dict) and set(body) == {"message"}):
            problems.append(f"{label}: not API Gateway's own answer: {output[:300]}")
    else:
        error = body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None
        if not (
            isinstance(error, dict)
            and {"code", "message"} <= set(error) <= {"code", "message", "details"}
            and isinstance(error["code"], str)
            and isinstance(error["message"], str)
            and error["message"]
        ):
            problems.append(f"{label}: not the standard error body: {output[:300]}")
        elif c.code and error["code"] != c.code:
            problems.append(f"{label}: code {error['code']!r}, expected {c.code!r}")
    secrets = [*c.secrets, *secrets]
    problems += [f"{label}: the response leaks {leak}" for leak in leaks(output, secrets)]
    return problems


def leaks(output: str, secrets: Iterable[str]) -> list[str]:
    """The sensitive things ``output`` holds: SQL, driver names, hashes, tracebacks, secrets."""
    found = [repr(m.group()) for m in LEAKS.finditer(output)]
    return found + [f"a secret ({s[:6]}…)" for s in secrets if s and s in output]


def error_lines(log: str) -> list[str]:
    """Log lines of level ERROR or worse (Powertools writes one JSON object a line)."""
    return [line for line in log.splitlines() if re.search(r'"level":\s*"(ERROR|CRITICAL)"', line)]


def run(live: Live, cases: list[Case]) -> None:
    """Send every case; the data must not change, and nothing may leak, in replies or logs."""
    problems: list[str] = []
    for c in cases:
        before = live.snapshot()
        reply = live.send(c.method, c.path, c.body, c.headers)
        after = live.snapshot()
        TRIED[c.category] += 1
        output = reply.text + json.dumps(reply.headers)
        problems += judge(reply.status, reply.body, output, c, live.secrets)
        if before != after:
            problems.append(f"[{c.category}] {c.name}: {c.method} {c.path[:60]} changed the data")
    log = live.new_log()
    secrets = live.secrets | {s for c in cases for s in c.secrets}
    problems += [f"the log leaks {leak}" for leak in leaks(log, secrets)]
    problems += [f"the log has an error: {line[:300]}" for line in error_lines(log)]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


# --- the routes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A route as the cases call it: about the owner or their draft, with the token it needs."""

    method: str
    template: str
    #: The id in the path: the owner's, or their draft's.
    id: int | None = None
    #: "owner" or "admin": whose token gets the request past the authorizer.
    caller: str | None = None
    #: A valid body, for routes that take one.
    body: dict[str, Any] | None = None

    def at(self, value: str) -> str:
        """The path with ``value`` as its id."""
        return self.template.replace("{id}", value)

    @property
    def path(self) -> str:
        return self.at(str(self.id))


ROUTES = [
    "POST /users",
    "POST /auth/token",
    "GET /users",
    "GET /users/{id}",
    "PATCH /users/{id}",
    "POST /users/{id}/deactivate",
    "POST /users/{id}/sign-out",
    "DELETE /users/{id}",
    "GET /users/{id}/posts",
    "POST /users/{id}/posts/transfer",
    "POST /posts",
    "GET /posts",
    "GET /posts/{id}",
    "PATCH /posts/{id}",
    "POST /posts/{id}/publish",
    "DELETE /posts/{id}",
]
BODY_ROUTES = [
    "POST /users",
    "POST /auth/token",
    "PATCH /users/{id}",
    "POST /users/{id}/posts/transfer",
    "POST /posts",
    "PATCH /posts/{id}",
]
ID_ROUTES = [r for r in ROUTES if "{id}" in r]
#: Routes that read a token (the others answer the same with or without one).
TOKEN_ROUTES = [r for r in ROUTES if r not in {"POST /users", "POST /auth/token", "GET /posts"}]


def route(live: Live, name: str) -> Route:
    owner, draft = live.owner.id, live.draft["id"]
    method, template = name.split(" ")
    found = {
        "POST /users": Route(
            method,
            template,
            body={"email": "fresh@example.com", "username": "fresh", "password": PASSWORD},
        ),
        "POST /auth/token": Route(
            method, template, body={"login": live.owner.user["username"], "password": "x" * 8}
        ),
        "GET /users": Route(method, template, caller="owner"),
        "GET /users/{id}": Route(method, template, owner, "owner"),
        "PATCH /users/{id}": Route(method, template, owner, "owner", {"username": "renamed"}),
        "POST /users/{id}/deactivate": Route(method, template, owner, "owner"),
        "POST /users/{id}/sign-out": Route(method, template, owner, "owner"),
        "DELETE /users/{id}": Route(method, template, owner, "owner"),
        "GET /users/{id}/posts": Route(method, template, owner, "owner"),
        "POST /users/{id}/posts/transfer": Route(
            method, template, owner, "admin", {"to_user_id": live.other.id}
        ),
        "POST /posts": Route(method, template, caller="owner", body={"title": "t", "content": "c"}),
        "GET /posts": Route(method, template),
        "GET /posts/{id}": Route(method, template, draft),
        "PATCH /posts/{id}": Route(method, template, draft, "owner", {"title": "new"}),
        "POST /posts/{id}/publish": Route(method, template, draft, "owner"),
        "DELETE /posts/{id}": Route(method, template, draft, "owner"),
    }
    return found[name]


def token_for(live: Live, r: Route) -> str | None:
    return {"owner": live.owner.token, "admin": live.admin.token}.get(r.caller or "")


def test_every_route_is_in_the_matrix() -> None:
    from local.gateway import routes

    served = {r.method + " " + re.sub(r"{\w+}", "{id}", r.path) for r in routes()}
    assert served == set(ROUTES)


# --- bodies, on every route -------------------------------------------------------------------

MALFORMED: dict[str, bytes] = {
    "truncated": b'{"title": ',
    "trailing comma": b'{"a": 1,}',
    "single quotes": b"{'a': 1}",
    "unquoted key": b"{a: 1}",
    "bare word": b"hello",
    "two documents": b"{} {}",
    "comment": b'{"a": 1 /* c */}',
    "whitespace only": b" \n\t ",
    "UTF-8 byte order mark": b'\xef\xbb\xbf{"a": 1}',
    "NaN": b'{"a": NaN}',
    "-Infinity": b'{"a": -Infinity}',
    "5000-digit integer": b'{"a": ' + b"9" * 5000 + b"}",
    "duplicate key": b'{"a": 1, "a": 2}',
    "nested duplicate key": b'{"a": {"b": 1, "b": 2}}',
    "33 levels of arrays": b"[" * 33 + b"]" * 33,
    "33 levels of objects": b'{"a":' * 33 + b"1" + b"}" * 33,
    "940 levels of arrays": b"[" * 940 + b"]" * 940,
    "940 levels in a field": b'{"title": ' + b"[" * 940 + b"]" * 940 + b"}",
    "100000 open arrays": b"[" * 100_000,
    "50000 levels of objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "invalid UTF-8": b'{"a": "\xff\xfe"}',
    "overlong UTF-8": b'{"a": "\xc0\xaf"}',
    "UTF-8-encoded surrogate": b'{"a": "\xed\xa0\x80"}',
    "Latin-1": '{"a": "café"}'.encode("latin-1"),
    "UTF-16": '{"a": 1}'.encode("utf-16"),
    "gzip": gzip.compress(b'{"a": 1}'),
    "NUL after the document": b'{"a": 1}\x00',
    "raw control character in a string": b'{"a": "x\x01y"}',
    "raw line feed in a string": b'{"a": "x\ny"}',
}
WRONG_CONTENT_TYPES: dict[str, str | None] = {
    "text/plain": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "XML": "application/xml",
    "JSON patch": "application/json-patch+json",
    "JSON:API": "application/vnd.api+json",
    "text/json": "text/json",
    "jsonx": "application/jsonx",
    "bare json": "json",
    "empty": "",
    "missing": None,
    "JSON in Latin-1": "application/json; charset=latin-1",
    "JSON in UTF-16": "Application/JSON; Charset=UTF-16",
    "JSON with an empty charset": "application/json; charset=",
    "JSON, then another type": "application/json, text/plain",
    "three parts": "application/json/x",
    "JSON without its slash": "applicationjson",
    "JSON with a space inside": "application/ json",
}
#: Spellings of JSON in UTF-8 that are JSON all the same (RFC 9110: type, subtype and parameter
#: names are case-insensitive; RFC 8259: JSON is UTF-8).
JSON_SPELLINGS: dict[str, str] = {
    "lower case": "application/json",
    "mixed case, charset": "Application/JSON; Charset=UTF-8",
    "upper case": "APPLICATION/JSON",
    "upper-case charset": "application/json; CHARSET=UTF-8",
    "quoted charset": 'application/json; charset="utf-8"',
    "spaces around": "  application/json ; charset=utf-8 ",
    "no space": "application/json;charset=utf-8",
    "utf8 alias": "application/JSON;charset=utf8",
    "another parameter": "Application/Json; profile=x",
}


@pytest.mark.parametrize("name", ROUTES)
def test_malformed_json_is_400(live: Live, name: str) -> None:
    r = route(live, name)
    token = token_for(live, r)
    run(
        live,
        [
            case("malformed JSON", what, r.method, r.path, raw=body, token=token, status=400)
            for what, body in MALFORMED.items()
        ],
    )


@pytest.mark.parametrize("name", ROUTES)
def test_wrong_content_type_is_415(live: Live, name: str) -> None:
    r = route(live, name)
    token = token_for(live, r)
    body = json.dumps(r.body or {}).encode()
    cases = [
        case(
            "content type",
            what,
            r.method,
            r.path,
            raw=body,
            token=token,
            content_type=value,
            status=415,
        )
        for what, value in WRONG_CONTENT_TYPES.items()
    ]
    # API Gateway joins repeated headers with a comma.
    cases.append(
        case(
            "content type",
            "two Content-Type headers",
            r.method,
            r.path,
            raw=body,
            token=token,
            headers=(("Content-Type", "text/plain"),),
            status=415,
        )
    )
    run(live, cases)


@pytest.mark.parametrize("name", ROUTES)
def test_json_in_any_case_is_json_on_every_route(live: Live, name: str) -> None:
    """Each spelling of JSON reaches validation like ``application/json`` does: a body with an
    unknown field is 422, never a 415 or a 5xx from the resolver's own, case-sensitive check.
    Routes that take no body are called at a row that does not exist (404) or with a page out
    of range (422), so that nothing changes."""
    r = route(live, name)
    token = token_for(live, r)
    path, status = r.path, (422,)
    if name not in BODY_ROUTES:
        # Another user's id is 403 to the owner, a post that does not exist 404.
        missing = (r.at("2000000000"), (403, 404))
        path, status = missing if r.id is not None else (f"{r.path}?page=0", (422,))
    body = json.dumps({**(r.body or {}), "unknown_field": 1}).encode()
    cases = [
        case(
            "content type",
            what,
            r.method,
            path,
            raw=body,
            token=token,
            content_type=value,
            status=status,
        )  # fmt: skip
        for what, value in JSON_SPELLINGS.items()
    ]
    run(live, cases)


@pytest.mark.parametrize("name", BODY_ROUTES)
def test_thousands_of_bad_fields_get_an_answer_the_size_of_a_few(live: Live, name: str) -> None:
    """Unknown or invalid fields by the thousand: 422 listing the first few and counting the
    rest, with a body of a few kilobytes whatever the input."""
    r = route(live, name)
    token = token_for(live, r)
    bodies = {
        "5000 unknown fields": {f"field_{n}": n for n in range(5000)},
        "5000 unknown fields with long names": {f"{'x' * 90}{n}": n for n in range(5000)},
        "unknown fields with the body": {**(r.body or {}), **{f"f{n}": None for n in range(8000)}},
    }
    cases = [
        case("bounded errors", what, r.method, r.path, payload, token=token)
        for what, payload in bodies.items()
    ]
    run(live, cases)
    for payload in bodies.values():
        reply = live.call(r.method, r.path, payload, token)
        assert reply.status == 422
        assert len(reply.text) < 4096, len(reply.text)
        details = reply.body["error"]["details"]
        assert len(details) <= 11
        assert details[-1]["type"] == "too_many_errors"
        assert f"{len(payload) - 10} more" in details[-1]["message"] or r.body


@pytest.mark.parametrize("name", ROUTES)
def test_oversized_body_is_413(live: Live, name: str) -> None:
    r = route(live, name)
    token = token_for(live, r)

    def body(size: int) -> bytes:
        return b'{"title": "' + b"x" * (size - 13) + b'"}'

    run(
        live,
        [
            case(
                "oversized body",
                "512 KiB + 1",
                r.method,
                r.path,
                raw=body(512 * 1024 + 1),
                token=token,
                status=413,
            ),
            case(
                "oversized body",
                "6 MB, past Lambda's limit for an event",
                r.method,
                r.path,
                raw=body(6_300_000),
                token=token,
                status=413,
                gateway=True,
            ),
            case(
                "oversized body",
                "10 MB",
                r.method,
                r.path,
                raw=body(10_000_000),
                token=token,
                status=413,
                gateway=True,
            ),
        ],
    )


def test_bodies_past_10_mib_are_refused_by_api_gateway(live: Live) -> None:
    body = b'{"title": "' + b"x" * (10 * 2**20 - 12) + b'"}'
    run(
        live,
        [
            case(
                "oversized body",
                "10 MiB + 1",
                "POST",
                "/posts",
                raw=body,
                token=live.owner.token,
                status=413,
                gateway=True,
            ),
        ],
    )


@pytest.mark.parametrize("name", ROUTES)
def test_json_of_the_wrong_type_or_no_body_is_422(live: Live, name: str) -> None:
    """Every body is an object; routes that take none refuse anything else too."""
    r = route(live, name)
    token = token_for(live, r)
    bodies = {
        "array": b"[]",
        "array of the body": json.dumps([r.body or {}]).encode(),
        "array of two bodies": json.dumps([r.body or {}, r.body or {}]).encode(),
        "string": b'"text"',
        "string of the body": json.dumps(json.dumps(r.body)).encode(),
        "integer": b"42",
        "20-digit integer": b"99999999999999999999",
        "float": b"4.2",
        "1e400": b"1e400",
        "null": b"null",
        "true": b"true",
        "false": b"false",
        "32 levels of arrays": b"[" * 32 + b"]" * 32,
    }
    if name in BODY_ROUTES:
        bodies |= {"empty object": b"{}", "no body": b""}
    run(
        live,
        [
            case("wrong JSON type", what, r.method, r.path, raw=body, token=token)
            for what, body in bodies.items()
        ],
    )


# --- fields -----------------------------------------------------------------------------------

#: Control characters refused in all text: C0 but tab, line feed and carriage return; DEL; C1.
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1c", "\x1f", "\x7f", "\x85"]
CONTROL += ["\x80", "\x9f"]
#: Also refused where text is a single line.
LINE_BREAKS = ["\t", "\n", "\r", "\r\n"]
#: What ``str.strip`` would remove: refused at the end too, not trimmed away.
STRIPPED = {"\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85"}
#: Lone (and misordered) surrogates; JSON carries them as ``\\udXXX`` escapes.
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800", "\ud83d", "\ud800\ud800"]
WRONG_TYPES: dict[str, Any] = {
    "null": None,
    "integer": 12345678,
    "float": 1.5,
    "boolean": True,
    "array": ["value"],
    "object": {"value": 1},
}


def text_field_cases(
    method: str,
    path: str,
    base: dict[str, Any],
    token: str | None,
    fields: dict[str, tuple[str, bool]],
) -> list[Case]:
    """Wrong types, control characters and lone surrogates in each text field of ``base``.

    ``fields`` maps a field to a valid value and whether the field may span lines.
    """
    cases = []
    for name, (sample, multiline) in fields.items():

        def bad(category: str, what: str, value: Any, field_: str = name) -> None:
            payload = {**base, field_: value}
            cases.append(case(category, f"{field_} {what}", method, path, payload, token=token))

        for kind, value in WRONG_TYPES.items():
            bad("wrong field type", kind, value)
        for char in CONTROL + ([] if multiline else LINE_BREAKS):
            bad(
                "control characters", f"U+{ord(char[0]):04X} inside", sample[:2] + char + sample[2:]
            )
            if char in STRIPPED:
                bad("control characters", f"U+{ord(char[0]):04X} at the end", sample + char)
        for surrogate in SURROGATES:
            bad("lone surrogates", ascii(surrogate), sample[:2] + surrogate + sample[2:])
    return cases


def test_registration_fields(live: Live) -> None:
    base = {"email": "fresh@example.com", "username": "fresh", "password": PASSWORD}
    fields = {name: (value, False) for name, value in base.items()}
    cases = text_field_cases("POST", "/users", base, None, fields)

    def bad(category: str, what: str, payload: Any, status: int = 422) -> None:
        cases.append(case(category, what, "POST", "/users", payload, status=status))

    for name in base:
        bad("missing or extra fields", f"no {name}", {k: v for k, v in base.items() if k != name})
    for extra, value in {
        "is_admin": True,
        "id": 1,
        "hashed_password": "$argon2id$v=19$m=1",
    }.items():
        bad("missing or extra fields", f"extra {extra}", {**base, extra: value})
    bad("missing or extra fields", "a key in another case", {**base, "EMAIL": "x@example.com"})
    for value in ("true", 1, None, [True]):
        bad("wrong field type", f"welcome_post {value!r}", {**base, "welcome_post": value})
    at_limit = "a" * 64 + "@" + "b" * 186 + ".com"  # 255 characters
    for what, change in {
        "email of 256 characters": {"email": "a" + at_limit},
        "email with a local part of 65": {"email": "a" * 65 + "@example.com"},
        "email of 10000 characters": {"email": "a@" + "b" * 9994 + ".com"},
        "username of 51 characters": {"username": "u" * 51},
        "username of 2 characters": {"username": "ab"},
        "username of 10000 characters": {"username": "u" * 10_000},
        "password of 7 characters": {"password": "p" * 7},
        "password of 257 characters": {"password": "p" * 257},
        "password of 100000 characters": {"password": "p" * 100_000},
    }.items():
        bad("length limits", what, {**base, **change})
    for name in base:
        bad("empty strings", f"empty {name}", {**base, name: ""})
        bad("empty strings", f"blank {name}", {**base, name: "   "})
    for value in (" fresh", "fresh ", " fresh ", "fr esh", "\u00a0fresh", "fresh\u2028"):
        bad("whitespace", f"username {value!r}", {**base, "username": value})
    for value in ("fresh @example.com", "fresh@exa mple.com", "fresh\u2028@example.com"):
        bad("whitespace", f"email {value!r}", {**base, "email": value})
    for value in ("ünïcode", "\u0430dmin", "emoji\U0001f600", "a@b", "trailing_"):
        bad("unicode usernames", f"username {value!r}", {**base, "username": value})
    owner = live.owner.user
    for what, change in {
        "email in upper case": {"email": owner["email"].upper()},
        "email in mixed case": {"email": owner["email"].capitalize()},
        "email padded with spaces": {"email": f"  {owner['email'].upper()}  "},
        "username in upper case": {"username": owner["username"].upper()},
    }.items():
        bad("duplicates", what, {**base, **change}, 409)
    run(live, cases)


def test_sign_in_fields(live: Live) -> None:
    # A user of its own: the wrong passwords below count against it (fewer than would pause it).
    login = live.signup().user["username"]
    base = {"login": login, "password": PASSWORD}
    fields = {"login": (login, False), "password": (PASSWORD, False)}
    cases = text_field_cases("POST", "/auth/token", base, None, fields)

    def bad(category: str, what: str, payload: Any, status: int = 422) -> None:
        cases.append(case(category, what, "POST", "/auth/token", payload, status=status))

    bad("missing or extra fields", "no login", {"password": PASSWORD})
    bad("missing or extra fields", "no password", {"login": login})
    bad("missing or extra fields", "extra username", {**base, "username": login})
    bad("empty strings", "empty login", {**base, "login": ""})
    bad("empty strings", "empty password", {**base, "password": ""})
    bad("length limits", "login of 256 characters", {**base, "login": "l" * 256})
    bad("length limits", "password of 257 characters", {**base, "password": "p" * 257})
    bad("length limits", "password of 100000 characters", {**base, "password": "p" * 100_000})
    for what, payload in {
        "wrong password": {**base, "password": "wrong-password"},
        "password in another case": {**base, "password": PASSWORD.upper()},
        "password with a space": {**base, "password": f" {PASSWORD}"},
        "blank password": {**base, "password": " "},
        "unknown username": {"login": "nobody-at-all", "password": PASSWORD},
        "unknown email": {"login": "nobody@example.com", "password": PASSWORD},
    }.items():
        bad("bad credentials", what, payload, 401)
    run(live, cases)


def test_user_change_fields(live: Live) -> None:
    path = f"/users/{live.owner.id}"
    token = live.owner.token
    fields = {
        "email": ("fresh@example.com", False),
        "username": ("fresh", False),
        "password": (PASSWORD, False),
    }
    cases = text_field_cases("PATCH", path, {}, token, fields)

    def bad(category: str, what: str, payload: Any, status: int = 422) -> None:
        cases.append(case(category, what, "PATCH", path, payload, token=token, status=status))

    bad("missing or extra fields", "no field", {})
    bad("missing or extra fields", "extra is_admin", {"is_admin": True})
    bad("missing or extra fields", "extra is_active", {"username": "fresh", "is_active": False})
    bad("length limits", "email of 256 characters", {"email": "a" * 65 + "@" + "b" * 186 + ".com"})
    bad("length limits", "username of 51 characters", {"username": "u" * 51})
    bad("length limits", "password of 7 characters", {"password": "p" * 7})
    bad("length limits", "password of 257 characters", {"password": "p" * 257})
    for name in fields:
        bad("empty strings", f"empty {name}", {name: ""})
    for value in (" fresh", "fresh ", " fresh "):
        bad("whitespace", f"username {value!r}", {"username": value})
    other = live.other.user
    me = {"current_password": PASSWORD}
    for what, payload in {
        "email of another user in upper case": {"email": other["email"].upper(), **me},
        "email of another user padded": {"email": f" {other['email'].title()} ", **me},
        "username of another user in upper case": {"username": other["username"].upper()},
    }.items():
        bad("duplicates", what, payload, 409)
    # A new email or password needs the caller's current password: missing, empty, too long,
    # of the wrong type, or alone
    for change in ({"email": "fresh@example.com"}, {"password": "another-password"}):
        bad("credentials", f"{next(iter(change))} without current_password", change)
        for what, value in {"empty": "", "null": None, "number": 1, "long": "p" * 257}.items():
            bad("credentials", f"{next(iter(change))}, current_password {what}",
                {**change, "current_password": value})  # fmt: skip
    bad("credentials", "current_password alone", me)
    run(live, cases)


#: Characters that do not show or that reorder text (Cf, fillers, variation selectors).
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u200f",
             "\u202a", "\u202e", "\u2066", "\u2069", "\u061c", "\u3164", "\u115f", "\u2800",
             "\ufe0f", "\U000e0041"]  # fmt: skip


def test_invisible_characters_are_refused_in_emails_usernames_and_titles(live: Live) -> None:
    token = live.owner.token
    cases = []
    for char in INVISIBLE:
        what = f"U+{ord(char):04X}"
        for email in (f"in{char}visible@example.com", f"invisible@exam{char}ple.com"):
            user = {"email": email, "username": "fresh", "password": PASSWORD}
            cases.append(case("identity", f"email with {what}", "POST", "/users", user))
        user = {"email": "fresh@example.com", "username": f"fre{char}sh", "password": PASSWORD}
        cases.append(case("identity", f"username with {what}", "POST", "/users", user))
        for method, path in (("POST", "/posts"), ("PATCH", f"/posts/{live.draft['id']}")):
            post = {"title": f"Ti{char}tle", "content": "c"}
            cases.append(case("identity", f"title with {what}", method, path, post, token=token))
    run(live, cases)


def test_two_accounts_can_never_render_the_same(live: Live) -> None:
    """An email in another spelling (case, Unicode composition, a Unicode or an ASCII domain)
    is the same email: 409, whichever spelling came first."""
    suffix = uuid.uuid4().hex[:6]
    user = {"email": f"josé{suffix}@bücher.de", "username": f"first{suffix}", "password": PASSWORD}
    first = live.call("POST", "/users", user)
    assert first.status == 201, first.text
    assert first.body["email"] == f"josé{suffix}@xn--bcher-kva.de"
    spellings = [
        f"JOSÉ{suffix}@BÜCHER.DE",
        f"jose\u0301{suffix}@bücher.de",
        f"josé{suffix}@bu\u0308cher.de",
        f"josé{suffix}@xn--bcher-kva.de",
        f"JOSÉ{suffix}@XN--BCHER-KVA.DE",
    ]
    cases = [
        case(
            "identity",
            f"email {n}",
            "POST",
            "/users",
            {"email": email, "username": f"other{n}{suffix}", "password": PASSWORD},
            status=409,
            code="duplicate",
        )  # fmt: skip
        for n, email in enumerate(spellings)
    ]
    run(live, cases)
    # And each spelling signs the one account in
    for email in spellings:
        signed_in = live.call("POST", "/auth/token", {"login": email, "password": PASSWORD})
        assert signed_in.status == 200, (email, signed_in.text)
        live.secrets.add(signed_in.body["access_token"])


def test_a_wrong_current_password_is_403_and_changes_nothing(live: Live) -> None:
    # A user of its own: wrong current passwords count as failed sign-ins.
    caller = live.signup()
    path = f"/users/{caller.id}"
    wrong = {"current_password": "not-the-password"}
    cases = [
        case(
            "credentials",
            what,
            "PATCH",
            path,
            {**change, **wrong},
            token=caller.token,
            status=403,
            code="current_password_invalid",
        )  # fmt: skip
        for what, change in {
            "new email": {"email": "taken-over@example.com"},
            "new password": {"password": "taken-over-pass"},
            "both": {"email": "taken-over@example.com", "password": "taken-over-pass"},
        }.items()
    ]
    run(live, cases)


def test_post_fields(live: Live) -> None:
    token = live.owner.token
    draft = f"/posts/{live.draft['id']}"
    fields = {"title": ("Title", False), "content": ("Content", True)}
    new = {"title": "Title", "content": "Content"}
    cases = text_field_cases("POST", "/posts", new, token, fields)
    cases += text_field_cases("PATCH", draft, {}, token, fields)
    for method, path, base in (("POST", "/posts", new), ("PATCH", draft, {})):
        changes: dict[str, tuple[str, dict[str, Any]]] = {
            "title of 201 characters": ("length limits", {"title": "t" * 201}),
            "title of 201 emoji": ("length limits", {"title": "\U0001f600" * 201}),
            "title of 10000 characters": ("length limits", {"title": "t" * 10_000}),
            "content of 100001 characters": ("length limits", {"content": "c" * 100_001}),
            "empty title": ("empty strings", {"title": ""}),
            "empty content": ("empty strings", {"content": ""}),
            "blank title": ("empty strings", {"title": " \u3000 "}),
            "blank content": ("empty strings", {"content": " \n\t\r\n "}),
            "null title": ("missing or extra fields", {"title": None}),
            "null content": ("missing or extra fields", {"content": None}),
            "extra published": ("missing or extra fields", {"published": True}),
            "extra author_id": ("missing or extra fields", {"author_id": live.other.id}),
        }
        for what, (category, change) in changes.items():
            cases.append(
                case(category, f"{method} {what}", method, path, {**base, **change}, token=token)
            )
    for name in fields:
        payload = {k: v for k, v in new.items() if k != name}
        cases.append(
            case("missing or extra fields", f"no {name}", "POST", "/posts", payload, token=token)
        )
    cases.append(case("missing or extra fields", "no field", "PATCH", draft, {}, token=token))
    run(live, cases)


def test_numbers_in_the_transfer_body(live: Live) -> None:
    path = f"/users/{live.owner.id}/posts/transfer"
    token = live.admin.token

    def bad(
        category: str, what: str, payload: Any = None, raw: bytes | None = None, status: int = 422
    ) -> None:
        cases.append(
            case(category, what, "POST", path, payload, raw=raw, token=token, status=status)
        )

    cases: list[Case] = []
    for what, value in {
        "0": 0,
        "-1": -1,
        "2^31": 2**31,
        "2^32": 2**32,
        "2^63 - 1": 2**63 - 1,
        "2^63": 2**63,
        "2^64": 2**64,
        "10^20": 10**20,
        "-2^63 - 1": -(2**63) - 1,
        "1.5": 1.5,
        "2^31 as a float": float(2**31),
        "a string of an id": str(live.other.id),
        "true": True,
        "null": None,
        "an array of an id": [live.other.id],
        "an object": {"id": live.other.id},
        "the same user": live.owner.id,
    }.items():
        bad("numbers in the body", what, {"to_user_id": value})
    numbers = {"1e400": b"1e400", "-0": b"-0", "4300 digits": b"9" * 4300, "1e10": b"1e10"}
    for what, number in numbers.items():
        bad("numbers in the body", what, raw=b'{"to_user_id": ' + number + b"}")
    # JSON has one kind of number: a float with an integral value in range is that integer.
    for what, number in {"1e2": b"1e2", "2147483647.0": b"2147483647.0"}.items():
        bad("numbers in the body", what, raw=b'{"to_user_id": ' + number + b"}", status=404)
    bad(
        "numbers in the body",
        "5000 digits",
        raw=b'{"to_user_id": ' + b"9" * 5000 + b"}",
        status=400,
    )
    bad("numbers in the body", "no such user", {"to_user_id": ID_MAX}, status=404)
    bad("missing or extra fields", "no to_user_id", {})
    bad(
        "missing or extra fields",
        "extra from_user_id",
        {"to_user_id": live.other.id, "from_user_id": live.admin.id},
    )
    run(live, cases)


# --- numbers in paths and queries -------------------------------------------------------------

BAD_IDS = [
    "0",
    "-0",
    "-1",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999",
    "9" * 5000,
    "-2147483649",
    "2_147_483_648",
    "1.5",
    "1e3",
    "0x10",
    "abc",
    "NaN",
    "Infinity",
    "true",
    "%00",
    "1%00",
    "%20",
    "1%20",
    quote("\U0001f600"),
    quote("\u0661\u0662"),  # Arabic-Indic digits
]
#: In range but spelled oddly: refused outright (never another row, nor a look-up at all).
ODD_IDS = ["+2147483647", "02147483647", "2147483647.0", "2_147_483_647", "+1", "01", "00", "1_0"]
ODD_IDS += ["%201", "1%20", "%091", quote("\uff11\uff12"), quote("\u0967"), "-0", "0"]


@pytest.mark.parametrize("name", ID_ROUTES)
def test_ids_out_of_range_in_paths(live: Live, name: str) -> None:
    r = route(live, name)
    # An admin passes every ownership check, so only the id decides (posts go by the author).
    token = live.admin.token if r.template.startswith("/users/") else token_for(live, r)
    cases = [
        case(
            "numbers in the path",
            f"id {value[:24]}",
            r.method,
            r.at(value),
            r.body,
            token=token,
            status=status,
        )
        for ids, status in ((BAD_IDS, 422), (ODD_IDS, 422))
        for value in ids
    ]
    run(live, cases)


@pytest.mark.parametrize("name", ["GET /users", "GET /posts", "GET /users/{id}/posts"])
def test_bad_pagination_and_queries(live: Live, name: str) -> None:
    r = route(live, name)
    token = token_for(live, r)
    queries = {
        "pagination": [f"page={v}" for v in PAGES] + [f"page_size={v}" for v in PAGE_SIZES],
        "duplicated query parameters": ["page=1&page=2", "page_size=10&page_size=20"],
    }
    if name == "GET /posts":
        queries["search"] = ["q=", "q=" + "q" * 201, "q=" + "q" * 10_000, "q=%00", "q=a%00b"]
    if name == "GET /users/{id}/posts":
        queries["pagination"] += ["include_drafts=maybe", "include_drafts=2", "include_drafts="]
        queries["duplicated query parameters"].append("include_drafts=true&include_drafts=false")
    cases = [
        case(category, query[:40], "GET", f"{r.path}?{query}", token=token)
        for category, listed in queries.items()
        for query in listed
    ]
    run(live, cases)


PAGES = ["0", "-1", "1000001", "2147483648", "9223372036854775808", "99999999999999999999"]
PAGES += ["-2147483649", "abc", "", "1.5", "1e3", "%00"]
PAGES += ["+1", "01", "1_0", "%201", "1%20", quote("\uff11"), quote("\u0661"), "1.0", "-0"]
PAGE_SIZES = ["0", "-1", "-0", "1001", "2147483648", "9223372036854775808", "99999999999999999999"]
PAGE_SIZES += ["abc", "", "%00", "+10", "010", "1_0", "%2010", quote("\uff11\uff10")]


# --- tokens -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_token(
    header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: Any = hashlib.sha256
) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(hmac.new(key, head.encode(), digest).digest())


@pytest.fixture(scope="module")
def forged(live: Live) -> dict[str, str]:
    """Tokens the authorizer must refuse; each names the owner unless it says otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    claims = {
        "sub": str(live.owner.id),
        "iss": "blog-api",
        "aud": "blog-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "ver": 0,
    }
    key = TEST_SIGNING_KEY.encode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head, payload, signature = live.owner.token.split(".")
    admin_claims = _b64(json.dumps({**claims, "sub": str(live.admin.id)}).encode())

    def hs256(drop: str = "", **changes: Any) -> str:
        body = {k: v for k, v in {**claims, **changes}.items() if k != drop}
        return jwt.encode(body, key, algorithm="HS256")

    tokens = {
        "garbage": "not-a-jwt",
        "8 KB of garbage": "a" * 8192,
        "two parts": f"{head}.{payload}",
        "four parts": f"{head}.{payload}.{signature}.{signature}",
        "tampered signature": f"{head}.{payload}.{signature[::-1]}",
        "signature of another token": f"{head}.{payload}.{live.admin.token.split('.')[2]}",
        "tampered claims (the admin's id)": f"{head}.{admin_claims}.{signature}",
        "expired": hs256(iat=now - 1200, nbf=now - 1200, exp=now - 60),
        "not yet valid": hs256(nbf=now + 600),
        "wrong key": jwt.encode(claims, "another-key-that-is-also-long-enough-42", "HS256"),
        "empty key": _hmac_token({"alg": "HS256", "typ": "JWT"}, claims, b""),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "alg None": _b64(b'{"alg":"None"}') + f".{payload}.",
        "alg NONE with the signature": _b64(b'{"alg":"NONE"}') + f".{payload}.{signature}",
        "HS512 with the right key": _hmac_token({"alg": "HS512"}, claims, key, hashlib.sha512),
        "RS256": jwt.encode(claims, rsa_key, algorithm="RS256"),
        "RS256 header, HMAC with the key": _hmac_token({"alg": "RS256"}, claims, key),
        "HS256 with the RSA public key": _hmac_token({"alg": "HS256"}, claims, public_pem),
        "kid injection": _hmac_token({"alg": "HS256", "kid": "../../../dev/null"}, claims, b""),
        "wrong issuer": hs256(iss="someone-else"),
        "wrong audience": hs256(aud="someone-else"),
        "no exp": hs256(drop="exp"),
        "no sub": hs256(drop="sub"),
        "sub not a number": hs256(sub="owner"),
        "sub 0": hs256(sub="0"),
        "sub -1": hs256(sub="-1"),
        "sub 2^31": hs256(sub=str(2**31)),
        "sub 10^20": hs256(sub="99999999999999999999"),
        # Numbers in any but their canonical spelling, though int() would take them
        **{f"sub {spelling!r}": hs256(sub=spelling.replace("ID", str(live.owner.id)))
           for spelling in ("0ID", "+ID", " ID", "ID ", "ID_0", "ID.0", "\uff11", "\u0661")},
        "sub a JSON number": hs256(sub=live.owner.id),
        "exp a float": hs256(exp=float(now + 600)),
        "exp a string": hs256(exp=str(now + 600)),
        "exp true": hs256(exp=True),
        "iat a string": hs256(iat=str(now)),
        "no ver": hs256(drop="ver"),
        "ver a string": hs256(ver="0"),
        "ver false": hs256(ver=False),
        "ver -1": hs256(ver=-1),
    }  # fmt: skip
    live.secrets.update(t for t in tokens.values() if t.count(".") >= 2 and len(t) > 40)
    return tokens


@pytest.mark.parametrize("name", TOKEN_ROUTES)
def test_forged_and_missing_tokens(live: Live, forged: dict[str, str], name: str) -> None:
    r = route(live, name)
    # GET /posts/{id} has no authorizer: the handler checks a token if there is one (401), and
    # without one the caller is anonymous, to whom a draft does not exist (404).
    public = name == "GET /posts/{id}"
    status, gateway = (401, False) if public else (403, True)
    cases = [
        case("tokens", what, r.method, r.path, r.body, token=t, status=status, gateway=gateway)
        for what, t in forged.items()
    ]
    owner = live.owner.token
    for what, headers, by_gateway in (
        ("no Authorization header", (), 401),
        ("empty Authorization header", (("Authorization", ""),), 401),
        ("Basic credentials", (("Authorization", "Basic b3duZXI6cGFzc3dvcmQtMTIz"),), 403),
        ("Bearer without a token", (("Authorization", "Bearer"),), 403),
        ("another scheme", (("Authorization", f"Token {owner}"),), 403),
        ("two Authorization headers", (("Authorization", f"Bearer {owner}"),) * 2, 403),
    ):
        expected = (401 if "two" in what else 404) if public else by_gateway
        cases.append(
            case(
                "tokens",
                what,
                r.method,
                r.path,
                r.body,
                headers=headers,
                status=expected,
                gateway=gateway,
            )
        )
    run(live, cases)


@pytest.mark.parametrize("name", TOKEN_ROUTES)
def test_validly_signed_tokens_of_no_user_or_an_old_version_are_401(live: Live, name: str) -> None:
    """The authorizer checks the token alone; the handler reads the caller's row and refuses a
    token of no user, or one its user has since revoked (an older token version): 401, in the
    API's error body, with nothing changed."""
    r = route(live, name)
    now = int(time.time())
    claims = {"iss": "blog-api", "aud": "blog-api", "iat": now, "nbf": now, "exp": now + 600}
    void = {
        "sub of no user": {**claims, "sub": str(ID_MAX), "ver": 0},
        "a newer version than the user's": {**claims, "sub": str(live.owner.id), "ver": 1},
        "an admin's id at another version": {**claims, "sub": str(live.admin.id), "ver": 7},
    }
    cases = []
    for what, body in void.items():
        token = jwt.encode(body, TEST_SIGNING_KEY, algorithm="HS256")
        live.secrets.add(token)
        cases.append(case("tokens", what, r.method, r.path, r.body, token=token, status=401))
    run(live, cases)


# --- what must be accepted --------------------------------------------------------------------


def test_four_byte_unicode_and_values_at_the_limits_are_accepted(live: Live) -> None:
    """Not bad input: emoji where text is allowed, each length at its limit, padded emails."""
    token = live.owner.token
    emoji = "4-byte \U0001f600 \U0001d11e \U00020b9f"
    content = f"{emoji}\ttab\nline\r\n"
    post = live.call("POST", "/posts", {"title": emoji, "content": content}, token)
    assert post.status == 201, post.text
    assert (post.body["title"], post.body["content"]) == (emoji, content)
    path = f"/posts/{post.body['id']}"
    assert live.call("GET", path, token=token).body["title"] == emoji
    # An escaped surrogate pair is one character, not two lone surrogates.
    pair = b'{"title": "\\ud83d\\ude00 \\uD834\\uDD1E"}'
    headers = (("Content-Type", JSON), ("Authorization", f"Bearer {token}"))
    edited = live.send("PATCH", path, pair, headers)
    assert (edited.status, edited.body["title"]) == (200, "\U0001f600 \U0001d11e"), edited.text
    longest = live.call(
        "PATCH", path, {"title": "\U0001f600" * 200, "content": "c" * 100_000}, token
    )
    assert (longest.status, longest.body["title"]) == (200, "\U0001f600" * 200), longest.text
    assert live.call("POST", f"{path}/publish", token=token).status == 200
    # Search needs three letters or digits in a row (a trigram): emoji alone have none.
    unsearchable = live.send("GET", "/posts?q=" + quote("\U0001f600" * 3))
    assert (unsearchable.status, unsearchable.body["error"]["code"]) == (422, "validation_error")
    found = live.send("GET", "/posts?q=" + quote("cccc"))
    assert post.body["id"] in [p["id"] for p in found.body["items"]], found.text
    # A user with every field at its limit and emoji in the password signs in with it.
    password = "\U0001f600" * 6 + "p" * 250
    email = "A" * 64 + "@" + "b" * 186 + ".COM"
    username = "U" + uuid.uuid4().hex[:8] + "u" * 41
    user = live.call("POST", "/users", {"email": email, "username": username, "password": password})
    assert user.status == 201, user.text
    assert (len(user.body["email"]), len(user.body["username"])) == (255, 50)
    assert (user.body["email"], user.body["username"]) == (email.lower(), username.lower())
    live.secrets.add(password)
    for login in (email.upper(), username.upper()):
        signed_in = live.call("POST", "/auth/token", {"login": login, "password": password})
        assert signed_in.status == 200, signed_in.text
        live.secrets.add(signed_in.body["access_token"])
    shortest = {"email": "a@b.co", "username": "a1z", "password": "p" * 8}
    assert live.call("POST", "/users", shortest).status == 201
    # Emails are trimmed and lower-cased, then unique.
    padded = live.call(
        "POST",
        "/users",
        {"email": " Padded@Example.COM\u2028 ", "username": "padded", "password": PASSWORD},
    )
    assert (padded.status, padded.body["email"]) == (201, "padded@example.com"), padded.text
    login = {"login": " PADDED@example.com ", "password": PASSWORD}
    assert live.call("POST", "/auth/token", login).status == 200
    capped = live.call("GET", "/users?page_size=1000", token=token)
    assert (capped.status, capped.body["page_size"]) == (200, 100)
    # The deepest page a number reaches (offset 1,000), and past it a 422 pointing at next_cursor
    assert live.send("GET", "/posts?page=51").status == 200
    too_deep = live.send("GET", "/posts?page=52")
    assert (too_deep.status, too_deep.body["error"]["code"]) == (422, "validation_error")
    assert "next_cursor" in too_deep.body["error"]["message"]
    logged = live.new_log()
    assert not leaks(logged, live.secrets), leaks(logged, live.secrets)


# --- events only a direct call can make -------------------------------------------------------


def _event(method: str, target: str, body: str | None = None, **headers: str) -> dict[str, Any]:
    """A payload-2.0 event as the gateway builds it, then ``body`` put in verbatim."""
    from local.gateway import build_event, match

    path, _, query = target.partition("?")
    found = match(method, path)
    assert found is not None, target
    event = build_event(method, path, query, list(headers.items()), b"", *found)
    if body is not None:
        event["body"] = body
    return event


def _base64(data: bytes | str, content_type: str = JSON) -> dict[str, Any]:
    body = data if isinstance(data, str) else base64.b64encode(data).decode()
    event = _event("POST", "/posts", body, **{"content-type": content_type})
    event["isBase64Encoded"] = True
    return event


def _invoke(event: dict[str, Any], actor: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call the route's handler in this process, behind an authorizer that let ``actor`` in."""
    from local.gateway import invoke, match

    found = match(event["requestContext"]["http"]["method"], event["rawPath"])
    assert found is not None
    if actor is not None:
        event["requestContext"]["authorizer"] = {"lambda": actor}
    logical_id = found[0].function.logical_id
    result: dict[str, Any] = invoke(logical_id, event)
    return result


def _checksum() -> tuple[Any, ...]:
    from blog import db

    with db.transaction() as conn:
        return tuple(conn.execute(CHECKSUM).one())


@contextmanager
def _function_logs() -> Iterator[io.StringIO]:
    """What the handlers in this process log (Powertools' JSON lines)."""
    from blog.http import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_events_only_a_direct_call_can_make(api: Client, caplog: pytest.LogCaptureFixture) -> None:
    """Joined query parameters, raw lone surrogates, base64 bodies, tokens no client could send."""
    user, token = api.signup("direct")
    actor = {"user_id": user["id"], "token_version": 0, "expires_at": 2**31}
    draft = api.post("/posts", {"title": "t", "content": "c"}, token=token).body
    json_type = {"content-type": JSON}
    too_big = base64.b64encode(b'{"title": "' + b"x" * (600 * 1024) + b'"}').decode()
    user_posts = f"/users/{user['id']}/posts"
    cases: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, int]] = [
        # API Gateway joins repeated query parameters with a comma.
        ("duplicated query parameters", "page=1,2", _event("GET", "/users?page=1,2"), actor, 422),
        (
            "duplicated query parameters",
            "page_size=10,20",
            _event("GET", "/posts?page_size=10,20"),
            None,
            422,
        ),
        (
            "duplicated query parameters",
            "include_drafts=true,false",
            _event("GET", f"{user_posts}?include_drafts=true,false"),
            actor,
            422,
        ),
        ("lone surrogates", "in a search", _event("GET", "/posts?q=a\ud800"), None, 422),
        # Powertools matches no route for such a path: 404, as for any other non-id.
        ("lone surrogates", "in a post id", _event("GET", "/posts/1\ud800"), None, 404),
        ("lone surrogates", "in a user id", _event("GET", "/users/\udfff"), actor, 404),
        (
            "lone surrogates",
            "raw in a body",
            _event("POST", "/posts", '{"title": "\ud800", "content": "c"}', **json_type),
            actor,
            400,
        ),
        (
            "lone surrogates",
            "in the content type",
            _event("POST", "/posts", "{}", **{"content-type": "application/json\ud800"}),
            actor,
            415,
        ),
        (
            "lone surrogates",
            "in a token",
            _event("GET", f"/posts/{draft['id']}", authorization="Bearer a\ud800.b.c"),
            None,
            401,
        ),
        ("base64 bodies", "not base64", _base64("!!not base64!!"), actor, 400),
        ("base64 bodies", "no padding", _base64("eyJ9Cg"), actor, 400),
        (
            "base64 bodies",
            "invalid UTF-8",
            _base64(b'{"title": "\xff", "content": "c"}'),
            actor,
            400,
        ),
        (
            "base64 bodies",
            "UTF-8-encoded surrogate",
            _base64(b'{"title": "\xed\xa0\x80", "content": "c"}'),
            actor,
            400,
        ),
        ("base64 bodies", "malformed JSON", _base64(b'{"title": '), actor, 400),
        ("base64 bodies", "5000 levels of arrays", _base64(b"[" * 5000 + b"]" * 5000), actor, 400),
        (
            "base64 bodies",
            "text/plain",
            _base64(b'{"title": "t", "content": "c"}', "text/plain"),
            actor,
            415,
        ),
        ("base64 bodies", "over 512 KiB decoded", _base64(too_big), actor, 413),
        ("base64 bodies", "an array", _base64(b"[]"), actor, 422),
    ]
    problems = []
    before = _checksum()
    with _function_logs() as logs:
        for category, what, event, caller, status in cases:
            result = _invoke(event, caller)
            TRIED[category] += 1
            output = result.get("body") or ""
            body = json.loads(output) if output else None
            method, path = event["requestContext"]["http"]["method"], event["rawPath"]
            code = None if category == "base64 bodies" and status == 400 else CODES[status]
            c = Case(category, what, method, path, status=status, code=code, secrets=(token,))
            problems += judge(result["statusCode"], body, output, c)
        problems += _authorizer_refusals(token)
    if _checksum() != before:
        problems.append("the direct calls changed the data")
    logged = logs.getvalue() + caplog.text
    problems += [f"the log leaks {leak}" for leak in leaks(logged, {token, TEST_SIGNING_KEY})]
    problems += [f"the log has an error: {line[:300]}" for line in error_lines(logged)]
    assert not problems, "\n".join(problems)


def _authorizer_refusals(token: str) -> list[str]:
    """The authorizer refuses what no HTTP client could send in a header."""
    from local.gateway import authorizer_event, invoke, match

    found = match("GET", "/users")
    assert found is not None
    now = int(time.time())
    past_range = jwt.encode(
        {"sub": str(2**31), "iss": "blog-api", "aud": "blog-api", "iat": now, "exp": now + 60},
        TEST_SIGNING_KEY,
        "HS256",
    )
    problems = []
    for what, header in {
        "a raw lone surrogate": f"Bearer {token}\ud800",
        "a NUL": f"Bearer {token}\x00",
        "a non-ASCII character": f"Bearer {token}\u00e9",
        "a user id past 2^31": f"Bearer {past_range}",
    }.items():
        event = authorizer_event(_event("GET", "/users", authorization=header), found[0])
        TRIED["tokens"] += 1
        verdict = invoke("AuthorizerFunction", event)
        if verdict != {"isAuthorized": False}:
            problems.append(f"the authorizer let in a token with {what}: {verdict}")
    return problems


# --- the log, and the count -------------------------------------------------------------------


def test_the_functions_log_was_captured_and_is_clean(live: Live) -> None:
    """The scans above read real output (the authorizer's refusals among it), and all of it."""
    everything = live.log.read_text("utf-8", "replace")
    assert "token refused" in everything
    assert "request failed" not in everything  # no 503 was logged
    assert "unhandled error" not in everything  # nor any 500
    assert not leaks(everything, live.secrets)
    assert not error_lines(everything)


#: The class of the hardening list (issue #12, docs/testing.md) each category of bad input attacks;
#: a category not named here is general input validation.
CLASS_OF = {
    "bounded errors": "2 bounded error work",
    "missing or extra fields": "2 bounded error work",
    "content type": "3 media types",
    "numbers in the path": "4 canonical numbers",
    "numbers in the body": "4 canonical numbers",
    "pagination": "4 canonical numbers",
    "duplicated query parameters": "4 canonical numbers",
    "bad credentials": "5 credentials",
    "credentials": "5 credentials",
    "tokens": "5 credentials",
    "identity": "7 identity",
    "unicode usernames": "7 identity",
    "control characters": "7 identity",
    "duplicates": "7 identity",
}


def test_summary(request: pytest.FixtureRequest) -> None:
    """One line for CI's log (pytest's terminal summary): bad inputs tried, and how many got a
    5xx; the same per class and category in ``.bench/bad_input.json``."""
    total = sum(TRIED.values())
    by_category = ", ".join(f"{name} {count}" for name, count in sorted(TRIED.items()))
    line = f"bad inputs tried: {total}, 5xx: {len(SERVER_ERRORS)} ({by_category})"
    request.config.stash.setdefault(SUMMARY, []).append(line)
    by_class: Counter[str] = Counter()
    server_errors: Counter[str] = Counter()
    for category, count in TRIED.items():
        by_class[CLASS_OF.get(category, "general input validation")] += count
    for label in SERVER_ERRORS:
        category = label[1 : label.index("]")]
        server_errors[CLASS_OF.get(category, "general input validation")] += 1
    tally = {
        name: {"inputs": by_class[name], "5xx": server_errors[name]} for name in sorted(by_class)
    }
    out = REPO / ".bench" / "bad_input.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"by_class": tally, "by_category": dict(sorted(TRIED.items()))}, indent=2)
    )
    request.config.stash.setdefault(SUMMARY, []).append(
        "bad inputs by class: "
        + ", ".join(f"{name} {t['inputs']} (5xx {t['5xx']})" for name, t in tally.items())
    )
    assert not SERVER_ERRORS, SERVER_ERRORS
