"""Escalation in the store: a batch's uncertain, disagreeing, failed and audited judgments
become review items, as many as the review budget has room for.

``escalate_batch`` reads the batch's evaluations, applies each rubric's policy
(``tracejury.core.escalation.escalate``), ranks the candidates and fills the budget
(``select_within_budget``) with what this batch and this UTC day already used, inserts the
chosen items and records in the batch's config, under ``escalation``, what it did: the caps,
the items enqueued, what the caps left out per rubric and reason, the audit rate kept and how
the order was decided. One transaction holds the budget: on PostgreSQL an advisory lock, on
SQLite the database's write lock, so two batches ending at once never both spend the day's
last items.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, text, update

from tracejury.core.escalation import (
    Budget,
    Candidate,
    Caps,
    EscalationPolicy,
    GateMargin,
    Judgment,
    escalate,
    margin_distance,
    nearest_margin,
    order_hash,
    select_within_budget,
)
from tracejury.core.escalation import audit_draw as _audit_draw
from tracejury.store.engine import insert_ignoring_conflicts
from tracejury.store.tables import Batch, EvaluationRow, GateOutcome, GateRun, ReviewItem, ReviewLeftOut

__all__ = ["EscalatingRubric", "day_counts", "escalate_batch", "gate_margins", "left_out_totals", "recorded_caps"]

log = logging.getLogger(__name__)

_R = ReviewItem.__table__
_E = EvaluationRow.__table__
_B = Batch.__table__
_LO = ReviewLeftOut.__table__
_INSERT_ROWS = 500
_LOCK_KEY = 0x7472_6A75_7279  # "trjury": PostgreSQL advisory lock of the review budget


class EscalatingRubric(Protocol):
    """What escalation needs of a rubric (``judges.rubric.Rubric`` has this shape)."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def escalation(self) -> EscalationPolicy: ...


def _judgment(row: Any) -> Judgment:
    labels = tuple(row.sample_labels.split(",")) if row.sample_labels else ()
    return Judgment(row.id, row.status, passed=row.passed, confidence=row.confidence, sample_labels=labels)


def _checker_judgments(conn: Connection, batch_id: str, checker_ids: set[str]) -> dict[tuple[str, str], Judgment]:
    """The newest evaluation of each named checker on each trace of the batch (from any batch:
    a checker scored earlier still counts)."""
    if not checker_ids:
        return {}
    traces = select(_E.c.trace_id).where(_E.c.batch_id == batch_id).distinct()
    stmt = (
        select(_E.c.id, _E.c.trace_id, _E.c.evaluator_id, _E.c.status, _E.c.passed, _E.c.confidence,
               _E.c.sample_labels)
        .where(_E.c.evaluator_id.in_(bindparam("checkers", expanding=True)), _E.c.trace_id.in_(traces))
        .order_by(_E.c.id)
    )  # fmt: skip
    found: dict[tuple[str, str], Judgment] = {}
    for row in conn.execute(stmt, {"checkers": sorted(checker_ids)}):
        found[(row.trace_id, row.evaluator_id)] = _judgment(row)  # ascending ids: the newest wins
    return found


def gate_margins(conn: Connection, release: str | None) -> tuple[list[GateMargin], str | None]:
    """How near its margin each evaluator gate group was in the newest gate run of
    ``release`` (else the newest run of any release), and which run it was; ([], None) when no
    gate has run. Outcomes without an interval (too few samples, signal or agreement gates)
    say nothing about labels and are skipped."""
    runs = GateRun.__table__
    newest = select(runs.c.id, runs.c.release_id).order_by(runs.c.created_at.desc()).limit(1)
    found = conn.execute(newest.where(runs.c.release_id == release)).first() if release is not None else None
    found = found or conn.execute(newest).first()
    if found is None:
        return [], None
    run = found.id
    o = GateOutcome.__table__
    margins: list[GateMargin] = []
    for segment, raw in conn.execute(select(o.c.segment, o.c.audit).where(o.c.run_id == run)):
        audit = orjson.loads(raw)
        evaluator = ((audit.get("spec") or {}).get("metric") or {}).get("evaluator")
        outcome = audit.get("outcome") or {}
        interval, margin = outcome.get("interval"), outcome.get("margin")
        if not evaluator or not interval or len(interval) != 2 or not isinstance(margin, int | float):
            continue
        group = (outcome.get("slice") or segment or "").split("|")
        dims = dict(p.split("=", 1) for p in group) if all("=" in p for p in group) else {}
        margins.append(GateMargin(evaluator, dims, margin_distance(interval, float(margin))))
    return margins, f"{run} (release {found.release_id})"


def day_counts(conn: Connection, day: datetime) -> dict[str, int]:
    """Review items enqueued (by any batch) on the UTC day starting at ``day``, per rubric."""
    stmt = (select(_R.c.evaluator_id, func.count())
            .where(_R.c.created_at >= day, _R.c.created_at < day + timedelta(days=1))
            .group_by(_R.c.evaluator_id))  # fmt: skip
    return {r: int(n) for r, n in conn.execute(stmt)}


