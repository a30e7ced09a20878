"""Queued batches: create (sample, freeze config, enqueue chunks), run one chunk, sweep.

``create_queued_batch`` and ``run_chunk`` are what the CLI and the Celery task call; they
take their I/O (engine, enqueue function) as arguments, so tests run them without Celery.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from judges.catalog import Catalog
from judges.evaluate import SingleFlight
from judges.evidence import evidence_from_trace
from judges.llm.limiter import COMPLETION_ALLOWANCE
from judges.llm.profiles import JudgeProfile
from judges.rubric import Rubric
from tracejury.core.cost import call_cost, traces_for_cap
from tracejury.core.errors import ConfigError
from tracejury.core.gates import GateSpec
from tracejury.core.sampling import SamplingConfig, TraceSignals, sample
from tracejury.core.segments import key_matches
from tracejury.settings import Settings
from tracejury.store import batches as store
from tracejury.store import evaluations as evaluation_store
from tracejury.store import spend as spend_store
from workers.flight import StoreClaims
from workers.hooks import finish
from workers.pipeline import batch_config, score_chunk
from workers.planning import GateNeeds, gate_needs, shortfalls, size_for_gates
from workers.spend import BATCH_CAP, BatchCap, batch_key, nano
from workers.threads import finish_in_thread

if TYPE_CHECKING:  # the judge clients (aiohttp, redis) load when a chunk is scored, not in batch create
    from workers.deps import ScoringDeps

__all__ = ["CreatedBatch", "create_queued_batch", "finish", "run_chunk", "sweep_expired", "worker_id"]

log = logging.getLogger(__name__)
Enqueue = Callable[[str, int], None]


def worker_id() -> str:
    """This process, as chunk leases name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class CreatedBatch:
    """What ``batch create`` reports."""

    batch_id: str
    population: int
    sampled: int
    chunks: int
    base_rate: float
    warnings: list[str] = field(default_factory=list)
    """Gates this sample is too small for (one line for the user)."""
    cost_cap: dict[str, Any] | None = None
    """The cap and the plan's estimate (``--max-cost``), else None."""


def _signals(rows: Sequence[store.SamplingRow]) -> list[TraceSignals]:
    latencies = sorted(r.latency_ms for r in rows)
    p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else 0
    return [
        TraceSignals(
            trace_id=r.trace_id,
            latency_above_p95=r.latency_ms > p95,
            truncated=r.truncated,
            tool_failed=r.tool_error or r.tool_timeout,
            retrieval_empty=r.retrieval_empty,
            retrieval_low=key_matches(r.segment_key, {"ret": "low"}),  # keys are parsed once (segments)
            negative_feedback=r.negative_feedback,
            fallback_used=r.fallback_used,
        )
        for r in rows
    ]


