"""Judge–human agreement in the store: every reviewed (trace, rubric) with the judge's
evaluation and the newest human label, the input of ``tracejury.core.agreement``; and the
audit agreement of one release (the ``judge_agreement`` gate's input)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, bindparam, func, select

from tracejury.core.agreement import AuditAgreement, audit_agreement
from tracejury.core.review import LabelScale
from tracejury.store.tables import Batch, EvaluationRow, ReviewItem, ReviewLabel

__all__ = ["audit_agreements", "labelled_pairs"]

_R = ReviewItem.__table__
_L = ReviewLabel.__table__
_E = EvaluationRow.__table__
_B = Batch.__table__
_IDS_PER_QUERY = 500


def labelled_pairs(engine: Engine, *, rubric: str | None = None, release: str | None = None,
                   audit_only: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """For every item with a human label: the rubric and version, segment, reasons, the
    judge's evaluation (status, label, passed, when) and the newest human label (label,
    passed), and the item's weight (1/inclusion p of the audit draw; the evaluation's 1/p
    for items escalated before it was stored, or not drawn for audit). The input of
    ``tracejury.core.agreement``."""
    newest = (
        select(_L.c.trace_id, _L.c.evaluator_id, func.max(_L.c.id).label("label_id"))
        .group_by(_L.c.trace_id, _L.c.evaluator_id)
        .subquery()
    )
    stmt = (
        select(_R.c.trace_id, _R.c.evaluator_id, _R.c.evaluator_version, _R.c.segment_key, _R.c.reasons,
               _R.c.evaluation_ids, _R.c.inclusion_p, _L.c.label, _L.c.passed)
        .join(newest, and_(newest.c.trace_id == _R.c.trace_id, newest.c.evaluator_id == _R.c.evaluator_id))
        .join(_L, _L.c.id == newest.c.label_id)
        .order_by(_R.c.id)
    )  # fmt: skip
    if rubric is not None:
        stmt = stmt.where(_R.c.evaluator_id == rubric)
    if release is not None:
        stmt = stmt.where(_R.c.release_id == release)
    if audit_only:
        stmt = stmt.where(_R.c.reasons.like('%"audit"%'))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
        judge_ids = [orjson.loads(r.evaluation_ids)[0] for r in rows]
        judged: dict[int, Any] = {}
        for start in range(0, len(judge_ids), _IDS_PER_QUERY):
            part = judge_ids[start : start + _IDS_PER_QUERY]
            for e in conn.execute(
                select(_E.c.id, _E.c.status, _E.c.label, _E.c.passed, _E.c.weight, _E.c.created_at).where(
                    _E.c.id.in_(bindparam("ids", expanding=True))
                ),
                {"ids": part},
            ):
                judged[e.id] = e
        scales = _scales(conn, {(r.evaluator_id, r.evaluator_version) for r in rows})
    out = []
    for r, judge_id in zip(rows, judge_ids, strict=True):
        j = judged.get(judge_id)
        out.append({
            "traceId": r.trace_id, "rubric": r.evaluator_id, "rubricVersion": r.evaluator_version,
            "labels": list(scales.get((r.evaluator_id, r.evaluator_version), ())),
            "segment": r.segment_key, "reasons": orjson.loads(r.reasons),
            "judgeStatus": j.status if j else None, "judgeLabel": j.label if j else None,
            "judgePassed": j.passed if j else None, "humanLabel": r.label, "humanPassed": r.passed,
            "weight": 1.0 / r.inclusion_p if r.inclusion_p else (j.weight if j else 1.0),
            "judgedAt": j.created_at if j else None,
        })  # fmt: skip
    return out


def audit_agreements(engine: Engine, rubric: str, release: str) -> list[AuditAgreement]:
    """Per rubric version, the audit labels of a release against the judge (1/p-weighted)."""
    rows = labelled_pairs(engine, rubric=rubric, release=release, audit_only=True)
    out = []
    for version in sorted({r["rubricVersion"] for r in rows}):
        mine = [r for r in rows if r["rubricVersion"] == version]
        found = audit_agreement(mine, mine[0]["labels"])
        if found is not None:
            out.append(found)
    return out


def _scales(conn: Connection, versions: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, ...]]:
    """Label order of each (rubric, version), from the newest batch config that holds it."""
    wanted = set(versions)
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    if not wanted:
        return found
    by_rubric: dict[str, set[str]] = defaultdict(set)
    for rid, version in wanted:
        by_rubric[rid].add(version)
    batches = select(_R.c.batch_id).where(_R.c.evaluator_id.in_(bindparam("ids", expanding=True))).distinct()
    stmt = select(_B.c.config).where(_B.c.id.in_(batches)).order_by(_B.c.created_at.desc())
    for (raw,) in conn.execute(stmt, {"ids": sorted(by_rubric)}):
        for r in orjson.loads(raw).get("rubrics", []):
            key = (r.get("id"), str(r.get("version")))
            if key in wanted and key not in found:
                found[key] = LabelScale.from_output(r.get("output")).labels
        if len(found) == len(wanted):
            break
    return found
