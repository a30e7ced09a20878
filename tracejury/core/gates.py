"""Gates: may this release ship? Segment-aware, change-relative, statistically honest.

A gate compares a metric's rate in the current release with a baseline, per segment group:
in each complete, disjoint window of the current release's traffic, the one-sided Newcombe
interval of (current − baseline) must clear the effect margin — Holm-corrected across the
segments of the run — in N consecutive windows (hysteresis) before the gate blocks, unless
a critical margin is cleared at once. Too little data is ``insufficient_data``; too many
judge failures or different rubric versions between the arms is ``inconclusive``; neither
is ever a pass.

Pure: ``decide_family`` takes the aggregated counts (``SegmentInputs``) and returns the
outcomes with their audit trail; replaying stored inputs reproduces the decisions exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tracejury.core.stats import adjust, n_per_arm, newcombe_diff, one_sided_p, wilson
from tracejury.core.yamlconf import load_model

__all__ = [
    "DECISION_ORDER",
    "Arm",
    "GateSpec",
    "Outcome",
    "SegmentInputs",
    "decide_family",
    "plain",
    "run_decision",
]

Decision = Literal["pass", "block", "inconclusive", "insufficient_data"]
DECISION_ORDER: tuple[Decision, ...] = ("block", "inconclusive", "insufficient_data", "pass")
SIGNAL_METRICS = ("format_invalid", "tool_timeout", "tool_error", "empty_retrieval",
                  "truncation", "fallback", "guardrail_block", "latency_over")  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metric(_Strict):
    """What rate the gate watches."""

    evaluator: str | None = None
    """Failure rate of an evaluator (a checker or a rubric): failed verdicts / verdicts."""
    judge_failure_rate: str | None = None
    """Share of an evaluator's evaluations that are ``judge_failed``."""
    signal: Literal[SIGNAL_METRICS] | None = None  # type: ignore[valid-type]
    """A weak signal over all traces (``latency_over`` needs ``bound_ms``)."""
    bound_ms: int | None = Field(default=None, ge=0)
    """For ``latency_over``: the latency bound."""

    @model_validator(mode="after")
    def _one(self) -> Metric:
        chosen = [x for x in (self.evaluator, self.judge_failure_rate, self.signal) if x]
        if len(chosen) != 1:
            raise ValueError("set exactly one of evaluator, judge_failure_rate, signal")
        if (self.signal == "latency_over") != (self.bound_ms is not None):
            raise ValueError("bound_ms goes with signal: latency_over, and only with it")
        return self

    @property
    def label(self) -> str:
        """Short name for reports."""
        if self.evaluator:
            return f"fail rate of {self.evaluator}"
        if self.judge_failure_rate:
            return f"judge failure rate of {self.judge_failure_rate}"
        if self.signal == "latency_over":
            return f"latency over {self.bound_ms} ms"
        return f"{self.signal} rate"


class Where(_Strict):
    """Which traces count."""

    segment: dict[str, str | list[str]] = {}
    trace: dict[str, bool] = {}
    """Boolean trace fields: ``req.toolRequired``, ``runtime.truncated``, ``runtime.fallbackUsed``,
    ``outputs.formatValid``."""


class Baseline(_Strict):
    """What the current release is compared with."""

    kind: Literal["previous_release", "release", "rolling", "threshold"] = "previous_release"
    release: str | None = None
    """For ``release``: its id."""
    days: float | None = Field(default=None, gt=0)
    """For ``rolling``: traffic of other releases in the days before the current one."""
    value: float | None = Field(default=None, ge=0, le=1)
    """For ``threshold``: a fixed rate (a single-rate gate; Wilson interval)."""

    @model_validator(mode="after")
    def _fields(self) -> Baseline:
        need = {"release": "release", "rolling": "days", "threshold": "value"}.get(self.kind)
        if need and getattr(self, need) is None:
            raise ValueError(f"baseline kind {self.kind} needs '{need}'")
        return self


class Window(_Strict):
    """How the current release's traffic is cut into disjoint windows."""

    traces: int | None = Field(default=None, ge=1)
    hours: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Window:
        if (self.traces is None) == (self.hours is None):
            raise ValueError("a window is either 'traces' or 'hours'")
        return self


class Hysteresis(_Strict):
    """The regression must hold in ``windows`` consecutive windows."""

    windows: int = Field(default=1, ge=1)
    window: Window = Window(traces=10_000)


