"""Shared fixtures: the example trace, a fresh store per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.pg import BACKENDS, PostgresServer, close_tracked, track_connections

EXAMPLE = Path(__file__).parent / "data" / "trace.v1.json"


@pytest.fixture(scope="session")
def _example() -> dict[str, Any]:
    return orjson.loads(EXAMPLE.read_bytes())


@pytest.fixture
def example_trace(_example: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the complete v1 example trace (safe to mutate)."""
    return copy.deepcopy(_example)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; fails (never skips) when it cannot start."""
    server = PostgresServer()
    try:
        server.start()
        track_connections()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty store on each backend (a SQLite file, or a new database on the session's
    PostgreSQL server); also exported as TRACEJURY_DATABASE_URL for the CLI."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracejury.db'}"
        monkeypatch.setenv("TRACEJURY_DATABASE_URL", url)
        yield url
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = server.create_database()
    url = server.url(name)
    monkeypatch.setenv("TRACEJURY_DATABASE_URL", url)
    yield url
    close_tracked()
    server.drop_database(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Any]:
    """An engine on the fresh store, migrated to the newest schema."""
    from tracejury.store.engine import open_engine

    eng = open_engine(db_url)
    yield eng
    eng.dispose()
