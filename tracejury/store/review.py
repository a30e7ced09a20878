"""The human-review queue in the store: escalating a batch's judgments into review items
(``tracejury.store.escalation``, re-exported here), claiming them with a lease, labelling and
skipping them, and reading them back.

Every function takes the engine, does its own transaction, and returns plain JSON-ready
dicts (camelCase keys, ISO-8601 UTC times), the shapes the CLI prints and the API serves:

* **item** (``list_items``, ``claim_next``, ``skip_item``): ``itemId``, ``traceId``,
  ``rubric``, ``rubricVersion``, ``batchId``, ``release``, ``segment``, ``reasons``,
  ``priority``, ``evaluationIds``, ``state``, ``claimedBy``, ``claimedByToken``,
  ``leaseExpiresAt``, ``createdAt``, ``updatedAt``.
* **item detail** (``get_item``): an item plus ``trace`` (the stored body), ``view``
  (``tracejury.core.review.trace_view``), ``judge`` (the rubric's evaluation), ``checkers``
  (the disagreeing checkers' evaluations), ``scale``, ``question`` (the rubric's
  ``description`` and judge ``prompt``) and ``labels`` (history, oldest first).
* **label** (``label_item``): ``labelId``, ``itemId``, ``traceId``, ``rubric``,
  ``rubricVersion``, ``reviewer``, ``tokenId``, ``label``, ``passed``, ``rationale``, ``createdAt``.

Who: ``claimedBy`` and ``reviewer`` are the reviewer's name (what people read);
``claimedByToken`` and ``tokenId`` the id of the API token that acted — an admin's token when
it acted for the reviewer named, null from the CLI (audit reads these).

States: ``pending → claimed → labelled`` or ``skipped``. A claim whose lease has expired reads
as ``pending`` (``claimedBy`` and ``leaseExpiresAt`` null) and can be claimed by anyone; until
someone does, its old holder may still label it. Claiming is one conditional ``UPDATE …
WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) AND <still available> RETURNING``: on SQLite
the statement runs under the database's single write lock, on PostgreSQL the row lock and
``SKIP LOCKED`` keep concurrent claimers apart — two reviewers never get the same item.

Labelling needs the item's claim (held by this reviewer, even if its lease ran out, as long
as nobody claimed it since), or an item already ``labelled`` or ``skipped``: anyone may
relabel. A label is a new ``review_label`` row; a relabel appends and the newest row is the
human label of the (trace, rubric).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, bindparam, func, literal, or_, select, update

from tracejury.core.errors import Conflict, InvalidInput, NotFound
from tracejury.core.escalation import REASONS
from tracejury.core.review import ITEM_STATES, LabelScale, trace_view
from tracejury.store.agreement import labelled_pairs
from tracejury.store.escalation import EscalatingRubric, escalate_batch  # re-exported: escalation lives there
from tracejury.store.tables import Batch, EvaluationRow, ReviewItem, ReviewLabel, StoredTrace

__all__ = [
    "DEFAULT_LEASE_S",
    "EscalatingRubric",
    "claim_next",
    "count_items",
    "escalate_batch",
    "get_item",
    "item_scale",
    "label_item",
    "labelled_pairs",
    "list_items",
    "skip_item",
]

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 600.0
"""A claim's lease: 10 minutes, after which the item returns to the queue."""

_R = ReviewItem.__table__
_L = ReviewLabel.__table__
_E = EvaluationRow.__table__
_B = Batch.__table__
_T = StoredTrace.__table__


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- reading items ----------------------------------------------------------------------


def _available(now: datetime) -> Any:
    """Claimable: pending, or claimed with an expired lease."""
    return or_(_R.c.state == "pending", and_(_R.c.state == "claimed", _R.c.lease_expires_at < now))


