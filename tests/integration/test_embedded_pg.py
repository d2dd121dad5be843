"""The embedded PostgreSQL manager on real servers (under root they run as an unprivileged user)."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pg8000.native
import pytest

from local import embedded_pg
from local.embedded_pg import EmbeddedPostgres, cleanup_stale, reachable_data_dir

REPO = Path(__file__).resolve().parents[2]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the server user")


@pytest.fixture
def base() -> Iterator[Path]:
    """A scratch directory the server user can traverse (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="embedded-pg-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _select_one(port: int, database: str = "postgres", **kwargs: object) -> object:
    conn = pg8000.native.Connection(
        user="postgres", host="127.0.0.1", port=port, database=database, timeout=10, **kwargs
    )
    try:
        return conn.run("select 1")[0][0]
    finally:
        conn.close()


def test_throwaway_server_serves_then_stop_removes_it(base: Path) -> None:
    server = EmbeddedPostgres(base / "data").start()
    pid = server.pid
    assert pid is not None and _alive(pid)
    assert server.is_running()
    assert server.url() == f"postgresql+pg8000://postgres@127.0.0.1:{server.port}/postgres"
    assert _select_one(server.port) == 1

    server.stop()

    assert not (base / "data").exists()
    assert not _alive(pid)
    assert not server.is_running()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), 1).close()
    server.stop()  # idempotent


def test_create_and_drop_database_with_awkward_name(base: Path) -> None:
    name = 'we"ird db'
    with EmbeddedPostgres(base / "data") as server:
        url = server.create_database(name)
        assert url.endswith("/we%22ird%20db")
        assert _select_one(server.port, name) == 1
        server.drop_database(name)
        server.drop_database(name)  # IF EXISTS
        with pytest.raises(pg8000.native.DatabaseError):
            _select_one(server.port, name)


def test_persistent_server_keeps_data_across_restarts(base: Path) -> None:
    data = base / "data"
    with EmbeddedPostgres(data, persistent=True) as server:
        conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=server.port)
        conn.run("create table kept (value text)")
        conn.run("insert into kept values ('still here')")
        conn.close()
    assert (data / "PG_VERSION").exists()
    assert server.pid is None and not server.is_running()

    with EmbeddedPostgres(data, persistent=True) as again:
        conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=again.port)
        assert conn.run("select value from kept") == [["still here"]]
        conn.close()


def test_cleanup_stale_stops_a_crashed_runs_server_and_spares_live_ones(base: Path) -> None:
    crashed = base / "run-crashed"
    crashed.mkdir(mode=0o711)
    # A run that dies without stopping its server: os._exit skips the atexit handlers.
    script = (
        "import os, sys; from pathlib import Path; from local.embedded_pg import EmbeddedPostgres;"
        "print(EmbeddedPostgres(Path(sys.argv[1])).start().pid, flush=True); os._exit(0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(crashed / "data")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])},
    )
    stale_pid = int(result.stdout.strip())
    assert _alive(stale_pid)

    with EmbeddedPostgres(base / "run-live") as live:  # owned by this (running) process
        assert cleanup_stale(base, "run-") == [crashed.resolve()]
        assert live.is_running()

    assert not _alive(stale_pid)
    assert not crashed.exists()
    assert cleanup_stale(base, "run-") == []


def test_stop_kills_a_server_whose_data_dir_vanished(base: Path) -> None:
    server = EmbeddedPostgres(base / "data").start()
    pid = server.pid
    assert pid is not None
    shutil.rmtree(base / "data")
    server.stop()
    assert not _alive(pid)


