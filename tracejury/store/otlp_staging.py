"""OTLP staging: spans wait in the store until their trace is whole, then one sweep assembles
and ingests it (``tracejury.core.otlp_assembly`` holds the policy).

Durable and shared: a fragment is committed before its request is answered, so an API
restart loses nothing and every API process and worker sees the same staging. Once per trace,
whatever the number of sweepers: a sweep takes a trace's fragments with ``DELETE … RETURNING``
and stores the trace, its quarantine lines and its tombstone in the same transaction; a
concurrent sweep's DELETE then finds nothing (PostgreSQL re-checks the rows after the first
commits; SQLite has one writer). A crash mid-sweep rolls the fragments back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection, Engine, delete, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tracejury.core import otlp_assembly as asm
from tracejury.core.ingest import IngestCounts, PreparedTrace, RejectedLine, escape_nul, prepare_chunk
from tracejury.core.otlp_spans import LogRecord, Span, SpanReport
from tracejury.core.redaction import Redactor, Renumbering, default_policy
from tracejury.core.segments import SegmentationConfig
from tracejury.core.validation import TraceValidator
from tracejury.store.engine import insert_ignoring_conflicts
from tracejury.store.ingest import quarantine_rows, write_rows
from tracejury.store.rows import build_rows
from tracejury.store.tables import OtlpAssembled, OtlpCounter, OtlpFragment, OtlpStagedTrace

__all__ = ["StagingFull", "SweepCounts", "counters", "stage", "staged", "sweep"]

log = logging.getLogger("tracejury.otlp")

_FRAGMENT = OtlpFragment.__table__
_STAGED = OtlpStagedTrace.__table__
_ASSEMBLED = OtlpAssembled.__table__
_COUNTER = OtlpCounter.__table__

COUNTERS = ("assembled_traces", "unmapped_traces", "expired_traces", "late_spans", "duplicate_spans")
"""Running totals kept in ``otlp_counter`` (``/metrics``: ``tracejury_otlp_<name>_total``)."""


class StagingFull(Exception):
    """The staging holds its limit of spans: the request is refused whole, to be retried."""


@dataclass
class Staged:
    """What one request staged."""

    traces: int = 0
    items: int = 0
    reports: list[SpanReport] = field(default_factory=list)
    """Traces of the request that could not be staged (values JSON cannot hold), and why."""


def staged(conn: Connection) -> tuple[int, int]:
    """(staged spans and log records, staged traces)."""
    items, traces = conn.execute(select(func.coalesce(func.sum(_STAGED.c.item_count), 0), func.count())).one()
    return int(items), int(traces)


_held: dict[str, tuple[float, int]] = {}
"""Per store, this process's last reading of the staged total: (monotonic time, items)."""
HELD_TTL_S = 1.0


def _check_room(conn: Connection, incoming: int, max_items: int) -> None:
    """Raise ``StagingFull`` when ``incoming`` more would pass ``max_items``. The total is read
    at most once a second per process (the limit bounds the staging; it need not be exact to the
    span), and always when the last reading was within 10% of the limit."""
    key = conn.engine.url.render_as_string()
    at, held = _held.get(key, (-HELD_TTL_S, 0))
    if time.monotonic() - at >= HELD_TTL_S or held + incoming > 0.9 * max_items:
        held = int(conn.execute(select(func.coalesce(func.sum(_STAGED.c.item_count), 0))).scalar_one())
        at = time.monotonic()
    if held + incoming > max_items:
        _held[key] = (at, held)
        raise StagingFull(f"OTLP staging holds {held} span(s) and log record(s); {incoming} more would pass "
                          f"its limit of {max_items} (TRACEJURY_OTLP_MAX_STAGED_SPANS): retry later")  # fmt: skip
    _held[key] = (at, held + incoming)


def _upsert(conn: Connection):  # noqa: ANN202 - the dialect's INSERT
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_STAGED)


