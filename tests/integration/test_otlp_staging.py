"""OTLP staging and the sweeper on a real store (SQLite and PostgreSQL): spans staged over
many requests become one stored trace, once, whatever the number of sweepers; late,
duplicate and orphaned spans are counted and kept; the staging is bounded."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select

from tests.otlp_builder import RESOURCE, genai_trace, request
from tracejury.core.otlp import map_export_request
from tracejury.core.otlp_spans import Span, decode_spans
from tracejury.core.redaction import default_policy
from tracejury.core.segments import default_segmentation
from tracejury.core.validation import TraceValidator
from tracejury.store import otlp_staging as st
from tracejury.store.tables import OtlpFragment, QuarantinedLine, StoredTrace

IDLE, WAIT, KEEP = 5.0, 600.0, 3600.0
T0 = 1_000_000.0


def _trace_ids(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


def _spans(trace: str) -> list[Span]:
    spans, reports = decode_spans(request(genai_trace(trace), RESOURCE))
    assert not reports
    return spans


def _sweep(engine: Engine, now: float, **kw: Any) -> st.SweepCounts:
    return st.sweep(engine, segmentation=default_segmentation(), validator=TraceValidator(), idle_s=IDLE,
                    max_wait_s=WAIT, keep_s=KEEP, now=now, **kw)  # fmt: skip


def _stage(engine: Engine, spans: list[Span], now: float, max_items: int = 100_000) -> None:
    st.stage(engine, "otlp:tok", spans, [], max_items=max_items, now=now)


def _stored(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(StoredTrace.trace_id, StoredTrace.body)).all()
    return {t: orjson.loads(b) for t, b in rows}


def _quarantined(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(QuarantinedLine.message, QuarantinedLine.raw).order_by(QuarantinedLine.id)).all()
    return [(m, orjson.loads(r)) for m, r in rows]


def _expected(trace: str) -> dict[str, Any]:
    """The trace one whole export maps to, as stored: after the default redaction policy."""
    return default_policy().redact_trace(map_export_request(request(genai_trace(trace), RESOURCE)).traces[0])[0]


def test_spans_split_and_shuffled_over_requests_make_the_same_traces_as_one_export(engine: Engine) -> None:
    traces = _trace_ids(20)
    rng = random.Random(3)
    spans = [s for t in traces for s in _spans(t)]
    rng.shuffle(spans)
    for i in range(0, len(spans), 7):  # 15 requests, each a random mix of traces' spans
        _stage(engine, spans[i : i + 7], now=T0 + i / 100)
    assert not _sweep(engine, now=T0 + 1).busy  # nothing is idle yet: nothing assembled
    counts = _sweep(engine, now=T0 + 10)
    assert counts.assembled == 20 and counts.ingest.ingested == 20
    stored = _stored(engine)
    assert stored == {t: _expected(t) for t in traces}
    with engine.connect() as conn:
        assert st.staged(conn) == (0, 0)
        assert st.counters(conn)["assembled_traces"] == 20


def test_a_trace_waits_while_its_spans_keep_coming(engine: Engine) -> None:
    (t,) = _trace_ids(1)
    spans = _spans(t)
    _stage(engine, spans[:1], now=T0)  # the root first
    _stage(engine, spans[1:3], now=T0 + 4)
    assert _sweep(engine, now=T0 + 8).assembled == 0  # 4 s since the last span
    _stage(engine, spans[3:], now=T0 + 8)
    assert _sweep(engine, now=T0 + 12).assembled == 0
    assert _sweep(engine, now=T0 + 13).assembled == 1
    assert _stored(engine) == {t: _expected(t)}


def test_duplicate_late_and_resent_spans(engine: Engine) -> None:
    (t,) = _trace_ids(1)
    spans = _spans(t)
    first, tool = [*spans[:3], spans[4]], spans[3]
    _stage(engine, first, now=T0)
    _stage(engine, first, now=T0)  # an exporter retried the whole request
    counts = _sweep(engine, now=T0 + 10)
    assert counts.duplicate_spans == 4
    _stage(engine, [tool], now=T0 + 20)  # the tool span, after assembly: late
    _stage(engine, spans[1:2], now=T0 + 20)  # and one re-sent: a duplicate, not late
    counts = _sweep(engine, now=T0 + 21)  # late spans are acted on at once, not after idle
    assert (counts.late_spans, counts.duplicate_spans, counts.assembled) == (1, 1, 0)
    assert len(_stored(engine)) == 1
    (message, raw), = _quarantined(engine)
    assert message.startswith("OTLP: late span")
    assert [s["spanId"] for s in raw["spans"]] == [tool.span_id]
    _stage(engine, [tool], now=T0 + 30)  # the late span again: now a duplicate
    assert _sweep(engine, now=T0 + 31).duplicate_spans == 1
    with engine.connect() as conn:
        c = st.counters(conn)
    assert (c["late_spans"], c["duplicate_spans"], c["assembled_traces"]) == (1, 6, 1)
    assert len(_quarantined(engine)) == 1


def test_root_never_arrives(engine: Engine) -> None:
    (t,) = _trace_ids(1)
    children = _spans(t)[1:]
    _stage(engine, children[:2], now=T0)
    _stage(engine, children[2:], now=T0 + 300)
    assert _sweep(engine, now=T0 + 599).expired == 0
    counts = _sweep(engine, now=T0 + 600)
    assert counts.expired == 1 and not _stored(engine)
    (message, raw), = _quarantined(engine)
    assert "root span never arrived within 600 s" in message
    assert sorted(s["spanId"] for s in raw["spans"]) == sorted(s.span_id for s in children)
    _stage(engine, _spans(t)[:1], now=T0 + 700)  # the root, at last: late, kept, not a trace
    assert _sweep(engine, now=T0 + 701).late_spans == 1
    assert not _stored(engine) and len(_quarantined(engine)) == 2


def test_unmapped_trace_is_quarantined_with_its_spans(engine: Engine) -> None:
    (t,) = _trace_ids(1)
    spans, _ = decode_spans(request(genai_trace(t), {"service.name": "no-release", "service.version": "r1"}))
    _stage(engine, spans, now=T0)
    counts = _sweep(engine, now=T0 + 10)
    assert counts.unmapped == 1 and not _stored(engine)
    (message, raw), = _quarantined(engine)
    assert "trace not mapped: missing config.systemPromptVersion" in message and len(raw["spans"]) == 5


def test_two_sweepers_assemble_each_trace_once(engine: Engine) -> None:
    traces = _trace_ids(300, seed=5)
    for i in range(0, 300, 50):
        _stage(engine, [s for t in traces[i : i + 50] for s in _spans(t)], now=T0)
    results: list[st.SweepCounts] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(_sweep(engine, now=T0 + 10, limit=40))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert sum(r.assembled for r in results) == 300
    assert sum(r.ingest.ingested for r in results) == 300
    assert sum(r.late_spans + r.duplicate_spans for r in results) == 0
    assert len(_stored(engine)) == 300


def test_staging_is_bounded(engine: Engine) -> None:
    a, b = _trace_ids(2)
    _stage(engine, _spans(a), now=T0, max_items=8)
    with pytest.raises(st.StagingFull, match="limit of 8"):
        _stage(engine, _spans(b), now=T0, max_items=8)
    with engine.connect() as conn:
        assert st.staged(conn) == (5, 1)
        assert conn.execute(select(func.count()).select_from(OtlpFragment)).scalar_one() == 1
    _sweep(engine, now=T0 + 10)
    _stage(engine, _spans(b), now=T0 + 10, max_items=8)  # room again once assembled


def test_tombstones_are_forgotten_after_keep(engine: Engine) -> None:
    (t,) = _trace_ids(1)
    spans = _spans(t)
    _stage(engine, spans, now=T0)
    _sweep(engine, now=T0 + 10)
    _sweep(engine, now=T0 + 10 + KEEP + 1)
    _stage(engine, spans[1:2], now=T0 + KEEP + 20)  # too late to tell: a new rootless trace
    assert _sweep(engine, now=T0 + KEEP + 21).late_spans == 0
    with engine.connect() as conn:
        assert st.staged(conn) == (1, 1)


def _plans(engine: Engine, now: float) -> tuple[list[Any], list[str]]:
    """What a sweep claims, reads and works out before its write transaction."""
    actions = st._claim(engine, now, IDLE, WAIT, 500)
    with engine.connect() as conn:
        fragments = st._read(conn, sorted(actions))
    plans = [st._work_out(t, actions[t], fs, default_segmentation(), TraceValidator(), WAIT)
             for t, fs in fragments.items()]  # fmt: skip
    return plans, list(actions)


def _commit(engine: Engine, planned: tuple[list[Any], list[str]], now: float) -> st.SweepCounts:
    with engine.begin() as conn:
        return st._commit(conn, *planned, default_segmentation(), TraceValidator(), WAIT, now)


def test_a_span_staged_between_read_and_commit_joins_its_trace(engine: Engine) -> None:
    """The sweep maps outside its write transaction; a span that arrives meanwhile is taken with
    the trace and the trace worked out again, not left behind as late."""
    (t,) = _trace_ids(1)
    spans = _spans(t)
    first, tool = [*spans[:3], spans[4]], spans[3]
    _stage(engine, first, now=T0)
    plans = _plans(engine, now=T0 + 10)
    _stage(engine, [tool], now=T0 + 10)
    counts = _commit(engine, plans, now=T0 + 10)
    assert (counts.assembled, counts.late_spans) == (1, 0)
    assert _stored(engine) == {t: _expected(t)}
    with engine.connect() as conn:
        assert st.staged(conn) == (0, 0)


def test_sweepers_share_the_work_and_a_trace_is_stored_once(engine: Engine) -> None:
    traces = _trace_ids(3)
    for t in traces:
        _stage(engine, _spans(t), now=T0)
    first = _plans(engine, now=T0 + 10)
    assert len(first[0]) == 3
    assert _plans(engine, now=T0 + 10) == ([], [])  # claimed: another sweeper leaves them alone
    # the first sweeper stalls past its claim; a second one takes the traces over
    second = _plans(engine, now=T0 + 10 + st.CLAIM_S + 1)
    assert len(second[0]) == 3
    assert _commit(engine, second, now=T0 + 80).assembled == 3
    stale = _commit(engine, first, now=T0 + 81)  # its DELETE finds nothing left: it stores nothing
    assert (stale.assembled, stale.late_spans, stale.duplicate_spans) == (0, 0, 0)
    assert len(_stored(engine)) == 3 and not _quarantined(engine)
    with engine.connect() as conn:
        assert st.staged(conn) == (0, 0)


def test_a_span_staged_while_its_trace_is_stored_is_never_orphaned(engine: Engine, db_url: str) -> None:
    """A request stages a span of a trace in the very moment a sweep stores that trace (its
    commit held until the sweep waits on it): the span ends in the trace, or late, never left
    staged with no summary row for any sweep to find."""
    from sqlalchemy import event

    from tracejury.store.engine import make_engine
    from tracejury.store.tables import OtlpStagedTrace

    (t,) = _trace_ids(1)
    spans = _spans(t)
    first, tool = [*spans[:3], spans[4]], spans[3]
    _stage(engine, first, now=T0)
    planned = _plans(engine, now=T0 + 10)
    other = make_engine(db_url)
    go, at_commit = threading.Event(), threading.Event()

    @event.listens_for(other, "commit")
    def _hold(_conn: Any) -> None:
        at_commit.set()
        go.wait(30)

    staging = threading.Thread(target=lambda: _stage(other, [tool], now=T0 + 10))
    staging.start()
    assert at_commit.wait(30)
    result: list[st.SweepCounts] = []
    sweeping = threading.Thread(target=lambda: result.append(_commit(engine, planned, now=T0 + 10)))
    sweeping.start()
    time.sleep(1.0)  # the sweep now waits on the staging request
    go.set()
    staging.join(60)
    sweeping.join(60)
    other.dispose()
    assert result and result[0].assembled == 1
    for at in (T0 + 11, T0 + 1000):
        _sweep(engine, now=at)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OtlpFragment)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(OtlpStagedTrace)).scalar_one() == 0
    stored = _stored(engine)
    late = [m for m, _ in _quarantined(engine) if m.startswith("OTLP: late span")]
    assert stored[t] == _expected(t) or (len(stored) == 1 and len(late) == 1)


def test_a_trace_no_reader_foresaw_is_quarantined_and_holds_no_one_up(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect in a reader (here: map_trace raising on one trace) makes that trace unmapped,
    kept whole in quarantine; the rest of the round is stored."""
    from tracejury.core import otlp_assembly
    from tracejury.core.otlp_spans import Event, LogRecord

    bad, good = _trace_ids(2)
    real = otlp_assembly.map_trace

    def map_trace(spans: list[Span]) -> Any:
        if spans[0].trace_id == bad:
            raise TypeError("'int' object is not iterable")
        return real(spans)

    monkeypatch.setattr(otlp_assembly, "map_trace", map_trace)
    spans = _spans(bad)
    chat = next(s for s in spans if s.attrs.get("gen_ai.operation.name") == "chat")
    record = LogRecord(bad, chat.span_id, Event("gen_ai.assistant.message", 1, {}, {"content": "hi"}), {})
    st.stage(engine, "otlp:tok", spans, [record], max_items=100_000, now=T0)  # the older: claimed first
    _stage(engine, _spans(good), now=T0 + 1)
    counts = _sweep(engine, now=T0 + 10)
    assert (counts.assembled, counts.unmapped) == (1, 1)
    assert set(_stored(engine)) == {good}
    (message, raw), = _quarantined(engine)
    assert message == "OTLP: trace not mapped: TypeError: 'int' object is not iterable"
    assert len(raw["spans"]) == 5 and len(raw["logs"]) == 1
    with engine.connect() as conn:
        assert st.staged(conn) == (0, 0)


def test_values_json_cannot_hold_are_reported_not_staged(engine: Engine) -> None:
    from tracejury.core.otlp_spans import Event, LogRecord

    deep: Any = "x"
    for _ in range(300):
        deep = {"a": deep}
    a, b = _trace_ids(2)
    spans = _spans(a)
    record = LogRecord(a, spans[-1].span_id, Event("gen_ai.choice", 1, {}, deep), {})
    staged = st.stage(engine, "otlp:tok", spans + _spans(b), [record], max_items=100_000, now=T0)
    assert (staged.traces, staged.items) == (1, 5)
    (report,) = staged.reports
    assert (report.trace_id, report.rejected_spans) == (a, 6) and report.reason.startswith("cannot be staged: ")
    with engine.connect() as conn:
        assert st.staged(conn) == (5, 1)
