"""Is the gate honest, and does it decide at the budget users spend? A seeded Monte Carlo of
the reducer's decision logic on simulated releases.

    .venv/bin/python bench/gate_sim.py [--trials 400] [--seed 1] [--only NAME ...]

Every trial simulates two releases of traces (30,000 each unless said), with the failure
signals of the shipped sampling config (``tracejury/core/defaults/sampling.yaml``:
truncation, tool failures, empty or weak retrieval, slow requests, negative feedback,
fallbacks), draws the failure-aware Poisson sample a batch would (the shipped weights,
base rate solved for the expected sample size), draws each sampled trace's evaluator
verdict (failures 3x as likely on traces that show a signal as on those that do not — the
reason to oversample them), aggregates the sums ``gate run`` aggregates (n, failures, Σ1/p,
Σ1/p², per segment key and window of 5,000 traces) and calls the same pure functions
``gate run`` calls: ``decide_family`` and ``decide_scan``.

Scenarios (``--only`` picks some):

* ``aa``: 4 segments of 25% of traffic, no change, the shipped ``answer_correctness`` gate
  (grouped by segment): how often the run passes (exit 0), blocks, or lacks data.
* ``looks``: A/A with 30 segments x 20 looks — the gate run after each twentieth of the
  current release's traffic, on the sample so far; P(any false block) over the 20 looks.
* ``power``: the fail rate of one segment (25% of traffic) rises from 3% to 4.5, 6, 7.5 and
  9%: the gate's block rate beside that of one fixed-sample two-proportion test on the same
  data (same effective n, level, margin and Holm correction, no persistence: the bound no
  design beats), and beside the traffic-window design (windows of 5,000 traces, min samples
  per window) that gates used before.
* ``scan``: 2% -> 20% in the truncated slice (8% of traffic, not a grouping dimension):
  how often the scan gate blocks naming ``trunc=yes`` (or a sub-slice of it), and how often
  it names a slice outside it.
* ``budget``: the smallest sample (judge calls per release) at which the A/A pass rate,
  the 3% -> 9% power and the scan's detection reach their targets.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from tracejury.core.gate_scan import decide_scan  # noqa: E402
from tracejury.core.gates import (  # noqa: E402
    Arm,
    GateSpec,
    SegmentInputs,
    WindowArm,
    _decide_windows,
    add_arms,
    compare,
    decide_family,
)
from tracejury.core.sampling import base_rate_for, default_sampling  # noqa: E402
from tracejury.core.stats import adjust  # noqa: E402

WINDOW = 5000
LIFT = 3.0
"""Failures are this much likelier on traces that show a failure signal."""


def shipped(name: str) -> GateSpec:
    return GateSpec.from_yaml((ROOT / "rubrics" / "gates" / f"{name}.yaml").read_text(), file=name)


def with_group(spec: GateSpec, group_by: tuple[str, ...]) -> GateSpec:
    data = spec.model_dump()
    data.update(group_by=group_by, where={}, metric={"evaluator": "sim"})
    return GateSpec.model_validate(data)


SCAN = GateSpec.model_validate({
    "id": "scan", "metric": {"evaluator": "sim"}, "scan": {"pairs": True},
    "min_samples": 100, "margin": {"absolute": 0.01, "relative": 0.2},
    "hysteresis": {"windows": 2, "window": {"traces": WINDOW}},
})  # fmt: skip


@dataclass
class Release:
    """One simulated release's sample: per trace, its cell, window, weight and verdict."""

    seg: np.ndarray
    trunc: np.ndarray
    rag: np.ndarray
    window: np.ndarray
    weight: np.ndarray
    failed: np.ndarray


TEMPER = 1.0
"""Sampling weights raised to this power (1: the shipped weights)."""
UNIFORM = False
"""Sample uniformly instead (every weight 1): what failure-aware sampling is compared with."""


