"""Human review, the pure parts: item states, a rubric's label scale, and what a reviewer sees
of a trace.

A review item moves ``pending → claimed → labelled`` (or ``skipped``). A claim holds a lease;
an expired lease returns the item to the queue (it reads as ``pending`` again). A label is
checked against the scale of the rubric version the item was escalated under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tracejury.core.errors import InvalidInput

__all__ = ["ITEM_STATES", "ItemState", "LabelScale", "trace_view"]

ItemState = Literal["pending", "claimed", "labelled", "skipped", "pruned"]
"""Where a review item stands: waiting, held by a reviewer (with a lease), labelled, set aside
by its reviewer, or closed because its trace's text was pruned while it was still open."""
ITEM_STATES: tuple[str, ...] = get_args(ItemState)


@dataclass(frozen=True, slots=True)
class LabelScale:
    """The labels a reviewer may give under one rubric version, and which of them pass."""

    labels: tuple[str, ...]
    """Every label, in the rubric's order (ordinal: worst first)."""
    passing: frozenset[str]
    """The labels that pass (what gates count)."""

    @classmethod
    def from_output(cls, output: Mapping[str, Any] | None) -> LabelScale:
        """From a rubric's ``output`` as stored in a batch's config snapshot (the JSON dump
        of ``judges.rubric.OutputSpec``): binary passes ``pass``; ordinal passes every label
        from ``pass_threshold`` up. None (or an empty mapping) is the binary default."""
        output = output or {}
        labels = tuple(output.get("labels") or ("pass", "fail"))
        if output.get("type", "binary") == "binary":
            return cls(labels, frozenset({"pass"}) & frozenset(labels))
        threshold = output.get("pass_threshold")
        start = labels.index(threshold) if threshold in labels else len(labels)
        return cls(labels, frozenset(labels[start:]))

    def passed(self, label: str, *, where: str = "label") -> bool:
        """Whether ``label`` passes; an unknown label is an ``InvalidInput`` naming ``where``
        and the allowed labels."""
        if label not in self.labels:
            raise InvalidInput(f"{where}: {label!r} is not a label of this rubric (allowed: {', '.join(self.labels)})")
        return label in self.passing

    def as_dict(self) -> dict[str, list[str]]:
        """JSON shape: ``{"labels": [...], "passing": [...]}`` (both in scale order)."""
        return {"labels": list(self.labels), "passing": [label for label in self.labels if label in self.passing]}


def trace_view(trace: Mapping[str, Any]) -> dict[str, Any]:
    """What a reviewer needs of a stored trace, as JSON: the input, the final answer, the
    retrieved chunks, each tool call with its stored snapshot, truncation, guardrail
    decisions and format validity. Text is returned as stored (untrusted: escape it)."""
    sample = trace.get("sample") or {}
    evidence = trace.get("evidence") or {}
    runtime = trace.get("runtime") or {}
    retrieval = evidence.get("retrieval")
    snapshots = {s.get("responseHash"): s.get("snapshot") for s in sample.get("toolSnapshots") or []}
    return {
        "traceId": trace.get("traceId"),
        "releaseId": trace.get("releaseId"),
        "timestamp": trace.get("timestamp"),
        "intent": (trace.get("req") or {}).get("intent"),
        "toolRequired": (trace.get("req") or {}).get("toolRequired"),
        "inputText": sample.get("inputText"),
        "finalAnswer": sample.get("finalAnswer"),
        "retrieval": None
        if retrieval is None
        else {
            "empty": retrieval.get("empty"),
            "docIds": retrieval.get("topKDocIds") or [],
            "usedInFinalAnswer": retrieval.get("usedInFinalAnswer"),
        },
        "retrievedChunks": [
            {"docId": c.get("docId"), "text": c.get("text")} for c in sample.get("retrievedChunks") or []
        ],
        "toolCalls": [
            {
                "toolName": c.get("toolName"),
                "status": c.get("status"),
                "latencyMs": c.get("latencyMs"),
                "snapshot": snapshots.get(c.get("responseHash")) if c.get("responseHash") else None,
            }
            for c in evidence.get("tool") or []
        ],
        "truncated": runtime.get("truncated"),
        "guardrails": [
            {"ruleId": g.get("ruleId"), "decision": g.get("decision"), "reasonCode": g.get("reasonCode")}
            for g in runtime.get("guardrails") or []
        ],
        "formatValid": (trace.get("outputs") or {}).get("formatValid"),
        "latencyMs": runtime.get("latencyMs"),
    }