def _filters(
    now: datetime,
    *,
    state: str | None = None,
    rubric: str | None = None,
    reason: str | None = None,
    segment: str | None = None,
    release: str | None = None,
) -> list[Any]:
    """WHERE clauses of the queue filters; bad values are ``InvalidInput``."""
    conds: list[Any] = []
    if state is not None:
        if state not in ITEM_STATES:
            raise InvalidInput(f"state: unknown state {state!r} (known: {', '.join(ITEM_STATES)})")
        if state == "pending":
            conds.append(_available(now))
        elif state == "claimed":
            conds.append(and_(_R.c.state == "claimed", _R.c.lease_expires_at >= now))
        else:
            conds.append(_R.c.state == state)
    if rubric is not None:
        conds.append(_R.c.evaluator_id == rubric)
    if reason is not None:
        if reason not in REASONS:
            raise InvalidInput(f"reason: unknown reason {reason!r} (known: {', '.join(REASONS)})")
        conds.append(_R.c.reasons.contains(f'"{reason}"', autoescape=True))
    if segment:
        for part in segment.split("|"):
            if "=" not in part:
                raise InvalidInput(f"segment: {part!r} is not dim=value (e.g. rag=on|tool=none)")
            conds.append((literal("|") + _R.c.segment_key + literal("|")).contains(f"|{part}|", autoescape=True))
    if release is not None:
        conds.append(_R.c.release_id == release)
    return conds


def _item(row: Any, now: datetime) -> dict[str, Any]:
    expired = row.state == "claimed" and row.lease_expires_at is not None and row.lease_expires_at < now
    return {
        "itemId": row.id,
        "traceId": row.trace_id,
        "rubric": row.evaluator_id,
        "rubricVersion": row.evaluator_version,
        "batchId": row.batch_id,
        "release": row.release_id,
        "segment": row.segment_key,
        "reasons": orjson.loads(row.reasons),
        "priority": row.priority,
        "evaluationIds": orjson.loads(row.evaluation_ids),
        "state": "pending" if expired else row.state,
        "claimedBy": None if expired else row.claimed_by,
        "claimedByToken": None if expired else row.claimed_by_token,
        "leaseExpiresAt": None if expired or row.state != "claimed" else _iso(row.lease_expires_at),
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
    }