def _batch_counts(conn: Connection, batch_id: str) -> dict[str, int]:
    stmt = select(_R.c.evaluator_id, func.count()).where(_R.c.batch_id == batch_id).group_by(_R.c.evaluator_id)
    return {r: int(n) for r, n in conn.execute(stmt)}


def _queued_pairs(conn: Connection, batch_id: str, rubric_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(trace, rubric) pairs of the batch's traces that already have an item (any batch)."""
    traces = select(_E.c.trace_id).where(_E.c.batch_id == batch_id).distinct()
    stmt = select(_R.c.trace_id, _R.c.evaluator_id).where(
        _R.c.evaluator_id.in_(bindparam("ids", expanding=True)), _R.c.trace_id.in_(traces)
    )
    return {(t, r) for t, r in conn.execute(stmt, {"ids": list(rubric_ids)})}


def _lock_budget(conn: Connection, batch_id: str) -> None:
    """Serialise budget spending: PostgreSQL's advisory lock; on SQLite a first write takes
    the database's write lock before the counts are read."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    else:
        conn.execute(update(_B).where(_B.c.id == batch_id).values(id=_B.c.id))


def _candidates(engine: Engine, batch_id: str, rubrics: dict[str, EscalatingRubric],
                ) -> tuple[list[dict[str, Any]], list[Candidate], str | None]:  # fmt: skip
    """Every judgment of the batch its rubric's policy escalates, as item rows and budget
    candidates (same index), and the gate run that ordered them."""
    checker_ids = {c for r in rubrics.values() for c in r.escalation.on_checker_disagreement}
    stmt = select(
        _E.c.id, _E.c.trace_id, _E.c.evaluator_id, _E.c.evaluator_version, _E.c.status, _E.c.passed,
        _E.c.confidence, _E.c.sample_labels, _E.c.release_id, _E.c.segment_key, _E.c.weight,
    ).where(_E.c.batch_id == batch_id, _E.c.evaluator_id.in_(bindparam("ids", expanding=True)))  # fmt: skip
    rows: list[dict[str, Any]] = []
    found: list[Candidate] = []
    with engine.connect() as conn:
        release = conn.execute(select(_B.c.release_id).where(_B.c.id == batch_id)).scalar_one_or_none()
        margins, run = gate_margins(conn, release)
        checkers = _checker_judgments(conn, batch_id, checker_ids)
        for e in conn.execute(stmt, {"ids": sorted(rubrics)}):
            rubric = rubrics[e.evaluator_id]
            policy = rubric.escalation
            if e.evaluator_version != rubric.version:
                continue
            mine = {c: checkers[(e.trace_id, c)] for c in policy.on_checker_disagreement
                    if (e.trace_id, c) in checkers}  # fmt: skip
            got = escalate(policy, rubric_id=rubric.id, rubric_version=rubric.version,
                           trace_id=e.trace_id, judgment=_judgment(e), checkers=mine)  # fmt: skip
            if got is None:
                continue
            audited = "audit" in got.reasons
            rows.append({
                "trace_id": e.trace_id, "evaluator_id": e.evaluator_id, "evaluator_version": e.evaluator_version,
                "batch_id": batch_id, "release_id": e.release_id or "", "segment_key": e.segment_key or "",
                "reasons": orjson.dumps(list(got.reasons)).decode(), "priority": got.priority,
                "evaluation_ids": orjson.dumps(list(got.evaluation_ids)).decode(), "state": "pending",
                "audit_rate": policy.audit_rate if audited else None, "weight": e.weight,
            })  # fmt: skip
            key = _audit_draw(rubric.id, rubric.version, e.trace_id) / policy.audit_rate if audited else None
            found.append(Candidate(
                len(found), rubric.id, got.reasons, audit_key=key,
                gate_distance=nearest_margin(rubric.id, e.segment_key or "", margins),
                weight=e.weight or 1.0, tiebreak=order_hash(rubric.id, e.trace_id),
            ))  # fmt: skip
    return rows, found, run


def escalate_batch(engine: Engine, batch_id: str, rubrics: Sequence[EscalatingRubric], *,
                   overall: Caps | None = None, now: datetime | None = None) -> int:  # fmt: skip
    """Apply each rubric's escalation policy to its evaluations in the batch and enqueue the
    review items the budget has room for; returns how many new items were enqueued.

    The budget: ``overall`` caps over all rubrics (None: none) and each rubric's
    ``escalation.max_items_per_batch`` / ``max_items_per_day``, counting the items this batch
    already enqueued and every item enqueued this UTC day (``now``'s day). An audit item the
    budget keeps carries the audit rate actually applied (``audit_rate × kept``), so the
    audit stays a probability sample however the caps cut it.

    Idempotent: one item per (trace, rubric) ever (the table's unique key), so running it
    twice, or over two batches of the same traces, never enqueues a pair twice — the first
    escalation's item stands; a rerun counts the batch's own items against its caps and
    records the same left-out counts again (replacing, never adding to, the first record).
    """
    policies = {r.id: r for r in rubrics}
    if not policies:
        return 0
    overall = overall or Caps()
    now = now or datetime.now(UTC)
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows, candidates, run = _candidates(engine, batch_id, policies)
    caps = {r.id: Caps(r.escalation.max_items_per_batch, r.escalation.max_items_per_day) for r in rubrics}
    inserted = 0
    with engine.begin() as conn:
        _lock_budget(conn, batch_id)
        queued = _queued_pairs(conn, batch_id, list(policies))
        fresh = [c for c in candidates if (rows[c.ref]["trace_id"], c.rubric_id) not in queued]
        budget = Budget(overall, caps, _batch_counts(conn, batch_id), day_counts(conn, day))
        chosen = select_within_budget(fresh, budget)
        rate = {r: policies[r].escalation.audit_rate * kept for r, kept in chosen.audit_kept.items()}
        values = []
        for c in chosen.chosen:
            row = dict(rows[c.ref])
            weight = row.pop("weight")
            if row["audit_rate"] is not None:
                row["audit_rate"] = rate[c.rubric_id]
            row["inclusion_p"] = row["audit_rate"] / weight if row["audit_rate"] is not None and weight else None
            values.append(row | {"created_at": now, "updated_at": now})
        for start in range(0, len(values), _INSERT_ROWS):
            stmt = insert_ignoring_conflicts(_R, engine.dialect).values(values[start : start + _INSERT_ROWS])
            inserted += len(conn.execute(stmt.returning(_R.c.id)).all())
        for rubric_id, applied in rate.items():  # a rerun's cut applies to the items already there
            if applied > 0:
                mine = (_R.c.batch_id == batch_id, _R.c.evaluator_id == rubric_id, _R.c.audit_rate.is_not(None))
                conn.execute(update(_R).where(*mine, _R.c.audit_rate != applied).values(
                    inclusion_p=_R.c.inclusion_p * applied / _R.c.audit_rate, audit_rate=applied))  # fmt: skip
        left_out: dict[str, dict[str, int]] = {}
        for (rubric_id, reason), n in sorted(chosen.left_out.items()):
            left_out.setdefault(rubric_id, {})[reason] = n
        conn.execute(delete(_LO).where(_LO.c.batch_id == batch_id))  # a rerun's counts replace the first's
        counts = [{"batch_id": batch_id, "evaluator_id": rubric_id, "reason": reason, "n": n}
                  for (rubric_id, reason), n in sorted(chosen.left_out.items()) if n]  # fmt: skip
        if counts:
            conn.execute(insert(_LO), counts)
        record = {
            "caps": {"overall": overall.as_dict(), "rubrics": {r: c.as_dict() for r, c in sorted(caps.items())}},
            "day": day.date().isoformat(),
            "candidates": len(candidates),
            "alreadyQueued": len(candidates) - len(fresh),
            "enqueued": sum(_batch_counts(conn, batch_id).values()),
            "leftOut": left_out,
            "leftOutTotal": sum(chosen.left_out.values()),
            "auditRate": {r: {"configured": policies[r].escalation.audit_rate, "applied": round(a, 6)}
                          for r, a in sorted(rate.items())},  # fmt: skip
            "order": (f"gate run {run}: segments nearest a gate margin first, then estimate weight, then a seeded hash"
                      if run else "no gate run yet: by estimate weight, then a seeded hash"),
        }  # fmt: skip
        raw = conn.execute(select(_B.c.config).where(_B.c.id == batch_id)).scalar_one_or_none()
        if raw is not None:
            config = orjson.loads(raw)
            config["escalation"] = record
            conn.execute(update(_B).where(_B.c.id == batch_id).values(config=orjson.dumps(config)))
    log.info("batch %s: %d judgment(s) escalated, %d new review item(s), %d left out by the review budget",
             batch_id, len(candidates), inserted, record["leftOutTotal"])  # fmt: skip
    return inserted


def recorded_caps(config: dict[str, Any]) -> Caps | None:
    """The overall caps a batch's earlier escalation recorded (a rerun keeps them), or None."""
    overall = ((config.get("escalation") or {}).get("caps") or {}).get("overall")
    return None if overall is None else Caps.from_dict(overall)


def left_out_totals(conn: Connection) -> dict[tuple[str, str], int]:
    """(rubric, reason) → review items the budget left out, over every batch (``/metrics``)."""
    stmt = select(_LO.c.evaluator_id, _LO.c.reason, func.sum(_LO.c.n)).group_by(_LO.c.evaluator_id, _LO.c.reason)
    return {(rubric_id, reason): int(n) for rubric_id, reason, n in conn.execute(stmt)}
