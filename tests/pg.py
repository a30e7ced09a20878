"""A real PostgreSQL server for the test session, and a fresh database per test.

One ``postgres`` process per test session (per xdist worker) in its own temporary directory:
data dir, unix socket dir and log live there, it listens on a free loopback port, runs with
``fsync=off`` (nothing needs to survive a crash), and the directory is removed when it stops.
Each test gets an empty database of its own (``CREATE DATABASE`` / ``DROP DATABASE … WITH
(FORCE)``), so tests are isolated and migrations run from nothing as they do on SQLite.

The server runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses root).
A small watchdog process stops the server and removes its directory when the test process
ends, even when it is killed and fixtures never tear down.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "BACKENDS",
    "PostgresServer",
    "PostgresUnavailable",
    "close_tracked",
    "find_bindir",
    "pg_enabled",
    "track_connections",
]

SUPERUSER = "tracejury"
TIMEZONE = "Asia/Kolkata"
"""Deliberately not UTC, with a half-hour offset: the store must not depend on the server's zone."""

_WATCHDOG = """
import os, shutil, signal, sys, time
root = sys.argv[1]
sys.stdin.buffer.read()  # EOF: the test process ended, cleanly or not
try:
    with open(os.path.join(root, "data", "postmaster.pid")) as f:
        pid = int(f.readline())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        ours = b"postgres" in f.read()
except (OSError, ValueError):
    pid, ours = 0, False
if ours:
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the data is thrown away anyway
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
shutil.rmtree(root, ignore_errors=True)
"""


def pg_enabled() -> bool:
    """Whether the PostgreSQL half of the suite runs (``TRACEJURY_TEST_PG=0`` opts out)."""
    return os.environ.get("TRACEJURY_TEST_PG", "1").strip().lower() not in ("0", "false", "no", "off")


BACKENDS = ["sqlite", "postgresql"] if pg_enabled() else ["sqlite"]
"""Store backends every store-touching test runs on (``TRACEJURY_TEST_PG=0``: SQLite only)."""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started (the message says why and what to do)."""


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: the newest /usr/lib/postgresql/*/bin,
    else wherever ``initdb`` is on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.realpath(on_path))
    for initdb in candidates:
        bindir = Path(initdb).parent
        if (bindir / "postgres").exists():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH):"
        " run scripts/setup, or set TRACEJURY_TEST_PG=0 to skip the PostgreSQL half locally"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop to the ``postgres`` user when running as root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


_opened: list[Any] = []


def _remember(dbapi_connection: Any, _record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("psycopg"):
        _opened.append(dbapi_connection)


def track_connections() -> None:
    """Keep every psycopg connection that SQLAlchemy opens in this process until
    ``close_tracked``. In-process CLI runs (``CliRunner``) leave their engine's pooled
    connection open, as a CLI process that exits may; garbage-collected open psycopg
    connections raise ``ResourceWarning``, which the suite turns into errors."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    if not event.contains(Pool, "connect", _remember):
        event.listen(Pool, "connect", _remember)


def close_tracked() -> None:
    """Close the connections ``track_connections`` kept (a test's store is about to be dropped)."""
    while _opened:
        with contextlib.suppress(Exception):
            _opened.pop().close()


class PostgresServer:
    """One throwaway PostgreSQL server; ``start()`` it, ``create_database()`` per test, ``stop()``."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="tracejury-pg-"))
        self.data, self.sockets, self.log = self.root / "data", self.root / "sock", self.root / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._names = itertools.count()
        self._admin: Any = None

    def _env(self) -> dict[str, str]:
        return {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}

    def start(self, timeout: float = 60) -> None:
        """initdb, start the server, wait until it accepts connections."""
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.root)], stdin=subprocess.PIPE, start_new_session=True
        )
        run_as = _run_as()
        self.sockets.mkdir()
        if run_as:
            os.chmod(self.root, 0o755)
            for path in (self.root, self.sockets):
                os.chown(path, run_as["user"], run_as["group"])
        init = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            env=self._env(), capture_output=True, text=True, timeout=timeout, check=False, **run_as,
        )  # fmt: skip
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
        self.port = _free_port()
        settings = {
            "listen_addresses": "127.0.0.1", "port": self.port, "unix_socket_directories": self.sockets,
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": 300,
            "shared_buffers": "64MB", "timezone": TIMEZONE, "log_min_messages": "warning",
        }  # fmt: skip
        args = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for k, v in settings.items():
            args += ["-c", f"{k}={v}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, **run_as)  # fmt: skip
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                self._admin = psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=2)
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"postgres not ready after {timeout} s: {exc}; {self._log_tail()}"
                    ) from exc
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return "(no log)"

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def clone_database(self, source: str, target: str) -> None:
        """Replace database ``target`` with a copy of ``source`` (a file-level copy: fast)."""
        self.drop_database(target)
        self.disconnect(source)  # a template must have no other sessions while it is copied
        self._admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')

    def disconnect(self, database: str) -> None:
        """End every session on ``database`` (pools left open by in-process CLI runs)."""
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still on it."""
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._watchdog is not None:  # closing its stdin makes it clean up and exit
            assert self._watchdog.stdin is not None
            self._watchdog.stdin.close()
            self._watchdog.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