def create_queued_batch(
    engine: Engine,
    settings: Settings,
    catalog: Catalog,
    sampling: SamplingConfig,
    *,
    release: str,
    rubric_ids: list[str] | None,
    sample_size: int | None,
    budget: int | None,
    seed: int,
    enqueue: Enqueue,
    gates: Sequence[GateSpec] = (),
    for_gates: bool = False,
    baseline: str | None = None,
    max_cost: float | None = None,
) -> CreatedBatch:
    """Sample a release, freeze the config, store the chunks and enqueue them.

    ``sample_size`` is the expected sample size; ``budget`` a number of judge calls (divided
    by the calls one trace costs: the samples of every judge rubric). With ``for_gates``, the
    sample is sized so every evaluator gate in ``gates`` whose evaluator the batch scores
    can decide (within ``budget`` when given). Neither: every trace. ``warnings`` name the
    gates the sample is too small for.

    ``max_cost`` (USD) caps the batch: the sample is planned so its expected judge cost is
    90% of the cap (:func:`~tracejury.core.cost.traces_for_cap`, from :func:`estimate_cost`),
    the traces are dealt into chunks at random, and workers stop whole chunks once the cap
    has no room for the next one (``run_chunk``), every call reserving its worst case first.
    """
    rubrics = catalog.select(rubric_ids)
    evaluation_store.register_evaluator_versions(engine, [(r.id, r.version, r.fingerprint) for r in rubrics])
    rows = store.sampling_rows(engine, release)
    signals = _signals(rows)
    if not signals:
        raise ConfigError(f"release {release!r} has no stored traces")
    weights = [t.weight(sampling) for t in signals]
    needs = gate_needs(engine, gates, rows, weights, {r.id for r in rubrics}, release, baseline) if gates else []
    calls_per_trace = sum(r.judge.samples for r in rubrics if r.judge is not None)
    warnings: list[str] = []
    if sample_size is not None:
        target = float(sample_size)
    elif for_gates:
        target, warnings = _for_gates(needs, weights, budget, calls_per_trace)
    elif budget is not None and calls_per_trace:
        target = budget / calls_per_trace
    else:
        target = float(len(signals))
    cap: dict[str, Any] | None = None
    if max_cost is not None and not calls_per_trace:
        warnings.append("--max-cost: no rubric of this batch calls a judge; nothing to cap")
    elif max_cost is not None:
        cap = estimate_cost(engine, rubrics, catalog.profiles, [r.trace_id for r in rows], weights, seed=seed)
        affordable = traces_for_cap(max_cost, cap["estimatePerTraceUsd"])
        if affordable < target:
            warnings.append(f"--max-cost ${max_cost:g} buys about {affordable:.0f} traces"
                            f" (at ${cap['estimatePerTraceUsd']:.6f} each, {cap['estimateFrom']})")  # fmt: skip
            target = affordable
    draws, base_rate = sample(signals, sampling, seed=seed, target_size=target)
    if cap is not None:  # chunks are a random partition: a stop after whole chunks keeps a random sample
        draws = list(draws)
        random.Random(f"{seed}:chunks").shuffle(draws)
        cap |= {"maxCostUsd": max_cost, "expectedCostUsd": round(cap["estimatePerTraceUsd"] * len(draws), 9)}
    short = shortfalls(needs, base_rate)
    if short:
        names = ", ".join(f"{s.gate} {s.segment} (expects {s.expected:.0f} effective, needs {s.needed})"
                          for s in short)  # fmt: skip
        warnings.append(f"too small for {len(short)} gate group(s) to decide: {names}"
                        + ("" if for_gates else "; size it with --for-gates"))  # fmt: skip
    config = batch_config(rubrics, catalog, settings.judge_base_url)
    if cap is not None:
        config["costCap"] = cap
    config["sampling"] = {
        "version": sampling.version, "seed": seed, "baseRate": base_rate, "target": target,
        "population": len(signals), "weights": sampling.weights,
    }  # fmt: skip
    batch_id = evaluation_store.create_batch(engine, release=release, kind="queued", config=config, sampled=len(draws))
    chunks = store.add_batch_traces(engine, batch_id, draws, settings.chunk_size)
    if chunks == 0:
        finish(engine, batch_id)
    for chunk_no in range(chunks):
        enqueue(batch_id, chunk_no)
    return CreatedBatch(batch_id, len(signals), len(draws), chunks, base_rate, warnings, cap)


