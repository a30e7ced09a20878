"""The shipped deterministic checkers. Each one is pure: evidence and parameters in, a
``CheckResult`` out. Missing raw text is ``missing_evidence``; a checker that does not apply
says ``not_applicable``; neither is ever a pass or a fail."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema_rs
import orjson

from judges.checks.base import CheckResult, checker
from judges.evidence import Evidence

__all__ = ["answer_text", "compiled_schema"]

_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_DEFAULT_REFUSAL = r"(?i)\b(can(no|')t|unable to|won't) help\b|\bsorry\b"


def answer_text(final_answer: str) -> str:
    """The user-visible text of an answer: the ``answer`` field of a JSON answer, else all."""
    try:
        doc = orjson.loads(final_answer)
    except orjson.JSONDecodeError:
        return final_answer
    if isinstance(doc, dict) and isinstance(doc.get("answer"), str):
        return doc["answer"]
    return final_answer


@lru_cache(maxsize=128)
def compiled_schema(canonical_schema: bytes) -> Any:
    """A compiled JSON Schema validator, reused across traces (keyed by canonical JSON)."""
    return jsonschema_rs.validator_for(orjson.loads(canonical_schema))


def _phrase(value: Any) -> str:
    return str(value).replace("_", " ").lower()


@checker("json_valid", "1")
def json_valid(ev: Evidence, _params: Mapping[str, Any]) -> CheckResult:
    """The final answer parses as JSON."""
    if ev.final_answer is None:
        return CheckResult.missing("final answer text (sample.finalAnswer)")
    try:
        orjson.loads(ev.final_answer)
    except orjson.JSONDecodeError as exc:
        return CheckResult.fail(f"final answer is not JSON: {str(exc).splitlines()[0]}")
    return CheckResult.ok("final answer is JSON")


@checker("json_schema", "1", params=("schema",))
def json_schema(ev: Evidence, params: Mapping[str, Any]) -> CheckResult:
    """The final answer is JSON that validates against the rubric's JSON Schema."""
    if ev.final_answer is None:
        return CheckResult.missing("final answer text (sample.finalAnswer)")
    try:
        doc = orjson.loads(ev.final_answer)
    except orjson.JSONDecodeError:
        return CheckResult.fail("final answer is not JSON")
    validator = compiled_schema(orjson.dumps(params["schema"], option=orjson.OPT_SORT_KEYS))
    error = next(iter(validator.iter_errors(doc)), None)
    if error is not None:
        path = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path
        )
        return CheckResult.fail(f"{path}: {error.message}")
    return CheckResult.ok("final answer matches the schema")


@checker("format", "1", params=("pattern", "max_length", "field"))
def format_invariants(ev: Evidence, params: Mapping[str, Any]) -> CheckResult:
    """The answer text matches a regex (``pattern``) and is at most ``max_length`` chars.

    ``field: answer`` checks the answer's ``answer`` field; the default checks the raw text.
    """
    if ev.final_answer is None:
        return CheckResult.missing("final answer text (sample.finalAnswer)")
    text = answer_text(ev.final_answer) if params.get("field") == "answer" else ev.final_answer
    limit = params.get("max_length")
    if limit is not None and len(text) > int(limit):
        return CheckResult.fail(f"answer is {len(text)} characters, over the limit of {limit}")
    pattern = params.get("pattern")
    if pattern is not None and re.search(pattern, text) is None:
        return CheckResult.fail(f"answer does not match /{pattern}/")
    return CheckResult.ok("answer meets the format invariants")


