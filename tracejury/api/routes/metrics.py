"""``GET /metrics`` in the Prometheus text format: the store's counts (written by the API, the
CLI and the workers) read at scrape time, and this process's HTTP requests."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette.concurrency import run_in_threadpool

from tracejury.api.deps import EngineDep, require_role
from tracejury.store.metrics import LATENCY_BUCKETS_MS, StoreMetrics, store_metrics

router = APIRouter(tags=["meta"])

__all__ = ["http_requests", "router"]


_OTLP_COUNTERS = {
    "assembled_traces": "OTLP traces assembled from staged spans and handed to ingest",
    "unmapped_traces": "Assembled OTLP traces that could not be mapped (quarantined with their spans)",
    "expired_traces": "Staged OTLP traces whose root span never arrived (quarantined with their spans)",
    "late_spans": "OTLP spans that arrived after their trace was assembled (quarantined as late span)",
    "duplicate_spans": "OTLP spans received again (counted once)",
}


def _families(m: StoreMetrics) -> Iterator[Metric]:
    yield CounterMetricFamily("tracejury_traces_ingested", "Traces stored", value=m.traces)
    yield CounterMetricFamily("tracejury_traces_quarantined", "Lines set aside by ingest", value=m.quarantined)
    chunks = GaugeMetricFamily("tracejury_queue_chunks", "Scoring chunks by state (pending+running = queue depth)",
                               labels=["state"])  # fmt: skip
    for state in ("pending", "running", "done", "failed"):
        chunks.add_metric([state], m.chunks.get(state, 0))
    yield chunks
    evals = CounterMetricFamily("tracejury_evaluations", "Evaluations by evaluator kind, status and failure kind",
                                labels=["kind", "status", "failure_kind"])  # fmt: skip
    for (kind, status, failure), n in sorted(m.evaluations.items()):
        evals.add_metric([kind, status, failure], n)
    yield evals
    latency = HistogramMetricFamily("tracejury_judge_call_latency_seconds", "Judge call latency (uncached calls)")
    bounds = [str(b / 1000) for b in LATENCY_BUCKETS_MS] + ["+Inf"]
    latency.add_metric([], list(zip(bounds, m.judge_latency_buckets, strict=True)), m.judge_latency_sum_ms / 1000)
    yield latency
    yield CounterMetricFamily("tracejury_judge_retries", "Judge call attempts beyond the first", value=m.judge_retries)
    yield CounterMetricFamily("tracejury_judge_cache_hits", "Judge verdicts served from the cache", value=m.cache_hits)
    tokens = CounterMetricFamily("tracejury_judge_tokens", "Judge tokens billed, by profile, rubric and kind",
                                 labels=["profile", "rubric", "kind"])  # fmt: skip
    spent = CounterMetricFamily("tracejury_judge_cost_usd", "USD spent on judge calls (reported usage × price)",
                                labels=["profile", "rubric"])  # fmt: skip
    saved = CounterMetricFamily("tracejury_judge_saved_usd", "USD the judge cache saved (cached verdicts' cost)",
                                labels=["profile", "rubric"])  # fmt: skip
    for (profile, rubric), (prompt, completion, cost, cache) in sorted(m.judge_spend.items()):
        tokens.add_metric([profile, rubric, "prompt"], prompt)
        tokens.add_metric([profile, rubric, "completion"], completion)
        spent.add_metric([profile, rubric], cost)
        saved.add_metric([profile, rubric], cache)
    yield tokens
    yield spent
    yield saved
    limit = GaugeMetricFamily("tracejury_judge_concurrency_limit", "Judge calls that may be in flight to an endpoint"
                              " (the adaptive limit: shared through Redis, or the processes' own limits summed)",
                              labels=["profile", "endpoint"])  # fmt: skip
    in_flight = GaugeMetricFamily("tracejury_judge_in_flight", "Judge calls in flight to an endpoint, every process's",
                                  labels=["profile", "endpoint"])  # fmt: skip
    for c in m.judge_concurrency:
        limit.add_metric([c.profile, c.endpoint], c.limit)
        in_flight.add_metric([c.profile, c.endpoint], c.in_flight)
    yield limit
    yield in_flight
    review = GaugeMetricFamily("tracejury_review_items", "Review queue items by state", labels=["state"])
    for state in ("pending", "claimed", "labelled", "skipped"):
        review.add_metric([state], m.review.get(state, 0))
    yield review
    left_out = CounterMetricFamily("tracejury_review_left_out", "Escalated judgments the review budget left out"
                                   " (not enqueued), by rubric and strongest reason",
                                   labels=["rubric", "reason"])  # fmt: skip
    for (rubric, reason), n in sorted(m.review_left_out.items()):
        left_out.add_metric([rubric, reason], n)
    yield left_out
    outcomes = CounterMetricFamily("tracejury_gate_outcomes", "Gate outcomes by decision", labels=["decision"])
    runs = CounterMetricFamily("tracejury_gate_runs", "Gate runs by decision", labels=["decision"])
    for decision in ("pass", "block", "inconclusive", "insufficient_data"):
        outcomes.add_metric([decision], m.gate_outcomes.get(decision, 0))
        runs.add_metric([decision], m.gate_runs.get(decision, 0))
    yield outcomes
    yield runs
    yield GaugeMetricFamily("tracejury_otlp_staged_spans", "OTLP spans and log records staged, waiting for their "
                            "trace to be assembled (bounded by TRACEJURY_OTLP_MAX_STAGED_SPANS)",
                            value=m.otlp_staged_items)  # fmt: skip
    yield GaugeMetricFamily("tracejury_otlp_staged_traces", "OTLP traces staged", value=m.otlp_staged_traces)
    for name, text in _OTLP_COUNTERS.items():
        yield CounterMetricFamily(f"tracejury_otlp_{name}", text, value=m.otlp.get(name, 0))


class _Snapshot:
    """A one-shot collector over a StoreMetrics already read."""

    def __init__(self, m: StoreMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        return _families(self.m)


def http_requests(request: Request) -> Counter:
    """This app's request counter (one registry per app)."""
    return request.app.state.http_requests


@router.get("/metrics", summary="Prometheus metrics", dependencies=[Depends(require_role())],
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})  # fmt: skip
async def metrics(request: Request, engine: EngineDep) -> Response:
    """Counts from the store (every process's work; one read per ``TRACEJURY_METRICS_CACHE_S``
    however many scrapers ask: the aggregates scan the evaluation table) and this process's
    HTTP requests."""
    state, now = request.app.state, time.monotonic()
    cached = getattr(state, "metrics_snapshot", None)
    if cached is None or now - cached[0] >= state.settings.metrics_cache_s:
        cached = (now, await run_in_threadpool(store_metrics, engine))
        state.metrics_snapshot = cached
    snapshot = cached[1]
    registry = CollectorRegistry()
    registry.register(_Snapshot(snapshot))
    body = generate_latest(registry) + generate_latest(request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
