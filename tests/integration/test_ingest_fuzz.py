"""Property: random mutations of a valid trace never crash ingest and never lose the other
lines of the file."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.jsonpaths import json_paths
from tests.pg import BACKENDS
from tracejury.core.segments import default_segmentation
from tracejury.store.engine import open_engine
from tracejury.store.ingest import ingest_lines
from tracejury.store.tables import StoredTrace

EXAMPLE = orjson.loads((Path(__file__).parents[1] / "data" / "trace.v1.json").read_bytes())
_ids = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


PATHS = json_paths(EXAMPLE)


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(EXAMPLE)
    doc["traceId"] = "tr_fuzz"  # fixed: the strategy must not depend on outside state
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
            if draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    line = json.dumps(doc).encode()  # stdlib: big ints and Infinity are fair game
    cut = draw(st.sampled_from(["none", "truncate", "garbage"]))
    if cut == "truncate":
        line = line[: draw(st.integers(0, len(line)))]
    elif cut == "garbage":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.binary(min_size=1, max_size=8)) + line[at:]
    return line.replace(b"\n", b" ")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated=mutated_lines())
def test_mutations_never_crash_or_lose_neighbours(mutated: bytes, fuzz_engine: Any) -> None:
    engine = fuzz_engine
    n = next(_ids)
    before = {**EXAMPLE, "traceId": f"tr_before_{n}"}
    after = {**EXAMPLE, "traceId": f"tr_after_{n}"}
    lines = [(1, orjson.dumps(before)), (2, mutated), (3, orjson.dumps(after))]
    counts = ingest_lines(engine, "fuzz", lines, segmentation=default_segmentation())
    assert counts.ingested + counts.duplicates + counts.conflicts + counts.quarantined in (2, 3)
    assert counts.ingested >= 2
    with engine.connect() as conn:
        stored = set(
            conn.execute(
                select(StoredTrace.trace_id).where(
                    StoredTrace.trace_id.in_([before["traceId"], after["traceId"]])
                )
            ).scalars()
        )
    assert stored == {before["traceId"], after["traceId"]}


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One store per backend for every example (hypothesis runs them in one test call)."""
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'f.db'}")
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("pg_server")
    name = server.create_database()
    engine = open_engine(server.url(name))
    yield engine
    engine.dispose()
    server.drop_database(name)
