"""The trace, wire format v1, as pydantic models for code that wants typed access.

The JSON Schema (``schemas/trace.v1.json``) is the contract that ingest validates against;
these models mirror it. Every model keeps unknown extra fields (forward compatibility).
Ingest itself works on plain dicts for speed; use ``Trace.model_validate(d)`` where typed
access is worth its cost (judges, review views).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Config",
    "Evidence",
    "Feedback",
    "Guardrail",
    "ModelRef",
    "Outputs",
    "Request",
    "Retrieval",
    "RetrievedChunk",
    "Runtime",
    "Sample",
    "ToolCall",
    "ToolSnapshot",
    "Trace",
    "trace_json_schema",
]

SCHEMA_VERSION = "tracejury.trace/v1"
"""The ``schemaVersion`` this code writes and validates."""
SUPPORTED_SCHEMA_VERSIONS = (SCHEMA_VERSION,)
"""Every ``schemaVersion`` ingest accepts."""


@cache
def trace_json_schema() -> dict[str, Any]:
    """The JSON Schema of trace v1, as shipped in this package."""
    raw = resources.files("tracejury.core").joinpath("schemas/trace.v1.json").read_bytes()
    return orjson.loads(raw)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Request(_Open):
    """What was asked, as privacy-safe hashes and coarse labels."""

    inputTextHash: str
    """Hash of the user's input text."""
    sessionIdHash: str
    """Hash of the session id; traces of one session share it."""
    channel: str | None = None
    """Where the request came from (``web``, ``mobile``, …)."""
    locale: str | None = None
    """The user's locale."""
    sessionTurn: int | None = Field(default=None, ge=1)
    """1-based turn number within the session."""
    intent: str | None = None
    """The router's intent label."""
    toolRequired: bool | None = None
    """True when the request can only be answered from a tool."""


class ModelRef(_Open):
    """The model that answered."""

    name: str
    """Model name."""
    version: str
    """Model version."""


class Config(_Open):
    """The versioned runtime config that shaped the request."""

    model: ModelRef
    """Which model answered."""
    systemPromptVersion: str
    """Version of the system prompt."""
    temperature: float
    """Sampling temperature."""
    topP: float | None = None
    """Nucleus sampling mass."""
    maxTokens: int
    """Completion token limit."""
    retryPolicyId: str | None = None
    """Runtime retry policy."""
    toolSchemaVersion: str | None = None
    """Tool schema version the runtime offered."""
    retrievalConfigVersion: str | None = None
    """Retrieval config version."""
    embeddingModelVersion: str | None = None
    """Embedding model version."""
    judgeRubricVersion: str | None = None
    """Rubric version an online judge used, if any."""


class Retrieval(_Open):
    """Retrieval evidence; absent when RAG was off."""

    empty: bool
    """True when retrieval returned nothing."""
    topKDocIds: list[str]
    """Ids of the top-k documents, best first."""
    topKScoreBins: list[int]
    """Score bins 0-9 of the top-k documents, best first."""
    usedInFinalAnswer: bool
    """Whether the answer used retrieved content."""
    reranked: bool | None = None
    """Whether a reranker ran."""
    rerankConfigId: str | None = None
    """Reranker config."""
    queryRewriteHash: str | None = None
    """Hash of the rewritten query."""


class ToolCall(_Open):
    """One tool call the runtime made."""

    toolName: str
    """Tool name."""
    schemaVersion: str
    """Tool schema version."""
    argsHash: str
    """Hash of the call's arguments."""
    status: Literal["success", "timeout", "error"]
    """How the call ended."""
    responseHash: str | None = None
    """Hash of the response; links to ``sample.toolSnapshots``."""
    latencyMs: int | None = Field(default=None, ge=0)
    """Call latency."""


class Evidence(_Open):
    """What the runtime saw: retrieval and tool calls."""

    retrieval: Retrieval | None = None
    """Retrieval evidence, None when RAG was off."""
    tool: list[ToolCall] = []
    """Tool calls in call order."""


class Guardrail(_Open):
    """One guardrail decision."""

    ruleId: str
    """Rule id."""
    decision: Literal["allow", "block", "rewrite"]
    """What the rule decided."""
    reasonCode: str | None = None
    """Why, when the rule says."""


class Runtime(_Open):
    """The context boundary and what happened at run time."""

    truncated: bool
    """Whether context was truncated."""
    inputTokenCount: int = Field(ge=0)
    """Prompt tokens."""
    completionTokenCount: int = Field(ge=0)
    """Completion tokens."""
    latencyMs: int = Field(ge=0)
    """End-to-end latency."""
    stageLatencyMs: dict[str, int] = {}
    """Latency per stage (``retrieval``, ``tool``, ``generation``, ``postprocess``, …)."""
    guardrails: list[Guardrail] = []
    """Guardrail decisions."""
    fallbackUsed: bool
    """Whether a fallback answer path was used."""
    stopReason: str | None = None
    """Why generation stopped."""
    historyLength: int | None = Field(default=None, ge=0)
    """Conversation items in context."""
    droppedItemCount: int | None = Field(default=None, ge=0)
    """Items dropped by truncation."""
    retryCount: int | None = Field(default=None, ge=0)
    """Runtime retries."""
    rateLimited: bool | None = None
    """Whether the runtime hit a rate limit."""


class Outputs(_Open):
    """Output hashes and format validity."""

    rawModelTextHash: str
    """Hash of the raw model text."""
    finalAnswerHash: str
    """Hash of the final answer shown to the user."""
    formatValid: bool
    """Whether the answer met its output format."""
    formatErrorCode: str | None = None
    """Format error code when invalid."""


class Feedback(_Open):
    """One user feedback event."""

    kind: Literal["thumbs_up", "thumbs_down", "handoff", "ticket"]
    """Kind of feedback."""
    at: datetime | None = None
    """When it happened."""


class RetrievedChunk(_Open):
    """Text of one retrieved document (sampled traces only)."""

    docId: str
    """Document id, as in ``evidence.retrieval.topKDocIds``."""
    text: str
    """Redacted chunk text."""


class ToolSnapshot(_Open):
    """A tool response as the runtime saw it (sampled traces only)."""

    responseHash: str
    """Links to ``evidence.tool[].responseHash``."""
    snapshot: dict[str, Any]
    """Redacted response body."""


class Sample(_Open):
    """Redacted raw text, kept only on traces the runtime sampled."""

    inputText: str | None = None
    """The user's input."""
    finalAnswer: str | None = None
    """The final answer."""
    retrievedChunks: list[RetrievedChunk] = []
    """Texts of retrieved documents."""
    toolSnapshots: list[ToolSnapshot] = []
    """Tool responses."""


class Trace(_Open):
    """One production request as the runtime saw it."""

    schemaVersion: Literal["tracejury.trace/v1"]
    """Wire format version."""
    traceId: str
    """Unique id; the idempotency key of ingest."""
    releaseId: str
    """The release that served it."""
    timestamp: datetime
    """When it was served."""
    req: Request
    """The request."""
    config: Config
    """Versioned runtime config."""
    evidence: Evidence = Evidence()
    """Retrieval and tool evidence."""
    runtime: Runtime
    """Runtime flags and measurements."""
    outputs: Outputs
    """Output hashes and validity."""
    feedback: list[Feedback] = []
    """User feedback events."""
    sample: Sample | None = None
    """Redacted raw text, on sampled traces only."""
