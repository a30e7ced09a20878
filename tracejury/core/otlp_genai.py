"""Reading one span the way the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) and
OpenInference (``openinference.span.kind``, ``llm.*``, ``retrieval.documents.*``) write it:
its kind, model, token counts, finish reasons, texts, tool call, retrieved documents and
guardrail decision. ``otlp.py`` assembles traces from these; ``docs/otlp.md`` is the table.

Every reader either returns a value, returns None for "not recorded", or raises
``Unmappable`` naming the attribute and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from tracejury.core.otlp_spans import STATUS_ERROR, Span

__all__ = [
    "DECISIONS",
    "INT64_MAX",
    "INT64_MIN",
    "EMBEDDING",
    "GEN_AI_OPERATIONS",
    "GENERATION",
    "GUARDRAIL",
    "RERANK",
    "RETRIEVAL",
    "STAGE_OF_KIND",
    "STRUCTURE",
    "TOOL",
    "Unmappable",
    "content_hash",
    "documents",
    "finish_reasons",
    "flag",
    "guardrail",
    "input_text",
    "integer",
    "invocation_parameters",
    "number",
    "OPENINFERENCE_KINDS",
    "output_text",
    "span_kind",
    "text",
    "tool_call",
    "tool_result",
]

GENERATION, EMBEDDING, RETRIEVAL, RERANK, TOOL, GUARDRAIL, STRUCTURE = (
    "generation", "embedding", "retrieval", "rerank", "tool", "guardrail", "structure",
)  # fmt: skip
"""Span kinds the mapping knows."""

GEN_AI_OPERATIONS = {
    "chat": GENERATION, "text_completion": GENERATION, "generate_content": GENERATION,
    "embeddings": EMBEDDING, "retrieval": RETRIEVAL, "execute_tool": TOOL,
    "apply_guardrail": GUARDRAIL, "invoke_agent": STRUCTURE, "create_agent": STRUCTURE,
    "invoke_workflow": STRUCTURE, "plan": STRUCTURE,
}  # fmt: skip
"""``gen_ai.operation.name`` → kind."""
OPENINFERENCE_KINDS = {
    "LLM": GENERATION, "EMBEDDING": EMBEDDING, "RETRIEVER": RETRIEVAL, "RERANKER": RERANK,
    "TOOL": TOOL, "GUARDRAIL": GUARDRAIL, "CHAIN": STRUCTURE, "AGENT": STRUCTURE,
    "PROMPT": STRUCTURE, "EVALUATOR": STRUCTURE,
}  # fmt: skip
"""``openinference.span.kind`` → kind."""
STAGE_OF_KIND = {GENERATION: "generation", EMBEDDING: "embedding", RETRIEVAL: "retrieval",
                 RERANK: "retrieval", TOOL: "tool", GUARDRAIL: "guardrail"}  # fmt: skip
"""The ``runtime.stageLatencyMs`` stage a span of each kind counts towards."""
DECISIONS = ("allow", "block", "rewrite")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The range of integers a trace can hold (JSON consumers, the store's BIGINT)."""


