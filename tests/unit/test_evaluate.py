"""Scoring one chunk with fake deps: every failure is recorded, counts reconcile, the cache
is used, self-consistency takes the majority, and a poison trace fails only itself."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from judges.catalog import load_catalog
from judges.evaluate import CacheKey
from judges.llm.types import JudgeFailure, JudgeOutcome, JudgeRequest, JudgeVerdict
from judges.rubric import Rubric
from tracejury.core.evaluation import Evaluation
from tracejury.core.segments import default_segmentation, segment_key
from workers.deps import ScoringDeps

RUBRICS = Path(__file__).resolve().parents[2] / "rubrics"
CATALOG = load_catalog(RUBRICS)


def verdict(label: str, confidence: float = 0.9) -> JudgeVerdict:
    return JudgeVerdict(label, "because", confidence, 100, 10, 1, 5, "mock-judge")


class FakeStore:
    """In-memory store and a scripted judge: replies come from ``script`` in call order."""

    def __init__(self, traces: list[dict[str, Any]], script: Sequence[JudgeOutcome]) -> None:
        seg = default_segmentation()
        self.traces = {t["traceId"]: (t, segment_key(t, seg)) for t in traces}
        self.script = list(script)
        self.calls: list[JudgeRequest] = []
        self.cache: dict[CacheKey, JudgeVerdict] = {}
        self.saved: list[Evaluation] = []

    async def judge(self, profile: str, request: JudgeRequest) -> JudgeOutcome:
        self.calls.append(request)
        return self.script.pop(0) if self.script else verdict(request.labels[0])

    def deps(self) -> ScoringDeps:
        return ScoringDeps(
            load_traces=lambda ids: {i: self.traces[i] for i in ids if i in self.traces},
            cache_get=lambda keys: {k: self.cache[k] for k in keys if k in self.cache},
            cache_put=lambda entries: self.cache.update(entries),
            save=lambda batch, evs: self.saved.extend(evs),
            judge_call=self.judge,
            models={"default": "mock-judge"},
        )


def score(store: FakeStore, rubrics: list[Rubric], ids: list[str] | None = None) -> list[Evaluation]:
    from workers.pipeline import score_chunk

    ids = ids if ids is not None else list(store.traces)
    return asyncio.run(score_chunk(store.deps(), "b1", ids, rubrics))


def _traces(example: dict[str, Any], n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        t = copy.deepcopy(example)
        t["traceId"] = f"tr_{i}"
        t["sample"]["inputText"] = f"question {i}"  # distinct evidence, distinct cache keys
        out.append(t)
    return out


@pytest.mark.parametrize(
    "failure",
    ["timeout", "http_error", "rate_limited", "invalid_output", "rubric_mismatch", "refused"],
)
def test_judge_failure_is_recorded_never_scored(example_trace: dict[str, Any], failure: str) -> None:
    store = FakeStore([example_trace], [JudgeFailure(failure, "it broke", 503, 4, 100)])  # type: ignore[arg-type]
    (e,) = score(store, CATALOG.select(["answer_correctness"]))
    assert (e.status, e.failure_kind, e.label, e.passed) == ("judge_failed", failure, None, None)
    assert (e.attempts, e.http_status, e.error) == (4, 503, "it broke")
    assert store.cache == {}  # a failure is never cached


def test_counts_reconcile_and_cache_prevents_second_call(example_trace: dict[str, Any]) -> None:
    traces = _traces(example_trace, 6)
    traces[1]["req"]["toolRequired"] = False  # tool_grounded_correctness: not applicable
    del traces[2]["sample"]  # missing evidence for every judge rubric
    rubrics = CATALOG.select(None)
    store = FakeStore(traces, [])
    evaluations = score(store, rubrics)
    assert len(evaluations) == len(traces) * len(rubrics) == len(store.saved)
    statuses = {s: sum(e.status == s for e in evaluations) for s in
                ("scored", "judge_failed", "not_applicable", "missing_evidence")}  # fmt: skip
    assert sum(statuses.values()) == len(traces) * len(rubrics)
    assert statuses["missing_evidence"] >= 4
    calls = len(store.calls)
    assert calls > 0
    again = score(store, rubrics)
    assert len(store.calls) == calls  # same evidence, same rubric: judged once
    assert all(e.cached for e in again if e.evaluator_kind == "rubric" and e.status == "scored")


def test_self_consistency_majority_and_agreement(example_trace: dict[str, Any]) -> None:
    text = (RUBRICS / "answer_correctness.yaml").read_text()
    text = text.replace("  profile: default\n", "  profile: default\n  samples: 3\n  temperature: 0.7\n")
    rubric = Rubric.from_yaml(text)
    store = FakeStore([example_trace], [verdict("pass"), verdict("fail"), verdict("pass")])
    (e,) = score(store, [rubric])
    assert (e.label, e.passed, e.confidence, e.sample_labels) == ("pass", True, 2 / 3, ("pass", "fail", "pass"))
    assert sorted(r.seed for r in store.calls) == [0, 1, 2]


def test_one_failed_sample_fails_the_evaluation(example_trace: dict[str, Any]) -> None:
    text = (RUBRICS / "answer_correctness.yaml").read_text().replace("  profile: default\n", "  profile: default\n  samples: 3\n")
    store = FakeStore([example_trace], [verdict("pass"), JudgeFailure("timeout", "slow", None, 4, 9), verdict("pass")])
    (e,) = score(store, [Rubric.from_yaml(text)])
    assert (e.status, e.failure_kind) == ("judge_failed", "timeout")


def test_unknown_profile_is_a_config_error(example_trace: dict[str, Any]) -> None:
    text = (RUBRICS / "answer_correctness.yaml").read_text().replace("profile: default", "profile: nowhere")
    (e,) = score(FakeStore([example_trace], []), [Rubric.from_yaml(text)])
    assert (e.status, e.failure_kind, e.error) == ("judge_failed", "config_error", "unknown judge profile 'nowhere'")


def test_poison_trace_fails_only_itself(example_trace: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from judges.checks import CHECKERS

    traces = _traces(example_trace, 3)
    traces[1]["sample"]["finalAnswer"] = "POISON"
    real = CHECKERS["json_valid"]

    def explode(ev: Any, params: Any) -> Any:
        if ev.final_answer == "POISON":
            raise RuntimeError("checker bug on this input")
        return real.fn(ev, params)

    monkeypatch.setitem(CHECKERS, "json_valid", real.__class__(real.name, real.version, explode, real.params, ""))
    evaluations = score(FakeStore(traces, []), CATALOG.select(["json_valid"]))
    by_trace = {e.trace_id: e for e in evaluations}
    assert by_trace["tr_1"].status == "judge_failed"
    assert by_trace["tr_1"].failure_kind == "checker_error"
    assert by_trace["tr_1"].error == "RuntimeError: checker bug on this input"
    assert by_trace["tr_0"].passed is True and by_trace["tr_2"].passed is True


def test_a_label_outside_the_rubric_is_never_scored(example_trace: dict[str, Any]) -> None:
    (e,) = score(FakeStore([example_trace], [verdict("excellent")]), CATALOG.select(["helpfulness"]))
    assert (e.status, e.failure_kind, e.label) == ("judge_failed", "rubric_mismatch", None)


def test_missing_trace_ids_are_a_no_op(example_trace: dict[str, Any]) -> None:
    store = FakeStore([example_trace], [])
    assert score(store, CATALOG.select(["json_valid"]), ids=["tr_gone"]) == []
