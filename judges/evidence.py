"""Evidence replay: what a judge or checker may see of a trace — exactly what the runtime saw.

Evidence comes only from the stored trace: the input and final answer (``sample``), the
retrieved chunk ids and texts, the tool calls with their stored snapshots, truncation and
guardrail flags. Nothing re-executes a tool or re-runs retrieval.

In a judge prompt, evidence travels as one JSON object between ``<evidence>`` and
``</evidence>``. ``<``, ``>`` and ``&`` are escaped inside the JSON (``\\u003c`` …), so no trace
text can close the block early or forge another one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

__all__ = [
    "EVIDENCE_CLOSE",
    "EVIDENCE_FIELDS",
    "EVIDENCE_OPEN",
    "Evidence",
    "ToolEvidence",
    "evidence_block",
    "evidence_from_trace",
    "parse_evidence_block",
]

EVIDENCE_OPEN = "<evidence>"
EVIDENCE_CLOSE = "</evidence>"
_BLOCK = re.compile(re.escape(EVIDENCE_OPEN) + r"\n?(.*?)\n?" + re.escape(EVIDENCE_CLOSE), re.S)


@dataclass(frozen=True)
class ToolEvidence:
    """One tool call as the runtime saw it, with its stored response snapshot if kept."""

    tool_name: str
    schema_version: str
    status: str
    snapshot: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything an evaluator may look at for one trace."""

    trace_id: str
    input_text: str | None
    """User input (sampled traces only)."""
    final_answer: str | None
    """Final answer shown to the user (sampled traces only)."""
    rag_on: bool
    retrieval_empty: bool
    retrieval_used: bool
    """``evidence.retrieval.usedInFinalAnswer``."""
    retrieved_doc_ids: tuple[str, ...]
    retrieved_chunks: tuple[tuple[str, str], ...]
    """(doc id, text) of retrieved chunks whose text was kept."""
    tool_required: bool | None
    tool_calls: tuple[ToolEvidence, ...]
    truncated: bool
    guardrail_decisions: tuple[tuple[str, str], ...]
    """(rule id, decision)."""
    format_valid: bool
    latency_ms: int
    completion_tokens: int
    input_tokens: int
    intent: str | None = None
    model_tool_calls: tuple[Mapping[str, Any], ...] = ()
    """Tool calls the model asked for and the results the app fed back to it, from a traced
    conversation without tool spans (``sample.modelToolCalls``, OTLP ingest)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        """The JSON object a judge sees (and the evidence hash covers)."""
        return {
            "input_text": self.input_text,
            "final_answer": self.final_answer,
            "retrieval": None
            if not self.rag_on
            else {
                "empty": self.retrieval_empty,
                "used_in_final_answer": self.retrieval_used,
                "doc_ids": list(self.retrieved_doc_ids),
                "chunks": [{"doc_id": d, "text": t} for d, t in self.retrieved_chunks],
            },
            "tool_required": self.tool_required,
            "tool_calls": [
                {
                    "tool_name": c.tool_name,
                    "schema_version": c.schema_version,
                    "status": c.status,
                    "snapshot": dict(c.snapshot) if c.snapshot is not None else None,
                }
                for c in self.tool_calls
            ],
            "truncated": self.truncated,
            "guardrails": [{"rule_id": r, "decision": d} for r, d in self.guardrail_decisions],
        } | ({"model_tool_calls": [dict(c) for c in self.model_tool_calls]} if self.model_tool_calls else {})

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical evidence data (part of the judge cache key)."""
        canonical = orjson.dumps(self.as_data(), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(canonical).hexdigest()


def evidence_from_trace(trace: Mapping[str, Any]) -> Evidence:
    """Replay a stored trace's evidence (a validated trace dict)."""
    sample = trace.get("sample") or {}
    evidence = trace.get("evidence") or {}
    retrieval = evidence.get("retrieval")
    snapshots = {s["responseHash"]: s["snapshot"] for s in sample.get("toolSnapshots") or []}
    chunks = tuple((c["docId"], c["text"]) for c in sample.get("retrievedChunks") or [])
    runtime = trace["runtime"]
    return Evidence(
        trace_id=trace["traceId"],
        input_text=sample.get("inputText"),
        final_answer=sample.get("finalAnswer"),
        rag_on=retrieval is not None,
        retrieval_empty=bool(
            retrieval and (retrieval.get("empty") or not retrieval.get("topKDocIds"))
        ),
        retrieval_used=bool((retrieval or {}).get("usedInFinalAnswer")),
        retrieved_doc_ids=tuple((retrieval or {}).get("topKDocIds") or ()),
        retrieved_chunks=chunks,
        tool_required=(trace.get("req") or {}).get("toolRequired"),
        tool_calls=tuple(
            ToolEvidence(
                tool_name=c["toolName"],
                schema_version=c["schemaVersion"],
                status=c["status"],
                snapshot=snapshots.get(c.get("responseHash") or ""),
            )
            for c in evidence.get("tool") or []
        ),
        truncated=runtime["truncated"],
        guardrail_decisions=tuple(
            (g["ruleId"], g["decision"]) for g in runtime.get("guardrails") or []
        ),
        format_valid=trace["outputs"]["formatValid"],
        latency_ms=runtime["latencyMs"],
        completion_tokens=runtime["completionTokenCount"],
        input_tokens=runtime["inputTokenCount"],
        intent=(trace.get("req") or {}).get("intent"),
        model_tool_calls=tuple(
            {"tool_call_id": c.get("toolCallId"), "tool_name": c.get("toolName"),
             "arguments": c.get("arguments"), "result": c.get("result")}
            for c in sample.get("modelToolCalls") or []
        ),  # fmt: skip
    )


EVIDENCE_FIELDS = ("input_text", "final_answer", "retrieval", "tool_required", "tool_calls",
                   "truncated", "guardrails", "model_tool_calls")  # fmt: skip
"""Top-level keys of the evidence data; the only names a rubric template may refer to
(``model_tool_calls`` only when the trace has them, so other traces' evidence hashes stay)."""


def evidence_block(data: Mapping[str, Any]) -> str:
    """Evidence data as a delimited, escaped JSON block for a prompt."""
    text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f"{EVIDENCE_OPEN}\n{text}\n{EVIDENCE_CLOSE}"


def parse_evidence_block(text: str) -> dict[str, Any] | None:
    """The evidence data of the first block in ``text`` (what the mock judge reads), or None."""
    match = _BLOCK.search(text)
    if match is None:
        return None
    try:
        data = orjson.loads(match.group(1))
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
