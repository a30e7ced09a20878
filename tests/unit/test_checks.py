"""Each deterministic checker's outcomes on hand-made traces."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from judges.checks import CHECKERS, CheckResult
from judges.evidence import evidence_from_trace

TOOL_PARAMS = {"key_fields": ["state"], "check_dates": True}


def run(name: str, trace: dict[str, Any], params: dict[str, Any] | None = None) -> CheckResult:
    return CHECKERS[name].fn(evidence_from_trace(trace), params or {})


def _answer(trace: dict[str, Any], text: str) -> None:
    trace["sample"]["finalAnswer"] = orjson.dumps({"answer": text, "citations": []}).decode()


def test_json_valid(example_trace: dict[str, Any]) -> None:
    assert run("json_valid", example_trace) == CheckResult("scored", True, "final answer is JSON")
    example_trace["sample"]["finalAnswer"] = '{"answer": "cut'
    r = run("json_valid", example_trace)
    assert (r.status, r.passed) == ("scored", False)
    del example_trace["sample"]
    assert run("json_valid", example_trace).status == "missing_evidence"


def test_json_schema(example_trace: dict[str, Any]) -> None:
    schema = {"type": "object", "required": ["answer", "citations"],
              "properties": {"citations": {"type": "array", "items": {"type": "string"}}}}  # fmt: skip
    assert run("json_schema", example_trace, {"schema": schema}).passed is True
    example_trace["sample"]["finalAnswer"] = '{"answer": "x", "citations": [1]}'
    r = run("json_schema", example_trace, {"schema": schema})
    assert (r.passed, r.rationale.split(":")[0]) == (False, "$.citations[0]")


def test_format_invariants(example_trace: dict[str, Any]) -> None:
    assert run("format", example_trace, {"max_length": 500, "pattern": "order"}).passed is True
    r = run("format", example_trace, {"max_length": 10, "field": "answer"})
    assert r.passed is False and "over the limit of 10" in r.rationale
    assert run("format", example_trace, {"pattern": "^refund"}).passed is False


def test_tool_grounding_agrees(example_trace: dict[str, Any]) -> None:
    _answer(example_trace, "Your order 48213 is out for delivery. It shipped on 2026-11-18.")
    assert run("tool_grounding", example_trace, TOOL_PARAMS).passed is True


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("Your order 48213 was delivered on 2026-11-19.", "does not state state"),
        ("Order 48213 is out for delivery since 2026-11-02.", "date 2026-11-02"),
    ],
)
def test_tool_grounding_contradictions(
    example_trace: dict[str, Any], answer: str, why: str
) -> None:
    _answer(example_trace, answer)
    r = run("tool_grounding", example_trace, TOOL_PARAMS)
    assert r.passed is False
    assert why in r.rationale


def test_tool_grounding_tool_skipped_failed_missing_and_not_required(
    example_trace: dict[str, Any],
) -> None:
    skipped = {**example_trace, "evidence": {**example_trace["evidence"], "tool": []}}
    assert run("tool_grounding", skipped).rationale == "a tool was required but none was called"
    example_trace["evidence"]["tool"][0]["status"] = "timeout"
    r = run("tool_grounding", example_trace)
    assert r.passed is False and "order_status: timeout" in r.rationale
    example_trace["evidence"]["tool"][0]["status"] = "success"
    example_trace["sample"]["toolSnapshots"] = []
    assert run("tool_grounding", example_trace).status == "missing_evidence"
    example_trace["req"]["toolRequired"] = False
    assert run("tool_grounding", example_trace).status == "not_applicable"


def test_retrieval_grounding(example_trace: dict[str, Any]) -> None:
    assert run("retrieval_grounding", example_trace).passed is True
    example_trace["evidence"]["retrieval"]["usedInFinalAnswer"] = False
    assert run("retrieval_grounding", example_trace).passed is False
    example_trace["evidence"]["retrieval"].update(empty=True, topKDocIds=[])
    assert run("retrieval_grounding", example_trace).rationale == "retrieval came back empty"
    del example_trace["evidence"]["retrieval"]
    assert run("retrieval_grounding", example_trace).status == "not_applicable"


def test_guardrail_consistency(example_trace: dict[str, Any]) -> None:
    assert run("guardrail_consistency", example_trace).status == "not_applicable"
    example_trace["runtime"]["guardrails"] = [{"ruleId": "safety-2", "decision": "block"}]
    assert run("guardrail_consistency", example_trace).passed is False
    _answer(example_trace, "I'm sorry, but I can't help with that request.")
    assert run("guardrail_consistency", example_trace).passed is True


def test_budgets(example_trace: dict[str, Any]) -> None:
    assert run("latency_budget", example_trace, {"max_ms": 3000}).passed is True
    assert run("latency_budget", example_trace, {"max_ms": 2000}).passed is False
    assert run("token_budget", example_trace, {"max_completion_tokens": 100}).passed is False
    assert run("token_budget", example_trace, {"max_input_tokens": 5000}).passed is True
