"""The pure half of ingest: one raw line in, a row-ready ``PreparedTrace`` or an error out,
and the rule that tells new traces from duplicates and conflicts.

The store's ingest loop does the I/O around these functions; the HTTP API and the CLI share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from tracejury.core.errors import InvalidTrace
from tracejury.core.segments import SegmentationConfig, segment_key
from tracejury.core.signals import TraceFacts, trace_facts
from tracejury.core.validation import TraceValidator

__all__ = ["IngestCounts", "PreparedTrace", "Triage", "prepare_line", "triage"]


@dataclass(frozen=True, slots=True)
class PreparedTrace:
    """A validated trace with everything the store keeps about it."""

    trace_id: str
    release_id: str
    ts: datetime
    segment_key: str
    segmentation_version: str
    content_hash: str
    session_id_hash: str
    facts: TraceFacts
    body: bytes
    """Canonical JSON (sorted keys); its sha256 is ``content_hash``."""
    line_no: int


def prepare_line(
    raw: bytes | str,
    *,
    line_no: int,
    validator: TraceValidator,
    segmentation: SegmentationConfig,
) -> PreparedTrace:
    """Validate one line and prepare its row; raise ``InvalidTrace`` when it is not a trace."""
    doc = validator.parse(raw)
    return prepare_trace(doc, line_no=line_no, segmentation=segmentation)


def prepare_trace(
    doc: Mapping[str, Any], *, line_no: int, segmentation: SegmentationConfig
) -> PreparedTrace:
    """Prepare the row of an already validated trace document."""
    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    try:
        ts = datetime.fromisoformat(doc["timestamp"]).astimezone(UTC)
    except ValueError as exc:  # the schema's date-time is wider than fromisoformat in rare forms
        raise InvalidTrace(
            f"timestamp {doc['timestamp']!r} is not RFC 3339",
            path="$.timestamp",
            trace_id=doc["traceId"],
        ) from exc
    return PreparedTrace(
        trace_id=doc["traceId"],
        release_id=doc["releaseId"],
        ts=ts,
        segment_key=segment_key(doc, segmentation),
        segmentation_version=segmentation.version,
        content_hash=hashlib.sha256(body).hexdigest(),
        session_id_hash=doc["req"]["sessionIdHash"],
        facts=trace_facts(doc),
        body=body,
        line_no=line_no,
    )


@dataclass
class IngestCounts:
    """What one ingest did; adds up across batches and files."""

    ingested: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0

    def add(self, other: IngestCounts) -> None:
        """Accumulate another count into this one."""
        self.ingested += other.ingested
        self.duplicates += other.duplicates
        self.conflicts += other.conflicts
        self.quarantined += other.quarantined

    def as_dict(self) -> dict[str, int]:
        """The ``--json`` shape."""
        return {
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
        }


@dataclass
class Triage:
    """A batch split by what the store already holds."""

    new: list[PreparedTrace] = field(default_factory=list)
    duplicates: list[PreparedTrace] = field(default_factory=list)
    conflicts: list[tuple[PreparedTrace, str]] = field(default_factory=list)
    """Each conflicting trace with the content hash it conflicts with (the one kept)."""


def triage(batch: Iterable[PreparedTrace], stored: Mapping[str, str]) -> Triage:
    """Split ``batch`` given ``stored`` (trace id → content hash already in the store).

    The first occurrence of an id wins, whether it was stored earlier or came earlier in
    this batch: the same content again is a duplicate, different content is a conflict.
    """
    out = Triage()
    seen = dict(stored)
    for p in batch:
        kept = seen.get(p.trace_id)
        if kept is None:
            seen[p.trace_id] = p.content_hash
            out.new.append(p)
        elif kept == p.content_hash:
            out.duplicates.append(p)
        else:
            out.conflicts.append((p, kept))
    return out