def estimate_cost(engine: Engine, rubrics: Sequence[Rubric], profiles: Mapping[str, JudgeProfile],
                  trace_ids: Sequence[str], weights: Sequence[float], *, seed: int,
                  probe: int = 200) -> dict[str, Any]:  # fmt: skip
    """Expected judge USD per sampled trace: over ``probe`` traces of the release drawn in
    proportion to their sampling weights (as the failure-aware sample will draw them), the
    judge rubrics that apply, times their calls, times a call's cost — tokens per call measured
    on the rubric's earlier billed evaluations when there are any, else estimated from the
    rendered prompt (chars ÷ 4, and a reply of up to 200 tokens, or the whole reply cap for a
    reasoning model). Every judge profile of the batch must have a price."""
    judged = [r for r in rubrics if r.judge is not None]
    for r in judged:
        name = r.judge.profile  # type: ignore[union-attr]
        if profiles.get(name) is None or profiles[name].price is None:
            raise ConfigError(f"--max-cost: judge profile {name!r} (rubric {r.id}) has no price; add"
                              " price: {input_per_million: USD, output_per_million: USD} to profiles.yaml")  # fmt: skip
    rng = random.Random(f"{seed}:cost-probe")
    ids = rng.choices(list(trace_ids), weights=weights, k=min(probe, len(trace_ids)))
    loaded = evaluation_store.load_traces(engine, sorted(set(ids)))
    traces = [loaded[i] for i in ids if i in loaded]
    measured = {r.id: spend_store.tokens_per_evaluation(engine, r.id) for r in judged}
    total, froms = 0.0, set()
    for body, segment_key in traces:
        ev = evidence_from_trace(body)
        for r in judged:
            if not r.applies_when.matches(body, segment_key) or r.missing_evidence(ev) is not None:
                continue
            spec, profile = r.judge, profiles[r.judge.profile]  # type: ignore[union-attr]
            known = measured[r.id]
            if known is not None:
                prompt, completion = known[0] / spec.samples, known[1] / spec.samples  # type: ignore[union-attr]
                froms.add("measured")
            else:
                chars = sum(len(str(m.get("content", ""))) for m in r.messages(ev))
                reply = profile.max_output_tokens if profile.reasoning else COMPLETION_ALLOWANCE
                prompt, completion = chars / 4 + 4, min(reply, profile.max_output_tokens)
                froms.add("rendered prompts")
            total += spec.samples * (call_cost(profile.price, round(prompt), round(completion)) or 0.0)  # type: ignore[union-attr]
    per_trace = total / len(traces) if traces else 0.0
    return {"estimatePerTraceUsd": round(per_trace, 12), "probedTraces": len(traces),
            "estimateFrom": " and ".join(sorted(froms)) or "no judge rubric applies"}  # fmt: skip


def _for_gates(needs: Sequence[GateNeeds], weights: Sequence[float], budget: int | None,
               calls_per_trace: int) -> tuple[float, list[str]]:  # fmt: skip
    """The expected sample size at which every gate group can decide, capped by the budget."""
    if not needs:
        raise ConfigError("--for-gates: no evaluator gate reads the rubrics of this batch")
    rate, impossible = size_for_gates(needs)
    warnings = [f"no sample of this release is enough for: {', '.join(impossible)}"] if impossible else []
    target = float(len(weights)) if rate is None else sum(min(1.0, rate * w) for w in weights)
    if budget is not None and calls_per_trace and target * calls_per_trace > budget:
        warnings.append(f"the gates need about {math.ceil(target * calls_per_trace)} judge calls;"
                        f" --budget {budget} buys {budget // calls_per_trace} traces")  # fmt: skip
        target = budget / calls_per_trace
    return target, warnings


class _Heartbeat(threading.Thread):
    """Renews a chunk's lease every third of it until stopped."""

    def __init__(self, engine: Engine, batch_id: str, chunk_no: int, worker: str, lease_s: float):
        super().__init__(name=f"lease-{batch_id}-{chunk_no}", daemon=True)
        self.args_ = (engine, batch_id, chunk_no, worker, lease_s)
        self.stopped = threading.Event()

    def run(self) -> None:
        engine, batch_id, chunk_no, worker, lease_s = self.args_
        while not self.stopped.wait(lease_s / 3):
            try:
                store.renew_lease(engine, batch_id, chunk_no, worker, lease_s)
            except Exception:  # the next beat tries again; an expired lease only means a redo
                log.warning("lease renewal failed for %s/%s", batch_id, chunk_no, exc_info=True)