@checker("tool_grounding", "1", params=("key_fields", "check_dates"))
def tool_grounding(ev: Evidence, params: Mapping[str, Any]) -> CheckResult:
    """A required tool was called and succeeded, and the answer agrees with its snapshot.

    ``key_fields`` (default ``[state]``): snapshot values the answer must state (underscores
    read as spaces, case-insensitive). ``check_dates`` (default true): every ISO date in the
    answer must be a date in the snapshot. (An answer may mention other states in passing —
    "shipped on the 18th, out for delivery today" — so stating the true one is what counts.)
    """
    if not ev.tool_required:
        return CheckResult.skip("no tool required")
    ok_calls = [c for c in ev.tool_calls if c.status == "success"]
    if not ev.tool_calls:
        return CheckResult.fail("a tool was required but none was called")
    if not ok_calls:
        statuses = ", ".join(f"{c.tool_name}: {c.status}" for c in ev.tool_calls)
        return CheckResult.fail(f"a tool was required but no call succeeded ({statuses})")
    snapshot = next((c.snapshot for c in ok_calls if c.snapshot is not None), None)
    if snapshot is None:
        return CheckResult.missing("tool snapshot (sample.toolSnapshots)")
    if ev.final_answer is None:
        return CheckResult.missing("final answer text (sample.finalAnswer)")
    text = answer_text(ev.final_answer).lower()
    for key in params.get("key_fields", ["state"]):
        if key in snapshot and _phrase(snapshot[key]) not in text:
            return CheckResult.fail(f"answer does not state {key}={snapshot[key]!r} from the tool")
    if params.get("check_dates", True):
        known = {d for v in snapshot.values() if isinstance(v, str) for d in _ISO_DATE.findall(v)}
        for date in _ISO_DATE.findall(text):
            if date not in known:
                return CheckResult.fail(f"answer states date {date}, not in the tool's snapshot")
    return CheckResult.ok("answer agrees with the tool snapshot")


@checker("retrieval_grounding", "1")
def retrieval_grounding(ev: Evidence, _params: Mapping[str, Any]) -> CheckResult:
    """With RAG on, retrieval came back non-empty and the answer used it."""
    if not ev.rag_on:
        return CheckResult.skip("RAG was off")
    if ev.retrieval_empty:
        return CheckResult.fail("retrieval came back empty")
    if not ev.retrieval_used:
        return CheckResult.fail("retrieved documents were not used in the final answer")
    return CheckResult.ok("retrieval non-empty and used")


@checker("guardrail_consistency", "1", params=("refusal_pattern",))
def guardrail_consistency(ev: Evidence, params: Mapping[str, Any]) -> CheckResult:
    """When a guardrail blocked, the user saw a refusal, not the blocked content."""
    blocked = [rule for rule, decision in ev.guardrail_decisions if decision == "block"]
    if not blocked:
        return CheckResult.skip("no guardrail blocked")
    if ev.final_answer is None:
        return CheckResult.missing("final answer text (sample.finalAnswer)")
    pattern = params.get("refusal_pattern", _DEFAULT_REFUSAL)
    if re.search(pattern, answer_text(ev.final_answer)) is None:
        return CheckResult.fail(f"{', '.join(blocked)} blocked, but the answer is not a refusal")
    return CheckResult.ok("blocked request answered with a refusal")


@checker("latency_budget", "1", params=("max_ms",))
def latency_budget(ev: Evidence, params: Mapping[str, Any]) -> CheckResult:
    """End-to-end latency is within ``max_ms``."""
    limit = int(params.get("max_ms", 5000))
    if ev.latency_ms > limit:
        return CheckResult.fail(f"latency {ev.latency_ms} ms over the budget of {limit} ms")
    return CheckResult.ok(f"latency {ev.latency_ms} ms within {limit} ms")


@checker("token_budget", "1", params=("max_input_tokens", "max_completion_tokens"))
def token_budget(ev: Evidence, params: Mapping[str, Any]) -> CheckResult:
    """Input and completion tokens are within their budgets."""
    for name, used in (("input", ev.input_tokens), ("completion", ev.completion_tokens)):
        limit = params.get(f"max_{name}_tokens")
        if limit is not None and used > int(limit):
            return CheckResult.fail(f"{used} {name} tokens over the budget of {limit}")
    return CheckResult.ok("tokens within budget")
