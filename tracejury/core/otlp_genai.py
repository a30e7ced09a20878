"""Reading one span the way the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) and
OpenInference (``openinference.span.kind``, ``llm.*``, ``retrieval.documents.*``) write it:
its kind, model, token counts, finish reasons, texts, tool call, retrieved documents and
guardrail decision. ``otlp.py`` assembles traces from these; ``docs/otlp.md`` is the table.

Every reader either returns a value, returns None for "not recorded", or raises
``Unmappable`` naming the attribute and what is wrong with it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tracejury.core.otlp_spans import STATUS_ERROR, Span

__all__ = [
    "id_hash",
    "staged_id",
    "STAGED_ID",
    "DECISIONS",
    "DETAILS_EVENT",
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
    "Conversation",
    "Unmappable",
    "content_hash",
    "conversation",
    "documents",
    "finish_reasons",
    "flag",
    "guardrail",
    "input_text",
    "integer",
    "invocation_parameters",
    "number",
    "OPENINFERENCE_KINDS",
    "REDACTED",
    "output_text",
    "recorded",
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


STAGED_ID = "tracejury-staged-id:"
"""Prefix of an id that OTLP staging hashed before storing it (``staged_id``)."""


def staged_id(value: Any) -> str:
    """An id as staging stores it: hashed (``content_hash``) and marked so, for ``id_hash``."""
    return STAGED_ID + content_hash(value)


def id_hash(value: Any) -> str | None:
    """``content_hash`` of an id, None for None; an id staging hashed already (``staged_id``)
    is the same hash unmarked."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith(STAGED_ID):
        return value[len(STAGED_ID) :]
    return content_hash(value)


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


# -- message content: what the official instrumentations capture --------------------------------
#
# Every source is read into the GenAI conventions' message shape, ``{"role", "parts"}`` with
# parts ``{"type": "text", "content"}``, ``{"type": "tool_call", "id", "name", "arguments"}``
# and ``{"type": "tool_call_response", "id", "response"}``. Sources, in order:
# ``gen_ai.{input,output}.messages`` (span attribute, JSON string or structured), the same
# attributes on a ``gen_ai.client.inference.operation.details`` event (span event or joined
# log record), the per-message events of older instrumentations (``gen_ai.{system,user,
# assistant,tool}.message``, ``gen_ai.choice``; content in the body, else the attributes), and
# OpenInference ``llm.{input,output}_messages.{i}.message.*``.

DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                   "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}  # fmt: skip
_SYSTEM_ROLES = ("system", "developer")
REDACTED = "__REDACTED__"
"""OpenInference's stand-in for content it was told to hide (``OPENINFERENCE_HIDE_*``): not content."""


def recorded(value: Any) -> str | None:
    """A recorded text: a non-empty string that is not OpenInference's redaction stand-in."""
    return value if isinstance(value, str) and value and value != REDACTED else None


def _parts(message: Any) -> list[Mapping[str, Any]]:
    """A message's parts (a message with ``content`` and no ``parts`` is one text part)."""
    if not isinstance(message, Mapping):
        return []
    parts = message.get("parts")
    if isinstance(parts, list):
        return [p for p in parts if isinstance(p, Mapping)]
    content = message.get("content")
    return [{"type": "text", "content": content}] if isinstance(content, str) else []


def _message_text(message: Any) -> str | None:
    """The text of one message: its text parts, joined."""
    texts = [recorded(p.get("content")) for p in _parts(message) if p.get("type") == "text"]
    return "".join(t for t in texts if t) or None


def _gen_ai_attr(span: Span, key: str) -> Any:
    """A ``gen_ai.*`` content attribute of the span, else of its details event."""
    if span.attrs.get(key) is not None:
        return span.attrs[key]
    return next((e.attrs[key] for e in span.events if e.name == DETAILS_EVENT and e.attrs.get(key) is not None),
                None)  # fmt: skip


def _gen_ai_messages(span: Span, key: str) -> list[Any]:
    """A ``gen_ai.*`` list (messages, or parts), structured or as a JSON string."""
    raw = _gen_ai_attr(span, key)
    if raw is None:
        return []
    doc = _json(raw, key, span)
    if not isinstance(doc, list):
        raise Unmappable(f"{key} is not a list of messages", span)
    return doc


