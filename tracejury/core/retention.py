"""Retention policy, pure: which traces a prune takes (a release, or everything older than a
cutoff), what a pruned trace keeps, and when the sweeper prunes next.

A pruned trace keeps its row — ids, release, timestamp, segment key, content hash and the
weak-signal columns — so signals, sampling weights, gates and stored gate runs still read; its
``body`` (the canonical JSON, every text the trace held) becomes :data:`PRUNED_BODY`, and
the texts written *about* it (judges' and reviewers' rationales, conflicting bodies,
quarantined raw lines) go too. ``docs/retention.md`` lists every column."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tracejury.core.errors import InvalidInput

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PRUNED_BODY",
    "PRUNED_STATE",
    "SWEEP_EVERY_S",
    "PruneCounts",
    "Selection",
    "cutoff_for",
    "is_pruned",
    "parse_before",
    "retention_due",
    "selection_from_args",
]

PRUNED_BODY = b""
"""The body of a pruned trace. No ingested trace has an empty body (its canonical JSON is at
least ``{}``), so an empty body marks a pruned trace without a new column."""
PRUNED_STATE = "pruned"
"""The state a review item that was still open (pending or claimed) takes when its trace is
pruned: closed, because there is nothing left to review. Labelled and skipped items keep theirs."""
DEFAULT_BATCH_SIZE = 5000
"""Traces per prune transaction: short enough that ingest waits for the write lock (SQLite) or
the rows (PostgreSQL) well under a second at a time."""
SWEEP_EVERY_S = 3600.0
"""A worker process applies ``retention_days`` at most once per this many seconds."""


def is_pruned(body: bytes | memoryview | None) -> bool:
    """Whether a stored trace body is the mark of a pruned trace."""
    return body is not None and len(body) == 0


@dataclass(frozen=True, slots=True)
class Selection:
    """The traces a prune takes: those of ``release``, or those whose timestamp is before
    ``before`` (an aware time) — exactly one of the two."""

    release: str | None = None
    before: datetime | None = None

    def __post_init__(self) -> None:
        if (self.release is None) == (self.before is None):
            raise InvalidInput("prune: give exactly one of --release and --before")
        if self.before is not None and self.before.tzinfo is None:
            raise InvalidInput("prune: the cutoff must carry its time zone")

    def describe(self) -> dict[str, str]:
        """The selection as JSON."""
        if self.release is not None:
            return {"release": self.release}
        return {"before": self.before.astimezone(UTC).isoformat().replace("+00:00", "Z")}  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What a prune took (or, dry, would take)."""

    traces: int = 0
    """Traces whose text went (traces already pruned are not counted again)."""
    evaluations: int = 0
    """Evaluations of those traces whose rationale was cleared (their verdicts stay)."""
    review_items_closed: int = 0
    """Open review items (pending or claimed) closed as ``pruned``."""
    review_labels: int = 0
    """Reviewer labels of those traces whose rationale was cleared (the labels stay)."""
    conflicts: int = 0
    """Conflicting bodies stored under those trace ids, deleted."""
    quarantined: int = 0
    """Quarantined raw lines naming those trace ids, deleted."""

    def __add__(self, other: PruneCounts) -> PruneCounts:
        return PruneCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        """The counts in field order."""
        return (self.traces, self.evaluations, self.review_items_closed, self.review_labels,
                self.conflicts, self.quarantined)  # fmt: skip

    def as_dict(self) -> dict[str, int]:
        """The ``--json`` shape."""
        return {"traces": self.traces, "evaluations": self.evaluations,
                "reviewItemsClosed": self.review_items_closed, "reviewLabels": self.review_labels,
                "conflicts": self.conflicts, "quarantined": self.quarantined}  # fmt: skip


def parse_before(value: str) -> datetime:
    """``--before``: an ISO date (midnight UTC) or date-time (UTC unless it says otherwise), as
    an aware UTC time."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--before: not an ISO date or date-time: {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def selection_from_args(release: str | None, before: str | None) -> Selection:
    """The CLI's ``--release`` / ``--before`` as a :class:`Selection`."""
    return Selection(release=release, before=parse_before(before) if before is not None else None)


def cutoff_for(retention_days: int, now: datetime) -> datetime:
    """The cutoff ``retention_days`` keeps: traces with a timestamp before it are pruned (aware
    UTC). A naive ``now`` is taken as UTC."""
    if retention_days < 1:
        raise InvalidInput(f"TRACEJURY_RETENTION_DAYS: must be at least 1 (got {retention_days})")
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return now - timedelta(days=retention_days)


def retention_due(last_run: float | None, now: float, every_s: float = SWEEP_EVERY_S) -> bool:
    """Whether a sweeper that last applied retention at ``last_run`` (monotonic seconds, None:
    never) should apply it again at ``now``."""
    return last_run is None or now - last_run >= every_s