def stage(engine: Engine, source: str, spans: Iterable[Span], logs: Iterable[LogRecord], *,
          max_items: int, now: float | None = None, redaction: Redactor | None = None) -> Staged:  # fmt: skip
    """Stage a request's spans and log records, one fragment per trace id, redacted by
    ``redaction`` (None: the shipped default policy; ``otlp_assembly.redact_group``) and
    committed before returning; each trace's summary row follows (root seen, arrival times,
    size, late when the trace was finished before). Raises ``StagingFull`` (nothing staged)
    when they would take the staging past ``max_items``."""
    redactor = redaction or default_policy()
    groups = [asm.redact_group(g, redactor) for g in asm.stage_groups(spans, logs)]
    if not groups:
        return Staged()
    now = time.time() if now is None else now
    rows, summary, reports = [], [], []
    for g in groups:  # one group per trace id
        size = len(g.spans) + len(g.logs)
        try:
            body = asm.dump_fragment(g)
        except orjson.JSONEncodeError as exc:  # e.g. values nested past JSON's 255 levels
            reports.append(SpanReport(g.trace_id, None, "", f"cannot be staged: {exc}", size))
            continue
        rows.append({"trace_id": g.trace_id, "source": source, "received_at": now, "body": body})
        summary.append({"trace_id": g.trace_id, "has_root": g.has_root, "first_at": now, "last_at": now,
                        "item_count": size, "late": False})  # fmt: skip
    if not rows:
        return Staged(reports=reports)
    incoming = sum(r["item_count"] for r in summary)
    summary.sort(key=lambda r: r["trace_id"])  # in id order: two writers never wait on each other in a cycle
    ids = [r["trace_id"] for r in summary]
    with engine.begin() as conn:
        _check_room(conn, incoming, max_items)
        conn.execute(insert(_FRAGMENT), rows)
        ins = _upsert(conn)
        merge = {"has_root": _STAGED.c.has_root | ins.excluded.has_root, "last_at": ins.excluded.last_at,
                 "item_count": _STAGED.c.item_count + ins.excluded.item_count}  # fmt: skip
        conn.execute(ins.on_conflict_do_update(index_elements=["trace_id"], set_=merge), summary)
        # after the upsert, which waits for a sweep holding these rows: a trace that sweep just
        # finished has its tombstone by now, and these fragments are late
        finished = sorted(conn.execute(select(_ASSEMBLED.c.trace_id).where(_ASSEMBLED.c.trace_id.in_(ids))).scalars())
        if finished:
            conn.execute(update(_STAGED).where(_STAGED.c.trace_id.in_(finished)).values(late=True))
    return Staged(traces=len(rows), items=incoming, reports=reports)


# -- the sweep -----------------------------------------------------------------------------


@dataclass
class SweepCounts:
    """What one sweep did."""

    assembled: int = 0
    """Traces assembled and handed to ingest."""
    ingest: IngestCounts = field(default_factory=IngestCounts)
    unmapped: int = 0
    expired: int = 0
    late_spans: int = 0
    duplicate_spans: int = 0

    @property
    def busy(self) -> bool:
        """Anything done."""
        return bool(self.assembled or self.unmapped or self.expired or self.late_spans or self.duplicate_spans)


_IDS_PER_STATEMENT = 10_000
"""Bound parameters per ``IN (…)``: PostgreSQL takes at most 65,535 in one statement."""
CLAIM_S = 60.0
"""How long a sweeper's claim on the traces it works out lasts (a sweeper that dies mid-round
leaves them to the others after this)."""


def _claim(engine: Engine, now: float, idle_s: float, max_wait_s: float, limit: int) -> dict[str, str]:
    """Claim up to ``limit`` staged traces the sweep acts on now, with the action
    (``otlp_assembly.decide``, or ``LATE``): traces another sweeper holds are skipped, so
    several sweepers share the work instead of repeating it."""
    t = _STAGED
    free = t.c.claimed_until.is_(None) | (t.c.claimed_until < now)
    # exactly otlp_assembly.decide's conditions (a wider filter would let busy traces fill the limit)
    ready = ((t.c.has_root & (t.c.last_at <= now - idle_s)) | (~t.c.has_root & (t.c.first_at <= now - max_wait_s))
             | t.c.late)  # fmt: skip
    with engine.begin() as conn:
        # PostgreSQL: rows another transaction holds (a sweep, a request staging) are skipped, never waited for
        rows = conn.execute(select(t.c.trace_id, t.c.has_root, t.c.first_at, t.c.last_at, t.c.late)
                            .where(free & ready).order_by(t.c.first_at).limit(limit)
                            .with_for_update(skip_locked=True)).all()  # fmt: skip
        actions = {}
        for trace_id, has_root, first_at, last_at, late in rows:
            action = asm.LATE if late else asm.decide(has_root, first_at, last_at, now, idle_s, max_wait_s)
            if action:
                actions[trace_id] = action
        if not actions:
            return {}
        claimed = conn.execute(update(t).where(t.c.trace_id.in_(sorted(actions)) & free)
                               .values(claimed_until=now + CLAIM_S).returning(t.c.trace_id)).scalars()  # fmt: skip
        return {trace_id: actions[trace_id] for trace_id in claimed}