def _frozen_rubrics(config: dict[str, Any]) -> list[Rubric]:
    rubrics = [Rubric.model_validate(d) for d in config["rubrics"]]
    recorded = {e["id"]: e["fingerprint"] for e in config["evaluators"]}
    for r in rubrics:
        if r.fingerprint != recorded[r.id]:  # the snapshot must score exactly what was frozen
            raise ConfigError(f"rubric {r.id} in the batch snapshot does not match its fingerprint")
    return rubrics


@dataclass
class _Scope:
    """What every chunk a worker process scores with the same judge profiles shares: the
    deps (judge clients), the in-process single flight, and the claims across processes."""

    deps: ScoringDeps
    flight: SingleFlight
    claims: StoreClaims


class _ProcessScoring:
    """One event loop and one set of judge clients per worker process, reused by every chunk:
    a new HTTP client, SSL context and connection pool per chunk cost ~10% of a worker's time
    (py-spy, bench/scoring.py). Keyed by engine and judge profiles, so a batch with other
    profiles gets its own clients."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._stack = AsyncExitStack()
        self._scopes: dict[tuple[int, bytes], _Scope] = {}

    def run(
        self,
        engine: Engine,
        settings: Settings,
        profiles: dict[str, JudgeProfile],
        fn: Callable[[_Scope], Awaitable[None]],
    ) -> None:
        key = (id(engine), orjson.dumps({n: p.model_dump(mode="json") for n, p in profiles.items()},
                                        option=orjson.OPT_SORT_KEYS))  # fmt: skip

        async def go() -> None:
            from workers.deps import production_deps

            if key not in self._scopes:
                deps = await self._stack.enter_async_context(production_deps(engine, settings, profiles))
                claims = StoreClaims(
                    owner=worker_id(), ttl_s=settings.chunk_lease_s,
                    claim=partial(evaluation_store.claim_keys, engine),
                    release=partial(evaluation_store.release_keys, engine),
                    renew=partial(evaluation_store.renew_claims, engine),
                    cache_get=deps.cache_get, cache_put=deps.cache_put,
                )  # fmt: skip
                self._scopes[key] = _Scope(deps, SingleFlight(), claims)
            scope = self._scopes[key]
            try:
                await fn(scope)
            finally:
                if scope.deps.settle is not None:  # shared judge slots idle until the next task: give them back
                    await scope.deps.settle()

        self._runner.run(go())


_scoring: list[_ProcessScoring] = []


def _process_scoring() -> _ProcessScoring:
    """This process's scoring loop, created on first use (never at import, never before a fork)."""
    if not _scoring:
        _scoring.append(_ProcessScoring())
    return _scoring[0]


CHAIN_DEPTH = 2
"""Chunks a worker process scores at once when it chains (``run_chunk(..., requeue=...)``):
the batch's next chunk is claimed, its traces read and its calls started while the current
chunk's calls are in flight, so the judge does not idle at chunk boundaries (a chunk's tail,
its writes, the broker's hand-off of the next message)."""
CHAIN_S = 600.0
"""A task stops taking further chunks after this long; the rest wait for their messages."""
CHAIN_AFTER_S = 0.25
"""A task takes further chunks only after this long: the batch's next messages reach the idle
scoring processes first (within milliseconds), so a small batch is spread over every process
instead of chained into the first one (a 2-chunk batch ran on one core of two)."""


