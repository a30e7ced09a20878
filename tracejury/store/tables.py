"""SQLModel tables. Every column the pipeline queries is a real column; the trace body is
kept whole (canonical JSON) so judges replay exactly the evidence the runtime saw."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "ApiToken",
    "Batch",
    "BatchChunk",
    "BatchTrace",
    "EvaluationRow",
    "EvaluatorVersion",
    "GateOutcome",
    "GateRun",
    "JudgeCacheEntry",
    "JudgeClaim",
    "JudgeConcurrency",
    "OtlpAssembled",
    "OtlpCounter",
    "OtlpFragment",
    "OtlpStagedTrace",
    "QuarantinedLine",
    "ReviewItem",
    "ReviewLabel",
    "ReviewLeftOut",
    "StoredTrace",
    "TraceConflict",
    "TraceStage",
]


BIGINT_ID = BigInteger().with_variant(Integer, "sqlite")
"""Primary keys of the tables that grow with traffic: 64-bit on PostgreSQL (a 32-bit serial
runs out after ~25 days at 1,000 judge calls/s); SQLite's INTEGER PRIMARY KEY is 64-bit already."""


class StoredTrace(SQLModel, table=True):
    """One ingested trace: its ids, segment key, weak-signal facts and canonical body."""

    __tablename__ = "trace"
    __table_args__ = (
        Index("ix_trace_release_segment", "release_id", "segment_key"),
        Index("ix_trace_release_ts", "release_id", "ts"),
    )

    trace_id: str = Field(primary_key=True, max_length=256)
    """The trace's ``traceId``."""
    release_id: str = Field(max_length=256)
    """The trace's ``releaseId``."""
    ts: datetime
    """The trace's ``timestamp``, in UTC (naive)."""
    segment_key: str
    """Canonical segment key computed at ingest."""
    segmentation_version: str
    """Version of the segmentation config that made ``segment_key``."""
    content_hash: str = Field(max_length=64)
    """sha256 of the canonical JSON body; tells duplicates from conflicts."""
    session_id_hash: str
    """``req.sessionIdHash``, for clustering by session."""
    latency_ms: int
    input_tokens: int
    completion_tokens: int
    truncated: bool
    format_invalid: bool
    fallback_used: bool
    rag_on: bool
    retrieval_empty: bool
    tool_required: bool | None = None
    tool_called: bool
    tool_error: bool
    tool_timeout: bool
    guard_block: bool
    negative_feedback: bool
    has_sample: bool
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """The trace as canonical JSON (sorted keys), extra fields included."""
    ingested_at: datetime
    """When ingest stored it (UTC)."""


class TraceStage(SQLModel, table=True):
    """Latency of one runtime stage of one trace (``runtime.stageLatencyMs``)."""

    __tablename__ = "trace_stage"

    trace_id: str = Field(primary_key=True, foreign_key="trace.trace_id", max_length=256)
    stage: str = Field(primary_key=True, max_length=64)
    latency_ms: int


class QuarantinedLine(SQLModel, table=True):
    """An input line that was set aside, with where it came from and why."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "line_no", "raw_hash", name="uq_quarantine_line"),)

    id: int | None = Field(default=None, sa_column=Column(BIGINT_ID, primary_key=True))
    source: str
    """File path, ``-`` for stdin, or ``http`` for the API."""
    line_no: int
    """1-based line number in the source."""
    trace_id: str | None = None
    """The line's ``traceId`` when it had a readable one."""
    json_path: str
    """JSON path of the first error (``$`` for the whole line)."""
    message: str
    """One-line reason."""
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """The line as received, so nothing is lost."""
    raw_hash: str = Field(max_length=64)
    """sha256 of ``raw``: the same bad line ingested twice is set aside once."""
    at: datetime


