"""make local helps: it picks another port for the embedded PostgreSQL when the default is
taken (or says in one line that LOCAL_DB_PORT is), and new code runs without a restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import local.__main__ as runner
from local.functions import REPO, functions
from tests.conftest import create_database, drop_database, migrate
from tests.e2e.conftest import TEST_SIGNING_KEY, Http, start_gateway, stop_gateway


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_taken_default_database_port_is_replaced_by_a_free_one(
    taken_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOCAL_DB_PORT", raising=False)
    monkeypatch.setattr(runner, "DEFAULT_DB_PORT", taken_port)
    port = runner.database_port()
    assert port != taken_port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free indeed
    assert capsys.readouterr().err == (
        f"Port {taken_port} is taken; the embedded PostgreSQL uses {port} "
        "(set LOCAL_DB_PORT to choose one)\n"
    )


def test_a_free_default_database_port_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    monkeypatch.delenv("LOCAL_DB_PORT", raising=False)
    monkeypatch.setattr(runner, "DEFAULT_DB_PORT", free)
    assert runner.database_port() == free


@pytest.mark.parametrize("value", ["taken", "abc", "70000"])
def test_an_unusable_local_db_port_fails_in_one_line_without_a_traceback(
    taken_port: int, value: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LOCAL_DB_PORT"] = str(taken_port) if value == "taken" else value
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "local", "db"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("local: ") and "LOCAL_DB_PORT" in line


def test_a_taken_api_port_fails_in_one_line(taken_port: int) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql+pg8000://nobody@127.0.0.1:1/none"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", f"import local.__main__ as m; m._migrate = lambda url: 'head';"
         f" raise SystemExit(m.main(['serve', '--port', '{taken_port}']))"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"local: port {taken_port} on 127.0.0.1 is taken: choose another with PORT=<port> "
        "(or --port)"
    )


# --- reload --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(pg_admin_url: str) -> Iterator[str]:
    name = f"blog_reload_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, name)
    migrate(url)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


def _touched(path: Path) -> Iterator[None]:
    """``path`` saved again (its modification time moved on), as an editor would; restored."""
    before = path.stat()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        yield
    finally:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _workers(gateway: object, logical_id: str) -> frozenset[int]:
    pids: frozenset[int] = gateway._pools[logical_id].pids()  # type: ignore[attr-defined]
    return pids


@pytest.mark.parametrize("reload", [True, False], ids=["reload", "no-reload"])
def test_saving_a_function_or_the_layer_starts_new_environments_only_with_reload(
    database: str, reload: bool
) -> None:
    gateway, base, saved = start_gateway(
        {"DATABASE_URL": database, "JWT_SIGNING_KEY": TEST_SIGNING_KEY}, workers=1, reload=reload
    )
    http = Http(base, database)
    list_posts = "ListPostsFunction"
    code = functions()[list_posts].code_dir / "app.py"
    try:
        assert http.call("GET", "/posts").status == 200
        first = _workers(gateway, list_posts)
        # When the function's own file is saved
        for _ in _touched(code):
            assert http.call("GET", "/posts").status == 200
            after_function = _workers(gateway, list_posts)
        # When a file of the layer is saved
        for _ in _touched(REPO / "shared" / "blog" / "schemas.py"):
            assert http.call("GET", "/posts").status == 200
            after_layer = _workers(gateway, list_posts)
        # Then each change brought a fresh process (which imports the code as it now is)
        if reload:
            assert len({first, after_function, after_layer}) == 3
        else:
            assert first == after_function == after_layer
    finally:
        stop_gateway(gateway, saved)
