"""Weak signals by SQL aggregation, checked against values computed by hand."""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
from typer.testing import CliRunner

from tracejury.cli import app
from tracejury.core.segments import default_segmentation
from tracejury.store.ingest import ingest_lines
from tracejury.store.signals import release_signals


def _nearest_rank(values: list[int], q: int) -> int:
    ordered = sorted(values)
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


def _traces(example: dict[str, Any]) -> list[dict[str, Any]]:
    """12 traces: 7 with RAG and a tool, 5 with neither; known flags and latencies."""
    out = []
    for i in range(12):
        t = copy.deepcopy(example)
        t["traceId"] = f"tr_{i}"
        t["runtime"]["latencyMs"] = 100 * (i + 1)  # 100 .. 1200
        t["runtime"]["stageLatencyMs"] = {"generation": 10 * (i + 1)}
        t["runtime"]["truncated"] = i in (0, 8)
        t["runtime"]["fallbackUsed"] = i == 3
        t["runtime"]["guardrails"] = [{"ruleId": "g", "decision": "block" if i == 9 else "allow"}]
        t["outputs"]["formatValid"] = i not in (2, 10, 11)
        if i < 7:
            t["evidence"]["tool"][0]["status"] = {1: "timeout", 4: "error", 5: "error"}.get(
                i, "success"
            )
            t["evidence"]["retrieval"]["empty"] = i == 6
        else:
            t["evidence"] = {}
        out.append(t)
    return out


def test_signals_match_hand_computed_values(engine: Any, example_trace: dict[str, Any]) -> None:
    traces = _traces(example_trace)
    lines = [(i + 1, orjson.dumps(t)) for i, t in enumerate(traces)]
    ingest_lines(engine, "mem", lines, segmentation=default_segmentation())

    (everything,) = release_signals(engine, "r42")
    assert everything.group == "" and everything.count == 12
    lat = [100 * (i + 1) for i in range(12)]
    assert everything.latency_ms == {"p50": _nearest_rank(lat, 50), "p99": _nearest_rank(lat, 99)}
    assert everything.latency_ms == {"p50": 600, "p99": 1200}
    assert everything.stage_latency_ms == {"generation": {"p50": 60, "p99": 120}}
    rates = {k: (v.count, v.n) for k, v in everything.rates.items()}
    assert rates == {
        "tool_error_rate": (2, 7),
        "tool_timeout_rate": (1, 7),
        "format_invalid_rate": (3, 12),
        "guardrail_block_rate": (1, 12),
        "empty_retrieval_rate": (1, 7),
        "truncation_rate": (2, 12),
        "fallback_rate": (1, 12),
    }
    assert everything.tokens["completionMean"] == 212.0

    by_rag = {r.group: r for r in release_signals(engine, "r42", ["rag"])}
    # trace 9 is blocked, so its segment is guard=block — grouping by rag alone merges it back
    assert {g: r.count for g, r in by_rag.items()} == {"rag=on": 7, "rag=off": 5}
    off = by_rag["rag=off"]
    assert off.latency_ms == {"p50": _nearest_rank(lat[7:], 50), "p99": 1200}
    assert off.rates["format_invalid_rate"].count == 2
    assert off.rates["tool_error_rate"].rate is None  # no tool calls in rag=off: no rate, not 0
    by_two = release_signals(engine, "r42", ["rag", "guard"])
    assert sorted((r.group, r.count) for r in by_two) == [
        ("rag=off|guard=allow", 4), ("rag=off|guard=block", 1), ("rag=on|guard=allow", 7),
    ]  # fmt: skip
    assert release_signals(engine, "nope") == []


def test_signals_cli_json(engine: Any, example_trace: dict[str, Any]) -> None:
    lines = [(i + 1, orjson.dumps(t)) for i, t in enumerate(_traces(example_trace))]
    ingest_lines(engine, "mem", lines, segmentation=default_segmentation())
    result = CliRunner().invoke(app, ["signals", "--release", "r42", "--by", "rag", "--json"])
    assert result.exit_code == 0, result.output
    rows = orjson.loads(result.stdout)
    assert [(r["segment"], r["count"]) for r in rows] == [("rag=off", 5), ("rag=on", 7)]
    assert rows[1]["rates"]["tool_error_rate"] == {"count": 2, "n": 7, "rate": 2 / 7}
    table = CliRunner().invoke(app, ["signals", "--release", "r42", "--by", "rag"])
    assert "format invalid" in table.stdout and "28.57% (2/7)" in table.stdout
