"""Building gate inputs in a real store through the real write paths: traces through
``ingest_lines``, batches and sampled traces through the batch store, evaluations through
``save_evaluations`` (which copies release, segment, timestamp and 1/p onto each row), and
reviewer labels as rows of ``review_label`` (relabels append)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from tracejury.core.evaluation import Evaluation
from tracejury.core.sampling import SampleDraw
from tracejury.core.segments import default_segmentation
from tracejury.store.batches import add_batch_traces
from tracejury.store.evaluations import create_batch, finish_batch, save_evaluations
from tracejury.store.ingest import ingest_lines
from tracejury.store.tables import ReviewLabel

Verdict = tuple[str, bool | None]
"""(status, passed) of one evaluation."""


def ingest_release(engine: Engine, example: dict[str, Any], release: str, day: int, n: int, *,
                   models: int = 3, tie: int = 3, seed: int = 0) -> list[str]:  # fmt: skip
    """``n`` traces of a release on a day, ``tie`` of them per second (equal timestamps),
    over ``models`` model versions (segments), every other one with ``toolRequired``,
    sessions of 4 traces; ingested in shuffled order. Returns the ids in time order."""
    lines = []
    for i in range(n):
        doc = copy.deepcopy(example)
        doc["traceId"] = f"{release}_{i:05d}"
        doc["releaseId"] = release
        sec = i // tie
        doc["timestamp"] = f"2026-11-{day:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.000Z"
        doc["config"]["model"]["version"] = f"v{i % models}"
        doc["req"]["toolRequired"] = i % 2 == 0
        doc["req"]["sessionIdHash"] = f"sha256:{release}-session-{i // 4}"
        lines.append(orjson.dumps(doc))
    random.Random(seed).shuffle(lines)
    counts = ingest_lines(engine, release, list(enumerate(lines, 1)), segmentation=default_segmentation())
    assert counts.ingested == n, counts
    return [f"{release}_{i:05d}" for i in range(n)]


def score(engine: Engine, release: str, trace_ids: Sequence[str], verdict: Callable[[int], Verdict], *,
          evaluator: str = "answer_correctness", version: Callable[[int], str] = lambda i: "1",
          probability: Callable[[int], float] | None = None, done: bool = True,
          config: dict[str, Any] | None = None) -> str:  # fmt: skip
    """A batch of the release that scored ``trace_ids`` (the i-th gets ``verdict(i)`` under
    ``version(i)``); with ``probability``, the traces were sampled with it (weight 1/p). The
    batch ends ``done`` unless ``done`` is False (it stays ``running``); ``config`` is its
    frozen config snapshot (``judge_config`` builds one naming a judge)."""
    batch = create_batch(engine, release=release, kind="inline", config=config or {}, sampled=len(trace_ids))
    if probability is not None:
        draws = [SampleDraw(t, probability(i)) for i, t in enumerate(trace_ids)]
        add_batch_traces(engine, batch, draws, chunk_size=1000)
    evaluations = []
    model = (config or {}).get("judgeProfiles", {}).get("default", {}).get("model")
    for i, trace_id in enumerate(trace_ids):
        status, passed = verdict(i)
        evaluations.append(Evaluation(
            trace_id=trace_id, evaluator_id=evaluator, evaluator_version=version(i), evaluator_fingerprint="f",
            evaluator_kind="rubric", status=status, passed=passed,
            label=None if passed is None else ("pass" if passed else "fail"),
            failure_kind="timeout" if status == "judge_failed" else None, evidence_hash=f"e{i}",
        judge_model=model, judge_profile="default" if config else None,
        ))  # fmt: skip
    save_evaluations(engine, batch, evaluations)
    if done:
        finish_batch(engine, batch, state="done")
    return batch


def judge_config(evaluator: str = "answer_correctness", *, model: str = "judge-a",
                 base_url: str = "http://127.0.0.1:8100/v1", temperature: float = 0.0) -> dict[str, Any]:
    """A batch config snapshot whose evaluator is judged by the ``default`` profile."""
    return {
        "evaluators": [{"id": evaluator, "version": "1", "fingerprint": "f", "kind": "rubric"}],
        "rubrics": [{"id": evaluator, "judge": {"profile": "default", "temperature": temperature, "samples": 1}}],
        "judgeProfiles": {"default": {"name": "default", "model": model, "base_url": base_url}},
    }


def label(engine: Engine, trace_id: str, passed: bool | None, *, evaluator: str = "answer_correctness",
          reviewer: str = "ann", item_id: int | None = None) -> None:  # fmt: skip
    """A reviewer's label on (trace, evaluator): a new row, whatever was there before (on
    review item ``item_id`` when given)."""
    with engine.begin() as conn:
        conn.execute(ReviewLabel.__table__.insert().values(
            item_id=item_id, trace_id=trace_id, evaluator_id=evaluator, evaluator_version="1", reviewer=reviewer,
            label={True: "pass", False: "fail", None: "unsure"}[passed], passed=passed,
            created_at=datetime.now(UTC),
        ))  # fmt: skip
