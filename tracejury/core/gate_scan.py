"""Scan gates: find the slice that regressed, even when no gate groups by its dimension.

The cells scanned are the whole sample (``(all)``), every value of every scanned dimension
(``trunc=yes``) and, with ``pairs``, every pair of values of two dimensions
(``rag=off|trunc=yes``); a cell is tested
when both arms hold ``min_samples`` effective evaluations in it. Each tested cell is the
gate's sampled-metric comparison (the release's whole sample against the baseline's, with
persistence across parts of the sample), and the multiplicity correction (Holm by default:
valid under any dependence, and cells overlap) runs across **every** cell tested — the
family size is that count.

Cells that regressed overlap: when ``trunc=yes`` regressed, ``rag=on`` moves too, diluted.
Regressed cells are taken simplest first — ``(all)``, single values, pairs — and within a
level the most significant first. A cell is narrowed to a regressed sub-cell while the rest
of the cell holds enough to test, shows no rise beyond the margin and rose clearly less than
the sub-cell — so a rise everywhere is named ``(all)``, and one confined to ``trunc=yes`` is
named so although ``(all)`` holds more data. A cell is not named when what remains of it
outside the slices named so far is too small to test or shows no rise at the corrected
level: it is explained by them.

Pure: per-segment-key inputs in, outcomes out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

from tracejury.core.gates import (
    DECISION_ORDER,
    EMPTY,
    Compared,
    GateSpec,
    Outcome,
    Pooled,
    SegmentInputs,
    WindowArm,
    add_arms,
    baseline_rate,
    calibrate_to_decide,
    compare,
    decide_family,
    need_of,
    pooled_audit,
)
from tracejury.core.segments import parse_segment_key
from tracejury.core.stats import adjust

__all__ = ["Cell", "cells", "decide_scan", "merge_inputs"]

Cell = tuple[tuple[str, str], ...]
"""A slice: ((dimension, value), …) in dimension order."""


def cell_name(cell: Cell) -> str:
    """``rag=off|trunc=yes``; ``(all)`` for the whole sample."""
    return "|".join(f"{d}={v}" for d, v in cell) or "(all)"


def cells(keys: Sequence[str], dims: Sequence[str], pairs: bool) -> dict[Cell, list[str]]:
    """Every single-dimension cell (and pair cell) present among ``keys``, with its keys."""
    out: dict[Cell, list[str]] = {}
    for key in keys:
        parts = parse_segment_key(key)
        values = [(d, parts[d]) for d in dims if d in parts]
        for dv in values:
            out.setdefault((dv,), []).append(key)
        if pairs:
            for a, b in combinations(values, 2):
                out.setdefault((a, b), []).append(key)
    return out


def merge_inputs(name: str, inputs: Sequence[SegmentInputs]) -> SegmentInputs:
    """One segment's inputs from several keys' (windows aligned by index)."""
    base = EMPTY
    cur = tail = None
    wins: dict[int, WindowArm] = {}
    for s in inputs:
        base = add_arms(base, s.baseline)
        if s.current is not None:
            cur = add_arms(cur, s.current)
        if s.tail is not None:
            tail = add_arms(tail, s.tail)
        for w in s.windows:
            prev = wins.get(w.index)
            arm = add_arms(prev.arm if prev else None, w.arm)
            wins[w.index] = WindowArm(w.index, w.start, w.end, arm)
    return SegmentInputs(name, base, tuple(wins[k] for k in sorted(wins)), cur, tail)


def _regressed(spec: GateSpec, seg: SegmentInputs, pooled: Pooled) -> Compared | None:
    """The comparison of a cell when it has data enough to test, else None (calibrated with
    its own audit labels, or the whole sample's, under ``calibration: ppi``)."""
    seg = calibrate_to_decide(spec, seg, pooled, 1)[0]
    need = need_of(spec, seg, 1)
    cur = seg.current or EMPTY
    if cur.effective_n < need or seg.baseline.effective_n < need:
        return None
    return compare(spec, cur, seg.baseline, spec.margin.of(baseline_rate(spec, seg.baseline)))


def decide_scan(spec: GateSpec, by_key: Mapping[str, SegmentInputs], dims: Sequence[str], *,
                notes: Sequence[str] = (), **sources: object) -> list[Outcome]:  # fmt: skip
    """Scan the slices of a gate's sample; one outcome per slice named, else one for the gate."""
    assert spec.scan is not None
    scanned = [d for d in (spec.scan.dimensions or dims)]
    whole = merge_inputs("", list(by_key.values()))
    # gate-level checks (batches, judges, versions, tolerances, newest window) on the whole sample
    pooled = pooled_audit([whole])  # a cell short of audit labels borrows the whole sample's correction
    (overall,) = decide_family(spec, [whole] if by_key else [], notes=notes, **sources)
    overall.design, overall.segment = "scan", "(scan)"
    if overall.decision in ("inconclusive", "insufficient_data"):  # gate-level: batches, judges, tolerances,
        return [overall]  # the newest window, too little data in the whole sample
    # the whole sample is a cell too: a rise everywhere is named (all), not its largest slice;
    # cells holding the same keys are one test (rag=on where rag is always on is (all)), under
    # the simplest name
    members: dict[Cell, list[str]] = {}
    seen: set[frozenset[str]] = set()
    found = {(): sorted(by_key), **cells(sorted(by_key), scanned, spec.scan.pairs)}
    for c in sorted(found, key=len):
        if frozenset(found[c]) not in seen:
            seen.add(frozenset(found[c]))
            members[c] = found[c]
    inputs = {c: merge_inputs(cell_name(c), [by_key[k] for k in ks]) for c, ks in members.items()}
    tested = {c: got for c, seg in inputs.items() if (got := _regressed(spec, seg, pooled)) is not None}
    order = sorted(tested, key=lambda c: (tested[c][2], -tested[c][0], cell_name(c)))
    flags = adjust([tested[c][2] for c in order], spec.alpha, spec.correction) if order else []
    family = len(order)
    significant = [c for c, f in zip(order, flags, strict=True) if f]
    outcomes = []
    for c in significant:
        (o,) = decide_family(spec, [inputs[c]], notes=notes, pooled=pooled, **sources)  # type: ignore[arg-type]
        if o.decision == "block":  # significant after the correction across the whole scan
            o.reason += f"; {spec.correction} over the {family} cells tested"
        outcomes.append((c, o))
    # simplest first: (all), then single values, then pairs; within each, strongest evidence first
    candidates = sorted(((c, o) for c, o in outcomes if o.decision == "block"), key=lambda x: len(x[0]))
    named: list[tuple[Cell, Outcome]] = []
    keys_of = {c: set(members[c]) for c in members}
    level = spec.alpha / max(1, family)  # a new slice must stand out at the corrected level
    for c, o in candidates:
        c, o = _refine(spec, c, o, dict(candidates), keys_of, by_key, pooled)
        covered = set().union(*(keys_of[n] for n, _ in named)) if named else set()
        if any(c == n for n, _ in named) or _explained(spec, keys_of[c], covered, by_key, level, pooled):
            continue
        named.append((c, o))
    undecided = [(c, o) for c, o in outcomes if o.decision in ("inconclusive", "insufficient_data")]
    if not named and undecided:  # a slice rose, but its own evidence cannot carry a decision
        c, o = min(undecided, key=lambda x: DECISION_ORDER.index(x[1].decision))
        o.design, o.slice, o.segment, o.family_size = "scan", cell_name(c), cell_name(c), family
        o.reason = f"{cell_name(c)} rose (p {tested[c][2]:.2g}, {spec.correction} over {family} cells), but {o.reason}"
        return [o]
    if not named:
        overall.family_size = family
        if not tested:
            overall.decision = "insufficient_data"
            overall.reason = (f"no slice of {len(members)} holds {spec.required_samples(0.0, 1)}"
                              " effective evaluations in both arms")  # fmt: skip
        else:
            moved = [cell_name(c) for c, o in outcomes if o.decision != "block"]
            overall.decision = "pass"
            overall.reason = (f"no slice of {family} tested ({len(members)} scanned) regressed beyond the margin"
                              + (f"; rose but not persistently: {', '.join(moved)}" if moved else ""))  # fmt: skip
        return [overall]
    out = []
    for c, o in named:
        o.design, o.slice, o.segment, o.family_size = "scan", cell_name(c), cell_name(c), family
        out.append(o)
    return out


def _rest(spec: GateSpec, keys: set[str], by_key: Mapping[str, SegmentInputs], pooled: Pooled) -> Compared | None:
    """The comparison of a cell's part on ``keys`` (None when empty or too small to test)."""
    if not keys:
        return None
    return _regressed(spec, merge_inputs("", [by_key[k] for k in sorted(keys)]), pooled)


def _refine(spec: GateSpec, c: Cell, o: Outcome, candidates: Mapping[Cell, Outcome],
            keys_of: Mapping[Cell, set[str]], by_key: Mapping[str, SegmentInputs],
            pooled: Pooled) -> tuple[Cell, Outcome]:  # fmt: skip
    """Narrow ``c`` to a regressed sub-cell ``d`` while the rest of ``c`` holds enough to test,
    shows no rise beyond the margin (uncorrected) and rose clearly less than ``d`` (the upper
    bound of its rise is below ``d``'s estimate) — the simplest, then most significant, such
    ``d`` first."""
    ranked = sorted(candidates.items(), key=lambda x: (len(x[0]), x[1].p_value or 1.0))
    narrowed = True
    while narrowed:
        narrowed = False
        for d, od in ranked:
            if d == c or not keys_of[d] < keys_of[c] or od.estimate is None:
                continue
            rest = _rest(spec, keys_of[c] - keys_of[d], by_key, pooled)
            if rest is not None and rest[2] > spec.alpha and rest[1][1] < od.estimate:
                c, o, narrowed = d, od, True
                break
    return c, o


def _explained(spec: GateSpec, keys: set[str], covered: set[str], by_key: Mapping[str, SegmentInputs],
               level: float, pooled: Pooled) -> bool:  # fmt: skip
    """A cell overlaps the slices named so far, and what remains of it outside them is too
    small to test or shows no rise at the corrected ``level``."""
    if not keys & covered:
        return False
    rest = _rest(spec, keys - covered, by_key, pooled)
    return rest is None or rest[2] > level
