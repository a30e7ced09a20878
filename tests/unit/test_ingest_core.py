"""The pure half of ingest: preparing rows and telling new from duplicate from conflict."""

from __future__ import annotations

from typing import Any

import orjson

from tracejury.core.ingest import prepare_line, triage
from tracejury.core.segments import default_segmentation
from tracejury.core.signals import trace_facts
from tracejury.core.validation import TraceValidator

V = TraceValidator()
SEG = default_segmentation()


def _prep(doc: dict[str, Any], line_no: int = 1):  # noqa: ANN202
    return prepare_line(orjson.dumps(doc), line_no=line_no, validator=V, segmentation=SEG)


def test_content_hash_ignores_key_order_and_whitespace(example_trace: dict[str, Any]) -> None:
    a = _prep(example_trace)
    reordered = dict(reversed(list(example_trace.items())))
    raw = orjson.dumps(reordered, option=orjson.OPT_INDENT_2)
    b = prepare_line(raw, line_no=2, validator=V, segmentation=SEG)
    assert a.content_hash == b.content_hash
    assert a.ts.isoformat() == "2026-11-20T12:00:03.120000+00:00"


def test_triage(example_trace: dict[str, Any]) -> None:
    first = _prep(example_trace, 1)
    same_again = _prep(example_trace, 2)
    example_trace["outputs"]["formatValid"] = False
    changed = _prep(example_trace, 3)
    example_trace["traceId"] = "tr_other"
    other = _prep(example_trace, 4)

    split = triage([first, same_again, changed, other], stored={})
    assert [p.line_no for p in split.new] == [1, 4]
    assert [p.line_no for p in split.duplicates] == [2]
    assert [(p.line_no, kept) for p, kept in split.conflicts] == [(3, first.content_hash)]

    split = triage([changed], stored={first.trace_id: first.content_hash})
    assert (len(split.new), len(split.conflicts)) == (0, 1)


def test_trace_facts(example_trace: dict[str, Any]) -> None:
    f = trace_facts(example_trace)
    assert (f.latency_ms, f.tool_called, f.tool_error, f.rag_on, f.retrieval_empty) == (
        2140, True, False, True, False,
    )  # fmt: skip
    example_trace["evidence"]["tool"][0]["status"] = "timeout"
    example_trace["feedback"] = [{"kind": "thumbs_down"}]
    example_trace["outputs"]["formatValid"] = False
    f = trace_facts(example_trace)
    assert (f.tool_timeout, f.tool_error, f.negative_feedback, f.format_invalid) == (
        True, False, True, True,
    )  # fmt: skip


def test_row_tuple_order_matches_the_tables() -> None:
    from tracejury.store.rows import STAGE_KEYS, TRACE_KEYS
    from tracejury.store.tables import StoredTrace, TraceStage

    assert set(StoredTrace.__table__.columns.keys()) == {*TRACE_KEYS, "ingested_at"}
    assert len(set(TRACE_KEYS)) == len(TRACE_KEYS)
    assert tuple(TraceStage.__table__.columns.keys()) == STAGE_KEYS
