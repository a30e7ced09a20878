"""Is the gate itself honest? A seeded Monte Carlo of the reducer's decision logic.

    .venv/bin/python bench/gate_sim.py [--trials 400] [--seed 1]

Runs ``tracejury.core.gates.decide_family`` — the same function ``gate run`` uses — on
simulated binomial counts:

* A/A (no change): 30 segments, 20 consecutive windows, 9,000 traces per window and arm at
  0.2%, Holm across segments. Reports the probability of any false block across all
  segments and looks, with hysteresis of 2 windows and without (1 window), when each
  current window meets a fresh baseline window (what ``gate run`` does when the baseline
  has several windows of traffic) and when every window shares one baseline sample.
* The worked example: 0.2% → 0.455% at 9,000 traces per window per arm, one segment;
  reports the power and the windows to detection.

Each look k decides on windows 1..k, exactly as ``gate run`` does after k windows of traffic.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from tracejury.core.gates import Arm, GateSpec, SegmentInputs, WindowArm, decide_family  # noqa: E402

N = 9000
P0, P1 = 0.002, 0.00455


def spec(windows: int) -> GateSpec:
    return GateSpec.model_validate({
        "id": "sim", "metric": {"signal": "format_invalid"}, "confidence": 0.95, "min_samples": 2000,
        "hysteresis": {"windows": windows, "window": {"traces": N}}, "correction": "holm",
    })  # fmt: skip


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Binomial draw via the normal-free inversion of a Poisson-binomial sum (exact, small p)."""
    return sum(1 for _ in range(n) if rng.random() < p) if n * p > 30 else _small(rng, n, p)


def _small(rng: random.Random, n: int, p: float) -> int:
    # geometric skips: exact for Bernoulli trials, fast when p is small
    count, i = 0, -1
    import math

    log_q = math.log(1 - p)
    while True:
        i += int(math.log(1 - rng.random()) / log_q) + 1
        if i >= n:
            return count
        count += 1


def arm(failures: int, n: int = N) -> Arm:
    return Arm(failures, n, float(failures), float(n), float(n))


def _segments(baselines: list[list[int]], windows: list[list[int]], k: int) -> list[SegmentInputs]:
    segments = []
    for s in range(len(baselines)):
        shared = len(baselines[s]) == 1
        wins = tuple(
            WindowArm(i, "", "", arm(c), None if shared else arm(baselines[s][i])) for i, c in enumerate(windows[s][:k])
        )
        segments.append(SegmentInputs(f"s{s}", arm(sum(baselines[s]), N * len(baselines[s])), wins))
    return segments


def first_block_slow(gate: GateSpec, baselines: list[list[int]], windows: list[list[int]]) -> int | None:
    """The first look (1-based) at which any segment blocks: ``decide_family`` on windows
    1..k for every k, exactly as ``gate run`` after k windows of traffic."""
    for k in range(1, len(windows[0]) + 1):
        if any(o.decision == "block" for o in decide_family(gate, _segments(baselines, windows, k))):
            return k
    return None


def first_block(gate: GateSpec, baselines: list[list[int]], windows: list[list[int]]) -> int | None:
    """The same answer from one ``decide_family`` call over all windows: a window's
    significance (Holm runs per window across segments) does not depend on later windows,
    so the block at look k is a streak of ``hysteresis.windows`` regressions ending at k."""
    need = gate.hysteresis.windows
    first = None
    for outcome in decide_family(gate, _segments(baselines, windows, len(windows[0]))):
        streak = 0
        for r in outcome.windows:
            streak = streak + 1 if r.regression else 0
            if streak >= need:
                first = r.index + 1 if first is None else min(first, r.index + 1)
                break
    return first


def aa(trials: int, rng: random.Random, gate: GateSpec, *, fresh: bool, segments: int = 30, looks: int = 20) -> float:
    blocked = 0
    for _ in range(trials):
        baselines = [[binomial(rng, N, P0) for _ in range(looks if fresh else 1)] for _ in range(segments)]
        windows = [[binomial(rng, N, P0) for _ in range(looks)] for _ in range(segments)]
        blocked += first_block(gate, baselines, windows) is not None
    return blocked / trials


def power(trials: int, rng: random.Random, gate: GateSpec, looks: int = 6) -> tuple[float, float, list[int]]:
    by_second, detected = 0, []
    for _ in range(trials):
        baseline = [[binomial(rng, N, P0) for _ in range(looks)]]
        k = first_block(gate, baseline, [[binomial(rng, N, P1) for _ in range(looks)]])
        if k is not None:
            detected.append(k)
            by_second += k <= 2
    return by_second / trials, len(detected) / trials, detected


def check_equivalence(rng: random.Random, trials: int = 20) -> None:
    """The fast path agrees with deciding look by look (a few trials, both baselines)."""
    for fresh in (True, False):
        for _ in range(trials):
            base = [[binomial(rng, N, P0) for _ in range(8 if fresh else 1)] for _ in range(5)]
            cur = [[binomial(rng, N, rng.choice([P0, P1])) for _ in range(8)] for _ in range(5)]
            assert first_block(spec(2), base, cur) == first_block_slow(spec(2), base, cur)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    check_equivalence(random.Random(args.seed))
    for fresh in (True, False):
        for windows in (2, 1):
            rng = random.Random(args.seed)
            rate = aa(args.trials, rng, spec(windows), fresh=fresh)
            kind = "fresh baseline windows" if fresh else "one shared baseline"
            print(f"A/A, 30 segments, 20 looks, Holm, {kind}, hysteresis {windows} window(s): "
                  f"P(any false block) = {rate:.2%} ({args.trials} trials)")  # fmt: skip
    rng = random.Random(args.seed)
    by_second, ever, detected = power(args.trials, rng, spec(2))
    median = statistics.median(detected) if detected else float("nan")
    print(
        f"worked example 0.2% -> 0.455%, {N}/window/arm, 2 windows: blocked by window 2 in "
        f"{by_second:.1%} of {args.trials} trials; within 6 windows {ever:.1%}; median windows to block {median}"
    )
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
