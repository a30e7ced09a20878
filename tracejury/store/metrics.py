"""What ``GET /metrics`` reports, read from the store at scrape time: the store is where the
API, the CLI and every worker process write, so one scrape sees all of them (no per-process
registries to merge)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, case, func, select

from tracejury.store import otlp_staging
from tracejury.store.escalation import left_out_totals
from tracejury.store.judge_concurrency import EndpointConcurrency, live
from tracejury.store.tables import (
    BatchChunk,
    EvaluationRow,
    GateOutcome,
    GateRun,
    QuarantinedLine,
    ReviewItem,
    StoredTrace,
)

__all__ = ["LATENCY_BUCKETS_MS", "StoreMetrics", "store_metrics"]

LATENCY_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
"""Upper bounds of the judge call latency histogram (ms); +Inf is added."""


@dataclass
class StoreMetrics:
    """Counts for the metrics endpoint."""

    traces: int = 0
    quarantined: int = 0
    chunks: dict[str, int] = field(default_factory=dict)
    evaluations: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(evaluator kind, status, failure kind or "") → count."""
    judge_latency_buckets: list[int] = field(default_factory=list)
    """Cumulative counts per bound of LATENCY_BUCKETS_MS, then +Inf."""
    judge_latency_sum_ms: float = 0.0
    judge_calls: int = 0
    judge_retries: int = 0
    cache_hits: int = 0
    review: dict[str, int] = field(default_factory=dict)
    review_left_out: dict[tuple[str, str], int] = field(default_factory=dict)
    """(rubric, reason) → escalated judgments the review budget left out, over every batch."""
    gate_outcomes: dict[str, int] = field(default_factory=dict)
    gate_runs: dict[str, int] = field(default_factory=dict)
    otlp_staged_items: int = 0
    """Spans and log records waiting in the OTLP staging."""
    otlp_staged_traces: int = 0
    otlp: dict[str, int] = field(default_factory=dict)
    """The OTLP sweeper's running totals (``otlp_staging.COUNTERS``)."""
    judge_spend: dict[tuple[str, str], tuple[int, int, float, float]] = field(default_factory=dict)
    """(profile, rubric) → (prompt tokens, completion tokens, USD spent, USD saved by the cache)."""
    judge_concurrency: list[EndpointConcurrency] = field(default_factory=list)
    """Each judge profile's endpoint's concurrency limit and calls in flight, as the processes
    judging now reported them."""


def _grouped(conn, column, table) -> dict[str, int]:  # noqa: ANN001
    return {str(k): int(n) for k, n in conn.execute(select(column, func.count()).select_from(table).group_by(column))}


def store_metrics(engine: Engine) -> StoreMetrics:
    """Every count in a handful of aggregate queries."""
    e, m = EvaluationRow.__table__, StoreMetrics()
    with engine.connect() as conn:
        m.traces = conn.execute(select(func.count()).select_from(StoredTrace.__table__)).scalar_one()
        m.quarantined = conn.execute(select(func.count()).select_from(QuarantinedLine.__table__)).scalar_one()
        m.chunks = _grouped(conn, BatchChunk.__table__.c.state, BatchChunk.__table__)
        for kind, status, failure, n in conn.execute(
            select(e.c.evaluator_kind, e.c.status, e.c.failure_kind, func.count())
            .group_by(e.c.evaluator_kind, e.c.status, e.c.failure_kind)
        ):
            m.evaluations[(kind, status, failure or "")] = int(n)
        called = (e.c.evaluator_kind == "rubric") & e.c.latency_ms.is_not(None) & e.c.cached.is_(False)
        buckets = [func.coalesce(func.sum(case((called & (e.c.latency_ms <= b), 1), else_=0)), 0)
                   for b in LATENCY_BUCKETS_MS]  # fmt: skip
        row = conn.execute(
            select(
                *buckets,
                func.coalesce(func.sum(case((called, 1), else_=0)), 0),
                func.coalesce(func.sum(case((called, e.c.latency_ms), else_=0)), 0),
                func.coalesce(func.sum(case((e.c.attempts > 1, e.c.attempts - 1), else_=0)), 0),
                func.coalesce(func.sum(case((e.c.cached.is_(True), 1), else_=0)), 0),
            )
        ).one()
        *counts, m.judge_calls, latency_sum, m.judge_retries, m.cache_hits = (int(v) for v in row)
        m.judge_latency_buckets = [*counts, m.judge_calls]
        m.judge_latency_sum_ms = float(latency_sum)
        r = ReviewItem.__table__
        # a claim whose lease expired is back in the queue (as the queue itself reads it)
        state = case((and_(r.c.state == "claimed", r.c.lease_expires_at < datetime.now(UTC)), "pending"),
                     else_=r.c.state)  # fmt: skip
        m.review = _grouped(conn, state, r)
        m.review_left_out = left_out_totals(conn)
        m.gate_outcomes = _grouped(conn, GateOutcome.__table__.c.decision, GateOutcome.__table__)
        m.gate_runs = _grouped(conn, GateRun.__table__.c.decision, GateRun.__table__)
        m.otlp_staged_items, m.otlp_staged_traces = otlp_staging.staged(conn)
        m.otlp = otlp_staging.counters(conn)
        for profile, rubric, prompt, completion, cost, saved in conn.execute(
            select(e.c.judge_profile, e.c.evaluator_id, func.coalesce(func.sum(e.c.prompt_tokens), 0),
                   func.coalesce(func.sum(e.c.completion_tokens), 0), func.coalesce(func.sum(e.c.cost_usd), 0.0),
                   func.coalesce(func.sum(e.c.saved_usd), 0.0))
            .where(e.c.evaluator_kind == "rubric")
            .group_by(e.c.judge_profile, e.c.evaluator_id)
        ):  # fmt: skip
            m.judge_spend[(profile or "", rubric)] = (int(prompt), int(completion), float(cost), float(saved))
    m.judge_concurrency = live(engine)
    return m