def test_failed_start_reports_the_server_log_and_leaves_nothing(base: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedPostgres(base / "data", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="(?s)did not start.*could not (bind|create)"):
            server.start()
    assert not (base / "data").exists()


@root_only
def test_root_refuses_a_data_dir_the_server_user_cannot_reach(base: Path) -> None:
    private = base / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(RuntimeError, match="not traversable"):
        EmbeddedPostgres(private / "data").start()
    assert oct(private.stat().st_mode & 0o777) == "0o700"  # left as it was


@root_only
def test_root_copies_binaries_out_of_a_private_venv(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hidden = base / "hidden"  # 0700, like a venv under /root
    hidden.mkdir(mode=0o700)
    package = embedded_pg.PACKAGE_BIN.parent.parent
    for item in (package, package.with_name(f"{package.name}.libs")):
        if item.exists():
            (hidden / item.name).symlink_to(item)
    monkeypatch.setattr(embedded_pg, "PACKAGE_BIN", hidden / package.name / "pginstall" / "bin")
    cache_root = base / "cache"
    cache_root.mkdir(mode=0o755)
    monkeypatch.setattr(embedded_pg, "CACHE_ROOT", cache_root)

    assert embedded_pg.bin_dir().is_relative_to(cache_root)
    with EmbeddedPostgres(base / "data") as server:
        server.create_database("via_copy")  # psql loads libpq from the copied .libs (RPATH)
        assert _select_one(server.port, "via_copy") == 1
    assert embedded_pg.bin_dir() == embedded_pg.bin_dir()  # copied once, then reused


def test_reachable_data_dir(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_pg, "CACHE_ROOT", base)
    assert reachable_data_dir(base / "pgdata") == base / "pgdata"
    private = base / "private"
    private.mkdir(mode=0o700)
    stand_in = reachable_data_dir(private / "pgdata")
    if os.geteuid() != 0:
        assert stand_in == private / "pgdata"
    else:
        assert stand_in.parent.parent == base and stand_in.name == "pgdata"
        assert stand_in == reachable_data_dir(private / "pgdata")  # stable across runs


def _self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_ssl_only_server_rejects_plain_connections_or_says_tls_is_missing(base: Path) -> None:
    cert, key = _self_signed(base)
    server = EmbeddedPostgres(base / "data", ssl_cert_file=cert, ssl_key_file=key, ssl_only=True)
    try:
        server.start()
    except RuntimeError as error:
        # The current wheel is built without OpenSSL: the failure must say so and leave nothing.
        assert "SSL is not supported by this build" in str(error)
        assert not server.is_running()
        return
    with server as s:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        assert _select_one(s.port, ssl_context=context) == 1
        with pytest.raises(pg8000.native.DatabaseError, match="no encryption"):
            _select_one(s.port)
        s.create_database("over_tls")  # psql negotiates TLS by itself


# --- make local: a password on TCP ----------------------------------------------------------------


def _connects(port: int, password: str | None) -> bool:
    try:
        pg8000.native.Connection(
            "postgres", host="127.0.0.1", port=port, password=password or "", timeout=10
        ).close()
    except pg8000.exceptions.InterfaceError:
        return False
    except pg8000.exceptions.DatabaseError as error:
        assert error.args[0]["C"] in {"28P01", "28000"}, error  # authentication failed
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_make_locals_database_needs_the_password_kept_in_its_state(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.__main__ import _start_database

    monkeypatch.delenv("DATABASE_URL", raising=False)
    port = _free_port()
    # Given a fresh state folder: the server starts with a generated password
    url, server = _start_database(base, port)
    try:
        secret = base / "pg-password"
        assert secret.stat().st_mode & 0o777 == 0o600
        password = secret.read_text().strip()
        assert len(password) >= 32 and password in url
        # Then nobody connects without it, or with another one; with it, one does
        assert not _connects(port, None)
        assert not _connects(port, "postgres")
        assert _connects(port, password)
    finally:
        server.stop()
    # And the next start keeps the same password (and data)
    again, server = _start_database(base, port)
    try:
        assert again == url and _connects(port, password)
    finally:
        server.stop()


def test_a_data_directory_made_without_a_password_gets_one(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.__main__ import _start_database

    monkeypatch.delenv("DATABASE_URL", raising=False)
    port = _free_port()
    # Given .local/pgdata from before passwords were required (TCP clients trusted)
    old = EmbeddedPostgres(reachable_data_dir(base / "pgdata"), persistent=True, port=port)
    old.start()
    try:
        assert _connects(port, None)
    finally:
        old.stop()
    # When make local starts it now, the superuser gets the password and trust is gone
    _, server = _start_database(base, port)
    try:
        assert not _connects(port, None)
        assert _connects(port, (base / "pg-password").read_text().strip())
    finally:
        server.stop()
