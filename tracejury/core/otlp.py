"""OTLP traces → tracejury v1 traces: pure, one v1 trace per OTLP trace id.

    the spans of one trace (assembled by otlp_assembly from any number of requests)
        │ map_trace                      GenAI semconv / OpenInference → v1 (otlp_genai)
        ▼
    a v1 trace (or Unmappable)           then ingest's validation + quarantine

``map_export_request`` maps one whole ``ExportTraceServiceRequest`` at once (the reference the
tests and benchmarks compare assembled traces with; the receiver stages and assembles instead).

The mapping never invents what v1 requires: a trace that lacks a required field (release,
input and session hashes, model version, prompt version, temperature, max tokens, token
counts, output hash…) or holds a GenAI span that cannot be mapped is reported whole, naming
the field and the span. The few defaults it fills are listed in ``docs/otlp.md`` with the
full attribute table. Trace-level ``tracejury.*`` attributes are looked up on the root span,
then the other spans (by start time), then the resources; when set they win over the
conventions' attributes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tracejury.core import otlp_genai as g
from tracejury.core.otlp_genai import Unmappable
from tracejury.core.otlp_spans import Span, SpanReport, decode_spans
from tracejury.core.trace import SCHEMA_VERSION

__all__ = ["HASHED_IDS", "MODEL_ATTRIBUTES", "TRACEJURY_ATTRIBUTES", "OtlpMapping", "SpanReport", "TraceOrigin",
           "map_export_request", "map_trace"]  # fmt: skip

TRACEJURY_ATTRIBUTES = (
    "tracejury.trace_id", "tracejury.release_id", "tracejury.input_text_hash", "tracejury.session_id_hash",
    "tracejury.channel", "tracejury.locale", "tracejury.session_turn", "tracejury.intent",
    "tracejury.tool_required", "tracejury.model.name", "tracejury.model.version",
    "tracejury.system_prompt_version", "tracejury.temperature", "tracejury.top_p", "tracejury.max_tokens",
    "tracejury.retry_policy_id", "tracejury.tool_schema_version", "tracejury.retrieval_config_version",
    "tracejury.embedding_model_version", "tracejury.judge_rubric_version", "tracejury.input_token_count",
    "tracejury.completion_token_count", "tracejury.truncated", "tracejury.stop_reason",
    "tracejury.fallback_used", "tracejury.history_length", "tracejury.dropped_item_count",
    "tracejury.retry_count", "tracejury.rate_limited", "tracejury.raw_model_text_hash",
    "tracejury.final_answer_hash", "tracejury.format_valid", "tracejury.format_error_code",
    "tracejury.retrieval.used_in_final_answer", "tracejury.rerank_config_id", "tracejury.query_rewrite_hash",
    "tracejury.keep_sample", "tracejury.stage", "tracejury.tool.schema_version", "tracejury.tool.args_hash",
    "tracejury.tool.response_hash", "tracejury.tool.status", "tracejury.retrieval.score_bins",
    "tracejury.guardrail.rule_id", "tracejury.guardrail.decision", "tracejury.guardrail.reason_code",
)  # fmt: skip
"""Every ``tracejury.*`` attribute the mapping reads (``docs/otlp.md`` documents each)."""

_MODEL_NAME = ("gen_ai.request.model", "llm.request.model_name", "llm.model_name",
               "gen_ai.response.model", "llm.response.model_name")  # fmt: skip
MODEL_ATTRIBUTES = _MODEL_NAME + ("embedding.model_name",)
"""Attributes naming a model (config: never redacted)."""
HASHED_IDS = ("session.id", "gen_ai.conversation.id")
"""Attributes the mapping only hashes (``req.sessionIdHash``): hashed as soon as they are staged."""
_MODEL_VERSION = ("gen_ai.response.model", "llm.response.model_name", "llm.model_name")
_MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_LENGTH_REASONS = {"length", "max_tokens", "max_output_tokens"}
_RATE_LIMIT = ("429", "ratelimit", "rate_limit", "resource_exhausted")


@dataclass(frozen=True, slots=True)
class TraceOrigin:
    """Where a mapped trace came from, to name it if ingest refuses it."""

    trace_id: str
    """OTLP trace id (hex)."""
    root_span_id: str
    root_name: str
    spans: int
    """Spans the trace was mapped from."""


@dataclass(frozen=True, slots=True)
class OtlpMapping:
    """The result of mapping one export request."""

    traces: list[dict[str, Any]]
    """v1 trace documents, in the order their trace ids first appear."""
    origins: list[TraceOrigin]
    """Aligned with ``traces``."""
    reports: list[SpanReport]
    """Spans and traces that are not (fully) in ``traces``, and why."""
    span_count: int
    """Spans in the request."""

    @property
    def rejected_spans(self) -> int:
        """Spans whose content is in no trace (ignored non-GenAI spans not counted)."""
        return sum(r.rejected_spans for r in self.reports)


def _coalesce(*values: Any) -> Any:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


class _View:
    """One OTLP trace's spans with its root, and the trace-level attribute lookup."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
        roots = [s for s in self.spans if s.parent_id is None]
        if not roots:
            raise Unmappable("root span missing: every span has a parent that is not in the trace", self.spans[0])
        if len(roots) > 1:
            raise Unmappable(f"{len(roots)} root spans in one trace", roots[1])
        self.root = roots[0]
        others = [s for s in self.spans if s is not self.root]
        sources: list[Mapping[str, Any]] = [self.root.attrs, *(s.attrs for s in others), self.root.resource]
        sources += [s.resource for s in others if s.resource is not self.root.resource]
        # each key's first recorded value, in that order: one dict lookup per field afterwards
        self._first: dict[str, Any] = {}
        for attrs in reversed(sources):
            self._first.update((k, v) for k, v in attrs.items() if v is not None)

    def get(self, key: str, conv: Callable[[Any, str], Any] = g.text) -> Any:
        """The first value of ``key`` (root span, other spans, root resource, other resources),
        converted by ``conv`` (default: a string)."""
        value = self._first.get(key)
        return None if value is None else conv(value, key)


