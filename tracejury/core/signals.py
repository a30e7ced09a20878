"""Weak signals: cheap per-trace facts, computed once at ingest on every trace.

``trace_facts`` flattens a validated trace into the columns the store aggregates with SQL.
``RATE_SIGNALS`` defines each rate signal once — its name, the fact it counts and the
denominator it counts over — so the store's SQL, the CLI table and the docs agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RATE_SIGNALS", "STANDARD_STAGES", "RateSignal", "TraceFacts", "trace_facts"]

STANDARD_STAGES = ("retrieval", "tool", "generation", "postprocess")
"""Stages the wire format names; others are allowed and aggregated the same way."""


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """The flat, per-trace facts that weak signals aggregate."""

    latency_ms: int
    input_tokens: int
    completion_tokens: int
    truncated: bool
    format_invalid: bool
    fallback_used: bool
    rag_on: bool
    retrieval_empty: bool
    tool_required: bool | None
    tool_calls: int
    tool_error: bool
    tool_timeout: bool
    guard_block: bool
    negative_feedback: bool
    has_sample: bool
    stage_latency_ms: Mapping[str, int]

    @property
    def tool_called(self) -> bool:
        """Whether the trace called at least one tool."""
        return self.tool_calls > 0


def trace_facts(trace: Mapping[str, Any]) -> TraceFacts:
    """Flatten a validated trace into ``TraceFacts``."""
    runtime = trace["runtime"]
    evidence = trace.get("evidence") or {}
    retrieval = evidence.get("retrieval")
    calls = evidence.get("tool") or []
    statuses = {c["status"] for c in calls}
    guards = runtime.get("guardrails") or []
    feedback = trace.get("feedback") or []
    return TraceFacts(
        latency_ms=runtime["latencyMs"],
        input_tokens=runtime["inputTokenCount"],
        completion_tokens=runtime["completionTokenCount"],
        truncated=runtime["truncated"],
        format_invalid=not trace["outputs"]["formatValid"],
        fallback_used=runtime["fallbackUsed"],
        rag_on=retrieval is not None,
        retrieval_empty=retrieval is not None and bool(retrieval.get("empty") or not retrieval.get("topKDocIds")),
        tool_required=(trace.get("req") or {}).get("toolRequired"),
        tool_calls=len(calls),
        tool_error="error" in statuses,
        tool_timeout="timeout" in statuses,
        guard_block=any(g["decision"] == "block" for g in guards),
        negative_feedback=any(f["kind"] in ("thumbs_down", "handoff", "ticket") for f in feedback),
        has_sample=trace.get("sample") is not None,
        stage_latency_ms=runtime.get("stageLatencyMs") or {},
    )


@dataclass(frozen=True, slots=True)
class RateSignal:
    """A rate signal: traces where ``fact`` holds, over traces where ``over`` holds."""

    name: str
    """Name in output (``format_invalid_rate``)."""
    fact: str
    """The boolean ``TraceFacts`` field counted in the numerator."""
    over: str | None
    """The boolean field that defines the denominator; None means every trace."""
    description: str
    """One line for docs and help."""


RATE_SIGNALS: tuple[RateSignal, ...] = (
    RateSignal("tool_error_rate", "tool_error", "tool_called",
               "traces with a tool call that errored, over traces that called a tool"),
    RateSignal("tool_timeout_rate", "tool_timeout", "tool_called",
               "traces with a tool call that timed out, over traces that called a tool"),
    RateSignal("format_invalid_rate", "format_invalid", None,
               "traces whose output broke its format"),
    RateSignal("guardrail_block_rate", "guard_block", None, "traces a guardrail blocked"),
    RateSignal("empty_retrieval_rate", "retrieval_empty", "rag_on",
               "traces whose retrieval came back empty, over traces with RAG on"),
    RateSignal("truncation_rate", "truncated", None, "traces whose context was truncated"),
    RateSignal("fallback_rate", "fallback_used", None, "traces answered through a fallback"),
)  # fmt: skip
"""Every rate signal, in display order."""