class Margin(_Strict):
    """Effects below these never block: max(absolute, relative × baseline rate)."""

    absolute: float = Field(default=0.0, ge=0)
    relative: float = Field(default=0.0, ge=0)

    def of(self, baseline_rate: float) -> float:
        """The effective margin for a baseline rate."""
        return max(self.absolute, self.relative * baseline_rate)


class MinSamples(_Strict):
    """Derive min samples from a minimum detectable effect and a power."""

    mde: float = Field(gt=0, le=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    baseline_rate: float = Field(ge=0, lt=1)


class GateSpec(_Strict):
    """One gate, as YAML in ``rubrics/gates/``."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=128)
    description: str = ""
    metric: Metric
    where: Where = Where()
    group_by: tuple[str, ...] = ()
    direction: Literal["increase", "decrease"] = "increase"
    """Which way is bad."""
    baseline: Baseline = Baseline()
    interval: Literal["newcombe", "wilson"] = "newcombe"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """One-sided confidence level."""
    min_samples: int | MinSamples = 500
    """Per arm and window (effective n for sampled metrics)."""
    margin: Margin = Margin()
    hysteresis: Hysteresis = Hysteresis()
    critical: Margin | None = None
    """Past this margin, block at once (no hysteresis)."""
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    judge_failure_tolerance: float = Field(default=0.05, ge=0, le=1)
    """Past this share of judge failures in the current arm: inconclusive, never pass."""
    cluster: Literal["session"] | None = None
    """Traces of one session are correlated: use the cluster-robust effective sample size."""

    @model_validator(mode="after")
    def _consistent(self) -> GateSpec:
        if (self.interval == "wilson") != (self.baseline.kind == "threshold"):
            raise ValueError("interval wilson goes with a threshold baseline (a single rate)")
        return self

    @classmethod
    def from_yaml(cls, text: str, *, file: str = "<gate>") -> GateSpec:
        """Parse a gate; errors name the file, line and field."""
        return load_model(cls, text, file=file)

    @property
    def alpha(self) -> float:
        """One-sided significance level."""
        return 1.0 - self.confidence

    def required_samples(self) -> int:
        """``min_samples``, derived from MDE and power when given that way."""
        if isinstance(self.min_samples, int):
            return self.min_samples
        m = self.min_samples
        return n_per_arm(m.baseline_rate, m.mde, self.alpha, m.power)


@dataclass(frozen=True)
class Arm:
    """One arm's aggregated counts: failures and observations, with their weights."""

    failures: int
    n: int
    weight_failed: float
    weight_sum: float
    weight_sq: float
    judge_failed: int = 0
    versions: tuple[str, ...] = ()
    """Evaluator versions seen in the arm."""
    cluster_n: float | None = None
    """Effective n from the cluster-robust variance (gates with ``cluster``), when defined."""
    human_labels: int = 0
    """Verdicts in the arm that are a reviewer's label instead of the judge's (audit only)."""

    @property
    def rate(self) -> float:
        """Weighted (Horvitz–Thompson ratio) rate."""
        return self.weight_failed / self.weight_sum if self.weight_sum > 0 else 0.0

    @property
    def effective_n(self) -> float:
        """Kish's effective sample size (n when unweighted), or the cluster-robust one when
        it is smaller (correlated sessions carry less information than their traces)."""
        kish = self.weight_sum**2 / self.weight_sq if self.weight_sq > 0 else 0.0
        return min(kish, self.cluster_n) if self.cluster_n is not None else kish

    @property
    def judge_failure_share(self) -> float:
        """Judge failures among all evaluations of the arm."""
        total = self.n + self.judge_failed
        return self.judge_failed / total if total else 0.0


@dataclass(frozen=True)
class WindowArm:
    """The current arm in one window, and the baseline window it is compared with."""

    index: int
    start: str
    end: str
    arm: Arm
    baseline: Arm | None = None
    """A disjoint window of baseline traffic (fresh evidence in both arms); None = the
    whole baseline (shared by every window: weaker hysteresis, see docs/gates.md)."""


@dataclass(frozen=True)
class SegmentInputs:
    """Everything a gate decision of one segment group depends on."""

    segment: str
    baseline: Arm
    windows: tuple[WindowArm, ...]
    """Complete windows of the current release, oldest first."""


@dataclass
class WindowResult:
    """One window's comparison."""

    index: int
    n: int
    effective_n: float
    rate: float
    estimate: float
    interval: tuple[float, float]
    p_value: float
    regression: bool
    critical: bool
    evaluated: bool


@dataclass
class Outcome:
    """A gate outcome for one segment group, with the audit trail of why."""

    gate: str
    segment: str
    decision: Decision
    reason: str
    baseline: dict[str, Any]
    current: dict[str, Any]
    estimate: float | None
    interval: tuple[float, float] | None
    p_value: float | None
    margin: float
    min_samples: int
    streak: int
    windows: list[WindowResult] = field(default_factory=list)
    family_size: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON shape (``gate run --json``)."""
        d = plain(self)
        d["interval"] = list(self.interval) if self.interval else None
        for w in d["windows"]:
            w["interval"] = list(w["interval"])
        return d


def plain(value: Any) -> Any:
    """``dataclasses.asdict`` for audit trails, without its deep copy of every number and
    string (a run of 100 segments spent longer copying them than deciding)."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _arm_dict(arm: Arm) -> dict[str, Any]:
    return {"failures": arm.failures, "n": arm.n, "rate": arm.rate,
            "effectiveN": arm.effective_n, "judgeFailed": arm.judge_failed,
            "versions": list(arm.versions), "humanLabels": arm.human_labels}  # fmt: skip


def _compare(spec: GateSpec, cur: Arm, base: Arm, margin: float) -> tuple[float, tuple[float, float], float]:
    """(estimate, interval of the bad-direction difference at the one-sided level, p-value
    of H0: the difference is within ``margin``)."""
    alpha = spec.alpha
    if spec.baseline.kind == "threshold":
        value = spec.baseline.value or 0.0
        c, n = cur.rate * cur.effective_n, cur.effective_n
        lo, hi = wilson(c, n, 2 * alpha)
        if spec.direction == "increase":
            return cur.rate - value, (lo - value, hi - value), _wilson_p(c, n, value + margin)
        return value - cur.rate, (value - hi, value - lo), _wilson_p(n - c, n, 1 - value + margin)
    a, b = (cur, base) if spec.direction == "increase" else (base, cur)
    ca, na, cb, nb = a.rate * a.effective_n, a.effective_n, b.rate * b.effective_n, b.effective_n
    interval = newcombe_diff(ca, na, cb, nb, 2 * alpha)
    return a.rate - b.rate, interval, one_sided_p(ca, na, cb, nb, margin)


def _baseline_rate(spec: GateSpec, seg: SegmentInputs) -> float:
    """The rate margins are relative to: the threshold, or the whole baseline's rate."""
    return (spec.baseline.value or 0.0) if spec.baseline.kind == "threshold" else seg.baseline.rate


def _wilson_p(count: float, n: float, bound: float) -> float:
    """One-sided p of H0: rate <= bound, inverted from the Wilson lower bound."""
    lo, hi = 1e-300, 0.5
    if n <= 0 or wilson(count, n, 2 * hi)[0] <= bound:
        return 1.0
    for _ in range(200):
        prod = lo * hi  # below the smallest double once hi < ~1e-24: take the roots apart
        mid = (prod**0.5 if prod > 0 else lo**0.5 * hi**0.5) if hi / lo > 1e3 else (lo + hi) / 2
        if wilson(count, n, 2 * mid)[0] > bound:
            hi = mid
        else:
            lo = mid
    return hi


def decide_family(spec: GateSpec, segments: Sequence[SegmentInputs]) -> list[Outcome]:
    """Decide every segment group of one gate in one run (the correction's family)."""
    need = spec.required_samples()
    m = len(segments)
    # p-values per (segment, window); the correction runs per window across the segments
    by_window: dict[int, list[tuple[int, float]]] = {}
    compared: dict[tuple[int, int], tuple[float, tuple[float, float], float]] = {}
    for s, seg in enumerate(segments):
        for w in seg.windows:
            threshold = spec.baseline.kind == "threshold"  # no baseline arm to fill
            base = w.baseline or seg.baseline
            if w.arm.effective_n >= need and (threshold or base.effective_n >= need):
                margin = spec.margin.of(_baseline_rate(spec, seg))
                compared[(s, w.index)] = _compare(spec, w.arm, base, margin)
                by_window.setdefault(w.index, []).append((s, compared[(s, w.index)][2]))
    significant: dict[tuple[int, int], bool] = {}
    for index, entries in by_window.items():
        flags = adjust([p for _, p in entries], spec.alpha, spec.correction)
        for (s, _), flag in zip(entries, flags, strict=True):
            significant[(s, index)] = flag
    return [_decide_one(spec, s, seg, compared, significant, need, m) for s, seg in enumerate(segments)]


def _decide_one(
    spec: GateSpec,
    s: int,
    seg: SegmentInputs,
    compared: dict[tuple[int, int], tuple[float, tuple[float, float], float]],
    significant: dict[tuple[int, int], bool],
    need: int,
    family: int,
) -> Outcome:
    base_rate = _baseline_rate(spec, seg)  # the whole baseline's: every window faces one bar
    margin = spec.margin.of(base_rate)
    critical_margin = spec.critical.of(base_rate) if spec.critical else None
    results: list[WindowResult] = []
    for w in seg.windows:
        got = compared.get((s, w.index))
        if got is None:
            results.append(WindowResult(w.index, w.arm.n, w.arm.effective_n, w.arm.rate, 0.0,
                                        (0.0, 0.0), 1.0, False, False, False))  # fmt: skip
            continue
        est, interval, p = got
        regression = significant[(s, w.index)]
        critical = critical_margin is not None and regression and interval[0] > critical_margin
        results.append(WindowResult(w.index, w.arm.n, w.arm.effective_n, w.arm.rate, est,
                                    interval, p, regression, critical, True))  # fmt: skip
    evaluated = [r for r in results if r.evaluated]
    streak = 0
    for r in reversed(evaluated):
        if not r.regression:
            break
        streak += 1
    latest = evaluated[-1] if evaluated else None
    current = seg.windows[-1].arm if seg.windows else None
    base = Outcome(
        gate=spec.id, segment=seg.segment, decision="pass", reason="", margin=margin,
        baseline=_arm_dict(seg.baseline), current=_arm_dict(current) if current else {},
        estimate=latest.estimate if latest else None, interval=latest.interval if latest else None,
        p_value=latest.p_value if latest else None, min_samples=need, streak=streak,
        windows=results, family_size=family,
    )  # fmt: skip
    versions_cur = {v for w in seg.windows for v in w.arm.versions}
    if seg.baseline.versions and versions_cur and set(seg.baseline.versions) != versions_cur:
        base.decision = "inconclusive"
        base.reason = (f"evaluator versions differ: baseline {sorted(seg.baseline.versions)},"
                       f" current {sorted(versions_cur)}")  # fmt: skip
        return base
    # judge failures are checked on every window that decides (the streak, the latest
    # evaluated one) and the latest complete one, so an unscored new window hides nothing
    deciding = {r.index for r in evaluated[-max(streak, 1) :]}
    if seg.windows:
        deciding.add(seg.windows[-1].index)
    shares = [w.arm.judge_failure_share for w in seg.windows if w.index in deciding]
    if shares and max(shares) > spec.judge_failure_tolerance:
        base.decision = "inconclusive"
        share, tolerance = max(shares), spec.judge_failure_tolerance
        base.reason = f"judge failures {share:.1%} of a deciding window exceed {tolerance:.1%}"
        return base
    if latest is None:
        base.decision = "insufficient_data"
        base.reason = (
            f"no complete window with {need} samples per arm (baseline n_eff"
            f" {seg.baseline.effective_n:.0f}, {len(seg.windows)} complete window(s))"
        )
        return base
    if latest.critical:
        base.decision = "block"
        lower = latest.interval[0]
        base.reason = f"critical: lower bound {lower:.4g} > critical margin {critical_margin:.4g}"
        return base
    if streak >= spec.hysteresis.windows:
        base.decision = "block"
        base.reason = (
            f"regressed in {streak} consecutive window(s) (needs {spec.hysteresis.windows}):"
            f" lower bound {latest.interval[0]:.4g} > margin {margin:.4g}"
        )
        return base
    base.reason = (f"streak {streak} of {spec.hysteresis.windows}" if streak
                   else f"no regression beyond the margin {margin:.4g}")  # fmt: skip
    return base


def run_decision(outcomes: Sequence[Outcome]) -> Decision:
    """block if any blocks; else inconclusive; else insufficient_data; else pass."""
    decisions = {o.decision for o in outcomes}
    return next((d for d in DECISION_ORDER if d in decisions), "pass")
