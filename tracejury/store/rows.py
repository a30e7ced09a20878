"""Row building for ingest: prepared traces as plain tuples for the driver's ``executemany``.

Rows are plain tuples in the column order of the ``trace`` and ``trace_stage`` tables
(``tables.py``; a test checks the orders agree). Values that need a driver-specific form
(the timestamp) are converted by the writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from tracejury.core.ingest import PreparedTrace, RejectedLine

__all__ = ["STAGE_KEYS", "TRACE_KEYS", "RowBatch", "RowKey", "build_rows"]

TRACE_KEYS = (
    "trace_id", "release_id", "ts", "segment_key", "segmentation_version", "content_hash",
    "session_id_hash", "latency_ms", "input_tokens", "completion_tokens", "truncated",
    "format_invalid", "fallback_used", "rag_on", "retrieval_empty", "tool_required",
    "tool_called", "tool_error", "tool_timeout", "guard_block", "negative_feedback",
    "has_sample", "body",
)  # fmt: skip
"""Columns of a trace row, in tuple order (``ingested_at`` is added by the writer)."""
STAGE_KEYS = ("trace_id", "stage", "latency_ms")
"""Columns of a stage row."""
BODY = TRACE_KEYS.index("body")
TS = TRACE_KEYS.index("ts")


class RowKey(NamedTuple):
    """What the writer needs to triage one prepared trace without the trace itself."""

    trace_id: str
    content_hash: str
    line_no: int
    index: int
    """Position in ``RowBatch.trace_rows``."""


@dataclass
class RowBatch:
    """A prepared chunk as rows."""

    keys: list[RowKey]
    trace_rows: list[tuple[Any, ...]]
    """Aligned with ``keys``."""
    stage_rows: list[list[tuple[Any, ...]]]
    """Aligned with ``trace_rows``: the stage rows of each trace."""
    rejected: list[RejectedLine]


def _trace_row(p: PreparedTrace) -> tuple[Any, ...]:
    f = p.facts  # spelled out: dataclasses.asdict deep-copies and was 40% of ingest time
    return (
        p.trace_id, p.release_id, p.ts, p.segment_key, p.segmentation_version, p.content_hash,
        p.session_id_hash, f.latency_ms, f.input_tokens, f.completion_tokens, f.truncated,
        f.format_invalid, f.fallback_used, f.rag_on, f.retrieval_empty, f.tool_required,
        f.tool_called, f.tool_error, f.tool_timeout, f.guard_block, f.negative_feedback,
        f.has_sample, p.body,
    )  # fmt: skip


def build_rows(traces: list[PreparedTrace], rejected: list[RejectedLine]) -> RowBatch:
    """Rows of prepared traces."""
    return RowBatch(
        keys=[RowKey(p.trace_id, p.content_hash, p.line_no, i) for i, p in enumerate(traces)],
        trace_rows=[_trace_row(p) for p in traces],
        stage_rows=[[(p.trace_id, k, ms) for k, ms in p.facts.stage_latency_ms.items()] for p in traces],
        rejected=rejected,
    )
