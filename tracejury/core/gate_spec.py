"""Gate specs: the YAML a rubric author writes in ``rubrics/gates/`` (validated models).

The decision that uses them is ``tracejury.core.gates``; sample planning is
``tracejury.core.gate_plan``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tracejury.core.yamlconf import load_model

__all__ = [
    "SIGNAL_METRICS",
    "Baseline",
    "Calibration",
    "Floor",
    "GateSpec",
    "Hysteresis",
    "Margin",
    "Metric",
    "MinSamples",
    "Scan",
    "Where",
    "Window",
]

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
    judge_agreement: str | None = None
    """How well a rubric's judge agrees with people on the audit labels (needs ``floor``):
    below the floor, that rubric's judged gates are inconclusive."""
    bound_ms: int | None = Field(default=None, ge=0)
    """For ``latency_over``: the latency bound."""

    @model_validator(mode="after")
    def _one(self) -> Metric:
        chosen = [x for x in (self.evaluator, self.judge_failure_rate, self.signal, self.judge_agreement) if x]
        if len(chosen) != 1:
            raise ValueError("set exactly one of evaluator, judge_failure_rate, signal, judge_agreement")
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
        if self.judge_agreement:
            return f"judge agreement of {self.judge_agreement}"
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
    """Persistence before blocking. Signal metrics: the regression must hold in ``windows``
    consecutive windows of traffic. Evaluator metrics: the release's sample is cut into
    ``windows`` consecutive parts (of about equal evaluations, at ``window`` boundaries) and
    the rise must exceed the margin in each part."""

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
    """Derive min samples from a minimum detectable effect and a power: the effective n per
    arm at which a rise of ``mde`` (beyond the margin, at the gate's level corrected for its
    segment groups) is blocked with probability ``power``. A pass below it is not evidence."""

    mde: float = Field(gt=0, le=1)
    """The smallest rise (absolute, in rate) the gate must catch."""
    power: float = Field(default=0.8, gt=0, lt=1)
    baseline_rate: float | None = Field(default=None, ge=0, lt=1)
    """The rate the effect is added to; default: the baseline arm's observed rate."""


class Scan(_Strict):
    """Scan every value of every segment dimension (and pairs of dimensions where both arms
    hold ``min_samples``) for the slice that regressed; multiplicity is controlled across
    every cell scanned."""

    dimensions: tuple[str, ...] = ()
    """Dimensions to scan; empty: every dimension of the segmentation."""
    pairs: bool = True
    """Also scan pairs of dimension values (cells with enough data in both arms)."""


class Calibration(_Strict):
    """Correct a judged rate with people's audit labels (``tracejury.core.calibration``)."""

    method: Literal["ppi", "none"] = "none"
    min_labels: int = Field(default=30, ge=1)
    """Audit labels an arm needs before its rate is calibrated: a group with fewer borrows
    the correction pooled over its arm's groups; an arm with fewer in all is judge-only,
    with a ``calibration: none`` note (both arms then, never one calibrated against one not)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"method": value} if isinstance(value, str) else value


class Floor(_Strict):
    """The least agreement with people a judge must keep (``judge_agreement`` gates)."""

    kappa: float | None = Field(default=None, ge=-1, le=1)
    """Cohen's kappa (1/p-weighted) on the audit labels."""
    agreement: float | None = Field(default=None, ge=0, le=1)
    """Observed agreement (1/p-weighted): the share of audit labels equal to the judge's."""

    @model_validator(mode="after")
    def _some(self) -> Floor:
        if self.kappa is None and self.agreement is None:
            raise ValueError("a floor sets kappa, agreement or both")
        return self


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
    """Effective n per arm: per window for signal metrics, over the release's sample for
    evaluator metrics (``tracejury.core.gates``)."""
    margin: Margin = Margin()
    hysteresis: Hysteresis = Hysteresis()
    critical: Margin | None = None
    """Past this margin, block at once (no hysteresis)."""
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    judge_failure_tolerance: float = Field(default=0.05, ge=0, le=1)
    """Past this (1/p-weighted) share of judge failures in either arm: inconclusive."""
    missing_evidence_tolerance: float = Field(default=0.05, ge=0, le=1)
    """Past this (1/p-weighted) share of ``missing_evidence`` evaluations in either arm:
    inconclusive (the evaluator could not look at what it needed)."""
    scan: Scan | None = None
    """Scan segment slices instead of grouping (evaluator metrics; no ``group_by``)."""
    cluster: Literal["session"] | None = None
    """Traces of one session are correlated: use the cluster-robust effective sample size."""
    calibration: Calibration = Calibration()
    """``ppi``: the rate the decision uses is the judge's corrected by the audit labels
    (evaluator metrics of a judged rubric)."""
    floor: Floor | None = None
    """``judge_agreement`` gates: the agreement below which the judge is broken."""

    @model_validator(mode="after")
    def _consistent(self) -> GateSpec:
        if (self.metric.judge_agreement is None) != (self.floor is None):
            raise ValueError("floor goes with metric: judge_agreement, and it needs one")
        if self.metric.judge_agreement is not None and (self.group_by or self.scan is not None):
            raise ValueError("a judge_agreement gate has one outcome per rubric version: no group_by or scan")
        if self.metric.judge_agreement is not None and not isinstance(self.min_samples, int):
            raise ValueError("a judge_agreement gate's min_samples is a count of audit labels (an integer)")
        if self.calibration.method == "ppi" and self.metric.evaluator is None:
            raise ValueError("calibration: ppi goes with metric: evaluator (a judged rubric)")
        if (self.interval == "wilson") != (self.baseline.kind == "threshold"):
            raise ValueError("interval wilson goes with a threshold baseline (a single rate)")
        if self.scan is not None and (self.group_by or self.metric.evaluator is None):
            raise ValueError("scan goes with metric: evaluator, and without group_by")
        if self.scan is not None and (self.cluster is not None or self.baseline.kind == "threshold"):
            raise ValueError("scan compares slices with the same slices of a baseline release, without cluster")
        return self

    @property
    def sampled(self) -> bool:
        """An evaluator metric: decided on the release's sample, not on traffic windows."""
        return self.metric.evaluator is not None or self.metric.judge_failure_rate is not None

    @property
    def evaluator_id(self) -> str | None:
        """The evaluator an evaluator or judge-failure-rate metric reads."""
        return self.metric.evaluator or self.metric.judge_failure_rate

    @classmethod
    def from_yaml(cls, text: str, *, file: str = "<gate>") -> GateSpec:
        """Parse a gate; errors name the file, line and field."""
        return load_model(cls, text, file=file)

    @property
    def alpha(self) -> float:
        """One-sided significance level."""
        return 1.0 - self.confidence

    def required_samples(self, baseline_rate: float = 0.0, family: int = 1) -> int:
        """``min_samples``; derived from MDE and power (``tracejury.core.gate_plan``) when
        given that way, at the baseline rate and for a correction over ``family`` groups."""
        if isinstance(self.min_samples, int):
            return self.min_samples
        from tracejury.core.gate_plan import needed_n

        m = self.min_samples
        rate = m.baseline_rate if m.baseline_rate is not None else baseline_rate
        return needed_n(self, rate, m.mde, m.power, family)
