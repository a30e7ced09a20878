"""The pure retention policy: selections, cutoffs, when the sweeper prunes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tracejury.core.errors import InvalidInput
from tracejury.core.retention import (
    PruneCounts,
    Selection,
    cutoff_for,
    is_pruned,
    parse_before,
    retention_due,
    selection_from_args,
)


def test_exactly_one_of_release_and_before() -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        selection_from_args(None, None)
    with pytest.raises(InvalidInput, match="exactly one"):
        selection_from_args("r1", "2026-01-01")
    assert selection_from_args("r1", None).describe() == {"release": "r1"}
    with pytest.raises(InvalidInput, match="time zone"):
        Selection(before=datetime(2026, 1, 1))


def test_before_is_utc() -> None:
    assert parse_before("2026-11-19") == datetime(2026, 11, 19, tzinfo=UTC)
    assert parse_before("2026-11-19T12:30:00Z") == datetime(2026, 11, 19, 12, 30, tzinfo=UTC)
    assert parse_before("2026-11-19T12:30:00") == datetime(2026, 11, 19, 12, 30, tzinfo=UTC)
    east = parse_before("2026-11-19T02:00:00+02:00")
    assert east == datetime(2026, 11, 19, tzinfo=UTC) and east.tzinfo == UTC
    assert selection_from_args(None, "2026-11-19").describe() == {"before": "2026-11-19T00:00:00Z"}
    with pytest.raises(InvalidInput, match="--before"):
        parse_before("last tuesday")


def test_cutoff_counts_days_back_from_now() -> None:
    now = datetime(2026, 12, 19, 6, tzinfo=UTC)
    assert cutoff_for(30, now) == now - timedelta(days=30)
    assert cutoff_for(30, now.replace(tzinfo=None)) == now - timedelta(days=30)
    assert cutoff_for(1, now.astimezone(timezone(timedelta(hours=5)))) == now - timedelta(days=1)
    with pytest.raises(InvalidInput, match="RETENTION_DAYS"):
        cutoff_for(0, now)


def test_due_once_per_interval() -> None:
    assert retention_due(None, 5.0)
    assert not retention_due(100.0, 100.0 + 3599)
    assert retention_due(100.0, 100.0 + 3600)
    assert retention_due(0.0, 10.0, every_s=10)


def test_pruned_body_and_counts() -> None:
    assert is_pruned(b"") and not is_pruned(b"{}") and not is_pruned(None)
    total = PruneCounts(traces=2, evaluations=3) + PruneCounts(traces=1, quarantined=4)
    assert total.as_dict() == {"traces": 3, "evaluations": 3, "reviewItemsClosed": 0, "reviewLabels": 0,
                               "conflicts": 0, "quarantined": 4}  # fmt: skip