def simulate(rng: np.random.Generator, n: int, segments: int, sample: float,
             rate: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Release:  # fmt: skip
    """A release of ``n`` traces, sampled failure-aware for an expected ``sample`` traces."""
    cfg = default_sampling()
    seg = rng.integers(0, segments, n)
    trunc = rng.random(n) < 0.08
    rag = rng.random(n) < 0.6
    empty = rag & (rng.random(n) < 0.04)
    flags = {
        "truncated": trunc, "tool_failed": rng.random(n) < 0.03, "retrieval_empty": empty,
        "retrieval_low": rag & ~empty & (rng.random(n) < 0.15), "latency_above_p95": rng.random(n) < 0.05,
        "negative_feedback": rng.random(n) < 0.02, "fallback_used": rng.random(n) < 0.02,
    }  # fmt: skip
    weight = np.ones(n)
    for name, factor in cfg.weights.items():
        weight = np.where(flags[name], weight * factor, weight)
    weight = np.minimum(weight, cfg.max_weight)
    flagged = weight > 1
    if UNIFORM:
        weight = np.ones(n)
    elif TEMPER != 1.0:
        weight = weight**TEMPER
    base = base_rate_for(weight.tolist(), sample)
    prob = np.minimum(1.0, base * weight)
    picked = rng.random(n) < prob
    nominal = rate(seg, trunc)
    share = flagged.mean()
    p_fail = np.minimum(1.0, nominal / (1 - share + LIFT * share) * np.where(flagged, LIFT, 1.0))
    failed = rng.random(n) < p_fail
    window = np.arange(n) // WINDOW
    return Release(seg[picked], trunc[picked], rag[picked], window[picked], 1.0 / prob[picked], failed[picked])


def arms(r: Release, key: np.ndarray, keys: int, windows: int, upto: int | None = None) -> list[list[Arm]]:
    """Per key and window: the sums ``gate run`` aggregates."""
    keep = r.window < upto if upto is not None else np.ones(len(key), bool)
    idx = key[keep] * windows + r.window[keep]
    w, f = r.weight[keep], r.failed[keep]
    size = keys * windows

    def s(v: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=v, minlength=size)

    n, nf, ws, wf, wsq, wsqf = (s(np.ones(len(w))), s(f * 1.0), s(w), s(w * f), s(w * w), s(w * w * f))
    return [
        [Arm(int(nf[i]), int(n[i]), wf[i], ws[i], wsq[i], weight_sq_failed=wsqf[i])
         for i in range(k * windows, (k + 1) * windows)]
        for k in range(keys)
    ]  # fmt: skip


def total(per_window: list[Arm]) -> Arm:
    out = None
    for a in per_window:
        out = add_arms(out, a)
    return out or Arm(0, 0, 0.0, 0.0, 0.0)


def inputs(base: list[list[Arm]], cur: list[list[Arm]], names: list[str], looks: int | None = None,
           kish: bool = False) -> list[SegmentInputs]:  # fmt: skip
    out = []
    for name, b, c in zip(names, base, cur, strict=True):
        c = c[:looks] if looks is not None else c
        if kish:
            b = [Arm(a.failures, a.n, a.weight_failed, a.weight_sum, a.weight_sq) for a in b]
            c = [Arm(a.failures, a.n, a.weight_failed, a.weight_sum, a.weight_sq) for a in c]
        wins = tuple(WindowArm(i, str(i), str(i + 1), a) for i, a in enumerate(c))
        out.append(SegmentInputs(name, total(b), wins, total(c), None))
    return out


def window_inputs(base: list[list[Arm]], cur: list[list[Arm]], names: list[str]) -> list[SegmentInputs]:
    """The traffic-window design: current window k against baseline window k (Kish n)."""
    out = []
    for name, b, c in zip(names, base, cur, strict=True):
        kb = [Arm(a.failures, a.n, a.weight_failed, a.weight_sum, a.weight_sq) for a in b]
        kc = [Arm(a.failures, a.n, a.weight_failed, a.weight_sum, a.weight_sq) for a in c]
        wins = tuple(WindowArm(i, str(i), str(i + 1), a, kb[i % len(kb)]) for i, a in enumerate(kc))
        out.append(SegmentInputs(name, total(kb), wins))
    return out


def flat(rate: float, seg_rates: dict[int, float] | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def f(seg: np.ndarray, trunc: np.ndarray) -> np.ndarray:
        out = np.full(len(seg), rate)
        for s, r in (seg_rates or {}).items():
            out[seg == s] = r
        return out

    return f


def pair(rng: np.random.Generator, n: int, segments: int, sample: float,
         cur_rate: Callable) -> tuple[Release, Release]:  # fmt: skip
    return simulate(rng, n, segments, sample, flat(0.03)), simulate(rng, n, segments, sample, cur_rate)


SEGMENTS = [f"seg={s}" for s in range(4)]
SHIPPED = with_group(shipped("answer_correctness"), ("seg",))
TODAY = GateSpec.model_validate({**SHIPPED.model_dump(), "min_samples": 300})
"""The design gates used before: windows of 5,000 traces of traffic, 300 effective per window."""


def _decision(outs: list) -> str:
    return next(d for d in ("block", "inconclusive", "insufficient_data", "pass") if any(o.decision == d for o in outs))


def run_aa(trials: int, rng: np.random.Generator, sample: float = 3000, n: int = 30_000) -> dict[str, float]:
    """Run decisions on an unchanged release: the sample design and the traffic-window one."""
    counts = {"pass": 0, "block": 0, "insufficient_data": 0, "today_pass": 0, "today_block": 0}
    wins = n // WINDOW
    for _ in range(trials):
        b, c = pair(rng, n, 4, sample, flat(0.03))
        base, cur = arms(b, b.seg, 4, wins), arms(c, c.seg, 4, wins)
        counts[_decision(decide_family(SHIPPED, inputs(base, cur, SEGMENTS)))] += 1
        today = _decision(_decide_windows(TODAY, window_inputs(base, cur, SEGMENTS), []))
        counts["today_pass"] += today == "pass"
        counts["today_block"] += today == "block"
    return {k: v / trials for k, v in counts.items()}


def run_looks(trials: int, rng: np.random.Generator, segments: int = 30, looks: int = 20) -> dict[str, float]:
    """P(any false block over the looks), with the shipped margin and with no margin at all."""
    bare = GateSpec.model_validate({**SHIPPED.model_dump(), "margin": {"absolute": 0.0, "relative": 0.0},
                                    "critical": None})  # fmt: skip
    n = segments * 7500  # each segment as large as a quarter of a 30,000-trace release
    blocked = {"shipped": 0, "bare": 0}
    global WINDOW
    saved, WINDOW = WINDOW, n // looks
    try:
        for _ in range(trials):
            b, c = pair(rng, n, segments, n / 10, flat(0.03))
            names = [f"seg={s}" for s in range(segments)]
            base, cur = arms(b, b.seg, segments, looks), arms(c, c.seg, segments, looks)
            for label, g in (("shipped", SHIPPED), ("bare", bare)):
                for k in range(1, looks + 1):
                    if any(o.decision == "block" for o in decide_family(g, inputs(base, cur, names, looks=k))):
                        blocked[label] += 1
                        break
    finally:
        WINDOW = saved
    return {k: v / trials for k, v in blocked.items()}


def run_power(trials: int, rng: np.random.Generator, to: float, sample: float = 3000,
              n: int = 30_000) -> dict[str, float]:  # fmt: skip
    """How often a rise from 3% in one segment (25% of traffic) blocks: the gate, the bound
    (one fixed-sample test on the same data: same effective n, level, margin, Holm), the gate
    with Kish's effective n, and the traffic-window design."""
    hits = {"gate": 0, "fixed": 0, "kish": 0, "windows": 0}
    wins = n // WINDOW
    for _ in range(trials):
        b, c = pair(rng, n, 4, sample, flat(0.03, {0: to}))
        base, cur = arms(b, b.seg, 4, wins), arms(c, c.seg, 4, wins)
        outs = decide_family(SHIPPED, inputs(base, cur, SEGMENTS))
        hits["gate"] += outs[0].decision == "block"
        hits["fixed"] += _fixed_rejects(SHIPPED, inputs(base, cur, SEGMENTS), 0)
        hits["kish"] += decide_family(SHIPPED, inputs(base, cur, SEGMENTS, kish=True))[0].decision == "block"
        hits["windows"] += _decide_windows(TODAY, window_inputs(base, cur, SEGMENTS), [])[0].decision == "block"
    return {k: v / trials for k, v in hits.items()}


def _fixed_rejects(spec: GateSpec, segments: list[SegmentInputs], i: int) -> bool:
    """The bound: one fixed-sample test per segment on the same data (pooled sample, same
    effective n, level, margin), Holm over all the segments — no minimum samples, no
    persistence, no newest-window rule. Computed here, not taken from the gate's outcomes."""
    pvalues = []
    for seg in segments:
        assert seg.current is not None
        margin = spec.margin.of(seg.baseline.rate)
        pvalues.append(compare(spec, seg.current, seg.baseline, margin)[2])
    return adjust(pvalues, spec.alpha, spec.correction)[i]


def run_scan(trials: int, rng: np.random.Generator, sample: float = 3000, n: int = 30_000,
             to: float = 0.20) -> dict[str, float]:  # fmt: skip
    """2% -> ``to`` in the truncated slice; the scan over seg x trunc x rag (and pairs)."""
    def rate(seg: np.ndarray, trunc: np.ndarray) -> np.ndarray:
        return np.where(trunc, to, 0.02)

    right = wrong = 0
    wins = n // WINDOW
    names = [f"seg={k // 4}|trunc={'yes' if k % 4 >= 2 else 'no'}|rag={'on' if k % 2 else 'off'}" for k in range(16)]
    for _ in range(trials):
        b, c = simulate(rng, n, 4, sample, flat(0.02)), simulate(rng, n, 4, sample, rate)
        base = arms(b, b.seg * 4 + b.trunc * 2 + b.rag, 16, wins)
        cur = arms(c, c.seg * 4 + c.trunc * 2 + c.rag, 16, wins)
        by_key = {s.segment: s for s in inputs(base, cur, names)}
        named = [o.slice for o in decide_scan(SCAN, by_key, ("seg", "trunc", "rag")) if o.decision == "block"]
        right += any(s is not None and "trunc=yes" in s.split("|") for s in named)
        wrong += any(s is not None and "trunc=yes" not in s.split("|") for s in named)
    return {"named": right / trials, "wrong": wrong / trials}


def run_signal_aa(trials: int, rng: np.random.Generator, baseline_windows: int, segments: int = 30,
                  looks: int = 20) -> float:  # fmt: skip
    """Signal gates (every trace): A/A, 9,000 traces per window and arm at 0.2%, hysteresis 2,
    Holm; current window k meets baseline window k mod B (B = ``baseline_windows``; 0: one
    shared baseline). P(any false block over 20 looks)."""
    spec = GateSpec.model_validate({"id": "sim", "metric": {"signal": "format_invalid"}, "min_samples": 2000,
                                    "hysteresis": {"windows": 2, "window": {"traces": 9000}}})  # fmt: skip
    n, p = 9000, 0.002
    blocked = 0
    for _ in range(trials):
        base = rng.binomial(n, p, (segments, max(1, baseline_windows)))
        cur = rng.binomial(n, p, (segments, looks))
        segs = []
        for s in range(segments):
            barm = [arm_of(int(x), n) for x in base[s]]
            wins = tuple(WindowArm(i, "", "", arm_of(int(x), n), barm[i % len(barm)] if baseline_windows else None)
                         for i, x in enumerate(cur[s]))  # fmt: skip
            segs.append(SegmentInputs(f"s{s}", arm_of(int(base[s].sum()), n * len(barm)), wins))
        # a window's significance does not depend on later windows: one call decides every look
        for o in _decide_windows(spec, segs, []):
            streak = 0
            hit = False
            for r in o.windows:
                streak = streak + 1 if r.evaluated and r.regression else 0
                hit = hit or streak >= 2
            if hit:
                blocked += 1
                break
    return blocked / trials


def arm_of(failures: int, n: int) -> Arm:
    return Arm(failures, n, float(failures), float(n), float(n), weight_sq_failed=float(failures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=["aa", "looks", "power", "scan", "signals", "budget"])
    args = parser.parse_args()
    t = args.trials
    start = time.perf_counter()
    print(f"sampling {default_sampling().version}; failures {LIFT:g}x likelier on traces with a signal")
    if "aa" in args.only:
        r = run_aa(t, np.random.default_rng(args.seed))
        print(f"A/A, 4 segments, 3,000 of 30,000 sampled, shipped answer_correctness gate: pass {r['pass']:.1%},"
              f" block {r['block']:.1%}, insufficient_data {r['insufficient_data']:.1%}; traffic windows:"
              f" pass {r['today_pass']:.1%}, block {r['today_block']:.1%} ({t} trials)")  # fmt: skip
    if "looks" in args.only:
        lt = max(50, t // 2)
        r = run_looks(lt, np.random.default_rng(args.seed))
        print(f"A/A, 30 segments x 20 looks, 10% sample: P(any false block) = {r['shipped']:.1%} with the shipped"
              f" margin, {r['bare']:.1%} with no margin ({lt} trials)")  # fmt: skip
    if "power" in args.only:
        print("power, one segment of 25% rising from 3%: to | gate | fixed-sample test (bound) | gate/bound"
              " | gate with Kish n | traffic windows")  # fmt: skip
        for to in (0.045, 0.06, 0.075, 0.09):
            r = run_power(t, np.random.default_rng(args.seed), to)
            ratio = r["gate"] / r["fixed"] if r["fixed"] else float("nan")
            print(f"  {to:.1%} | {r['gate']:.1%} | {r['fixed']:.1%} | {ratio:.2f} | {r['kish']:.1%}"
                  f" | {r['windows']:.1%}")  # fmt: skip
    if "scan" in args.only:
        r = run_scan(t, np.random.default_rng(args.seed))
        print(f"scan, 2% -> 20% in trunc=yes (8% of traffic): blocks naming it {r['named']:.1%}, names a slice"
              f" outside it {r['wrong']:.1%}; unchanged release: names a slice"
              f" {run_scan(t, np.random.default_rng(args.seed), to=0.02)['wrong']:.1%} ({t} trials)")  # fmt: skip
    if "signals" in args.only:
        kinds = ((20, "fresh baseline windows"), (5, "5 baseline windows reused 4x"), (0, "one shared baseline"))
        for b, label in kinds:
            rate = run_signal_aa(t, np.random.default_rng(args.seed), b)
            print(f"signal gates, A/A, 30 segments x 20 windows, hysteresis 2, {label}:"
                  f" P(any false block) = {rate:.1%}")  # fmt: skip
    if "budget" in args.only:
        bt = max(100, t // 2)
        print(f"judge calls per release (one call per sampled trace) -> A/A pass | 3->9% power | scan names the"
              f" slice, sample design; then the traffic-window design ({bt} trials each)")  # fmt: skip
        for sample in (1000, 1500, 2000, 2500, 3000, 4500, 6000, 9000, 15000, 30000):
            aa = run_aa(bt, np.random.default_rng(args.seed), sample)
            power = run_power(bt, np.random.default_rng(args.seed), 0.09, sample)
            scan = run_scan(bt, np.random.default_rng(args.seed), sample)["named"]
            print(f"  {sample:>6}: {aa['pass']:.1%} | {power['gate']:.1%} | {scan:.1%};"
                  f" traffic windows {aa['today_pass']:.1%} | {power['windows']:.1%}")  # fmt: skip
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
