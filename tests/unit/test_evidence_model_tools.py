"""Judges see the tool calls a model asked for and the results fed back to it when a trace has
no tool spans (OTLP from the official instrumentations: ``sample.modelToolCalls``); other
traces' evidence, and so their judge cache keys, stay as they were."""

from __future__ import annotations

import copy
from typing import Any

from judges.evidence import evidence_from_trace


def test_model_tool_calls_reach_the_judge_only_when_present(example_trace: dict[str, Any]) -> None:
    plain = evidence_from_trace(example_trace)
    assert "model_tool_calls" not in plain.as_data()
    with_calls = copy.deepcopy(example_trace)
    with_calls.setdefault("sample", {})["modelToolCalls"] = [
        {"toolCallId": "call_1", "toolName": "order_status", "arguments": {"orderId": "48213"},
         "result": {"state": "out_for_delivery"}},
    ]  # fmt: skip
    ev = evidence_from_trace(with_calls)
    assert ev.as_data()["model_tool_calls"] == [
        {"tool_call_id": "call_1", "tool_name": "order_status", "arguments": {"orderId": "48213"},
         "result": {"state": "out_for_delivery"}},
    ]  # fmt: skip
    assert ev.hash != plain.hash
    assert {k: v for k, v in ev.as_data().items() if k != "model_tool_calls"} == plain.as_data()