def list_items(
    engine: Engine,
    *,
    state: str | None = None,
    rubric: str | None = None,
    reason: str | None = None,
    segment: str | None = None,
    release: str | None = None,
    limit: int = 100,
    offset: int = 0,
    after: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Items in queue order (priority high to low, then oldest first), filtered.

    ``state`` is the state as it reads now (an expired claim is ``pending``); ``reason`` one
    of ``tracejury.core.escalation.REASONS``; ``segment`` one or more ``dim=value`` joined by
    ``|`` (every one must be in the item's segment key); ``rubric`` and ``release`` exact ids.
    ``after``: keyset paging, the (priority, item id) of the last item of the previous page —
    only items after it in queue order (a deep page costs what the first does; ``offset``
    scans and drops every row before it).
    """
    now = _now()
    conds = _filters(now, state=state, rubric=rubric, reason=reason, segment=segment, release=release)
    if after is not None:
        priority, item_id = after
        conds.append(or_(_R.c.priority < priority, and_(_R.c.priority == priority, _R.c.id > item_id)))
    stmt = select(_R).where(*conds).order_by(_R.c.priority.desc(), _R.c.id).limit(limit).offset(offset)
    with engine.connect() as conn:
        return [_item(r, now) for r in conn.execute(stmt)]


def count_items(engine: Engine, *, batch_id: str | None = None, state: str | None = None) -> int:
    """How many items, optionally those a batch enqueued and/or in a state (as it reads now)."""
    now = _now()
    conds = _filters(now, state=state)
    if batch_id is not None:
        conds.append(_R.c.batch_id == batch_id)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(_R).where(*conds)).scalar_one()


def _rubric(conn: Connection, batch_id: str | None, rubric_id: str, version: str) -> dict[str, Any]:
    """The rubric version as the batch's frozen config snapshot holds it."""
    raw = conn.execute(select(_B.c.config).where(_B.c.id == batch_id)).scalar_one_or_none() if batch_id else None
    config = orjson.loads(raw) if raw is not None else {}
    for r in config.get("rubrics", []):
        if r.get("id") == rubric_id and str(r.get("version")) == version:
            return r
    raise NotFound(f"rubric {rubric_id} version {version} is not in the config of batch {batch_id}")


def _scale(conn: Connection, batch_id: str | None, rubric_id: str, version: str) -> LabelScale:
    """The label scale of the rubric version, from the batch's frozen config snapshot."""
    return LabelScale.from_output(_rubric(conn, batch_id, rubric_id, version).get("output"))


def item_scale(engine: Engine, item_id: int) -> dict[str, list[str]]:
    """The labels a reviewer may give item ``item_id``: ``{"labels": [...], "passing": [...]}``."""
    with engine.connect() as conn:
        row = _one(conn, item_id)
        return _scale(conn, row.batch_id, row.evaluator_id, row.evaluator_version).as_dict()


def _one(conn: Connection, item_id: int) -> Any:
    row = conn.execute(select(_R).where(_R.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"no review item {item_id}")
    return row


def _evaluation(row: Any) -> dict[str, Any]:
    return {
        "evaluationId": row.id,
        "evaluator": row.evaluator_id,
        "evaluatorVersion": row.evaluator_version,
        "kind": row.evaluator_kind,
        "batchId": row.batch_id,
        "status": row.status,
        "label": row.label,
        "passed": row.passed,
        "confidence": row.confidence,
        "rationale": row.rationale,
        "sampleLabels": row.sample_labels.split(",") if row.sample_labels else [],
        "failureKind": row.failure_kind,
        "error": row.error,
        "judgeModel": row.judge_model,
        "createdAt": _iso(row.created_at),
    }


def _label(row: Any) -> dict[str, Any]:
    return {
        "labelId": row.id,
        "itemId": row.item_id,
        "traceId": row.trace_id,
        "rubric": row.evaluator_id,
        "rubricVersion": row.evaluator_version,
        "reviewer": row.reviewer,
        "tokenId": row.token_id,
        "label": row.label,
        "passed": row.passed,
        "rationale": row.rationale,
        "createdAt": _iso(row.created_at),
    }


def get_item(engine: Engine, item_id: int) -> dict[str, Any]:
    """Everything a reviewer needs about one item (``NotFound`` if there is none): the item,
    ``trace`` (the stored body), ``view`` (input, answer, chunks, tool snapshots, flags),
    ``judge`` (the rubric's evaluation: label, confidence, rationale, sample labels, or its
    failure), ``checkers`` (evaluations of the checkers that disagreed), ``scale`` (allowed
    and passing labels), ``question`` (what the rubric asks: its ``description`` and the
    judge's ``prompt``, null for a checker) and ``labels`` (every human label on this trace
    and rubric, oldest first; the last is the one gates use)."""
    now = _now()
    with engine.connect() as conn:
        row = _one(conn, item_id)
        item = _item(row, now)
        body = conn.execute(select(_T.c.body).where(_T.c.trace_id == row.trace_id)).scalar_one()
        evaluations = {
            e.id: _evaluation(e)
            for e in conn.execute(
                select(_E).where(_E.c.id.in_(bindparam("ids", expanding=True))), {"ids": item["evaluationIds"]}
            )
        }
        labels = conn.execute(
            select(_L).where(_L.c.trace_id == row.trace_id, _L.c.evaluator_id == row.evaluator_id).order_by(_L.c.id)
        ).all()
        rubric = _rubric(conn, row.batch_id, row.evaluator_id, row.evaluator_version)
    scale = LabelScale.from_output(rubric.get("output"))
    judge_spec = rubric.get("judge") or {}
    # a pruned trace (docs/retention.md) has no body left: its ids only
    trace = orjson.loads(body) if body else {"traceId": row.trace_id, "releaseId": row.release_id, "pruned": True}
    ids = item["evaluationIds"]
    return {
        **item,
        "trace": trace,
        "view": trace_view(trace),
        "judge": evaluations.get(ids[0]),
        "checkers": [evaluations[i] for i in ids[1:] if i in evaluations],
        "scale": scale.as_dict(),
        "question": {"description": rubric.get("description") or "", "prompt": judge_spec.get("prompt")},
        "labels": [_label(r) for r in labels],
    }


# --- the queue --------------------------------------------------------------------------


def claim_next(
    engine: Engine,
    reviewer: str,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    rubric: str | None = None,
    reason: str | None = None,
    segment: str | None = None,
    token_id: str | None = None,
) -> dict[str, Any] | None:
    """Claim the highest-priority claimable item (pending, or claimed with an expired lease)
    that matches the filters, for ``lease_s`` seconds; returns the item, or None when nothing
    is claimable. Atomic: concurrent claimers (threads, processes, machines) never get the
    same item. ``token_id``: the API token making the claim, recorded beside the name."""
    _check_reviewer(reviewer)
    if lease_s <= 0:
        raise InvalidInput(f"lease: must be positive seconds, got {lease_s}")
    now = _now()
    conds = _filters(now, rubric=rubric, reason=reason, segment=segment)
    pick = (
        select(_R.c.id)
        .where(_available(now), *conds)
        .order_by(_R.c.priority.desc(), _R.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer and ignores it
        .scalar_subquery()
    )
    stmt = (
        update(_R)
        .where(_R.c.id == pick, _available(now))
        .values(
            state="claimed", claimed_by=reviewer, claimed_by_token=token_id,
            lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now,
        )  # fmt: skip
        .returning(*_R.c)
    )
    with engine.begin() as conn:
        row = conn.execute(stmt).first()
    return None if row is None else _item(row, now)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 control characters: a name is printed on reviewers' terminals and pages."""


def _check_reviewer(reviewer: str) -> None:
    """A reviewer name fits the column (128 characters) and is not blank."""
    if not reviewer.strip():
        raise InvalidInput("reviewer: must not be empty")
    if len(reviewer) > 128:
        raise InvalidInput(f"reviewer: at most 128 characters, got {len(reviewer)}")
    if _CONTROL.search(reviewer):
        raise InvalidInput(f"reviewer: control characters are not allowed in a name: {reviewer!r}")


def _refusal(conn: Connection, item_id: int, reviewer: str, action: str) -> Conflict:
    """Why ``action`` was refused, as a one-line ``Conflict`` (or raise ``NotFound``)."""
    row = _one(conn, item_id)
    item = _item(row, _now())
    if item["state"] == "claimed":
        why = f"it is claimed by {item['claimedBy']} until {item['leaseExpiresAt']}"
    elif item["state"] == "pending":
        why = "it is not claimed: claim it first (tracejury review next)"
    else:
        why = f"it is {item['state']}"
    return Conflict(f"review item {item_id}: {reviewer} cannot {action} it: {why}")


def label_item(
    engine: Engine,
    item_id: int,
    reviewer: str,
    label: str,
    rationale: str | None = None,
    *,
    token_id: str | None = None,
) -> dict[str, Any]:
    """Record ``reviewer``'s label on an item and mark it labelled; returns the label.
    ``token_id``: the API token recording it (stored beside the reviewer's name).

    The label must be one of the rubric version's labels (``InvalidInput`` otherwise); its
    ``passed`` comes from the rubric's passing labels. Allowed on an item this reviewer holds
    (even past its lease, until someone else claims it) and on a labelled or skipped item
    (a relabel, by anyone: a new row, the old ones stay). Otherwise ``Conflict``; an unknown
    item is ``NotFound``.
    """
    _check_reviewer(reviewer)
    with engine.connect() as conn:
        row = _one(conn, item_id)
        scale = _scale(conn, row.batch_id, row.evaluator_id, row.evaluator_version)
    passed = scale.passed(label)
    now = _now()
    mine = and_(_R.c.state == "claimed", _R.c.claimed_by == reviewer)
    stmt = (
        update(_R)
        .where(_R.c.id == item_id, or_(_R.c.state.in_(["labelled", "skipped"]), mine))
        .values(state="labelled", lease_expires_at=None, updated_at=now)
        .returning(_R.c.trace_id, _R.c.evaluator_id, _R.c.evaluator_version)
    )
    with engine.begin() as conn:
        held = conn.execute(stmt).first()
        if held is None:
            raise _refusal(conn, item_id, reviewer, "label")
        values = {
            "item_id": item_id, "trace_id": held.trace_id, "evaluator_id": held.evaluator_id,
            "evaluator_version": held.evaluator_version, "reviewer": reviewer, "token_id": token_id, "label": label,
            "passed": passed, "rationale": rationale or None, "created_at": now,
        }  # fmt: skip
        stored = conn.execute(_L.insert().values(values).returning(*_L.c)).one()
    return _label(stored)


def skip_item(engine: Engine, item_id: int, reviewer: str) -> dict[str, Any]:
    """Set aside an item this reviewer holds (state ``skipped``: it leaves the queue, and
    anyone may still label it later); returns the item. ``Conflict`` if the reviewer does not
    hold it, ``NotFound`` if there is no such item."""
    _check_reviewer(reviewer)
    now = _now()
    stmt = (
        update(_R)
        .where(_R.c.id == item_id, _R.c.state == "claimed", _R.c.claimed_by == reviewer)
        .values(state="skipped", lease_expires_at=None, updated_at=now)
        .returning(*_R.c)
    )
    with engine.begin() as conn:
        row = conn.execute(stmt).first()
        if row is None:
            raise _refusal(conn, item_id, reviewer, "skip")
    return _item(row, now)