class _Generation:
    """Reads config fields: a trace-level ``tracejury.*`` attribute, else the final generation
    span's attributes, else its OpenInference ``llm.invocation_parameters``."""

    def __init__(self, view: _View, final: Span | None) -> None:
        self.view, self.final = view, final
        self.params = g.invocation_parameters(final) if final else {}

    def pick(self, conv: Callable[[Any, str], Any], override: str, keys: tuple[str, ...] = (),
             params: tuple[str, ...] = ()) -> Any:  # fmt: skip
        """The first recorded value, converted by ``conv``; None when none is recorded."""
        value = self.view.get(override, conv)
        if value is not None:
            return value
        attrs = self.final.attrs if self.final else {}
        for key in keys:
            if attrs.get(key) is not None:
                return conv(attrs[key], key)
        for key in params:
            if self.params.get(key) is not None:
                return conv(self.params[key], f"llm.invocation_parameters.{key}")
        return None

    def need(self, field: str, conv: Callable[[Any, str], Any], override: str, keys: tuple[str, ...] = (),
             params: tuple[str, ...] = ()) -> Any:  # fmt: skip
        """``pick``, or ``Unmappable`` naming the field and where it could come from."""
        value = self.pick(conv, override, keys, params)
        if value is None:
            where = f" or record {' / '.join(keys)} on the final generation span" if keys else ""
            raise Unmappable(f"missing {field}: set {override}{where}", self.final)
        return value


def _required(value: Any, field: str, how: str, span: Span | None = None) -> Any:
    if value is None:
        raise Unmappable(f"missing {field}: {how}", span)
    return value