class Unmappable(Exception):
    """A span or trace that cannot become (part of) a v1 trace without inventing data."""

    def __init__(self, reason: str, span: Span | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.span = span


def span_kind(span: Span) -> tuple[str | None, str | None]:
    """The span's kind and, for a span the mapping ignores, why.

    ``gen_ai.operation.name`` decides first, then ``openinference.span.kind``; a span with
    neither, or with a value the mapping does not know, has kind None.
    """
    op = span.attrs.get("gen_ai.operation.name")
    if op is not None:
        if isinstance(op, str) and op in GEN_AI_OPERATIONS:
            return GEN_AI_OPERATIONS[op], None
        return None, f"gen_ai.operation.name {op!r} has no mapping; ignored"
    kind = span.attrs.get("openinference.span.kind")
    if kind is not None:
        if isinstance(kind, str) and kind.upper() in OPENINFERENCE_KINDS:
            return OPENINFERENCE_KINDS[kind.upper()], None
        return None, f"openinference.span.kind {kind!r} has no mapping; ignored"
    return None, "not a GenAI span (no gen_ai.operation.name, openinference.span.kind or tracejury.stage); ignored"


# -- typed attribute values -------------------------------------------------------------------


def text(value: Any, key: str) -> str | None:
    """A string attribute (numbers are written as text); None when absent or blank."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Unmappable(f"{key} must be a string, got {type(value).__name__}")
    out = str(value).strip()
    return out or None


def integer(value: Any, key: str) -> int | None:
    """A 64-bit integer attribute (a string of digits is accepted); None when absent."""
    if value is None:
        return None
    out: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str):
        try:
            out = int(value)
        except ValueError:
            out = None
    if out is None or not INT64_MIN <= out <= INT64_MAX:
        raise Unmappable(f"{key} must be a 64-bit integer, got {_short(value)}")
    return out


def number(value: Any, key: str) -> float | None:
    """A numeric attribute; None when absent."""
    if value is None:
        return None
    out: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            out = None
    if out is None or not math.isfinite(out):
        raise Unmappable(f"{key} must be a finite number, got {_short(value)}")
    return out


def flag(value: Any, key: str) -> bool | None:
    """A boolean attribute (``"true"``/``"false"`` accepted); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Unmappable(f"{key} must be a boolean, got {_short(value)}")


def content_hash(value: Any) -> str:
    """``sha256:<hex>`` of a text, or of the canonical JSON of a structured value."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    else:
        try:
            raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:  # nested past orjson's limit
            raise Unmappable(f"value cannot be hashed as JSON: {exc}") from exc
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _json(value: Any, key: str, span: Span) -> Any:
    """A structured attribute, recorded either structured or as a JSON string."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Unmappable(f"{key} is not JSON: {exc}", span) from exc
    return value


# -- generation spans -------------------------------------------------------------------------


def invocation_parameters(span: Span) -> Mapping[str, Any]:
    """OpenInference ``llm.invocation_parameters`` (a JSON object), or ``{}``."""
    raw = span.attrs.get("llm.invocation_parameters")
    if raw is None:
        return {}
    doc = _json(raw, "llm.invocation_parameters", span)
    if not isinstance(doc, Mapping):
        raise Unmappable("llm.invocation_parameters is not a JSON object", span)
    return doc


def finish_reasons(span: Span) -> list[str]:
    """``gen_ai.response.finish_reasons`` or OpenInference ``llm.finish_reason``, as a list."""
    raw = span.attrs.get("gen_ai.response.finish_reasons")
    if raw is None:
        raw = span.attrs.get("llm.finish_reason")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [str(r) for r in items if r is not None and str(r).strip()]


def _message_text(message: Any) -> str | None:
    """The text of one GenAI message (``parts`` of type text) or OpenInference-style message."""
    if not isinstance(message, Mapping):
        return None
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [p.get("content") for p in parts if isinstance(p, Mapping) and p.get("type") == "text"]
        joined = "".join(t for t in texts if isinstance(t, str))
        return joined or None
    content = message.get("content")
    return content if isinstance(content, str) and content else None


def _gen_ai_messages(span: Span, key: str) -> list[Any]:
    raw = span.attrs.get(key)
    if raw is None:
        return []
    doc = _json(raw, key, span)
    if not isinstance(doc, list):
        raise Unmappable(f"{key} is not a list of messages", span)
    return doc


def _indexed(span: Span, prefix: str, kind: str, fields: str) -> list[dict[str, Any]]:
    """OpenInference's flattened lists — ``{prefix}.{i}.{kind}.{field}`` attributes — as a list
    of ``{field: value}`` dicts in index order."""
    pattern = re.compile(re.escape(prefix) + rf"\.(\d+)\.{kind}\.({fields})$")
    found: dict[int, dict[str, Any]] = {}
    for key, value in span.attrs.items():
        m = pattern.match(key)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [found[i] for i in sorted(found)]


def _openinference_messages(span: Span, prefix: str) -> list[dict[str, Any]]:
    """``llm.input_messages.{i}.message.role|content`` as a list of ``{role, content}``."""
    return _indexed(span, prefix, "message", "role|content")


def output_text(span: Span) -> str | None:
    """What a generation span answered: ``gen_ai.output.messages`` (first message's text
    parts), else ``llm.output_messages.0.message.content``, else ``output.value``."""
    for message in _gen_ai_messages(span, "gen_ai.output.messages"):
        if (found := _message_text(message)) is not None:
            return found
    for message in _openinference_messages(span, "llm.output_messages"):
        if (found := _message_text(message)) is not None:
            return found
    value = span.attrs.get("output.value")
    return value if isinstance(value, str) and value else None


def input_text(span: Span) -> str | None:
    """The user's input as a generation span saw it: the last user message of
    ``gen_ai.input.messages`` or ``llm.input_messages``, else ``input.value``."""
    for messages in (_gen_ai_messages(span, "gen_ai.input.messages"),
                     _openinference_messages(span, "llm.input_messages")):  # fmt: skip
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        for message in reversed(users):
            if (found := _message_text(message)) is not None:
                return found
    value = span.attrs.get("input.value")
    return value if isinstance(value, str) and value else None


# -- tools --------------------------------------------------------------------------------------

_TIMEOUT = re.compile(r"time.?out|timed.?out|deadline", re.IGNORECASE)


def tool_call(span: Span, default_schema: str | None) -> dict[str, Any]:
    """One ``evidence.tool[]`` entry from an ``execute_tool`` / ``TOOL`` span."""
    a = span.attrs
    name = text(a.get("gen_ai.tool.name"), "gen_ai.tool.name") or text(a.get("tool.name"), "tool.name")
    if name is None:
        raise Unmappable("tool span without gen_ai.tool.name or tool.name", span)
    schema = text(a.get("tracejury.tool.schema_version"), "tracejury.tool.schema_version") or default_schema
    if schema is None:
        raise Unmappable("evidence.tool[].schemaVersion: set tracejury.tool.schema_version on the span "
                         "or tracejury.tool_schema_version on the trace", span)  # fmt: skip
    args_hash = text(a.get("tracejury.tool.args_hash"), "tracejury.tool.args_hash")
    if args_hash is None:
        args = a.get("gen_ai.tool.call.arguments", a.get("input.value"))
        if args is None:
            raise Unmappable("evidence.tool[].argsHash: no tracejury.tool.args_hash, "
                             "gen_ai.tool.call.arguments or input.value", span)  # fmt: skip
        args_hash = content_hash(args)
    response_hash = text(a.get("tracejury.tool.response_hash"), "tracejury.tool.response_hash")
    result = a.get("gen_ai.tool.call.result", a.get("output.value"))
    if response_hash is None and result is not None:
        response_hash = content_hash(result)
    call: dict[str, Any] = {
        "toolName": name,
        "schemaVersion": schema,
        "argsHash": args_hash,
        "status": _tool_status(span),
        "latencyMs": round(span.duration_ns / 1e6),
    }
    if response_hash is not None:
        call["responseHash"] = response_hash
    call_id = text(a.get("gen_ai.tool.call.id"), "gen_ai.tool.call.id") or text(a.get("tool.id"), "tool.id")
    if call_id is not None:
        call["toolCallId"] = call_id
    return call


def _tool_status(span: Span) -> str:
    override = text(span.attrs.get("tracejury.tool.status"), "tracejury.tool.status")
    if override is not None:
        if override not in ("success", "timeout", "error"):
            raise Unmappable(f"tracejury.tool.status {override!r} is not success, timeout or error", span)
        return override
    error_type = span.attrs.get("error.type")
    if error_type is None and span.status_code != STATUS_ERROR:
        return "success"
    clues = [str(error_type or ""), *span.exception_types, span.status_message]
    return "timeout" if any(_TIMEOUT.search(c) for c in clues) else "error"


def tool_result(span: Span) -> Any:
    """A tool span's result as recorded (``gen_ai.tool.call.result`` or ``output.value``)."""
    return span.attrs.get("gen_ai.tool.call.result", span.attrs.get("output.value"))


# -- retrieval ----------------------------------------------------------------------------------


def _flattened_documents(span: Span, prefix: str) -> list[dict[str, Any]]:
    return _indexed(span, prefix, "document", "id|score|content")


def documents(span: Span) -> list[dict[str, Any]]:
    """Documents of a retrieval or reranker span as ``{id, bin, content}``, best first.

    Sources: ``gen_ai.retrieval.documents`` (structured or JSON), OpenInference
    ``retrieval.documents.{i}.document.*`` or, on a reranker, ``reranker.output_documents``.
    A document without an id is named by the hash of its content. Score bins come from
    ``tracejury.retrieval.score_bins`` or from scores in [0, 1] (bin = floor(10 x score), 9 at most).
    """
    raw = span.attrs.get("gen_ai.retrieval.documents")
    if raw is not None:
        docs = _json(raw, "gen_ai.retrieval.documents", span)
        if not isinstance(docs, list) or not all(isinstance(d, Mapping) for d in docs):
            raise Unmappable("gen_ai.retrieval.documents is not a list of objects", span)
    else:
        docs = _flattened_documents(span, "retrieval.documents") or _flattened_documents(
            span, "reranker.output_documents"
        )
    bins = span.attrs.get("tracejury.retrieval.score_bins")
    if bins is not None and (not isinstance(bins, list) or len(bins) != len(docs)):
        raise Unmappable(f"tracejury.retrieval.score_bins must list one bin per document ({len(docs)})", span)
    out = []
    for i, doc in enumerate(docs):
        content = doc.get("content")
        doc_id = text(doc.get("id"), f"document {i} id")
        if doc_id is None:
            if not isinstance(content, str) or not content:
                raise Unmappable(f"retrieval document {i} has neither an id nor content", span)
            doc_id = content_hash(content)
        if bins is not None:
            score_bin = integer(bins[i], "tracejury.retrieval.score_bins")
        else:
            score = doc.get("score")
            if isinstance(score, str):
                score = number(score, f"document {i} score")
            if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
                raise Unmappable(f"retrieval document {i} score {score!r} is not in [0, 1]; "
                                 "set tracejury.retrieval.score_bins", span)  # fmt: skip
            score_bin = min(9, int(score * 10))
        out.append({"id": doc_id, "bin": score_bin, "content": content if isinstance(content, str) else None})
    return out


# -- guardrails ---------------------------------------------------------------------------------


def guardrail(span: Span) -> dict[str, Any]:
    """One ``runtime.guardrails[]`` entry from an ``apply_guardrail`` / ``GUARDRAIL`` span.

    The GenAI conventions forbid inferring allow/deny from provider-native results, so the
    decision is ``tracejury.guardrail.decision``, or ``gen_ai.guardrail.result.value`` only when
    it literally is allow, block or rewrite.
    """
    a = span.attrs
    rule = (text(a.get("tracejury.guardrail.rule_id"), "tracejury.guardrail.rule_id")
            or text(a.get("gen_ai.guardrail.policy.id"), "gen_ai.guardrail.policy.id")
            or text(a.get("gen_ai.guardrail.component.name"), "gen_ai.guardrail.component.name")
            or text(span.name, "span name"))  # fmt: skip
    if rule is None:
        raise Unmappable("guardrail span without a rule id (tracejury.guardrail.rule_id)", span)
    decision = text(a.get("tracejury.guardrail.decision"), "tracejury.guardrail.decision")
    if decision is None:
        native = text(a.get("gen_ai.guardrail.result.value"), "gen_ai.guardrail.result.value")
        decision = native.lower() if native and native.lower() in DECISIONS else None
    if decision is None:
        raise Unmappable("guardrail decision unknown: set tracejury.guardrail.decision (allow, block or rewrite)", span)
    if decision not in DECISIONS:
        raise Unmappable(f"tracejury.guardrail.decision {decision!r} is not allow, block or rewrite", span)
    return {
        "ruleId": rule,
        "decision": decision,
        "reasonCode": text(a.get("tracejury.guardrail.reason_code"), "tracejury.guardrail.reason_code"),
    }
