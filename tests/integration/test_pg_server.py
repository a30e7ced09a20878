"""The PostgreSQL test server itself: it fails loudly when it cannot run, and it does not
outlive a test process that is killed before its fixtures tear down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.pg as pg

ROOT = Path(__file__).resolve().parents[2]


def test_missing_binaries_fail_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(pg.shutil, "which", lambda _name: None)
    with pytest.raises(pg.PostgresUnavailable, match="scripts/setup"):
        pg.PostgresServer()


def test_postgresql_is_a_backend_unless_opted_out() -> None:
    assert ("postgresql" in pg.BACKENDS) == pg.pg_enabled()
    if os.environ.get("TRACEJURY_TEST_PG") is None:
        assert pg.BACKENDS == ["sqlite", "postgresql"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_killed_test_process_leaves_no_server_behind() -> None:
    code = (
        "import sys; from tests.pg import PostgresServer\n"
        "s = PostgresServer(); s.start()\n"
        "print(s.root, s.proc.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:  # fmt: skip
        assert child.stdout is not None
        root, pid = child.stdout.readline().split()
        assert Path(root).is_dir() and _alive(int(pid))
        child.send_signal(signal.SIGKILL)  # no fixture teardown, no finally
        child.wait(timeout=10)
    deadline = time.monotonic() + 20
    while (_alive(int(pid)) or Path(root).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid)), "postgres outlived the killed test process"
    assert not Path(root).exists(), "the server's directory was left behind"