def _read(conn: Connection, trace_ids: list[str]) -> dict[str, list[asm.Fragment]]:
    """The staged fragments of ``trace_ids``, in arrival order."""
    f = _FRAGMENT
    rows = conn.execute(select(f.c.id, f.c.source, f.c.trace_id, f.c.body).where(f.c.trace_id.in_(trace_ids))
                        .order_by(f.c.id))  # fmt: skip
    out: dict[str, list[asm.Fragment]] = defaultdict(list)
    for fid, source, trace_id, body in rows:
        out[trace_id].append(asm.load_fragment(fid, source, trace_id, body))
    return out


def _take_rest(conn: Connection, trace_ids: list[str]) -> dict[str, list[asm.Fragment]]:
    """Delete and return the fragments of ``trace_ids`` still staged (they arrived after the
    sweep read the trace)."""
    f = _FRAGMENT
    rows = conn.execute(
        delete(f).where(f.c.trace_id.in_(trace_ids)).returning(f.c.id, f.c.source, f.c.trace_id, f.c.body)
    ).all()
    out: dict[str, list[asm.Fragment]] = defaultdict(list)
    for fid, source, trace_id, body in sorted(rows, key=lambda r: r[0]):
        out[trace_id].append(asm.load_fragment(fid, source, trace_id, body))
    return out


def _quarantine_line(
    line_no: int, report: SpanReport, spans: Iterable[Span], logs: Iterable[LogRecord], redaction: Redactor | None
) -> RejectedLine:
    redactor = redaction or default_policy()
    raw = redactor.redact_raw(asm.quarantine_raw(report, spans, logs))
    path = f"span {report.span_id}" if report.span_id else "$"
    message = escape_nul(redactor.redact_text(f"OTLP: {report.reason}"))
    return RejectedLine(line_no=line_no, trace_id=report.trace_id, path=path, message=message, raw=raw,
                        raw_hash=hashlib.sha256(raw).hexdigest())  # fmt: skip


def _bump(conn: Connection, totals: dict[str, int]) -> None:
    rows = [{"name": k, "value": v} for k, v in totals.items() if v]
    if not rows:
        return
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_COUNTER)
    add = {"value": _COUNTER.c.value + ins.excluded.value}
    conn.execute(ins.on_conflict_do_update(index_elements=["name"], set_=add), rows)


def counters(conn: Connection) -> dict[str, int]:
    """The sweeper's running totals, every name of ``COUNTERS`` present."""
    got = dict(conn.execute(select(_COUNTER.c.name, _COUNTER.c.value)).all())
    return {name: int(got.get(name, 0)) for name in COUNTERS}


def _tombstones(conn: Connection, trace_ids: list[str]) -> dict[str, set[str]]:
    rows = conn.execute(
        select(_ASSEMBLED.c.trace_id, _ASSEMBLED.c.span_ids).where(_ASSEMBLED.c.trace_id.in_(trace_ids))
    )
    return {t: set(orjson.loads(ids)) for t, ids in rows}


@dataclass
class _Plan:
    """A staged trace as the sweep read it, worked out before it takes the trace."""

    trace_id: str
    action: str
    fragments: list[asm.Fragment]
    done: asm.Assembled | None = None
    """The assembled (or expired) trace; None for late fragments."""
    prepared: tuple[list[PreparedTrace], list[RejectedLine]] = field(default_factory=lambda: ([], []))
    """Ingest's preparation of ``done.trace`` (validated, segmented, hashed), or its refusal."""


def _work_out(trace_id: str, action: str, fragments: list[asm.Fragment], segmentation: SegmentationConfig,
              validator: TraceValidator, max_wait_s: float, redaction: Redactor | None = None) -> _Plan:  # fmt: skip
    """Assemble (or expire) a trace and prepare it for ingest: the CPU work, done before the
    write transaction."""
    if action == asm.LATE:
        return _Plan(trace_id, action, fragments)
    rootless = not any(s.parent_id is None for f in fragments for s in f.spans)
    if action == asm.EXPIRE and rootless:
        return _Plan(trace_id, action, fragments, asm.expired(trace_id, fragments, max_wait_s))
    try:  # ready; or its root arrived since the candidates were read
        numbers = Renumbering()  # staging redacted the spans: their placeholders numbered and counted
        done = asm.assemble(trace_id, fragments, numbers)
        plan = _Plan(trace_id, asm.ASSEMBLE, fragments, done)
        if done.trace is not None:
            redactor = (redaction or default_policy()).after_staging(numbers.counts)
            plan.prepared = prepare_chunk([(done.line_no, orjson.dumps(done.trace))], validator=validator,
                                          segmentation=segmentation, redaction=redactor)  # fmt: skip
        return plan
    except Exception as exc:  # a defect or input no reader foresaw: this trace is unmapped, never the round
        log.exception("OTLP trace %s could not be worked out", trace_id)
        return _Plan(trace_id, asm.ASSEMBLE, fragments, asm.failed(trace_id, fragments, exc))