def _openai_parts(role: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI-style message (a legacy event's body, an OpenInference message) as parts."""
    content = payload.get("content")
    content = None if content == REDACTED else content
    if role == "tool":
        return [{"type": "tool_call_response", "id": payload.get("id", payload.get("tool_call_id")),
                 "response": content}]  # fmt: skip
    items = content if isinstance(content, list) else [content]
    texts = [i if isinstance(i, str) else i.get("text", i.get("content")) for i in items
             if isinstance(i, str) or (isinstance(i, Mapping) and i.get("type", "text") == "text")]  # fmt: skip
    parts: list[dict[str, Any]] = [{"type": "text", "content": t} for t in texts if recorded(t)]
    calls = payload.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, Mapping):
            fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
            parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                          "arguments": fn.get("arguments")})  # fmt: skip
    return parts


def _event_messages(span: Span, which: str) -> list[dict[str, Any]]:
    """Messages from per-message events: inputs from ``gen_ai.*.message``, outputs from
    ``gen_ai.choice``."""
    out = []
    for event in span.events:
        payload: Any = event.body if event.body is not None else event.attrs
        payload = {"content": payload} if isinstance(payload, str) else payload
        if not isinstance(payload, Mapping):
            continue
        if which == "input" and event.name in _MESSAGE_EVENTS:
            role = text(payload.get("role"), "role") or _MESSAGE_EVENTS[event.name]
            out.append({"role": role, "parts": _openai_parts(role, payload)})
        elif which == "output" and event.name == "gen_ai.choice":
            message = _json(payload.get("message"), "gen_ai.choice message", span)
            message = message if isinstance(message, Mapping) else {"content": message}
            out.append({"role": "assistant", "parts": _openai_parts("assistant", message)})
    return out


@functools.cache
def _index_pattern(prefix: str, kind: str, fields: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + rf"\.(\d+)\.{kind}\.({fields})$")


def _indexed(attrs: Mapping[str, Any], prefix: str, kind: str, fields: str) -> list[dict[str, Any]]:
    """OpenInference's flattened lists — ``{prefix}.{i}.{kind}.{field}`` attributes — as a list
    of ``{field: value}`` dicts in index order."""
    head = prefix + "."
    if not any(key.startswith(head) for key in attrs):  # most spans: none (a cheap test first)
        return []
    pattern = _index_pattern(prefix, kind, fields)
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        m = pattern.match(key)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [found[i] for i in sorted(found)]


def _openinference_messages(span: Span, prefix: str) -> list[dict[str, Any]]:
    """``llm.input_messages.{i}.message.*`` (role, content or contents, tool_calls,
    tool_call_id) as messages."""
    out = []
    for fields in _indexed(span.attrs, prefix, "message", ".+"):
        role = fields.get("role") if isinstance(fields.get("role"), str) else ""
        contents = [c.get("text") for c in _indexed(fields, "contents", "message_content", "type|text")
                    if c.get("type", "text") == "text"]  # fmt: skip
        calls = [{"id": c.get("id"), "function": {"name": c.get("function.name"),
                                                  "arguments": c.get("function.arguments")}}
                 for c in _indexed(fields, "tool_calls", "tool_call", ".+")]  # fmt: skip
        payload = {"content": fields.get("content", contents), "tool_calls": calls,
                   "tool_call_id": fields.get("tool_call_id")}  # fmt: skip
        out.append({"role": role, "parts": _openai_parts(role, payload)})
    return out


def _sources(span: Span, which: str) -> Iterator[list[Any]]:
    """The span's messages of one side (``input`` or ``output``), from each source in order
    (each read only when the ones before it did not answer)."""
    yield _gen_ai_messages(span, f"gen_ai.{which}.messages")
    yield _event_messages(span, which)
    yield _openinference_messages(span, f"llm.{which}_messages")


def _messages(span: Span, which: str) -> list[Any]:
    """The messages of the first source that recorded any."""
    return next((m for m in _sources(span, which) if m), [])


def _value_text(span: Span, side: str) -> str | None:
    """``input.value`` / ``output.value`` as text; None when its mime type is JSON (on a
    generation span that is the request or response body, not the user's or model's text)."""
    if span.attrs.get(f"{side}.mime_type") == "application/json":
        return None
    return recorded(span.attrs.get(f"{side}.value"))


def output_text(span: Span) -> str | None:
    """What a generation span answered: the first output message with text (sources above),
    else ``output.value`` unless it is JSON."""
    for messages in _sources(span, "output"):
        for message in messages:
            if (found := _message_text(message)) is not None:
                return found
    return _value_text(span, "output")