class TraceConflict(SQLModel, table=True):
    """A different trace that arrived under a stored ``traceId``; the stored one was kept."""

    __tablename__ = "trace_conflict"
    __table_args__ = (UniqueConstraint("trace_id", "incoming_hash", name="uq_conflict_trace_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    trace_id: str = Field(max_length=256, index=True)
    source: str
    line_no: int
    stored_hash: str = Field(max_length=64)
    incoming_hash: str = Field(max_length=64)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """The incoming trace's canonical JSON."""
    at: datetime


class Batch(SQLModel, table=True):
    """A scoring batch: which traces were judged by which evaluators, under which config."""

    __tablename__ = "batch"

    id: str = Field(primary_key=True, max_length=64)
    release_id: str = Field(max_length=256, index=True)
    kind: str = Field(max_length=16)
    """``inline`` (``tracejury score``) or ``queued`` (Celery)."""
    state: str = Field(max_length=16)
    """``running``, ``done`` or ``failed``."""
    reason: str | None = None
    """Why it failed."""
    config: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """Frozen config snapshot (JSON): evaluator versions and fingerprints, judge profiles."""
    sampled: int = 0
    """Traces selected."""
    created_at: datetime
    finished_at: datetime | None = None
    judge_models: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    """JSON ``{evaluator: [models the judge endpoint reported]}``, summed up when the batch ends."""


class EvaluationRow(SQLModel, table=True):
    """One evaluator's result on one trace in one batch (``tracejury.core.evaluation``)."""

    __tablename__ = "evaluation"
    __table_args__ = (
        UniqueConstraint("batch_id", "trace_id", "evaluator_id", "evaluator_version", name="uq_evaluation"),
        Index("ix_evaluation_evaluator_status", "evaluator_id", "status"),
        Index("ix_evaluation_trace", "trace_id"),
        # gates: exactly the columns an arm's aggregation reads, equality columns first, then
        # segment key, status and passed (grouped, seeked), then trace_ts (window ranges)
        Index("ix_evaluation_gate_cover", "evaluator_id", "release_id", "batch_id", "evaluator_version",
              "segment_key", "status", "passed", "trace_ts", "weight"),  # fmt: skip
        # the newest evaluation of an evaluator in a release: which batch an arm read until gates
        # read the newest *done* batch (from the batch table); no query needs it now, a later
        # migration may drop it
        Index("ix_evaluation_release_latest", "evaluator_id", "release_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BIGINT_ID, primary_key=True))
    batch_id: str = Field(foreign_key="batch.id", max_length=64)
    trace_id: str = Field(foreign_key="trace.trace_id", max_length=256)
    evaluator_id: str = Field(max_length=128)
    evaluator_version: str = Field(max_length=64)
    evaluator_fingerprint: str = Field(max_length=80)
    evaluator_kind: str = Field(max_length=16)
    status: str = Field(max_length=24)
    label: str | None = None
    passed: bool | None = None
    score: float | None = None
    confidence: float | None = None
    rationale: str | None = None
    failure_kind: str | None = Field(default=None, max_length=32)
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    judge_profile: str | None = None
    judge_model: str | None = None
    evidence_hash: str = Field(max_length=80)
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    """USD spent on this evaluation's judge calls (None: unpriced or no usage reported)."""
    saved_usd: float | None = None
    """USD its cached verdicts would have cost."""
    cached: bool = False
    sample_labels: str | None = None
    """Self-consistency labels, comma-separated."""
    release_id: str | None = Field(default=None, max_length=256)
    """The trace's release, copied at write time so gates aggregate without a join."""
    segment_key: str | None = None
    """The trace's segment key (copied, as ``release_id``)."""
    trace_ts: datetime | None = None
    """The trace's timestamp (copied: windows cut by it)."""
    weight: float = 1.0
    """1 / inclusion probability of the trace in its batch (1 when every trace was scored)."""
    created_at: datetime


class JudgeCacheEntry(SQLModel, table=True):
    """A judge verdict keyed by what determines it: the same evidence under the same rubric
    and model is never judged twice."""

    __tablename__ = "judge_cache"

    model: str = Field(primary_key=True, max_length=128)
    evaluator_fingerprint: str = Field(primary_key=True, max_length=80)
    evidence_hash: str = Field(primary_key=True, max_length=80)
    sample_index: int = Field(primary_key=True)
    label: str
    rationale: str
    confidence: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: datetime


class JudgeClaim(SQLModel, table=True):
    """A judge call in flight in some worker process, by cache key: another process about to
    ask the same question waits for that call's verdict in ``judge_cache`` instead (single
    flight across workers, ``workers/flight.py``). A claim whose process died expires."""

    __tablename__ = "judge_claim"

    key: str = Field(primary_key=True, max_length=64)
    """sha256 (hex) of the cache key: (model, rubric fingerprint, evidence hash, sample)."""
    owner: str = Field(max_length=256)
    """The worker process (host:pid) making the call."""
    done: bool = False
    """The call ended with a verdict, in the cache now (kept a minute: a later asker reads
    the cache instead of calling; a failed call's claim is deleted)."""
    expires_at: datetime = Field(index=True)


class EvaluatorVersion(SQLModel, table=True):
    """Every (evaluator, version) the store has seen, with its fingerprint: changed content
    under an unchanged version is refused."""

    __tablename__ = "evaluator_version"

    evaluator_id: str = Field(primary_key=True, max_length=128)
    version: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(max_length=80)
    first_seen: datetime


class BatchTrace(SQLModel, table=True):
    """A trace sampled into a batch, with its inclusion probability and chunk."""

    __tablename__ = "batch_trace"
    __table_args__ = (Index("ix_batch_trace_chunk", "batch_id", "chunk_no"),)

    batch_id: str = Field(primary_key=True, foreign_key="batch.id", max_length=64)
    trace_id: str = Field(primary_key=True, foreign_key="trace.trace_id", max_length=256)
    inclusion_prob: float
    """p_i: the probability this trace had of being sampled (estimates weight by 1/p_i)."""
    chunk_no: int


class BatchChunk(SQLModel, table=True):
    """One unit of queued work: a chunk of a batch's traces, with a lease while it runs."""

    __tablename__ = "batch_chunk"

    batch_id: str = Field(primary_key=True, foreign_key="batch.id", max_length=64)
    chunk_no: int = Field(primary_key=True)
    state: str = Field(max_length=16)
    """``pending``, ``running``, ``done`` or ``failed``."""
    size: int
    attempts: int = 0
    """Times a worker claimed it."""
    lease_until: datetime | None = None
    """While running: the worker's lease; renewed by its heartbeat, expired = redo."""
    worker: str | None = None
    error: str | None = None
    updated_at: datetime


class ReviewLeftOut(SQLModel, table=True):
    """Escalated judgments a batch's review budget left out, per rubric and reason: what
    ``/metrics`` sums without reading every batch's config (which keeps the same counts in its
    escalation record, for ``batch status``). A rerun's escalation replaces its batch's rows."""

    __tablename__ = "review_left_out"

    batch_id: str = Field(primary_key=True, foreign_key="batch.id", max_length=64)
    evaluator_id: str = Field(primary_key=True, max_length=128)
    reason: str = Field(primary_key=True, max_length=32)
    n: int


class GateRun(SQLModel, table=True):
    """One ``gate run``: the release, its baseline, the overall decision."""

    __tablename__ = "gate_run"

    id: str = Field(primary_key=True, max_length=64)
    release_id: str = Field(max_length=256, index=True)
    decision: str = Field(max_length=24)
    config_hash: str = Field(max_length=80)
    """sha256 of the gate specs evaluated."""
    created_at: datetime


class GateOutcome(SQLModel, table=True):
    """One gate's outcome for one segment group in one run, with its audit trail."""

    __tablename__ = "gate_outcome"
    __table_args__ = (Index("ix_gate_outcome_gate_segment", "gate_id", "segment"),)

    run_id: str = Field(primary_key=True, foreign_key="gate_run.id", max_length=64)
    gate_id: str = Field(primary_key=True, max_length=128)
    segment: str = Field(primary_key=True)
    decision: str = Field(max_length=24)
    reason: str
    audit: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """JSON: spec, baseline kind and release, windows, counts and weights per arm, estimate,
    interval, p-value, correction and family size, margin, min samples, streak, versions,
    and the inputs that replay the decision."""


class ApiToken(SQLModel, table=True):
    """An API token: only its sha256 is stored; the token itself is shown once at creation."""

    __tablename__ = "api_token"
    __table_args__ = (Index("ux_api_token_name", "name", unique=True),)

    id: str = Field(primary_key=True, max_length=32)
    """Public id of the token (its first characters), to name it in lists and revocations."""
    token_hash: str = Field(max_length=64, unique=True)
    """sha256 hex of the whole token."""
    role: str = Field(max_length=16)
    """``ingest``, ``reviewer`` or ``admin``."""
    name: str | None = None
    """Who or what the token is for: the reviewer it acts as (unique; never ``token:…``)."""
    created_at: datetime
    revoked_at: datetime | None = None


class ReviewItem(SQLModel, table=True):
    """A (trace, rubric) sent to people: why, how urgent, and where it stands in the queue.
    One per (trace, evaluator): escalation never enqueues the same pair twice."""

    __tablename__ = "review_item"
    __table_args__ = (
        UniqueConstraint("trace_id", "evaluator_id", name="uq_review_item"),
        Index("ix_review_item_state_priority", "state", "priority", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trace_id: str = Field(foreign_key="trace.trace_id", max_length=256)
    evaluator_id: str = Field(max_length=128)
    evaluator_version: str = Field(max_length=64)
    batch_id: str | None = Field(default=None, foreign_key="batch.id", max_length=64)
    release_id: str = Field(max_length=256)
    segment_key: str
    reasons: str
    """JSON list of reasons (``low_confidence``, ``samples_disagree``, ``checker_disagrees``,
    ``judge_failed``, ``audit``)."""
    priority: int = 0
    """Higher is reviewed first."""
    evaluation_ids: str
    """JSON list of the evaluation ids behind the escalation."""
    audit_rate: float | None = None
    """Audit items: the probability the audit draw took this scored judgment (the rubric's rate)."""
    inclusion_p: float | None = None
    """Audit items: the trace's probability of being audited, batch p × ``audit_rate``
    (calibration weights its label by the inverse)."""
    state: str = Field(max_length=16)
    """``pending``, ``claimed``, ``labelled`` or ``skipped``."""
    claimed_by: str | None = Field(default=None, max_length=128)
    """The reviewer's name (what the page and ``review show`` display)."""
    claimed_by_token: str | None = Field(default=None, max_length=32)
    """Id of the API token that made the claim (an admin's when it claimed for someone);
    null for a claim made from the CLI."""
    lease_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ReviewLabel(SQLModel, table=True):
    """A reviewer's label on a (trace, rubric). Relabels append; the newest row is the label."""

    __tablename__ = "review_label"
    __table_args__ = (Index("ix_review_label_trace_evaluator", "evaluator_id", "trace_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int | None = Field(default=None, foreign_key="review_item.id")
    trace_id: str = Field(foreign_key="trace.trace_id", max_length=256)
    evaluator_id: str = Field(max_length=128)
    evaluator_version: str = Field(max_length=64)
    reviewer: str = Field(max_length=128)
    """The reviewer's name (what the page and ``review show`` display)."""
    token_id: str | None = Field(default=None, max_length=32)
    """Id of the API token that recorded the label (an admin's when it labelled for the
    reviewer named); null for a label made from the CLI. Audit reads this."""
    label: str = Field(max_length=64)
    passed: bool | None = None
    """Whether ``label`` is a passing label of the rubric (what gates count)."""
    rationale: str | None = None
    created_at: datetime


class OtlpFragment(SQLModel, table=True):
    """What one OTLP request brought of one trace (its spans and log records), staged until
    the sweeper assembles the trace (``tracejury.core.otlp_assembly``)."""

    __tablename__ = "otlp_fragment"
    # ids never reused on SQLite either: quarantined lines name the fragment by its id
    __table_args__ = (Index("ix_otlp_fragment_trace", "trace_id"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, sa_column=Column(BIGINT_ID, primary_key=True))
    trace_id: str = Field(max_length=32)
    """OTLP trace id, 32 hex digits."""
    source: str = Field(max_length=128)
    """``otlp:<token id>``."""
    received_at: float
    """Unix seconds, the receiving process's clock."""
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """The spans and log records as JSON (``otlp_assembly.dump_fragment``)."""


class OtlpStagedTrace(SQLModel, table=True):
    """One staged OTLP trace, summed over its fragments: what the sweeper scans to find the
    ready ones, and what the staging limit counts."""

    __tablename__ = "otlp_staged_trace"

    trace_id: str = Field(primary_key=True, max_length=32)
    has_root: bool
    """Its root span has arrived."""
    first_at: float
    """Unix seconds of its first fragment."""
    last_at: float
    """Unix seconds of its newest fragment."""
    item_count: int
    """Spans plus log records staged."""
    late: bool
    """A fragment arrived after the trace was finished (its tombstone existed)."""
    claimed_until: float | None = None
    """A sweeper is working it out until then (unix seconds); others leave it alone."""


class OtlpAssembled(SQLModel, table=True):
    """A staged trace the sweeper finished (stored, quarantined or expired): a span of it that
    arrives afterwards is late (or a re-sent duplicate), never a second trace. Kept for
    ``TRACEJURY_OTLP_ASSEMBLED_KEEP_S``."""

    __tablename__ = "otlp_assembled"
    __table_args__ = (Index("ix_otlp_assembled_at", "at"),)

    trace_id: str = Field(primary_key=True, max_length=32)
    outcome: str = Field(max_length=16)
    """stored (handed to ingest: stored, or a duplicate or conflict of a stored trace), quarantined
    (unmapped, or refused by ingest) or expired (its root never came)."""
    span_ids: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """JSON list of the span ids it had (and late ones since)."""
    at: float
    """Unix seconds when it was finished."""


class OtlpCounter(SQLModel, table=True):
    """Running totals of the OTLP sweeper for ``/metrics`` (late spans, duplicates…)."""

    __tablename__ = "otlp_counter"

    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(sa_column=Column(BigInteger, nullable=False))


class JudgeConcurrency(SQLModel, table=True):
    """A judge client's concurrency limit as one process last saw it (``/metrics``, ``batch
    status``): each worker process, and ``score``, writes a row per profile about once a second
    while it judges. With a Redis broker the limit is one for all processes (``shared``); with
    the embedded broker each process has its own. A row not updated for a while is stale."""

    __tablename__ = "judge_concurrency"

    holder: str = Field(primary_key=True, max_length=64)
    """The process's limiter (one per process and profile)."""
    profile: str = Field(max_length=128)
    endpoint: str = Field(max_length=512)
    """The ``/chat/completions`` URL the profile calls."""
    shared: bool
    """True: the limit is shared by every process through Redis; false: this process's own."""
    concurrency_limit: int
    """Calls that may be in flight (the adaptive limit, at most the profile's ``max_concurrency``)."""
    in_flight: int
    """This process's calls in flight."""
    updated_at: datetime = Field(index=True)


class SpendLedger(SQLModel, table=True):
    """Judge spend against a cap, shared by every worker through the store (the embedded
    broker's ledger; with Redis the ledger lives in Redis): ``batch:<id>`` and
    ``profile:<name>:<UTC day>``, in nano-dollars (integers: no float drift)."""

    __tablename__ = "spend_ledger"

    key: str = Field(primary_key=True, max_length=200)
    reserved_nusd: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    """Worst cases of calls in flight."""
    spent_nusd: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    """Settled spend."""
    admitted_nusd: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    """Expected cost of a batch's chunks admitted and still running."""
    updated_at: datetime
