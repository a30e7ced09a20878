"""Gates with ``cluster: session``: traces of one session are correlated, so they carry less
information than independent traces — the cluster-robust effective n says how much less."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from tracejury.core.gates import GateSpec
from tracejury.core.segments import default_segmentation
from tracejury.store.ingest import ingest_lines
from workers.reducer import run_gates


def _release(example: dict[str, Any], release: str, day: int, failing_sessions: int) -> list[tuple[int, bytes]]:
    """100 sessions of 5 traces; every trace of the first ``failing_sessions`` sessions fails."""
    lines = []
    for s in range(100):
        for t in range(5):
            doc = copy.deepcopy(example)
            doc["traceId"] = f"{release}_{s}_{t}"
            doc["releaseId"] = release
            doc["timestamp"] = f"2026-11-{day:02d}T{s // 10:02d}:{s % 10:02d}:{t:02d}.000Z"
            doc["req"]["sessionIdHash"] = f"sha256:{release}-session-{s}"
            doc["outputs"]["formatValid"] = s >= failing_sessions
            lines.append((len(lines) + 1, orjson.dumps(doc)))
    return lines


def test_clustered_sessions_shrink_the_effective_n_and_the_evidence(engine: Any, example_trace: dict[str, Any]) -> None:
    seg = default_segmentation()
    ingest_lines(engine, "a", _release(example_trace, "r1", 18, failing_sessions=5), segmentation=seg)
    ingest_lines(engine, "b", _release(example_trace, "r2", 20, failing_sessions=10), segmentation=seg)
    spec = {"id": "fmt", "metric": {"signal": "format_invalid"}, "min_samples": 50, "correction": "none",
            "hysteresis": {"windows": 1, "window": {"traces": 500}}}  # fmt: skip
    plain = run_gates(engine, [GateSpec.model_validate(spec)], "r2", baseline="r1", dry_run=True)
    clustered = run_gates(engine, [GateSpec.model_validate({**spec, "cluster": "session"})], "r2", baseline="r1",
                          dry_run=True)  # fmt: skip
    (p,), (c,) = plain.outcomes, clustered.outcomes
    assert p.current["effectiveN"] == 500
    assert c.current["effectiveN"] < 150  # 100 sessions of 5 perfectly correlated traces
    assert c.p_value > p.p_value  # the same counts are weaker evidence once correlation counts
    assert p.decision == "block" and c.decision == "pass"