def sweep(engine: Engine, *, segmentation: SegmentationConfig, validator: TraceValidator, idle_s: float,
          max_wait_s: float, keep_s: float, limit: int = 500, now: float | None = None,
          redaction: Redactor | None = None) -> SweepCounts:  # fmt: skip
    """One pass: assemble the traces that are ready, quarantine the ones whose root never came
    and the spans that came too late, forget tombstones older than ``keep_s``. At most
    ``limit`` traces per round; loops until nothing is ready.

    Each round reads the ready traces and works them out (mapping, validation: the CPU work)
    outside any write transaction, then takes and stores them in one short one — so API
    processes staging spans, and other sweepers, are not held up by the mapping. Traces and
    quarantined spans are redacted by ``redaction`` (None: the shipped default policy)."""
    total = SweepCounts()
    while True:
        when = time.time() if now is None else now
        actions = _claim(engine, when, idle_s, max_wait_s, limit)
        with engine.connect() as conn:
            fragments = _read(conn, sorted(actions)) if actions else {}
        plans = [_work_out(t, actions[t], fs, segmentation, validator, max_wait_s, redaction)
                 for t, fs in fragments.items()]  # fmt: skip
        if actions:
            with engine.begin() as conn:
                _merge(total, _commit(conn, plans, list(actions), segmentation, validator, max_wait_s, when, redaction))
        if len(actions) < limit:
            _forget(engine, when - keep_s)
            return total


def _forget(engine: Engine, before: float) -> None:
    """Delete tombstones older than ``before``, writing only when there are some (an idle
    sweeper must not take SQLite's write lock every half second)."""
    a = _ASSEMBLED
    with engine.connect() as conn:
        old = conn.execute(select(a.c.trace_id).where(a.c.at < before).limit(1)).first()
    if old is not None:
        with engine.begin() as conn:
            conn.execute(delete(a).where(a.c.at < before))


def _merge(total: SweepCounts, c: SweepCounts) -> None:
    total.assembled += c.assembled
    total.ingest.add(c.ingest)
    total.unmapped += c.unmapped
    total.expired += c.expired
    total.late_spans += c.late_spans
    total.duplicate_spans += c.duplicate_spans


