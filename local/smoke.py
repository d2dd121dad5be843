"""A short end-to-end scenario against a running API: ``make smoke API_URL=https://…``.

Register, sign in, write a draft, check it is hidden, publish, find it by search, delete it,
delete the user and check they can no longer sign in; a protected route without a token must be
refused. Every user and post it makes it deletes again. Only ``https://`` URLs are accepted, but
for the loopback address (``make local``, and the end-to-end test that runs this same scenario).
A ``503`` (a paused Aurora database resuming, a cold proxy) is retried, honouring
``Retry-After``, for up to a minute. Exit status 0 when every step passed.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Final

LOOPBACK: Final = {"127.0.0.1", "localhost", "::1"}
RETRY_FOR_S: Final = 60.0
TIMEOUT_S: Final = 30.0


class SmokeFailure(AssertionError):
    """A step got another answer than the one expected."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    body: Any


def check_url(api_url: str) -> str:
    """The base URL without a trailing slash; refuses plain HTTP except on the loopback."""
    parts = urllib.parse.urlsplit(api_url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return api_url.rstrip("/")
    raise SmokeFailure(f"{api_url!r}: the smoke test talks HTTPS (plain HTTP only to 127.0.0.1)")


class Api:
    """A minimal JSON client (the standard library only: it runs wherever Python does)."""

    def __init__(self, base: str, *, retry_for_s: float = RETRY_FOR_S) -> None:
        self.base = check_url(base)
        self.retry_for_s = retry_for_s

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Answer:
        """Send one request; 503 is retried while the retry window lasts."""
        deadline = time.monotonic() + self.retry_for_s
        while True:
            answer = self._once(method, path, body, token)
            if answer.status != 503 or time.monotonic() >= deadline:
                return answer
            wait = min(float(answer.headers.get("retry-after") or 1), 5.0)
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))

    def _once(self, method: str, path: str, body: Any, token: str | None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            # check_url allowed https, or http to the loopback only (bandit B310)
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 # nosec B310
                status, headers, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, dict(error.headers), error.read()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return Answer(status, {k.lower(): v for k, v in headers.items()}, parsed)


def expect(step: str, answer: Answer, status: int) -> Any:
    """The body of ``answer`` if its status is ``status``; else the step fails, saying why."""
    if answer.status != status:
        raise SmokeFailure(f"{step}: expected {status}, got {answer.status}: {answer.body}")
    return answer.body


def run(api_url: str, *, log: Any = print, retry_for_s: float = RETRY_FOR_S) -> list[str]:
    """Run the scenario; the names of the steps that passed, in order (raises on the first miss)."""
    api = Api(api_url, retry_for_s=retry_for_s)
    tag = uuid.uuid4().hex[:10]
    word = f"smoke{tag}"
    password = f"smoke-{uuid.uuid4().hex}"
    passed: list[str] = []

    def step(name: str) -> None:
        passed.append(name)
        log(f"ok  {name}")

    expect("protected route without a token", api.call("GET", "/users"), 401)
    step("a protected route refuses a request without a token")
    user = expect(
        "register",
        api.call(
            "POST",
            "/users",
            {"email": f"{word}@example.com", "username": word, "password": password},
        ),
        201,
    )
    step("register")
    token = expect(
        "sign in", api.call("POST", "/auth/token", {"login": word, "password": password}), 200
    )["access_token"]
    step("sign in")
    try:
        post = expect(
            "write a draft",
            api.call(
                "POST",
                "/posts",
                {"title": f"Smoke test {tag}", "content": f"Looking for {word}."},
                token,
            ),
            201,
        )
        expect("the draft is hidden", api.call("GET", f"/posts/{post['id']}"), 404)
        step("write a draft, hidden from others")
        published = expect(
            "publish", api.call("POST", f"/posts/{post['id']}/publish", token=token), 200
        )
        if published.get("published") is not True:
            raise SmokeFailure(f"publish: the post is not published: {published}")
        step("publish")
        found = expect("search", api.call("GET", f"/posts?q={word}"), 200)
        if [item["id"] for item in found["items"]] != [post["id"]]:
            raise SmokeFailure(f"search: expected only post {post['id']}, got {found}")
        step("search finds it")
        expect("delete the post", api.call("DELETE", f"/posts/{post['id']}", token=token), 204)
        expect("the post is gone", api.call("GET", f"/posts/{post['id']}"), 404)
        step("delete the post")
    finally:
        expect("delete the user", api.call("DELETE", f"/users/{user['id']}", token=token), 204)
    expect(
        "a deleted user cannot sign in",
        api.call("POST", "/auth/token", {"login": word, "password": password}),
        401,
    )
    step("delete the user, who can no longer sign in")
    return passed


def main(argv: list[str]) -> int:
    """``python -m local.smoke API_URL``."""
    if len(argv) != 1 or not argv[0]:
        usage = "usage: make smoke API_URL=https://<api-id>.execute-api.<region>.amazonaws.com/"
        print(usage, file=sys.stderr)  # noqa: T201
        return 2
    started = time.monotonic()
    try:
        passed = run(argv[0])
    except (SmokeFailure, OSError) as error:
        print(f"FAILED {error}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"smoke: {len(passed)} steps passed in {time.monotonic() - started:.1f} s")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
