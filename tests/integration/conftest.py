"""Fixtures with real processes: redis-server, the mock judge, a simulated store."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.procs import EXE, RedisServer, free_port, start, stop, wait_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mock_judge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A real `tracejury mock-judge` process (param: fault spec); yields its base URL."""
    port = free_port()
    faults = getattr(request, "param", "")
    proc = start([EXE, "mock-judge", "--port", str(port), "--faults", faults, "--seed", "7",
                  "--latency-ms", "20"], dict(os.environ), tmp_path / "mock-judge.log")  # fmt: skip
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture
def fast_rubrics(tmp_path: Path) -> Path:
    """The shipped rubrics with a judge profile that fails fast (1 s timeout, 3 attempts)."""
    rubrics = tmp_path / "rubrics"
    shutil.copytree(ROOT / "rubrics", rubrics)
    profiles = {
        "profiles": [
            {
                "name": "default",
                "model": "mock-judge",
                "timeout_s": 1.0,
                "max_attempts": 3,
                "backoff_initial_s": 0.01,
                "backoff_max_s": 0.05,
            }
        ]
    }
    (rubrics / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    return rubrics


@pytest.fixture
def base_env(tmp_path: Path, fast_rubrics: Path, db_url: str) -> dict[str, str]:
    """Environment for tracejury subprocesses: a fresh store (SQLite or PostgreSQL, as
    ``db_url``), fast rubrics, this venv. The broker stays embedded SQLite unless a test sets one."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TRACEJURY_DATABASE_URL": db_url,
        "TRACEJURY_RUBRICS_DIR": str(fast_rubrics),
        "TRACEJURY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
    }
