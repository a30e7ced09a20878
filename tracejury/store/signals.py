"""Weak-signal queries: counts, rates and latency percentiles per release and segment group,
all computed by SQL aggregation (window functions for percentiles), never by loading traces.

Grouping by a subset of segment dimensions works on the stored keys: the distinct keys of a
release are read first (there are few), projected onto the requested dimensions in Python,
and the projection goes back into SQL as a ``CASE`` expression that every query groups by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Integer, case, cast, func, literal, select

from tracejury.core.segments import project_key
from tracejury.core.signals import RATE_SIGNALS
from tracejury.store.tables import StoredTrace, TraceStage

__all__ = ["PERCENTILES", "Rate", "SignalRow", "release_signals"]

PERCENTILES = (50, 99)
"""Latency percentiles reported (nearest-rank method)."""

_T = StoredTrace.__table__
_S = TraceStage.__table__


@dataclass(frozen=True)
class Rate:
    """A count over a denominator; ``rate`` is None when the denominator is 0."""

    count: int
    n: int

    @property
    def rate(self) -> float | None:
        """count / n, or None for an empty denominator."""
        return self.count / self.n if self.n else None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {"count": self.count, "n": self.n, "rate": self.rate}


@dataclass
class SignalRow:
    """Weak signals of one release and one segment group."""

    release: str
    group: str
    """The projected segment key (``""`` when not grouped)."""
    count: int
    latency_ms: dict[str, int | None]
    """``{"p50": …, "p99": …}`` of end-to-end latency."""
    stage_latency_ms: dict[str, dict[str, int | None]]
    """Per stage: ``{"p50": …, "p99": …}``."""
    tokens: dict[str, float | None]
    """Mean input and completion tokens."""
    rates: dict[str, Rate] = field(default_factory=dict)
    """Every rate signal by name (``RATE_SIGNALS``)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "release": self.release,
            "segment": self.group,
            "count": self.count,
            "latencyMs": self.latency_ms,
            "stageLatencyMs": self.stage_latency_ms,
            "tokens": self.tokens,
            "rates": {k: v.as_dict() for k, v in self.rates.items()},
        }


def _flag(column: Any) -> Any:
    return func.sum(case((column, 1), else_=0))


def _percentile_select(value: Any, partition: Sequence[Any], source: Any, where: Any) -> Any:
    """Nearest-rank percentiles of ``value`` within each ``partition`` (window functions)."""
    ranked = (
        select(
            *[p.label(f"k{i}") for i, p in enumerate(partition)],
            value.label("v"),
            func.row_number().over(partition_by=partition, order_by=value).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .select_from(source)
        .where(where)
        .subquery()
    )
    keys = [ranked.c[f"k{i}"] for i in range(len(partition))]
    pcts = [func.min(case((ranked.c.rn * 100 >= q * ranked.c.n, ranked.c.v))).label(f"p{q}") for q in PERCENTILES]
    return select(*keys, *pcts).group_by(*keys)


def release_signals(engine: Engine, release: str, by: Sequence[str] = ()) -> list[SignalRow]:
    """Weak signals of ``release``, one row per group of the ``by`` segment dimensions."""
    in_release = _T.c.release_id == release
    with engine.connect() as conn:
        keys = conn.execute(select(_T.c.segment_key).where(in_release).distinct()).scalars().all()
        if not keys:
            return []
        mapping = {k: project_key(k, by) for k in keys}
        group = (case(mapping, value=_T.c.segment_key, else_=literal("?")) if by else literal("")).label("grp")
        per_rate = []
        for sig in RATE_SIGNALS:
            fact = _T.c[sig.fact]
            if sig.over is None:
                per_rate += [_flag(fact), func.count()]
            else:
                over = _T.c[sig.over]
                per_rate += [_flag(fact & over), _flag(over)]
        agg = conn.execute(
            select(
                group,
                func.count(),
                func.avg(cast(_T.c.input_tokens, Integer)),
                func.avg(cast(_T.c.completion_tokens, Integer)),
                *per_rate,
            )
            .where(in_release)
            .group_by(group)
        ).all()
        lat = conn.execute(_percentile_select(_T.c.latency_ms, [group], _T, in_release)).all()
        stage_lat = conn.execute(
            _percentile_select(
                _S.c.latency_ms,
                [group, _S.c.stage],
                _S.join(_T, _S.c.trace_id == _T.c.trace_id),
                in_release,
            )
        ).all()

    latency = {row[0]: dict(zip([f"p{q}" for q in PERCENTILES], row[1:], strict=True)) for row in lat}
    stages: dict[str, dict[str, dict[str, int | None]]] = {}
    for row in stage_lat:
        stages.setdefault(row[0], {})[row[1]] = dict(zip([f"p{q}" for q in PERCENTILES], row[2:], strict=True))
    out = []
    for row in sorted(agg, key=lambda r: r[0]):
        grp, count, mean_in, mean_out, *rate_cols = row
        rates = {
            sig.name: Rate(int(rate_cols[2 * i] or 0), int(rate_cols[2 * i + 1] or 0))
            for i, sig in enumerate(RATE_SIGNALS)
        }
        out.append(
            SignalRow(
                release=release,
                group=grp,
                count=count,
                latency_ms=latency.get(grp, {}),
                stage_latency_ms=dict(sorted(stages.get(grp, {}).items())),
                tokens={
                    "inputMean": float(mean_in) if mean_in is not None else None,
                    "completionMean": float(mean_out) if mean_out is not None else None,
                },
                rates=rates,
            )
        )
    return out
