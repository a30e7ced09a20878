"""The assembly policy and data shapes (pure): when a staged trace is whole, how fragments
round-trip through the staged JSON, and how duplicates, log records and late spans count."""

from __future__ import annotations

import random

import pytest

from tests.otlp_builder import RESOURCE, genai_trace, request
from tracejury.core import otlp_assembly as asm
from tracejury.core.otlp import map_export_request
from tracejury.core.otlp_spans import Event, LogRecord, decode_spans

T = "0af7651916cd43dd8448eb211c80319c"


def _spans(trace: str = T):  # noqa: ANN202
    spans, reports = decode_spans(request(genai_trace(trace), RESOURCE))
    assert not reports
    return spans


def _fragments(groups):  # noqa: ANN001, ANN202
    """Stage each group as it would be staged and read back (through the JSON form)."""
    out = []
    for i, spans in enumerate(groups, 1):
        for g in asm.stage_groups(spans, []):
            out.append(asm.load_fragment(i, "otlp:t", g.trace_id, asm.dump_fragment(g)))
    return out


@pytest.mark.parametrize(
    ("has_root", "first", "last", "expected"),
    [
        (True, 0, 9.9, None),  # the root is here but a span came 0.1 s ago
        (True, 0, 5.0, asm.ASSEMBLE),  # idle for exactly idle_s
        (False, 0, 9.9, None),  # no root, not waited long enough
        (False, 0, 0, None),
        (False, -590, 9.9, asm.EXPIRE),  # no root after max wait, though spans keep coming
        (True, -590, 9.9, None),  # a root and still busy: wait (never expire a trace with a root)
    ],
)
def test_decide(has_root: bool, first: float, last: float, expected: str | None) -> None:
    assert asm.decide(has_root, first, last, now=10.0, idle_s=5.0, max_wait_s=600.0) == expected


def test_fragment_round_trip_keeps_every_field() -> None:
    spans = _spans()
    log = LogRecord(T, spans[-1].span_id, Event("gen_ai.choice", 7, {"k": [1, {"a": True}]}, {"message": "hi"}), {})
    group = asm.stage_groups(spans, [log])[0]
    back = asm.load_fragment(3, "otlp:x", T, asm.dump_fragment(group))
    assert back.spans == group.spans
    assert back.logs == group.logs
    assert (back.id, back.source) == (3, "otlp:x")


def test_any_split_and_order_assembles_the_same_trace_as_one_export() -> None:
    whole = map_export_request(request(genai_trace(T), RESOURCE)).traces[0]
    spans = _spans()
    rng = random.Random(7)
    for _ in range(20):
        shuffled = rng.sample(spans, len(spans))
        cuts = sorted(rng.sample(range(1, len(spans)), rng.randint(0, len(spans) - 1)))
        groups = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(spans)], strict=True)]
        done = asm.assemble(T, _fragments(groups))
        assert done.trace == whole
        assert done.duplicates == 0


def test_duplicate_spans_count_once() -> None:
    spans = _spans()
    done = asm.assemble(T, _fragments([spans, spans[:2], spans[3:4]]))
    assert done.trace == map_export_request(request(genai_trace(T), RESOURCE)).traces[0]
    assert done.duplicates == 3
    assert sorted(done.span_ids) == sorted(s.span_id for s in spans)
    assert done.line_no == 1  # the fragment holding the root


def test_log_records_join_their_span_as_events_in_time_order() -> None:
    spans = _spans()
    chat = spans[-1]
    late_event = LogRecord(T, chat.span_id, Event("gen_ai.choice", 20, {}, {"message": {"content": "b"}}), {})
    early_event = LogRecord(T, chat.span_id, Event("gen_ai.user.message", 10, {}, {"content": "a"}), {})
    orphan = LogRecord(T, "00000000000000ff", Event("gen_ai.choice", 5, {}, {}), {})
    fragments = _fragments([spans])
    extra = asm.stage_groups([], [late_event, early_event, orphan, early_event])[0]
    fragments.append(asm.load_fragment(9, "otlp:t", T, asm.dump_fragment(extra)))
    done = asm.assemble(T, fragments)
    assert done.trace is not None
    unjoined = [r for r in done.reports if "not in the trace" in r.reason]
    assert [r.span_id for r in unjoined] == ["00000000000000ff"]
    assert unjoined[0].rejected_spans == 0
    # the chat span's events: the two records, once each (one was sent twice), in time order
    spans_by_id = {s.span_id: s for s in spans}
    assert [r.span_id for r in asm._join_logs(spans_by_id, fragments, T)] == ["00000000000000ff"]
    assert [e.name for e in spans_by_id[chat.span_id].events] == ["gen_ai.user.message", "gen_ai.choice"]


def test_unmappable_trace_is_reported_with_all_its_spans() -> None:
    spans = [s for s in _spans() if s.parent_id is not None]  # no root
    done = asm.assemble(T, _fragments([spans]))
    assert done.trace is None
    assert "root span missing" in done.reports[0].reason
    assert done.reports[0].rejected_spans == len(spans)


def test_expired_and_late() -> None:
    spans = _spans()
    children = [s for s in spans if s.parent_id is not None]
    gone = asm.expired(T, _fragments([children[:2], children[2:]]), 600)
    assert gone.trace is None and "never arrived within 600 s" in gone.reports[0].reason
    assert gone.reports[0].rejected_spans == len(children)
    assembled = {s.span_id for s in spans[:3]}
    late = asm.late_spans(_fragments([spans[2:4], spans[3:5]]), assembled)
    assert [s.span_id for s in late.late] == [s.span_id for s in spans[3:5]]
    assert late.duplicates == 2  # spans[2] was in the trace; spans[3] came twice


def test_quarantine_keeps_every_span_whole() -> None:
    import orjson

    spans = _spans()
    raw = orjson.loads(asm.quarantine_raw(asm.expired(T, _fragments([spans[1:]]), 1).reports[0], spans[1:], []))
    assert [s["spanId"] for s in raw["spans"]] == [s.span_id for s in spans[1:]]
    assert raw["spans"][0]["attributes"] == dict(spans[1].attrs)


def test_staging_redacts_every_text_a_fragment_stores() -> None:
    """Span and event names, status messages, exception types, attributes, log bodies and
    resources: nothing a detector finds is staged as sent; ids and config attributes are."""
    from tracejury.core.otlp_spans import Event, LogRecord, Span
    from tracejury.core.redaction import default_policy

    mail = "bob@example.com"
    resource = {"service.name": "shop", "host.owner": mail}
    span = Span(trace_id="ab" * 16, span_id="cd" * 8, parent_id=None, name=f"reply to {mail}", start_ns=1, end_ns=2,
                attrs={"user.note": mail, "tracejury.release_id": "r1"}, resource=resource, status_code=2,
                status_message=f"failed for {mail}", exception_types=(f"Err[{mail}]",),
                events=(Event(f"{mail} said", 1, {"k": mail}, None),))  # fmt: skip
    record = LogRecord("ab" * 16, "cd" * 8, Event(mail, 1, {}, {"content": mail}), resource)
    group = asm.StagedGroup("ab" * 16, (span,), (record,))
    staged = asm.redact_group(group, default_policy())
    body = asm.dump_fragment(staged)
    assert staged.redacted and mail.encode() not in body, body
    assert b"[EMAIL_#" in body and b'"tracejury.release_id":"r1"' in body and b'"service.name":"shop"' in body
