"""Does calibration (PPI++ on the audit labels) keep its promise? A seeded Monte Carlo of
``tracejury.core.calibration`` and of the gate decisions that use it.

    .venv/bin/python bench/calibration_sim.py [--trials 1000] [--seed 1] [--scenario all]

Every trial simulates releases of 30,000 traces, 20% of which show a failure signal
(failures 4x likelier on them). A batch draws a Poisson sample of 3,000 expected traces —
uniform, or failure-aware (flagged traces drawn 3x as often, weight w = 1/p) — a judge
scores every drawn trace, and escalation audits each with probability ``a`` (5%): a person
labels it with the truth, weight v = w/a. The judge is lenient: it misses half the true
failures and fails 1% of the good traces. The truth is the superpopulation rate.

Scenarios (``--scenario`` picks one, ``all`` runs them all):

* ``coverage``: 6% true failures, one arm. Coverage of the true rate by the calibrated 95%
  interval — Wilson at the calibrated effective n (the one gates use) and the normal
  ``Calibrated.interval()`` — beside the judge-only interval (Wilson at the judge's
  effective n) and the human-only one (the labels alone: λ = 0); median widths of the
  calibrated and the human-only interval on the same labels. Uniform and failure-aware.
* ``aa``: two releases at 6% with the same lenient judge, 4 segment groups (``--groups``),
  the shipped ``answer_correctness`` gate grouped by segment, with ``calibration: {method:
  ppi, min_labels: 30}`` or ``none``; audit 5% and 20%. P(the run blocks) with the shipped
  ``min_samples`` (mde 0.06) and with ``min_samples: 50`` (``--low-min-samples``), low
  enough that calibrated groups are compared at all: the level of the test itself. Beside
  it, how many groups were compared and how many blocks rest on an arm calibrated to a
  variance of 0 (its effective n then is its whole sample).
* ``power``: 6% -> 10%; the 4 new points are a new kind of failure the judge misses 90%
  of (it still misses half the old kind), so the judge's rate rises 3.9% -> 4.3%.
  P(block), judge-only and calibrated, at audit rates 5%, 10% and 20%, with 4 groups and
  with one (a gate without ``group_by``); a third of ``--trials``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
# bench/judges.py would shadow the ``judges`` package: drop this folder from sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from tracejury.core.calibration import AuditCells, ppi  # noqa: E402
from tracejury.core.gates import (  # noqa: E402
    Arm,
    GateSpec,
    Outcome,
    SegmentInputs,
    Source,
    WindowArm,
    add_arms,
    decide_family,
    run_decision,
)
from tracejury.core.stats import wilson  # noqa: E402

TRAFFIC = 30_000
SAMPLE = 3000
WINDOW = 5000
FLAGGED = 0.2
"""Share of traffic that shows a failure signal."""
LIFT = 4.0
"""Failures are this much likelier on flagged traces."""
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Judge:
    """How the judge errs: the share of true failures it passes, per kind, and of good
    traces it fails."""

    miss: float = 0.5
    miss_new: float = 0.9
    false_fail: float = 0.01


@dataclass
class Draws:
    """The sampled traces of ``trials`` releases, flattened: per trace its trial, group,
    traffic window, weight, truth, verdict and audit (with its weight v)."""

    trial: np.ndarray
    group: np.ndarray
    window: np.ndarray
    weight: np.ndarray
    truth: np.ndarray
    judged: np.ndarray
    audited: np.ndarray
    v: np.ndarray


def draw(rng: np.random.Generator, trials: int, *, rate: float = 0.06, new: float = 0.0, judge: Judge = Judge(),
         audit: float = 0.05, oversample: float = 1.0, groups: int = 1) -> Draws:  # fmt: skip
    """Poisson samples of ``trials`` releases. ``rate``: failures of the old kind, ``new``:
    of the new kind (the truth is ``rate + new``); ``oversample``: how much likelier a
    flagged trace is to be drawn. Traffic is i.i.d., so the sampled traces of each stratum
    are a multinomial count of the traffic, placed uniformly in windows and groups."""
    p_plain = SAMPLE / (TRAFFIC * (1 - FLAGGED + oversample * FLAGGED))
    p_flag = oversample * p_plain
    counts = rng.multinomial(TRAFFIC, [FLAGGED * p_flag, (1 - FLAGGED) * p_plain,
                                       1 - FLAGGED * p_flag - (1 - FLAGGED) * p_plain], size=trials)  # fmt: skip
    per_trial = counts[:, 0] + counts[:, 1]
    trial = np.repeat(np.arange(trials), per_trial)
    flag = np.concatenate([np.repeat([True, False], c[:2]) for c in counts])
    size = len(trial)
    weight = np.where(flag, 1 / p_flag, 1 / p_plain)
    scale = np.where(flag, LIFT, 1.0) / (1 - FLAGGED + LIFT * FLAGGED)
    u = rng.random(size)
    old = u < rate * scale
    fresh = ~old & (u < (rate + new) * scale)
    r = rng.random(size)
    judged = np.where(old, r >= judge.miss, np.where(fresh, r >= judge.miss_new, r < judge.false_fail))
    audited = rng.random(size) < audit
    return Draws(trial, rng.integers(0, groups, size), rng.integers(0, TRAFFIC // WINDOW, size), weight,
                 old | fresh, judged, audited, weight / audit)  # fmt: skip


def sums(d: Draws, key: np.ndarray, size: int) -> tuple[list[Arm], list[AuditCells]]:
    """Per key: the arm ``gate run`` aggregates (judge's verdicts) and its audit cells."""

    def s(x: np.ndarray, k: np.ndarray = key, m: int = size) -> np.ndarray:
        return np.bincount(k, weights=x, minlength=m)

    g, w = d.judged * 1.0, d.weight
    n, nf, ws, wf, wsq, wsqf = s(np.ones(len(w))), s(g), s(w), s(w * g), s(w * w), s(w * w * g)
    a = d.audited
    cell = key[a] * 4 + 2 * d.judged[a] + d.truth[a]
    va = d.v[a]
    cn, cw, cw2 = (s(x, cell, 4 * size).reshape(size, 4) for x in (np.ones(len(va)), va, va * va))
    cells = [AuditCells(tuple(int(x) for x in cn[i]), tuple(cw[i]), tuple(cw2[i])) for i in range(size)]  # type: ignore[arg-type]
    arms = [Arm(int(nf[i]), int(n[i]), wf[i], ws[i], wsq[i], weight_sq_failed=wsqf[i], audit=cells[i])
            for i in range(size)]  # fmt: skip
    return arms, cells


# --- coverage -----------------------------------------------------------------------------


def covers(interval: tuple[float, float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def run_coverage(trials: int, rng: np.random.Generator, oversample: float, audit: float = 0.05,
                 rate: float = 0.06) -> dict[str, float]:  # fmt: skip
    """Coverage and width of the 95% intervals of one arm's rate, over ``trials`` arms."""
    d = draw(rng, trials, rate=rate, audit=audit, oversample=oversample)
    arms, _ = sums(d, d.trial, trials)
    hits = {k: 0 for k in ("cal_wilson", "cal_normal", "judge", "human", "human_normal", "cal_low")}
    widths: dict[str, list[float]] = {"cal_wilson": [], "cal_normal": [], "human": []}
    lams, effs, labels, ests = [], [], [], []
    lam_zero = lam_one = clipped = 0
    for arm in arms:
        cal = ppi(arm.judge_sums(), arm.audit)
        hum = ppi(arm.judge_sums(), arm.audit, lam=0.0)
        cw = wilson(cal.rate * cal.effective_n, cal.effective_n, 0.05)
        cn = cal.interval(Z95)
        hw = wilson(hum.rate * hum.effective_n, hum.effective_n, 0.05)
        jw = wilson(arm.judge_rate * arm.effective_n, arm.effective_n, 0.05)
        for k, iv in (("cal_wilson", cw), ("cal_normal", cn), ("judge", jw), ("human", hw),
                      ("human_normal", hum.interval(Z95))):  # fmt: skip
            hits[k] += covers(iv, rate)
        hits["cal_low"] += cw[1] < rate  # the interval below the truth: a baseline that looks too good
        for k, iv in (("cal_wilson", cw), ("cal_normal", cn), ("human", hw)):
            widths[k].append(iv[1] - iv[0])
        lams.append(cal.lam)
        effs.append(cal.effective_n)
        labels.append(cal.labelled)
        ests.append(cal.estimate)
        lam_zero += cal.lam <= 0.0
        lam_one += cal.lam >= 1.0
        clipped += cal.estimate < 0.0
    out = {k: v / trials for k, v in hits.items()}
    out.update({f"w_{k}": statistics.median(v) for k, v in widths.items()})
    out.update(lam=statistics.median(lams), lam0=lam_zero / trials, lam1=lam_one / trials,
               eff=statistics.median(effs), labels=statistics.median(labels), clipped=clipped / trials,
               bias=statistics.fmean(ests) - rate)  # fmt: skip
    return out


# --- gates --------------------------------------------------------------------------------


def gate(calibrated: bool, min_samples: int | None = None, groups: int = 4) -> GateSpec:
    """The shipped ``answer_correctness`` gate grouped by segment (none: one group), with
    ``calibration: {method: ppi, min_labels: 30}`` or ``none`` whatever the file says."""
    data = yaml.safe_load((ROOT / "rubrics" / "gates" / "answer_correctness.yaml").read_text())
    data.update(group_by=["seg"] if groups > 1 else [])
    data["calibration"] = {"method": "ppi", "min_labels": 30} if calibrated else {"method": "none"}
    if min_samples is not None:
        data["min_samples"] = min_samples
    return GateSpec.model_validate(data)


CURRENT = Source(release="r2", batches=("b_cur",), judges=("model=sim-judge",))
BASELINE = Source(release="r1", batches=("b_base",), judges=("model=sim-judge",))


def release_inputs(base: Draws, cur: Draws, trials: int, groups: int) -> list[list[SegmentInputs]]:
    """Per trial, per group: the baseline's whole sample against the current one's windows."""
    wins = TRAFFIC // WINDOW
    b_arms, _ = sums(base, base.trial * groups + base.group, trials * groups)
    c_arms, _ = sums(cur, (cur.trial * groups + cur.group) * wins + cur.window, trials * groups * wins)
    out = []
    for t in range(trials):
        segs = []
        for g in range(groups):
            per_window = c_arms[(t * groups + g) * wins : (t * groups + g + 1) * wins]
            total: Arm | None = None
            for a in per_window:
                total = add_arms(total, a)
            assert total is not None
            windows = tuple(WindowArm(i, str(i), str(i + 1), a) for i, a in enumerate(per_window))
            segs.append(SegmentInputs(f"seg={g}", b_arms[t * groups + g], windows, total))
        out.append(segs)
    return out


def decide(spec: GateSpec, segs: list[SegmentInputs]) -> tuple[str, list[Outcome]]:
    outs = decide_family(spec, segs, current=CURRENT, baseline=BASELINE)
    return run_decision(outs), outs


Rates = dict[str, dict[str, float]]
"""Per gate: the share of each run decision and what it rests on."""


def run_gates(trials: int, rng: np.random.Generator, specs: dict[str, GateSpec], *, new: float = 0.0,
              audit: float = 0.05, groups: int = 4, oversample: float = 1.0) -> Rates:  # fmt: skip
    """Run decisions of each spec on the same simulated pairs of releases: per spec, the
    share of each run decision and the median effective n of the current arm's groups."""
    base = draw(rng, trials, audit=audit, groups=groups, oversample=oversample)
    cur = draw(rng, trials, new=new, audit=audit, groups=groups, oversample=oversample)
    pairs = release_inputs(base, cur, trials, groups)
    out: Rates = {}
    for name, spec in specs.items():
        counts = {"block": 0, "pass": 0, "insufficient_data": 0, "inconclusive": 0}
        effs: list[float] = []
        pooled = compared = degenerate = 0
        for segs in pairs:
            decision, outs = decide(spec, segs)
            counts[decision] += 1
            effs.extend(o.current["effectiveN"] for o in outs)
            pooled += sum(o.current["calibration"].get("strata") == "pooled" for o in outs)
            compared += sum(o.p_value is not None for o in outs)
            degenerate += any(o.decision == "block" and zero_variance(o) for o in outs)
        out[name] = {k: v / trials for k, v in counts.items()}
        out[name].update(eff=statistics.median(effs), pooled=pooled / (trials * groups),
                         compared=compared / (trials * groups), degenerate=degenerate / trials)  # fmt: skip
    return out


def zero_variance(outcome: Outcome) -> bool:
    """An arm calibrated to a variance of 0 (then its effective n is its whole sample)."""
    return any(a["calibration"].get("variance") == 0.0 for a in (outcome.current, outcome.baseline))


def need(spec: GateSpec, groups: int) -> int:
    return spec.required_samples(0.06, groups)


# --- report -------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_coverage(trials: int, seed: int) -> None:
    se = (0.95 * 0.05 / trials) ** 0.5
    print(f"\n### coverage of the true rate (6%) by 95% intervals: judge misses 50% of failures, fails 1% of good"
          f" traces; {SAMPLE:,} sampled of {TRAFFIC:,} ({trials} trials: Monte Carlo s.e. {pct(se)})\n")  # fmt: skip
    print("| audit | sampling | calibrated, Wilson at eff. n | calibrated, normal | judge only | human only (Wilson)"
          " | human only (normal) | cal. Wilson below the truth | width cal. Wilson | width cal. normal"
          " | width human | labels | eff. n | λ median | λ=0 | λ=1 | θ<0 | bias of θ |")  # fmt: skip
    print("|---" * 18 + "|")
    for audit in (0.05, 0.20):
        for label, over in (("uniform", 1.0), ("failure-aware (flagged 3x)", 3.0)):
            r = run_coverage(trials, np.random.default_rng(seed), over, audit)
            print(f"| {pct(audit)} | {label} | {pct(r['cal_wilson'])} | {pct(r['cal_normal'])} | {pct(r['judge'])}"
                  f" | {pct(r['human'])} | {pct(r['human_normal'])} | {pct(r['cal_low'])} | {r['w_cal_wilson']:.4f}"
                  f" | {r['w_cal_normal']:.4f} | {r['w_human']:.4f} | {r['labels']:.0f} | {r['eff']:.0f}"
                  f" | {r['lam']:.2f} | {pct(r['lam0'])} | {pct(r['lam1'])} | {pct(r['clipped'])}"
                  f" | {r['bias']:+.4f} |")  # fmt: skip


def print_gates(title: str, rows: list[tuple[str, dict[str, float]]]) -> None:
    print(title)
    print("| audit | gate | block | pass | insufficient_data | groups compared | blocks with an arm at variance 0"
          " | median eff. n, current group | groups on pooled labels |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {pct(r['block'])} | {pct(r['pass'])} | {pct(r['insufficient_data'])}"
              f" | {pct(r['compared'])} | {pct(r['degenerate'])} | {r['eff']:.0f} | {pct(r['pooled'])} |")  # fmt: skip


def gate_specs(groups: int, low: int) -> dict[str, GateSpec]:
    return {
        "judge only, shipped min_samples": gate(False, groups=groups),
        "calibrated, shipped min_samples": gate(True, groups=groups),
        f"calibrated, min_samples {low}": gate(True, low, groups),
    }


AUDITS = (0.05, 0.10, 0.20)


def print_aa(trials: int, seed: int, groups: int, low: int) -> None:
    specs = gate_specs(groups, low)
    rows = []
    for audit in (0.05, 0.20):
        r = run_gates(trials, np.random.default_rng(seed), specs, groups=groups, audit=audit)
        rows += [(f"{pct(audit)} | {k}", v) for k, v in r.items()]
    print_gates(f"\n### A/A: 6% in both releases, same lenient judge, {groups} segment groups, {SAMPLE:,} sampled"
                f" per arm; shipped min_samples = {need(specs['judge only, shipped min_samples'], groups)}"
                f" effective per arm at 6% ({trials} trials)\n", rows)  # fmt: skip


def print_power(trials: int, seed: int, groups: int, low: int) -> None:
    print(f"\n### power: 6% -> 10% (4 points of a new kind the judge misses 90% of; the judge's rate moves"
          f" 3.9% -> 4.3%), {SAMPLE:,} sampled per arm ({trials} trials)\n")  # fmt: skip
    specs = gate_specs(groups, low)
    print("| groups | audit | " + " | ".join(f"block: {k}" for k in specs)
          + " | median eff. n, calibrated current group | min_samples at 6% |")  # fmt: skip
    print("|---|---|" + "---|" * (len(specs) + 2))
    for g in dict.fromkeys((groups, 1)):
        specs = gate_specs(g, low)
        for audit in AUDITS:
            r = run_gates(trials, np.random.default_rng(seed), specs, new=0.04, audit=audit, groups=g)
            eff = r[f"calibrated, min_samples {low}"]["eff"]
            print(f"| {g} | {pct(audit)} | " + " | ".join(pct(v["block"]) for v in r.values())
                  + f" | {eff:.0f} | {need(specs['judge only, shipped min_samples'], g)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="coverage and A/A trials (power: a third)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", choices=["coverage", "aa", "power", "all"], default="all")
    parser.add_argument("--groups", type=int, default=4, help="segment groups of the gate scenarios")
    parser.add_argument("--low-min-samples", type=int, default=50,
                        help="the min_samples low enough that calibrated comparisons are made")  # fmt: skip
    args = parser.parse_args()
    start = time.perf_counter()
    print("$ " + shlex.join([".venv/bin/python", "bench/calibration_sim.py", *sys.argv[1:]]))
    if args.scenario in ("coverage", "all"):
        print_coverage(args.trials, args.seed)
    if args.scenario in ("aa", "all"):
        print_aa(args.trials, args.seed, args.groups, args.low_min_samples)
    if args.scenario in ("power", "all"):
        print_power(max(100, args.trials // 3), args.seed, args.groups, args.low_min_samples)
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