def _commit(conn: Connection, plans: list[_Plan], claimed: list[str], segmentation: SegmentationConfig,
            validator: TraceValidator, max_wait_s: float, now: float,
            redaction: Redactor | None = None) -> SweepCounts:  # fmt: skip
    """Take the planned traces' fragments (``DELETE … RETURNING``: whoever deletes a fragment
    owns it, the claim notwithstanding) and store what they became; their summary rows go. A
    trace another sweeper took meanwhile is skipped; one that gained fragments since it was read
    is worked out again, here."""
    f = _FRAGMENT
    # lock the claimed traces' summary rows first (PostgreSQL; SQLite has one writer): a request
    # staging a span of one of them waits until this commits, then sees the tombstone
    conn.execute(select(_STAGED.c.trace_id).where(_STAGED.c.trace_id.in_(sorted(claimed)))
                 .order_by(_STAGED.c.trace_id).with_for_update())  # fmt: skip
    read = {fr.id: p.trace_id for p in plans for fr in p.fragments}
    taken: dict[str, set[int]] = defaultdict(set)
    ids = sorted(read)
    for i in range(0, len(ids), _IDS_PER_STATEMENT):
        chunk = ids[i : i + _IDS_PER_STATEMENT]
        for fid in conn.execute(delete(f).where(f.c.id.in_(chunk)).returning(f.c.id)).scalars():
            taken[read[fid]].add(fid)
    mine = [p for p in plans if taken.get(p.trace_id)]
    tombs = _tombstones(conn, [p.trace_id for p in mine])
    rest = _take_rest(conn, [p.trace_id for p in mine])
    _settle(conn, claimed, [p.trace_id for p in mine])
    out = SweepCounts()
    finished: list[asm.Assembled] = []
    outcomes: dict[str, str] = {}
    quarantine: dict[str, list[RejectedLine]] = defaultdict(list)
    grown: dict[str, set[str]] = {}
    ingest: list[_Plan] = []
    for plan in mine:
        fragments = [fr for fr in plan.fragments if fr.id in taken[plan.trace_id]] + rest.get(plan.trace_id, [])
        trace_id = plan.trace_id
        if trace_id in tombs or plan.action == asm.LATE:  # finished before (maybe by another sweeper just now)
            late = asm.late_spans(fragments, tombs.get(trace_id, set()))
            out.duplicate_spans += late.duplicates
            if late.late or late.logs:
                out.late_spans += len(late.late)
                first = late.late[0] if late.late else None
                reason = f"late span: arrived after trace {trace_id} was finished (stored, quarantined or expired); " \
                         "kept here, not in any trace"  # fmt: skip
                report = SpanReport(trace_id, first.span_id if first else None, first.name if first else "",
                                    reason, len(late.late))  # fmt: skip
                quarantine[fragments[0].source].append(
                    _quarantine_line(fragments[0].id, report, late.late, late.logs, redaction)
                )
                log.warning("OTLP %s: %s", fragments[0].source, report)
                if trace_id in tombs:
                    grown[trace_id] = tombs[trace_id] | {s.span_id for s in late.late}
            continue
        if len(fragments) != len(plan.fragments):  # it changed since it was read
            plan = _work_out(trace_id, plan.action, fragments, segmentation, validator, max_wait_s, redaction)
        done = plan.done
        assert done is not None
        out.expired += plan.action == asm.EXPIRE
        out.duplicate_spans += done.duplicates
        finished.append(done)
        if done.trace is None:
            outcomes[trace_id] = "expired" if plan.action == asm.EXPIRE else "quarantined"
            out.unmapped += plan.action != asm.EXPIRE
            spans = [s for fr in fragments for s in fr.spans]
            logs = [r for fr in fragments for r in fr.logs]
            quarantine[done.source].append(_quarantine_line(done.line_no, done.reports[0], spans, logs, redaction))
        else:
            ingest.append(plan)
        for report in done.reports:
            log.warning("OTLP %s: %s", done.source, report)
    outcomes.update(_ingest(conn, ingest, out))
    for source, lines in quarantine.items():
        quarantine_rows(conn, source, lines)
    if finished:
        tombstones = [{"trace_id": d.trace_id, "outcome": outcomes[d.trace_id], "span_ids": orjson.dumps(d.span_ids),
                       "at": now} for d in finished]  # fmt: skip
        conn.execute(insert_ignoring_conflicts(_ASSEMBLED, conn.dialect), tombstones)
    for trace_id, ids in grown.items():
        span_ids = orjson.dumps(sorted(ids))
        conn.execute(update(_ASSEMBLED).where(_ASSEMBLED.c.trace_id == trace_id).values(span_ids=span_ids))
    _bump(conn, {"assembled_traces": out.assembled, "unmapped_traces": out.unmapped, "expired_traces": out.expired,
                 "late_spans": out.late_spans, "duplicate_spans": out.duplicate_spans})  # fmt: skip
    return out


def _settle(conn: Connection, claimed: list[str], taken: list[str]) -> None:
    """The summary rows of claimed traces after a round: gone when no fragment of the trace is
    staged any more; else (a fragment staged in a race with this round) unclaimed, and late when
    this round finished the trace."""
    t, f = _STAGED, _FRAGMENT
    ids = sorted(claimed)
    conn.execute(delete(t).where(t.c.trace_id.in_(ids) & ~exists().where(f.c.trace_id == t.c.trace_id)))
    conn.execute(update(t).where(t.c.trace_id.in_(ids)).values(claimed_until=None))
    if taken:
        conn.execute(update(t).where(t.c.trace_id.in_(sorted(taken))).values(late=True))


def _ingest(conn: Connection, plans: list[_Plan], out: SweepCounts) -> dict[str, str]:
    """Store the prepared traces (grouped by source, like ``tracejury ingest``); the outcome of
    each by OTLP trace id."""
    outcomes: dict[str, str] = {}
    by_source: dict[str, list[_Plan]] = defaultdict(list)
    for plan in plans:
        assert plan.done is not None
        by_source[plan.done.source].append(plan)
    for source, items in by_source.items():
        good = [t for p in items for t in p.prepared[0]]
        refused = [r for p in items for r in p.prepared[1]]
        out.ingest.add(write_rows(conn, source, build_rows(good, refused)))
        out.assembled += len(items)
        for p in items:
            assert p.done is not None
            outcomes[p.trace_id] = "quarantined" if p.prepared[1] else "stored"
            if p.prepared[1]:
                log.warning("OTLP %s: trace %s refused by ingest (quarantined as line %d)", source, p.trace_id,
                            p.done.line_no)  # fmt: skip
    return outcomes
