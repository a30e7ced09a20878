"""A large review queue, fast: ``n`` simulated traces ingested in-process, one scoring batch
whose config freezes the shipped ``answer_correctness`` rubric, a scored judge evaluation per
trace, and one pending review item per trace written straight into the queue's table.

Escalation is not what is measured here (tests/integration/test_review.py covers it, and its
caps would keep the queue small): the page and the claim API are. Used by the 10,000-item page
tests and by ``bench/review_page.py``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Engine, select

from judges.catalog import load_catalog
from tracejury.core.evaluation import Evaluation
from tracejury.core.redaction import Redactor
from tracejury.core.segments import default_segmentation
from tracejury.core.simulate import simulate
from tracejury.store.evaluations import create_batch, save_evaluations
from tracejury.store.ingest import ingest_lines
from tracejury.store.tables import EvaluationRow, ReviewItem
from workers.pipeline import batch_config

__all__ = ["RUBRIC", "seed_queue"]

ROOT = Path(__file__).resolve().parents[2]
RUBRIC = "answer_correctness"
_REASONS = (["audit"], ["low_confidence"], ["checker_disagrees"], ["samples_disagree"], ["low_confidence", "audit"])


def seed_queue(engine: Engine, n: int, *, release: str = "r1", seed: int = 5) -> str:
    """Fill an empty store (schema at head) with ``n`` pending review items of ``RUBRIC``;
    returns the batch id. Priorities spread over 0..9 so queue order is not insertion order."""
    lines = ((i + 1, orjson.dumps(t)) for i, t in enumerate(simulate(release, n, seed=seed)))
    counts = ingest_lines(engine, "seed.jsonl", lines, segmentation=default_segmentation(), redaction=Redactor.off())
    assert counts.ingested == n, counts
    catalog = load_catalog(ROOT / "rubrics")
    rubric = catalog.rubrics[RUBRIC]
    batch_id = create_batch(engine, release=release, kind="score", config=batch_config([rubric], catalog), sampled=n)
    trace_ids = [t["traceId"] for t in simulate(release, n, seed=seed)]
    evaluations = []
    for i, trace_id in enumerate(trace_ids):
        passed = i % 3 != 0
        evaluations.append(
            Evaluation(
                trace_id=trace_id,
                evaluator_id=rubric.id,
                evaluator_version=rubric.version,
                evaluator_fingerprint=rubric.fingerprint,
                evaluator_kind="rubric",
                status="scored",
                label="pass" if passed else "fail",
                passed=passed,
                confidence=0.5 + (i % 5) / 10,
                rationale=f"seeded verdict {i}: the answer {'agrees' if passed else 'disagrees'} with the tool output",
                judge_profile="default",
                judge_model="mock-judge",
                evidence_hash=hashlib.sha256(trace_id.encode()).hexdigest(),
            )
        )
    for start in range(0, n, 2000):
        save_evaluations(engine, batch_id, evaluations[start : start + 2000])
    table = ReviewItem.__table__
    evals = EvaluationRow.__table__
    now = datetime.now(UTC)
    with engine.begin() as conn:
        found = conn.execute(
            select(evals.c.id, evals.c.trace_id, evals.c.release_id, evals.c.segment_key).where(
                evals.c.batch_id == batch_id
            )
        ).all()
        assert len(found) == n, (len(found), n)
        rows = [
            {
                "trace_id": e.trace_id,
                "evaluator_id": rubric.id,
                "evaluator_version": rubric.version,
                "batch_id": batch_id,
                "release_id": e.release_id or "",
                "segment_key": e.segment_key or "",
                "reasons": orjson.dumps(_REASONS[i % len(_REASONS)]).decode(),
                "priority": (i * 7) % 10,
                "evaluation_ids": orjson.dumps([e.id]).decode(),
                "state": "pending",
                "created_at": now + timedelta(microseconds=i),
                "updated_at": now,
            }
            for i, e in enumerate(found)
        ]
        for start in range(0, n, 1000):
            conn.execute(table.insert(), rows[start : start + 1000])
    return batch_id