def run_chunk(
    engine: Engine, settings: Settings, batch_id: str, chunk_no: int, *, requeue: Enqueue | None = None
) -> str:
    """Run one chunk if this worker can claim it; end the batch if it was the last.

    With ``requeue`` (the Celery task passes it), the worker also chains: while a chunk's
    calls are in flight it claims the batch's next pending chunk and scores it too, up to
    ``CHAIN_DEPTH`` at once, until none is left; the messages of chunks it took find them
    taken (a no-op). A chained chunk that raises is given back and sent again through
    ``requeue``, so its own task applies the retry policy.

    Returns ``done``; ``capped`` (not run: the batch's cost cap has no room for it);
    ``skipped`` (already done, held by a live worker, or out of attempts);
    ``lost`` (this worker's lease ran out and another took the chunk over: its result stands);
    or ``missing`` (no such batch). The status is that of ``chunk_no``.
    """
    config = store.batch_config(engine, batch_id)
    if config is None:
        return "missing"
    worker = worker_id()
    if not store.claim_chunk(engine, batch_id, chunk_no, worker, settings.chunk_lease_s):
        finish(engine, batch_id)  # cheap, and ends a batch whose ending was interrupted
        return "skipped"
    try:
        rubrics = _frozen_rubrics(config)
        profiles = {n: JudgeProfile.model_validate(p) for n, p in config["judgeProfiles"].items()}
    except Exception:
        store.release_claim(engine, batch_id, chunk_no, worker)
        raise
    job = _ChunkJob(engine, settings, batch_id, worker, config, rubrics)
    result: list[str] = []

    async def chain(scope: _Scope) -> None:
        first = asyncio.create_task(job.score(scope, chunk_no))
        running = {first}
        deadline = time.monotonic() + CHAIN_S
        chain_from = time.monotonic() + CHAIN_AFTER_S
        while True:
            chaining = time.monotonic() >= chain_from
            while chaining and requeue is not None and len(running) < CHAIN_DEPTH and time.monotonic() < deadline:
                if first.done() and first.exception() is not None:
                    break  # the task's own chunk failed: take no more
                try:  # in a thread: the calls in flight go on while SQLite waits for a writer
                    taken = await asyncio.to_thread(store.claim_next_chunk, engine, batch_id, worker,
                                                    settings.chunk_lease_s)  # fmt: skip
                except Exception:  # the store is busy or down: take no more; what runs ends as usual
                    log.warning("could not take the next chunk of %s; its message will", batch_id, exc_info=True)
                    deadline = 0.0
                    break
                if taken is None:
                    break
                running.add(asyncio.create_task(job.score_chained(scope, taken, requeue)))
            if not running:  # all ended (even in one wake-up) and nothing more may or can be taken
                break
            wait = None if chaining else chain_from - time.monotonic()
            done, running = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if first in done and first.exception() is not None:
                deadline = 0.0  # the task's own chunk failed: take no more, let the others end
        result.append(first.result())

    _process_scoring().run(engine, settings, profiles, chain)
    return result[0]


