"""Identical (evidence, rubric) pairs within one chunk are judged once: the first evaluation
calls the judge, the others wait for it and are recorded as cache hits (no cost, what it would
have cost saved). A failed first call is never shared as a verdict: the waiters record the same
failure as their own, with no attempt made (``attempts=0``, no cost)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from judges.catalog import load_catalog
from judges.evaluate import JudgeAccess, evaluate
from judges.evidence import evidence_from_trace
from judges.llm.types import JudgeFailure, JudgeOutcome, JudgeRequest
from tests.unit.test_evaluate import RUBRICS, FakeStore, _traces

CATALOG = load_catalog(RUBRICS)


class SlowJudge(FakeStore):
    """Answers after a pause, so that duplicates in a chunk are in flight together."""

    async def judge(self, profile: str, request: JudgeRequest) -> JudgeOutcome:
        await asyncio.sleep(0.01)
        return await super().judge(profile, request)


def _repeated(example: dict[str, Any], distinct: int, copies: int) -> list[dict[str, Any]]:
    out = []
    for n, t in enumerate(_traces(example, distinct) * copies):
        t = copy.deepcopy(t)
        t["traceId"] = f"tr_{n}"  # another trace, the same evidence as tr_{n % distinct}
        out.append(t)
    return out


def _score(store: FakeStore, rubric_ids: list[str]) -> list[Any]:
    from workers.pipeline import score_chunk

    return asyncio.run(score_chunk(store.deps(), "b1", list(store.traces), CATALOG.select(rubric_ids)))


def test_duplicates_in_one_chunk_are_judged_once(example_trace: dict[str, Any]) -> None:
    store = SlowJudge(_repeated(example_trace, 3, 4), [])
    evaluations = _score(store, ["answer_correctness", "helpfulness"])
    assert len(evaluations) == 12 * 2
    assert all(e.status == "scored" for e in evaluations)
    assert len(store.calls) == 3 * 2  # distinct (evidence, rubric) pairs
    first = [e for e in evaluations if not e.cached]
    assert len(first) == 6 and all(e.attempts == 1 for e in first)
    waiters = [e for e in evaluations if e.cached]
    assert len(waiters) == 18 and all(e.attempts == 0 and e.prompt_tokens is None for e in waiters)
    by_pair: dict[tuple[str, str], set[str | None]] = {}
    for e in evaluations:
        by_pair.setdefault((e.evidence_hash, e.evaluator_id), set()).add(e.label)
    assert all(len(labels) == 1 for labels in by_pair.values())  # the waiter has the first's verdict
    assert len(store.cache) == 6  # each verdict stored once


def test_a_waiter_is_priced_like_a_cache_hit(example_trace: dict[str, Any]) -> None:
    from tracejury.core.cost import Price

    traces = _repeated(example_trace, 1, 2)
    rubric = CATALOG.select(["answer_correctness"])[0]
    store = SlowJudge(traces, [])
    access = JudgeAccess(call=store.judge, models={"default": "mock-judge"},
                         prices={"default": Price(input_per_million=1.0, output_per_million=2.0)})  # fmt: skip

    async def both() -> list[Any]:
        return await asyncio.gather(*(
            evaluate(t, "", evidence_from_trace(t), rubric, access) for t in traces
        ))  # fmt: skip

    first, waiter = asyncio.run(both())
    assert len(store.calls) == 1
    assert (first.cached, first.saved_usd) == (False, None) and first.cost_usd and first.cost_usd > 0
    assert (waiter.cached, waiter.cost_usd, waiter.saved_usd) == (True, 0.0, first.cost_usd)


def test_a_failed_first_call_is_not_shared_as_a_verdict(example_trace: dict[str, Any]) -> None:
    store = SlowJudge(_repeated(example_trace, 1, 3), [JudgeFailure("timeout", "slow", None, 4, 900, timeouts=4)])
    evaluations = _score(store, ["answer_correctness"])
    assert len(store.calls) == 1
    assert all((e.status, e.failure_kind, e.cached) == ("judge_failed", "timeout", False) for e in evaluations)
    assert sorted(e.attempts for e in evaluations) == [0, 0, 4]
    waiters = [e for e in evaluations if e.attempts == 0]
    assert all("not sent" in (e.error or "") and e.cost_usd in (None, 0.0) for e in waiters)
    assert store.cache == {}