def input_text(span: Span) -> str | None:
    """The user's input as a generation span saw it: the last user message with text
    (sources above), else ``input.value`` unless it is JSON."""
    for messages in _sources(span, "input"):
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        for message in reversed(users):
            if (found := _message_text(message)) is not None:
                return found
    return _value_text(span, "input")


def _json_value(value: Any) -> Any:
    """A string holding a JSON object or array, parsed; anything else as it is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a trace's generation spans recorded of the conversation's content."""

    captured: bool
    """A generation span recorded the text of its input messages (or a tool result): content
    capture was on."""
    system: str | None
    """The first generation span's system instructions."""
    tool_calls: list[dict[str, Any]]
    """Tool calls the model asked for, each with the result the app sent back:
    ``toolCallId``, ``toolName``, ``arguments``, ``result`` (JSON values when they hold JSON)."""
    results: dict[str, Any]
    """Tool call id → the result the app sent back, as recorded."""


def _has_content(messages: list[Any]) -> bool:
    """Some message text or tool result was recorded (tool call names and arguments are
    recorded with capture off, or with OpenInference's text hidden)."""
    return any(recorded(p.get("content")) or p.get("response") is not None for m in messages for p in _parts(m))


def _system_text(span: Span, inputs: list[Any]) -> str | None:
    """``gen_ai.system_instructions`` (parts), else the system messages' text, one per line."""
    raw = _gen_ai_attr(span, "gen_ai.system_instructions")
    if isinstance(raw, str) and raw.lstrip()[:1] == "[":  # parts as JSON, or plain text that opens with "["
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    if isinstance(raw, str):  # plain text
        return raw or None
    if raw is not None:
        return _message_text({"parts": _gen_ai_messages(span, "gen_ai.system_instructions")})
    texts = [_message_text(m) for m in inputs if isinstance(m, Mapping) and m.get("role") in _SYSTEM_ROLES]
    return "\n".join(t for t in texts if t) or None


def conversation(spans: list[Span]) -> Conversation:
    """The conversation content of a trace's generation spans (in start order): whether
    content was captured, the system instructions, and the model's tool calls with the
    results fed back in later requests (one entry per tool call id)."""
    captured, system = False, None
    calls: dict[Any, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    for span in spans:
        try:
            inputs = _messages(span, "input")
            captured = captured or _has_content(inputs)
            system = system or _system_text(span, inputs)
            for part in (p for m in [*inputs, *_messages(span, "output")] for p in _parts(m)):
                call_id = part.get("id") if isinstance(part.get("id"), str) and part.get("id") else None
                if part.get("type") == "tool_call":
                    name = part.get("name") if isinstance(part.get("name"), str) and part.get("name") else None
                    entry = calls.setdefault(call_id or (name, content_hash(part.get("arguments"))),
                                             {"toolCallId": call_id})  # fmt: skip
                    if entry.get("toolName") is None:
                        entry["toolName"] = name
                    if entry.get("arguments") is None:
                        entry["arguments"] = _json_value(part.get("arguments"))
                elif part.get("type") == "tool_call_response" and call_id and part.get("response") is not None:
                    results.setdefault(call_id, part["response"])
                    calls.setdefault(call_id, {"toolCallId": call_id})
        except Unmappable as exc:
            if exc.span is not None:
                raise
            raise Unmappable(exc.reason, span) from exc
    tool_calls = [{k: v for k, v in {**c, "result": _json_value(results.get(c["toolCallId"]))}.items()
                   if v is not None} for c in calls.values()]  # fmt: skip
    return Conversation(captured, system, tool_calls, results)


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
    result = tool_result(span)
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
    """A tool span's result as recorded (``gen_ai.tool.call.result`` or ``output.value``;
    None when OpenInference redacted it)."""
    result = span.attrs.get("gen_ai.tool.call.result", span.attrs.get("output.value"))
    return None if result == REDACTED else result


# -- retrieval ----------------------------------------------------------------------------------


def _flattened_documents(span: Span, prefix: str) -> list[dict[str, Any]]:
    return _indexed(span.attrs, prefix, "document", "id|score|content")


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
        content = recorded(doc.get("content"))
        doc_id = text(doc.get("id"), f"document {i} id")
        if doc_id is None:
            if content is None:
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
        out.append({"id": doc_id, "bin": score_bin, "content": content})
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
