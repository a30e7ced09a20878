"""Benchmark: deterministic checkers, traces/s in one process (evidence replay included).

    .venv/bin/python bench/checks.py [--traces 20000] [--runs 5]

Simulates traces in memory (with planted regressions so checkers both pass and fail), then
times replaying each trace's evidence and running every shipped checker rubric on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/judges.py would shadow the ``judges`` package: drop this folder from sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from judges.catalog import load_catalog  # noqa: E402
from judges.checks import CHECKERS  # noqa: E402
from judges.evidence import evidence_from_trace  # noqa: E402
from tracejury.core.simulate import parse_regression, simulate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    regress = [parse_regression(s) for s in ("answer_contradicts_tool:0.2", "format_invalid:0.05")]
    traces = list(simulate("bench", args.traces, 1, regress))
    checkers = [r for r in load_catalog(ROOT / "rubrics").select(None) if r.checker]
    rates, outcomes = [], 0
    for _ in range(args.runs):
        start = time.perf_counter()
        for trace in traces:
            ev = evidence_from_trace(trace)
            for r in checkers:
                outcomes += CHECKERS[r.checker].fn(ev, r.params).status == "scored"  # type: ignore[index]
        rates.append(len(traces) / (time.perf_counter() - start))
    print(f"{len(checkers)} checkers ({', '.join(r.id for r in checkers)})")
    print(f"runs: {', '.join(f'{r:,.0f}' for r in rates)} traces/s")
    print(f"median: {statistics.median(rates):,.0f} traces/s"
          f" ({statistics.median(rates) * len(checkers):,.0f} checker evaluations/s)")  # fmt: skip


if __name__ == "__main__":
    main()