def _timestamp(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(ns: int) -> int:
    return round(ns / 1e6)


def _union_ms(intervals: list[tuple[int, int]]) -> int:
    """Wall time covered by possibly overlapping (start, end) intervals, in ms."""
    total, cur_start, cur_end = 0, 0, -1
    for start, end in sorted(intervals):
        if start > cur_end:
            total += max(0, cur_end - cur_start)
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return _ms(total + max(0, cur_end - cur_start))


def _hash(value: Any) -> str | None:
    return g.content_hash(value) if value is not None else None


def _with_span(span: Span, read: Callable[[], Any]) -> Any:
    """``read()``, attributing an ``Unmappable`` without a span to ``span``."""
    try:
        return read()
    except Unmappable as exc:
        if exc.span is None:
            raise Unmappable(exc.reason, span) from exc
        raise


def _classify(view: _View) -> tuple[dict[str, list[Span]], list[SpanReport], dict[str, list[tuple[int, int]]]]:
    """Spans by kind, reports of ignored spans, and each latency stage's intervals."""
    by_kind: dict[str, list[Span]] = defaultdict(list)
    ignored: list[SpanReport] = []
    stages: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for span in view.spans:
        kind, why = g.span_kind(span)
        stage = _with_span(span, lambda s=span: g.text(s.attrs.get("tracejury.stage"), "tracejury.stage"))
        if kind is not None:
            by_kind[kind].append(span)
            stage = stage or g.STAGE_OF_KIND.get(kind)
        elif stage is None and span is not view.root:
            ignored.append(SpanReport(span.trace_id, span.span_id, span.name, str(why), rejected_spans=0))
        if stage is not None:
            stages[stage].append((span.start_ns, span.end_ns))
    return by_kind, ignored, stages


def _prompt_version(gen: _Generation, system: str | None) -> str:
    """``tracejury.system_prompt_version`` or OpenInference's template version; else, when the
    system instructions were captured, their hash (the text names its own version)."""
    version = gen.pick(g.text, "tracejury.system_prompt_version", ("llm.prompt_template.version",))
    return _required(_coalesce(version, _hash(system)), "config.systemPromptVersion",
                     "set tracejury.system_prompt_version or record llm.prompt_template.version on the final "
                     "generation span, or capture the system instructions", gen.final)  # fmt: skip


def _config(view: _View, gen: _Generation, embeddings: list[Span], system: str | None) -> dict[str, Any]:
    embedding_model = next(
        (m for s in embeddings for k in ("gen_ai.response.model", "gen_ai.request.model", "embedding.model_name")
         if (m := g.text(s.attrs.get(k), k)) is not None), None)  # fmt: skip
    return {
        "model": {
            "name": gen.need("config.model.name", g.text, "tracejury.model.name", _MODEL_NAME),
            "version": gen.need("config.model.version", g.text, "tracejury.model.version", _MODEL_VERSION),
        },
        "systemPromptVersion": _prompt_version(gen, system),
        "temperature": gen.need("config.temperature", g.number, "tracejury.temperature",
                                ("gen_ai.request.temperature",), ("temperature",)),
        "maxTokens": gen.need("config.maxTokens", g.integer, "tracejury.max_tokens",
                              ("gen_ai.request.max_tokens",), _MAX_TOKENS_PARAMS),
        "topP": gen.pick(g.number, "tracejury.top_p", ("gen_ai.request.top_p",), ("top_p",)),
        "retryPolicyId": view.get("tracejury.retry_policy_id"),
        "toolSchemaVersion": view.get("tracejury.tool_schema_version"),
        "retrievalConfigVersion": view.get("tracejury.retrieval_config_version"),
        "embeddingModelVersion": _coalesce(view.get("tracejury.embedding_model_version"), embedding_model),
        "judgeRubricVersion": view.get("tracejury.judge_rubric_version"),
    }  # fmt: skip


def _tokens(view: _View, gens: list[Span], which: str) -> int:
    """A token count summed over the generation spans; every one of them must report it."""
    override = view.get(f"tracejury.{which}_token_count", g.integer)
    if override is not None:
        return override
    keys = ("gen_ai.usage.input_tokens", "llm.token_count.prompt") if which == "input" else (
        "gen_ai.usage.output_tokens", "llm.token_count.completion")  # fmt: skip
    total = 0
    for span in gens:
        count = _with_span(span, lambda s=span: g.integer(_coalesce(*(s.attrs.get(k) for k in keys)), keys[0]))
        if count is None:
            field = "runtime.inputTokenCount" if which == "input" else "runtime.completionTokenCount"
            raise Unmappable(f"missing {field}: no {keys[0]} or {keys[1]} on this generation span", span)
        total += count
    if total > g.INT64_MAX:
        raise Unmappable(f"{keys[0]} summed over generation spans exceeds a 64-bit integer")
    return total


def _generation_runtime(view: _View, gens: list[Span], final: Span | None) -> dict[str, Any]:
    reasons = [r.lower() for s in gens for r in g.finish_reasons(s)]
    final_reasons = g.finish_reasons(final) if final else []
    rate_limited = any(k in str(s.attrs.get("error.type", "")).lower() for s in gens for k in _RATE_LIMIT)
    return {
        "inputTokenCount": _tokens(view, gens, "input"),
        "completionTokenCount": _tokens(view, gens, "completion"),
        "truncated": _coalesce(view.get("tracejury.truncated", g.flag), any(r in _LENGTH_REASONS for r in reasons)),
        "stopReason": _coalesce(view.get("tracejury.stop_reason"), final_reasons[0] if final_reasons else None),
        "rateLimited": _coalesce(view.get("tracejury.rate_limited", g.flag), True if rate_limited else None),
    }


def _retrieval(
    view: _View, retrievals: list[Span], rerankers: list[Span]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``evidence.retrieval`` and its documents: the last reranker's output documents when a
    reranker recorded them, else the documents of every retrieval span in start order (the
    first occurrence of an id kept)."""
    seen: dict[str, dict[str, Any]] = {}
    reranked = _with_span(rerankers[-1], lambda: g.documents(rerankers[-1])) if rerankers else []
    found = reranked or [d for s in retrievals for d in _with_span(s, lambda s=s: g.documents(s))]
    for doc in found:
        seen.setdefault(doc["id"], doc)
    docs = list(seen.values())
    retrieval = {
        "empty": not docs,
        "topKDocIds": [d["id"] for d in docs],
        "topKScoreBins": [d["bin"] for d in docs],
        "usedInFinalAnswer": _coalesce(view.get("tracejury.retrieval.used_in_final_answer", g.flag), bool(docs)),
        "reranked": True if rerankers else None,
        "rerankConfigId": view.get("tracejury.rerank_config_id"),
        "queryRewriteHash": view.get("tracejury.query_rewrite_hash"),
    }
    return _compact(retrieval), docs


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def map_trace(spans: list[Span]) -> tuple[dict[str, Any], list[SpanReport]]:
    """The v1 trace of one OTLP trace's spans, and reports of the spans it ignored.

    Raises ``Unmappable`` (with the span at fault, the root for trace-level fields) when the
    trace lacks something v1 requires or holds a GenAI span that cannot be mapped.
    """
    view = _View(spans)
    return _with_span(view.root, lambda: _map(view))


def _map(view: _View) -> tuple[dict[str, Any], list[SpanReport]]:
    root = view.root
    by_kind, ignored, stages = _classify(view)
    gens = by_kind[g.GENERATION]
    final = max(gens, key=lambda s: (s.end_ns, s.start_ns)) if gens else None
    gen = _with_span(final, lambda: _Generation(view, final)) if final else _Generation(view, None)
    convo = g.conversation(gens)
    config = _config(view, gen, by_kind[g.EMBEDDING], convo.system)
    tools = [_with_span(s, lambda s=s: g.tool_call(s, config["toolSchemaVersion"])) for s in by_kind[g.TOOL]]
    retrieval, docs = None, []
    if by_kind[g.RETRIEVAL] or by_kind[g.RERANK]:
        retrieval, docs = _retrieval(view, by_kind[g.RETRIEVAL], by_kind[g.RERANK])
    guardrails = [_compact(_with_span(s, lambda s=s: g.guardrail(s))) for s in by_kind[g.GUARDRAIL]]

    raw_text = _with_span(final, lambda: g.output_text(final)) if final else None
    root_output = g.recorded(root.attrs.get("output.value")) if root is not final else None
    gen_inputs = (_with_span(s, lambda s=s: g.input_text(s)) for s in gens)
    # A generation root's JSON input.value is the request body (OpenInference), not the user's text.
    root_is_request = root in gens and root.attrs.get("input.mime_type") == "application/json"
    root_input = None if root_is_request else g.recorded(root.attrs.get("input.value"))
    user_text = _coalesce(root_input, next((t for t in gen_inputs if t), None))
    for call in tools:  # a tool span without its result: the result fed back under its call id
        result = convo.results.get(call.get("toolCallId"))
        if "responseHash" not in call and result is not None:
            call["responseHash"] = g.content_hash(result)
    raw_hash = _required(_coalesce(view.get("tracejury.raw_model_text_hash"), _hash(raw_text)),
                         "outputs.rawModelTextHash", "set tracejury.raw_model_text_hash or record "
                         "gen_ai.output.messages / output.value on the final generation span", final)  # fmt: skip
    # no session recorded: the trace is its own session (clustering by session is then a no-op)
    session = _coalesce(view.get("tracejury.session_id_hash"), g.id_hash(view.get("session.id")),
                        g.id_hash(view.get("gen_ai.conversation.id")),
                        _hash(f"otlp-trace:{root.trace_id}"))  # fmt: skip
    release = _coalesce(view.get("tracejury.release_id"), view.get("service.version"))
    format_error = view.get("tracejury.format_error_code")

    trace: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "traceId": g.text(root.attrs.get("tracejury.trace_id"), "tracejury.trace_id") or root.trace_id,
        "releaseId": _required(release, "releaseId", "set tracejury.release_id or the resource's service.version"),
        "timestamp": _timestamp(root.start_ns),
        "req": _compact({
            "inputTextHash": _required(_coalesce(view.get("tracejury.input_text_hash"), _hash(user_text)),
                                       "req.inputTextHash", "set tracejury.input_text_hash or record input.value "
                                       "on the root span or gen_ai.input.messages"),
            "sessionIdHash": session,
            "channel": view.get("tracejury.channel"),
            "locale": view.get("tracejury.locale"),
            "sessionTurn": view.get("tracejury.session_turn", g.integer),
            "intent": view.get("tracejury.intent"),
            "toolRequired": view.get("tracejury.tool_required", g.flag),
        }),
        "config": _compact(config),
        "evidence": _compact({"retrieval": retrieval, "tool": tools}),
        "runtime": _compact({
            **_generation_runtime(view, gens, final),
            "latencyMs": _ms(root.duration_ns),
            "stageLatencyMs": {stage: _union_ms(iv) for stage, iv in sorted(stages.items())},
            "guardrails": guardrails,
            "fallbackUsed": _coalesce(view.get("tracejury.fallback_used", g.flag), False),
            "historyLength": view.get("tracejury.history_length", g.integer),
            "droppedItemCount": view.get("tracejury.dropped_item_count", g.integer),
            "retryCount": view.get("tracejury.retry_count", g.integer),
        }),
        "outputs": _compact({
            "rawModelTextHash": raw_hash,
            "finalAnswerHash": _coalesce(view.get("tracejury.final_answer_hash"), _hash(root_output), raw_hash),
            "formatValid": _coalesce(view.get("tracejury.format_valid", g.flag), format_error is None),
            "formatErrorCode": format_error,
        }),
    }  # fmt: skip
    if _coalesce(view.get("tracejury.keep_sample", g.flag), convo.captured):
        trace["sample"] = _sample(_coalesce(root_output, raw_text), user_text, docs, by_kind[g.TOOL], tools, convo)
    return trace, ignored


def _sample(final_answer: str | None, user_text: str | None, docs: list[dict[str, Any]],
            tool_spans: list[Span], tools: list[dict[str, Any]], convo: g.Conversation) -> dict[str, Any]:  # fmt: skip
    """Raw text: kept when content capture was on (``convo.captured``) unless the trace says
    ``tracejury.keep_sample=false``, and whenever it says ``true``."""
    snapshots = []
    for span, call in zip(tool_spans, tools, strict=True):
        result = _coalesce(g.tool_result(span), convo.results.get(call.get("toolCallId")))
        if isinstance(result, str):
            try:
                result = orjson.loads(result)
            except orjson.JSONDecodeError:
                continue
        if isinstance(result, dict) and "responseHash" in call:
            g.content_hash(result)  # raises Unmappable when too deep to store
            snapshots.append({"responseHash": call["responseHash"], "snapshot": result})
    return _compact({
        "inputText": user_text,
        "finalAnswer": final_answer,
        "systemInstructions": convo.system,
        "retrievedChunks": [{"docId": d["id"], "text": d["content"]} for d in docs if d["content"]],
        "toolSnapshots": snapshots,
        "modelToolCalls": convo.tool_calls or None,
    })  # fmt: skip


def map_export_request(request: Any) -> OtlpMapping:
    """Map an OTLP ``ExportTraceServiceRequest`` (JSON mapping, as a dict) to v1 traces.

    Spans are grouped by trace id across all ``resourceSpans``. Raises ``InputError`` when the
    request's structure is not OTLP's; everything else that cannot be mapped is reported.
    """
    spans, reports = decode_spans(request)
    span_count = len(spans) + len(reports)  # each unreadable span is one report
    groups: dict[str, dict[str, Span]] = {}
    for span in spans:
        group = groups.setdefault(span.trace_id, {})
        if span.span_id in group:
            reason = "duplicate spanId in this request; the first one is used"
            reports.append(SpanReport(span.trace_id, span.span_id, span.name, reason, rejected_spans=1))
            continue
        group[span.span_id] = span
    traces, origins = [], []
    for trace_id, group in groups.items():
        try:
            trace, ignored = map_trace(list(group.values()))
        except Unmappable as exc:
            at = exc.span
            reports.append(SpanReport(trace_id, at.span_id if at else None, at.name if at else "",
                                      f"trace not mapped: {exc.reason}", rejected_spans=len(group)))  # fmt: skip
            continue
        root = next(s for s in group.values() if s.parent_id is None)
        traces.append(trace)
        origins.append(TraceOrigin(trace_id, root.span_id, root.name, len(group)))
        reports.extend(ignored)
    return OtlpMapping(traces=traces, origins=origins, reports=reports, span_count=span_count)
