"""Shared fixtures: the example trace, a fresh SQLite store per test."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

EXAMPLE = Path(__file__).parent / "data" / "trace.v1.json"


@pytest.fixture(scope="session")
def _example() -> dict[str, Any]:
    return orjson.loads(EXAMPLE.read_bytes())


@pytest.fixture
def example_trace(_example: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the complete v1 example trace (safe to mutate)."""
    return copy.deepcopy(_example)


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite file store; also exported as TRACEJURY_DATABASE_URL for the CLI."""
    url = f"sqlite:///{tmp_path / 'tracejury.db'}"
    monkeypatch.setenv("TRACEJURY_DATABASE_URL", url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Any]:
    """An engine on the fresh store, migrated to the newest schema."""
    from tracejury.store.engine import open_engine

    eng = open_engine(db_url)
    yield eng
    eng.dispose()
