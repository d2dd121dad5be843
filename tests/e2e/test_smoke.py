"""The post-deploy smoke scenario (``make smoke API_URL=…``) against ``make local``'s gateway.

The same code runs against a deployed stack over HTTPS; running it here on every test run keeps
it in step with the API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from local import smoke
from tests.e2e.conftest import Http


def test_the_smoke_scenario_passes_against_the_local_gateway(http: Http) -> None:
    lines: list[str] = []
    passed = smoke.run(http.base, log=lines.append)
    assert passed == [
        "a protected route refuses a request without a token",
        "register",
        "sign in",
        "write a draft, hidden from others",
        "publish",
        "search finds it",
        "delete the post",
        "delete the user, who can no longer sign in",
    ]
    assert lines == [f"ok  {name}" for name in passed]


def test_the_smoke_scenario_leaves_no_user_or_post_behind(http: Http) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    smoke.run(http.base, log=lambda _line: None)
    engine = create_engine(http.database_url, poolclass=NullPool)
    with engine.connect() as conn:
        users = conn.scalar(text("SELECT count(*) FROM users WHERE username LIKE 'smoke%'"))
        posts = conn.scalar(text("SELECT count(*) FROM posts WHERE title LIKE 'Smoke test %'"))
    engine.dispose()
    assert (users, posts) == (0, 0)


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com/", "ftp://127.0.0.1/", "file:///etc/passwd", "api.example.com"],
)
def test_the_smoke_test_refuses_anything_but_https_beyond_the_loopback(url: str) -> None:
    with pytest.raises(smoke.SmokeFailure, match="HTTPS"):
        smoke.run(url, log=lambda _line: None)


class Flaky(HTTPServer):
    """Answers 503 with Retry-After to the first ``failures`` requests, then 401."""

    def __init__(self, failures: int) -> None:
        self.seen = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(inner) -> None:  # noqa: N802, N805
                self.seen += 1
                status = 503 if self.seen <= failures else 401
                payload = b'{"message": "x"}'
                inner.send_response(status)
                inner.send_header("Retry-After", "0")
                inner.send_header("Content-Length", str(len(payload)))
                inner.end_headers()
                inner.wfile.write(payload)

            def log_message(inner, *args: Any) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    server = Flaky(failures=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_database_resuming_behind_503_is_waited_for(flaky: Flaky) -> None:
    api = smoke.Api(f"http://127.0.0.1:{flaky.server_address[1]}", retry_for_s=5)
    assert api.call("GET", "/users").status == 401
    assert flaky.seen == 3


def test_a_failing_step_says_what_it_expected(flaky: Flaky) -> None:
    # Given an API that keeps answering 503 past the retry window
    with pytest.raises(smoke.SmokeFailure, match="expected 401, got 503"):
        smoke.run(f"http://127.0.0.1:{flaky.server_address[1]}", retry_for_s=0, log=print)


def test_make_smoke_exits_0_on_success_1_on_a_failure_and_2_without_a_url(
    http: Http, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main([]) == 2
    assert "usage: make smoke API_URL=https://" in capsys.readouterr().err
    assert smoke.main(["http://api.example.com/"]) == 1
    assert "FAILED" in capsys.readouterr().err
    assert smoke.main([http.base]) == 0
    assert "smoke: 8 steps passed in" in capsys.readouterr().out