class _ChunkJob:
    """Scoring the claimed chunks of one batch in this process."""

    def __init__(self, engine: Engine, settings: Settings, batch_id: str, worker: str,
                 config: dict[str, Any], rubrics: list[Rubric]) -> None:  # fmt: skip
        self.engine, self.settings, self.batch_id, self.worker = engine, settings, batch_id, worker
        self.cap: dict[str, Any] | None = config.get("costCap")
        self.rubrics = rubrics

    async def score_chained(self, scope: _Scope, chunk_no: int, requeue: Enqueue) -> str:
        """A chunk this worker took itself, under its task's policy: a database error gives it
        back to the queue (its own message retries it); any other error fails it with that
        error, and with it the batch. Never raises: the chunks beside it run on."""
        try:
            return await self.score(scope, chunk_no)
        except (OperationalError, InterfaceError):
            log.warning("chunk %s/%d (chained) failed; sent again", self.batch_id, chunk_no, exc_info=True)
            try:
                store.release_claim(self.engine, self.batch_id, chunk_no, self.worker)
                requeue(self.batch_id, chunk_no)
            except Exception:  # the store or broker is down: the lease sweep re-sends it
                log.warning("could not give chunk %s/%d back", self.batch_id, chunk_no, exc_info=True)
            return "requeued"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("chunk %s/%d (chained) failed: %s", self.batch_id, chunk_no, error, exc_info=True)
            try:
                if store.fail_chunk(self.engine, self.batch_id, chunk_no, error, self.worker):
                    finish(self.engine, self.batch_id)
            except Exception:  # the store is down: the lease runs out and the sweep re-sends it
                log.warning("could not fail chunk %s/%d", self.batch_id, chunk_no, exc_info=True)
            return "failed"

    async def score(self, scope: _Scope, chunk_no: int) -> str:
        """Score a chunk this worker holds, then mark it done (or capped) and maybe end the batch."""
        engine, settings, batch_id = self.engine, self.settings, self.batch_id
        beat = _Heartbeat(engine, batch_id, chunk_no, self.worker, settings.chunk_lease_s)
        beat.start()
        try:  # the store calls in a thread: the chunk beside this one goes on judging meanwhile
            trace_ids = await asyncio.to_thread(store.chunk_trace_ids, engine, batch_id, chunk_no)
            capped = await self._score(scope, chunk_no, trace_ids)
        finally:
            beat.stopped.set()
        end = store.cap_chunk if capped else store.complete_chunk
        if not await finish_in_thread(end, engine, batch_id, chunk_no, self.worker):
            return "lost"  # our lease expired and another worker took over: its result stands
        await finish_in_thread(finish, engine, batch_id)
        return "capped" if capped else "done"

    async def _score(self, scope: _Scope, chunk_no: int, trace_ids: list[str]) -> bool:
        """Score the chunk; True if the batch's cost cap stopped it (nothing of it kept)."""
        deps, cap, batch_id = scope.deps, self.cap, self.batch_id
        kwargs = {"concurrency": self.settings.score_concurrency, "flight": scope.flight, "claims": scope.claims}
        if cap is None:
            await score_chunk(deps, batch_id, trace_ids, self.rubrics, **kwargs)  # type: ignore[arg-type]
            return False
        if deps.ledger is None:
            raise ConfigError(f"batch {batch_id} has a cost cap, and its judge profiles no price")
        key, expected = batch_key(batch_id), nano(cap["estimatePerTraceUsd"] * len(trace_ids))
        if not await deps.ledger.admit(key, expected, nano(cap["maxCostUsd"])):
            return True  # whole chunks only: this one and, as the cap fills, the rest
        guard = BatchCap(batch_id, cap["maxCostUsd"])
        token = BATCH_CAP.set(guard)
        try:
            await score_chunk(deps, batch_id, trace_ids, self.rubrics, **kwargs)  # type: ignore[arg-type]
        finally:
            BATCH_CAP.reset(token)
            await deps.ledger.dismiss(key, expected)
        if guard.refused:  # the cap ran out inside the chunk: cut it whole, as if never run
            dropped = spend_store.drop_evaluations(self.engine, batch_id, trace_ids)
            log.info("batch %s chunk %d: its cost cap refused a call; %d evaluations set aside",
                     batch_id, chunk_no, dropped)  # fmt: skip
            return True
        return False


def sweep_expired(engine: Engine, enqueue: Enqueue, *, stale_pending_s: float = 300) -> int:
    """Re-enqueue chunks whose worker died (lease expired), and pending chunks whose message
    may have been lost (untouched for ``stale_pending_s``); fail chunks out of attempts; end
    batches left running with no work. Returns how many chunks were re-enqueued."""
    for batch_id, chunk_no in store.exhausted_chunks(engine):
        store.fail_chunk(engine, batch_id, chunk_no, f"gave up after {store.MAX_ATTEMPTS} attempts")
        finish(engine, batch_id)
    for batch_id in store.idle_running_batches(engine):
        finish(engine, batch_id)
    requeued = 0
    for batch_id, chunk_no in store.expired_chunks(engine):
        if store.release_expired(engine, batch_id, chunk_no):
            enqueue(batch_id, chunk_no)
            requeued += 1
    for batch_id, chunk_no in store.stale_pending_chunks(engine, stale_pending_s):
        enqueue(batch_id, chunk_no)
        requeued += 1
    return requeued
