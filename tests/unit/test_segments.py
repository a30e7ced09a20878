"""Segment keys: default dimensions, values, projections, config errors."""

from __future__ import annotations

from typing import Any

import pytest

from tracejury.core.errors import ConfigError
from tracejury.core.segments import (
    SegmentationConfig,
    default_segmentation,
    key_matches,
    parse_segment_key,
    project_key,
    segment_key,
)

SEG = default_segmentation()


def test_example_key(example_trace: dict[str, Any]) -> None:
    assert segment_key(example_trace, SEG) == (
        "model=acme-chat@2026-10-01|rag=on|tool=order_status@tool_v1|trunc=no|ret=high"
        "|turns=2-5|guard=allow"
    )
    assert SEG.names == ("model", "rag", "tool", "trunc", "ret", "turns", "guard")


def _dims(trace: dict[str, Any]) -> dict[str, str]:
    return parse_segment_key(segment_key(trace, SEG))


def test_rag_off_and_no_tool(example_trace: dict[str, Any]) -> None:
    example_trace["evidence"] = {}
    d = _dims(example_trace)
    assert (d["rag"], d["ret"], d["tool"]) == ("off", "none", "none")


@pytest.mark.parametrize(("top", "bucket"), [(0, "low"), (3, "low"), (4, "mid"), (6, "mid"), (7, "high"), (9, "high")])  # fmt: skip
def test_retrieval_buckets(example_trace: dict[str, Any], top: int, bucket: str) -> None:
    example_trace["evidence"]["retrieval"]["topKScoreBins"] = [top, 9]
    assert _dims(example_trace)["ret"] == bucket


def test_empty_retrieval(example_trace: dict[str, Any]) -> None:
    example_trace["evidence"]["retrieval"].update(empty=True, topKDocIds=[], topKScoreBins=[])
    assert _dims(example_trace)["ret"] == "empty"


@pytest.mark.parametrize(("turn", "bucket"), [(None, "1"), (1, "1"), (2, "2-5"), (5, "2-5"), (6, "6+"), (40, "6+")])  # fmt: skip
def test_turn_buckets(example_trace: dict[str, Any], turn: int | None, bucket: str) -> None:
    if turn is None:
        del example_trace["req"]["sessionTurn"]
    else:
        example_trace["req"]["sessionTurn"] = turn
    assert _dims(example_trace)["turns"] == bucket


def test_strictest_guardrail_and_first_tool(example_trace: dict[str, Any]) -> None:
    example_trace["runtime"]["guardrails"] = [
        {"ruleId": "a", "decision": "rewrite"},
        {"ruleId": "b", "decision": "block"},
        {"ruleId": "c", "decision": "allow"},
    ]
    example_trace["evidence"]["tool"].append(
        {"toolName": "refund", "schemaVersion": "v2", "argsHash": "h", "status": "error"}
    )
    example_trace["runtime"]["truncated"] = True
    d = _dims(example_trace)
    assert (d["guard"], d["tool"], d["trunc"]) == ("block", "order_status@tool_v1", "yes")


def test_separators_in_values_cannot_break_the_key(example_trace: dict[str, Any]) -> None:
    example_trace["config"]["model"]["name"] = "evil|model=x"
    key = segment_key(example_trace, SEG)
    assert parse_segment_key(key)["model"] == "evil_model_x@2026-10-01"
    assert len(parse_segment_key(key)) == 7


def test_projection_and_matching() -> None:
    key = "model=m@1|rag=on|tool=none|trunc=no|ret=high|turns=1|guard=allow"
    assert project_key(key, ["tool", "rag"]) == "tool=none|rag=on"
    assert project_key(key, []) == ""
    assert project_key(key, ["channel"]) == "channel=?"
    assert key_matches(key, {"rag": "on", "ret": ["high", "mid"]})
    assert not key_matches(key, {"rag": "off"})


def test_custom_field_dimension(example_trace: dict[str, Any]) -> None:
    cfg = SegmentationConfig.from_yaml(
        "version: s2\ndimensions:\n  - rag\n  - name: channel\n    field: req.channel\n"
        "  - name: tool_required\n    field: req.toolRequired\n  - name: x\n    field: req.nope\n"
    )
    assert segment_key(example_trace, cfg) == "rag=on|channel=web|tool_required=yes|x=unknown"


def test_config_errors_name_file_line_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        SegmentationConfig.from_yaml(
            "version: s2\ndimensions:\n  - rag\n  - colour\n", file="seg.yaml"
        )
    assert str(info.value).startswith("seg.yaml:4 dimensions[1]: unknown dimension 'colour'")
    with pytest.raises(ConfigError) as info:
        SegmentationConfig.from_yaml("version: s2\ndimensions: [rag, rag]\n", file="seg.yaml")
    assert "dimension listed twice: rag" in str(info.value)
    with pytest.raises(ConfigError) as info:
        SegmentationConfig.from_yaml("version: [unclosed\n", file="seg.yaml")
    assert str(info.value).startswith("seg.yaml:")
    assert "invalid YAML" in str(info.value)
