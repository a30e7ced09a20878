"""The scoring pipeline: a chunk of trace ids in, one evaluation per (trace, rubric) stored.

``score_chunk`` is what a Celery task (queued batches) and ``tracejury score`` (inline) both
run: load the traces, replay their evidence, prefetch the judge cache for the whole chunk,
evaluate every (trace, rubric) concurrently, then store fresh verdicts and evaluations in one
write each. All I/O goes through ``ScoringDeps``; its store calls run in a thread, so the judge
calls of the chunk running beside this one go on while SQLite waits for another writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from judges.catalog import Catalog
from judges.evaluate import JudgeAccess, SharedClaims, SingleFlight, cache_keys, evaluate
from judges.evidence import evidence_from_trace
from judges.rubric import Rubric
from tracejury.core.evaluation import EVALUATION_STATUSES, Evaluation
from tracejury.settings import Settings
from tracejury.store import evaluations as store
from tracejury.store import review as review_store
from tracejury.store import spend as spend_store
from workers import review as _review  # noqa: F401 - registers the escalation finaliser
from workers.hooks import failed_finalisers, finish, run_finalisers
from workers.threads import finish_in_thread

if TYPE_CHECKING:  # the judge clients (aiohttp, redis) load when scoring starts, not in batch create
    from workers.deps import ScoringDeps

__all__ = ["ScoreSummary", "batch_config", "score_chunk", "score_release"]

CHUNK = 512
"""Traces per chunk: one trace load, one cache read, one cache write and one save each."""


async def score_chunk(
    deps: ScoringDeps,
    batch_id: str,
    trace_ids: Sequence[str],
    rubrics: Sequence[Rubric],
    *,
    concurrency: int = 256,
    flight: SingleFlight | None = None,
    claims: SharedClaims | None = None,
) -> list[Evaluation]:
    """Evaluate a chunk of traces with every rubric and store the results; ids no longer in
    the store are skipped (a redelivered chunk of deleted traces is a no-op).

    ``flight``: the process's single flight, shared with the chunks running beside this one
    (default: this chunk's own). ``claims``: single flight across processes; its verdicts go
    to the cache as they come, so the chunk's end does not write them again."""
    traces = await asyncio.to_thread(deps.load_traces, trace_ids)
    evidence = {tid: evidence_from_trace(body) for tid, (body, _) in traces.items()}
    keys = [k for tid in traces for r in rubrics for k in cache_keys(r, evidence[tid], deps.models)]
    cached = await asyncio.to_thread(deps.cache_get, keys)
    access = JudgeAccess(call=deps.judge_call, models=deps.models, prices=deps.prices, cached=cached,
                         flight=flight or SingleFlight(), claims=claims)  # fmt: skip
    slots = asyncio.Semaphore(concurrency)

    async def one(trace_id: str, rubric: Rubric) -> Evaluation:
        body, segment_key = traces[trace_id]
        async with slots:
            return await evaluate(body, segment_key, evidence[trace_id], rubric, access)

    evaluations = await asyncio.gather(*(one(t, r) for t in traces for r in rubrics))
    if claims is None:
        await finish_in_thread(deps.cache_put, access.fresh)
    else:
        await claims.flush()
    await finish_in_thread(deps.save, batch_id, evaluations)  # cancelled, it still lands before the batch ends
    return list(evaluations)


def batch_config(rubrics: Sequence[Rubric], catalog: Catalog, judge_base_url: str | None = None) -> dict[str, Any]:
    """The frozen config snapshot a batch records: evaluator versions and fingerprints, the
    full rubric content (workers score with exactly this), the judge profiles, and where
    each profile's judge lives as the batch was made (its base URL, else ``judge_base_url``:
    gates compare the judges of two arms)."""
    profiles = {r.judge.profile for r in rubrics if r.judge is not None}
    endpoints = {name: catalog.profiles[name].base_url or judge_base_url
                 for name in sorted(profiles) if name in catalog.profiles}  # fmt: skip
    return {
        "judgeEndpoints": {k: v for k, v in endpoints.items() if v},
        "evaluators": [
            {"id": r.id, "version": r.version, "fingerprint": r.fingerprint, "kind": r.kind} for r in rubrics
        ],
        "rubrics": [r.model_dump(mode="json") for r in rubrics],
        "judgeProfiles": {
            name: catalog.profiles[name].model_dump(mode="json")
            for name in sorted(profiles)
            if name in catalog.profiles
        },
    }


@dataclass
class ScoreSummary:
    """What ``tracejury score`` reports."""

    batch_id: str
    traces: int
    evaluators: list[str]
    status: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    escalated: int = 0
    """Review items the batch's end enqueued (``workers.review``)."""
    usage: dict[str, Any] = field(default_factory=dict)
    """Judge tokens and USD, in all and per evaluator (``store.spend.usage``)."""
    finalisers: dict[str, str] = field(default_factory=dict)
    """What ran when the batch ended (``workers.hooks``): name → ``ok`` or ``failed: …``."""

    @property
    def failed_finalisers(self) -> dict[str, str]:
        """The finalisers that failed (``tracejury score`` exits non-zero on any)."""
        return failed_finalisers(self.finalisers)

    def as_dict(self) -> dict[str, object]:
        """The ``--json`` shape."""
        return {
            "batchId": self.batch_id,
            "traces": self.traces,
            "evaluators": self.evaluators,
            "status": {s: self.status.get(s, 0) for s in EVALUATION_STATUSES},
            "failures": dict(sorted(self.failures.items())),
            "escalated": self.escalated,
            "usage": self.usage,
            "finalisers": self.finalisers,
        }


async def score_release(
    engine: Engine,
    settings: Settings,
    catalog: Catalog,
    release: str,
    *,
    rubric_ids: list[str] | None = None,
    limit: int | None = None,
    deps: ScoringDeps | None = None,
) -> ScoreSummary:
    """Score a release's stored traces in-process (an ``inline`` batch)."""
    rubrics = catalog.select(rubric_ids)
    store.register_evaluator_versions(engine, [(r.id, r.version, r.fingerprint) for r in rubrics])
    trace_ids = store.release_trace_ids(engine, release, limit=limit)
    batch_id = store.create_batch(
        engine, release=release, kind="inline", config=batch_config(rubrics, catalog, settings.judge_base_url),
        sampled=len(trace_ids),
    )  # fmt: skip
    from workers.deps import production_deps

    try:
        if deps is None:
            async with production_deps(engine, settings, catalog.profiles) as real:
                await _score_all(real, batch_id, trace_ids, rubrics, settings.score_concurrency)
        else:
            await _score_all(deps, batch_id, trace_ids, rubrics, settings.score_concurrency)
    except BaseException as exc:
        store.finish_batch(engine, batch_id, state="failed", reason=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, Exception):  # a failed batch ends too: its stored evaluations escalate
            run_finalisers(engine, batch_id, "failed")
        raise
    finalisers = finish(engine, batch_id)  # no chunks: ends done, and runs the finalisers (escalation among them)
    status, failures = store.batch_counts(engine, batch_id)
    escalated = review_store.count_items(engine, batch_id=batch_id)
    return ScoreSummary(batch_id, len(trace_ids), [r.id for r in rubrics], status, failures, escalated,
                        spend_store.usage(engine, batch_id), finalisers or {})  # fmt: skip


PIPELINE = 2
"""Chunks ``score`` runs at once: the next chunk's traces are read and its calls started while
the current one's are in flight, so the judge does not idle at chunk boundaries."""


async def _score_all(
    deps: ScoringDeps, batch_id: str, trace_ids: list[str], rubrics: list[Rubric], concurrency: int
) -> None:
    flight = SingleFlight()  # one question, one call: across the chunks of the run too
    running: set[asyncio.Task[list[Evaluation]]] = set()
    try:
        for start in range(0, len(trace_ids), CHUNK):
            if len(running) >= PIPELINE:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a chunk that raised ends the run
            chunk = trace_ids[start : start + CHUNK]
            running.add(asyncio.create_task(score_chunk(deps, batch_id, chunk, rubrics,
                                                        concurrency=concurrency, flight=flight)))  # fmt: skip
        for task in asyncio.as_completed(running):
            await task
        running = set()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
