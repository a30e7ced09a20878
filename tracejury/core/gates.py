"""Gates: may this release ship? Segment-aware, change-relative, statistically honest.

Two designs, by what the metric observes:

* **Signal metrics** (every trace): in each complete, disjoint window of the current
  release's traffic, the one-sided Newcombe interval of (current − baseline) must clear the
  effect margin — Holm-corrected across the segment groups compared in that window — in N
  consecutive windows before the gate blocks. An unevaluated window breaks a streak, and a
  newest window that cannot be evaluated is ``insufficient_data`` (no pass on older windows).
* **Evaluator metrics** (a sample of traces, weighted by 1/p): the test runs on the
  release's whole sample against the baseline's (windows of traffic would hold a tenth of
  a sample each and never reach ``min_samples``). Persistence is a consistent size across
  time: the sample is cut into ``hysteresis.windows`` consecutive parts and the rise must
  exceed the margin in each. The newest traffic window must hold its share of the sample.

In both, a critical margin cleared blocks at once; too little data is ``insufficient_data``;
judge failures or missing evidence past tolerance (either arm), different evaluator
versions or different judges between the arms is ``inconclusive``; neither is a pass, and a
gate with nothing to decide yields one ``insufficient_data`` outcome, never none.

Pure: ``decide_family`` takes the aggregated counts (``SegmentInputs``) and returns the
outcomes with their audit trail; replaying stored inputs reproduces the decisions exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from tracejury.core.calibration import MIN_FAILED_LABELS, NO_AUDIT, AuditCells, Calibrated, JudgeSums, ppi
from tracejury.core.gate_spec import GateSpec
from tracejury.core.stats import adjust, newcombe_diff, one_sided_p, wilson

__all__ = [
    "DECISION_ORDER",
    "Arm",
    "Pooled",
    "GateSpec",
    "Outcome",
    "SegmentInputs",
    "Source",
    "WindowArm",
    "WindowResult",
    "add_arms",
    "decide_family",
    "plain",
    "run_decision",
]

Decision = Literal["pass", "block", "inconclusive", "insufficient_data"]
DECISION_ORDER: tuple[Decision, ...] = ("block", "inconclusive", "insufficient_data", "pass")


@dataclass(frozen=True)
class Arm:
    """One arm's aggregated counts: failures and observations, with their weights (1/p)."""

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
    weight_sq_failed: float | None = None
    """Σw² over the failed verdicts (sampled metrics): with it, the effective n is the
    linearization one, which credits failure-aware sampling; None: Kish's."""
    weight_judge_failed: float = 0.0
    """Σw over ``judge_failed`` evaluations (their share is weighted like the rate)."""
    missing: int = 0
    """``missing_evidence`` evaluations (outside the rate; their share has a tolerance)."""
    weight_missing: float = 0.0
    """Σw over ``missing_evidence`` evaluations."""
    audit: AuditCells = NO_AUDIT
    """People's labels on the arm's audit draw, against the judge (``core.calibration``)."""
    calibrated: Calibrated | None = None
    """Set by a gate with ``calibration: ppi``: then ``rate`` and ``effective_n`` are the
    calibrated ones, and ``judge_rate`` the judge's."""
    strata: str = ""
    """Where the calibration's labels came from: ``group`` (its own), ``pooled`` (its arm's)."""

    @property
    def judge_rate(self) -> float:
        """The judge's weighted (Horvitz–Thompson ratio) rate."""
        return self.weight_failed / self.weight_sum if self.weight_sum > 0 else 0.0

    @property
    def rate(self) -> float:
        """The rate decisions use: the calibrated one when calibrated, else the judge's."""
        return self.calibrated.rate if self.calibrated is not None else self.judge_rate

    def judge_sums(self) -> JudgeSums:
        """The judge side of a calibration."""
        # without Σw² of the failures (signal arms): Σw² in proportion to the judge's rate
        sq_failed = self.weight_sq_failed if self.weight_sq_failed is not None else self.weight_sq * self.judge_rate
        return JudgeSums(self.n, self.weight_sum, self.weight_failed, self.weight_sq, sq_failed)

    @property
    def effective_n(self) -> float:
        """The n an unweighted sample with the same variance would have: ``p(1−p) / v``
        with ``v`` the linearization variance of the ratio estimator,
        ``Σ w²(y − p)² / (Σw)²`` — when the failures are oversampled (small w), the rate is
        known better than Kish's ``(Σw)²/Σw²`` says. Kish's when the rate is 0 or 1 or the
        failed weights are unknown; the cluster-robust n when it is smaller. Calibrated:
        ``p(1−p)`` over the calibrated variance (``core.calibration``)."""
        if self.calibrated is not None:
            n = self.calibrated.effective_n
            return min(n, self.cluster_n) if self.cluster_n is not None else n
        kish = self.weight_sum**2 / self.weight_sq if self.weight_sq > 0 else 0.0
        n = kish
        p = self.rate
        if self.weight_sq_failed is not None and 0.0 < p < 1.0 and self.weight_sum > 0:
            v = ((1.0 - 2.0 * p) * self.weight_sq_failed + p * p * self.weight_sq) / self.weight_sum**2
            if v > 0:
                n = min(p * (1.0 - p) / v, float(self.n))
        return min(n, self.cluster_n) if self.cluster_n is not None else n

    @property
    def judge_failure_share(self) -> float:
        """Judge failures among the arm's evaluations that count (weighted when weights are known)."""
        if self.weight_judge_failed > 0 or self.weight_sum > 0:
            total = self.weight_sum + self.weight_judge_failed
            return self.weight_judge_failed / total if total > 0 else 0.0
        total = self.n + self.judge_failed
        return self.judge_failed / total if total else 0.0

    @property
    def missing_share(self) -> float:
        """``missing_evidence`` among the arm's scored, failed and missing evaluations (weighted)."""
        total = self.weight_sum + self.weight_judge_failed + self.weight_missing
        return self.weight_missing / total if total > 0 else 0.0


EMPTY = Arm(0, 0, 0.0, 0.0, 0.0)


def add_arms(a: Arm | None, b: Arm) -> Arm:
    """Sum two arms (a cluster n cannot be summed: the caller recomputes it from sessions)."""
    if a is None:
        return b
    sq_failed = None
    if a.weight_sq_failed is not None or b.weight_sq_failed is not None:
        sq_failed = (a.weight_sq_failed or 0.0) + (b.weight_sq_failed or 0.0)
    return Arm(
        a.failures + b.failures, a.n + b.n, a.weight_failed + b.weight_failed, a.weight_sum + b.weight_sum,
        a.weight_sq + b.weight_sq, a.judge_failed + b.judge_failed, tuple(sorted({*a.versions, *b.versions})),
        None, a.human_labels + b.human_labels, sq_failed, a.weight_judge_failed + b.weight_judge_failed,
        a.missing + b.missing, a.weight_missing + b.weight_missing, a.audit + b.audit,
    )  # fmt: skip


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
    baseline_index: int | None = None
    """Which baseline window ``baseline`` is (window k meets k mod B): reuse shows as repeats."""


@dataclass(frozen=True)
class SegmentInputs:
    """Everything a gate decision of one segment group depends on."""

    segment: str
    baseline: Arm
    windows: tuple[WindowArm, ...]
    """Complete windows of the current release, oldest first."""
    current: Arm | None = None
    """Evaluator metrics: the release's whole sample in this group (windows and the
    incomplete tail); None for signal metrics."""
    tail: Arm | None = None
    """Evaluator metrics: evaluations after the last complete window."""


@dataclass(frozen=True)
class Source:
    """Where an evaluator metric's arm comes from (gate-level facts the store found)."""

    release: str = ""
    batches: tuple[str, ...] = ()
    """The ``done`` batches read (one per release)."""
    judges: tuple[str, ...] = ()
    """The judge's identity in those batches: profile content and the model it reported."""
    pending: tuple[str, ...] = ()
    """Newer batches scoring the evaluator that are not ``done`` (``"b_… (running)"``): not read."""
    unscored: str = ""
    """Traffic the batch read could not include (it arrived after the batch was drawn), when
    more than a twentieth of the release: the newest data is not in the sample."""


@dataclass
class WindowResult:
    """One window's (signal metrics) or one part's (evaluator metrics) comparison."""

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
    family: int = 0
    """How many comparisons the correction of this window counted (signal metrics)."""
    baseline_rate: float | None = None


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
    """Comparisons the multiplicity correction counted for this outcome's decision."""
    notes: list[str] = field(default_factory=list)
    """What the decision rests on beyond the numbers: batches read, baseline reuse, …"""
    design: str = "windows"
    """``windows`` (signal metrics), ``sample`` (evaluator metrics) or ``scan``."""
    slice: str | None = None
    """Scan gates: the slice that moved (``trunc=yes``, ``rag=off|tool=none``)."""

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


def arm_dict(arm: Arm) -> dict[str, Any]:
    """An arm as the outcome shows it: ``rate`` is the estimate the decision used,
    ``judgeRate`` the judge's, ``calibration`` how one became the other."""
    return {"failures": arm.failures, "n": arm.n, "rate": arm.rate, "judgeRate": arm.judge_rate,
            "effectiveN": arm.effective_n, "judgeFailed": arm.judge_failed,
            "judgeFailureShare": arm.judge_failure_share, "missingEvidence": arm.missing,
            "versions": list(arm.versions), "humanLabels": arm.human_labels,
            "calibration": calibration_dict(arm)}  # fmt: skip


def calibration_dict(arm: Arm) -> dict[str, Any]:
    """``{"method": "ppi" | "none", "labelled": n, …}`` of an arm."""
    c = arm.calibrated
    if c is None:
        return {"method": "none", "labelled": arm.audit.labelled}
    lo, hi = c.wilson()
    return {"method": "ppi", "labelled": c.labelled, "strata": arm.strata, "lambda": c.lam,
            "humanRate": c.human_rate, "variance": c.variance, "interval95": [lo, hi]}  # fmt: skip


LabelSource = tuple[AuditCells, int, str]
"""Audit labels, the n they were drawn from, and ``group`` or ``pooled``."""


Pooled = dict[str, tuple[AuditCells, int]]
"""Per side (``current``, ``baseline``): the audit labels and n a group borrows when it
holds too few labels of its own."""


def pooled_audit(segments: Sequence[SegmentInputs]) -> Pooled:
    """Each side's audit labels and n summed over the segment groups."""
    out: Pooled = {}
    for side in ("current", "baseline"):
        cells, n = NO_AUDIT, 0
        for seg in segments:
            arm = seg.current if side == "current" else seg.baseline
            if arm is not None:
                cells, n = cells + arm.audit, n + arm.n
        out[side] = (cells, n)
    return out


def calibrate(arm: Arm, source: tuple[AuditCells, int, str]) -> Arm:
    """The arm with its rate calibrated from ``source`` (labels, the n they were drawn from,
    ``group`` or ``pooled``)."""
    cells, drawn_from, strata = source
    if arm.n == 0:
        return arm
    return replace(arm, calibrated=ppi(arm.judge_sums(), cells, drawn_from=drawn_from), strata=strata)


def _label_source(spec: GateSpec, arm: Arm, pooled: tuple[AuditCells, int]) -> tuple[AuditCells, int, str] | None:
    """The group's own labels when it holds ``min_labels`` with ``MIN_FAILED_LABELS`` people
    failed, else its arm's pooled ones when they number ``min_labels``, else None."""
    need = spec.calibration.min_labels
    if arm.audit.labelled >= need and arm.audit.failed >= MIN_FAILED_LABELS:
        return arm.audit, arm.n, "group"
    if pooled[0].labelled >= need:
        return pooled[0], pooled[1], "pooled"
    return None


def calibrate_inputs(spec: GateSpec, seg: SegmentInputs, pooled: Pooled
                     ) -> tuple[SegmentInputs, tuple[AuditCells, int, str] | None, str | None]:  # fmt: skip
    """A segment's inputs with both arms calibrated (``calibration: ppi``), the current arm's
    label source (its parts use it), and a note when the calibration could not be made —
    then neither arm is calibrated: one calibrated arm against a judge-only one would
    compare the judge's error with people's."""
    if spec.calibration.method != "ppi":
        return seg, None, None
    cur = seg.current or EMPTY
    sides = [("current", cur)] + ([] if _threshold(spec) else [("baseline", seg.baseline)])
    sources = {name: _label_source(spec, arm, pooled[name]) for name, arm in sides}
    short = [name for name, src in sources.items() if src is None]
    if short:
        have = ", ".join(f"{name} {pooled[name][0].labelled}" for name in short)
        return seg, None, (f"calibration: none — audit labels in the arm ({have}) are fewer than"
                           f" {spec.calibration.min_labels}: the judge's rate is used uncorrected")  # fmt: skip
    if any(src is not None and src[2] == "pooled" for src in sources.values()):
        # both arms from one kind of source: a group's own correction on one side and the pooled
        # one on the other would show the judge's segment-specific error as a change
        sources = {name: (pooled[name][0], pooled[name][1], "pooled") for name in sources}
    cur_src = sources["current"]
    assert cur_src is not None
    base = seg.baseline if _threshold(spec) else calibrate(seg.baseline, sources["baseline"])  # type: ignore[arg-type]
    return replace(seg, current=calibrate(cur, cur_src), baseline=base), cur_src, None


Compared = tuple[float, tuple[float, float], float]
"""(estimate, one-sided interval of the bad-direction difference, p-value of H0: within the margin)."""


def compare(spec: GateSpec, cur: Arm, base: Arm, margin: float) -> Compared:
    """Compare two arms (or one arm with the threshold) at the gate's one-sided level."""
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


def baseline_rate(spec: GateSpec, base: Arm) -> float:
    """The rate margins are relative to: the threshold, or the whole baseline's rate."""
    return (spec.baseline.value or 0.0) if spec.baseline.kind == "threshold" else base.rate


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


def _threshold(spec: GateSpec) -> bool:
    return spec.baseline.kind == "threshold"


def _outcome(spec: GateSpec, seg: SegmentInputs, decision: Decision, reason: str, need: int,
             current: Arm | None, notes: list[str]) -> Outcome:  # fmt: skip
    base_rate = baseline_rate(spec, seg.baseline)
    return Outcome(
        gate=spec.id, segment=seg.segment, decision=decision, reason=reason, margin=spec.margin.of(base_rate),
        baseline=arm_dict(seg.baseline), current=arm_dict(current) if current else {}, estimate=None,
        interval=None, p_value=None, min_samples=need, streak=0, notes=list(notes),
        design="sample" if spec.sampled else "windows",
    )  # fmt: skip


def empty_outcome(spec: GateSpec, reason: str, notes: Sequence[str] = (),
                  decision: Decision = "insufficient_data") -> Outcome:  # fmt: skip
    """The one outcome of a gate that has nothing to decide on: never a pass."""
    seg = SegmentInputs("", EMPTY, ())
    need = spec.required_samples(0.0, 1)
    return _outcome(spec, seg, decision, reason, need, None, list(notes))


def evidence_problem(spec: GateSpec, arms: Sequence[tuple[str, Arm]]) -> str | None:
    """Why arms cannot carry a decision: judge failures or missing evidence past tolerance."""
    for name, a in arms:
        if a.judge_failure_share > spec.judge_failure_tolerance:
            return (f"judge failures {a.judge_failure_share:.1%} (1/p-weighted) of the {name} arm exceed"
                    f" {spec.judge_failure_tolerance:.1%}")  # fmt: skip
        if a.missing_share > spec.missing_evidence_tolerance:
            return (f"missing_evidence {a.missing_share:.1%} (1/p-weighted) of the {name} arm exceeds"
                    f" {spec.missing_evidence_tolerance:.1%}")  # fmt: skip
    return None


def source_problems(spec: GateSpec, current: Source | None, baseline: Source | None) -> tuple[Decision, str] | None:
    """Gate-level reasons no outcome of an evaluator metric may pass: no ``done`` batch to
    read, or the arms judged by different judges."""
    if not spec.sampled or current is None:
        return None
    evaluator = spec.evaluator_id
    for name, src in (("current", current), ("baseline", baseline)):
        if src is not None and not src.batches and not (name == "baseline" and _threshold(spec)):
            pending = f" ({', '.join(src.pending)} not done)" if src.pending else ""
            return "insufficient_data", f"no done batch scored {evaluator} in the {name} arm {src.release}{pending}"
    if current.unscored:
        return "insufficient_data", f"{current.unscored}: score it before deciding"
    if baseline is not None and _judges_differ(current.judges, baseline.judges):
        return "inconclusive", (f"the arms were judged by different judges: baseline {sorted(baseline.judges)},"
                                f" current {sorted(current.judges)}")  # fmt: skip
    return None


def _judge_fields(identity: str) -> dict[str, str]:
    """``"model=m; endpoint=h; …"`` as a dict; ``?`` marks what a batch did not record."""
    fields = (part.partition("=") for part in identity.split("; "))
    return {k: v for k, _, v in fields if v != "?"}


def _judges_differ(a: Sequence[str], b: Sequence[str]) -> bool:
    """Two arms' judges differ when some field both recorded differs (a batch made before a
    field was recorded cannot show a difference in it)."""
    for x in a:
        for y in b:
            fx, fy = _judge_fields(x), _judge_fields(y)
            if any(fx[k] != fy[k] for k in fx.keys() & fy.keys()):
                return True
    return False


def source_notes(current: Source | None, baseline: Source | None) -> list[str]:
    """What the outcome says about the batches it read and the ones it did not."""
    notes = []
    for name, src in (("current", current), ("baseline", baseline)):
        if src is None or not src.batches:
            continue
        notes.append(f"{name} arm read done batch {', '.join(src.batches)}")
        if src.pending:
            notes.append(f"{name} arm: newer batch {', '.join(src.pending)} not read (not done)")
    return notes


def decide_family(
    spec: GateSpec,
    segments: Sequence[SegmentInputs],
    *,
    current: Source | None = None,
    baseline: Source | None = None,
    empty_reason: str = "",
    notes: Sequence[str] = (),
    pooled: Pooled | None = None,
) -> list[Outcome]:
    """Decide every segment group of one gate in one run (the correction's family).

    Always at least one outcome: a gate with no segment group gets one ``insufficient_data``
    outcome saying why (``empty_reason``). ``pooled``: the audit labels groups short of
    their own borrow (default: summed over ``segments``; a scan passes the whole sample's)."""
    notes = [*notes, *source_notes(current, baseline)]
    problem = source_problems(spec, current, baseline)
    if not segments:
        decision, reason = problem or ("insufficient_data", empty_reason or "no data matches the gate")
        return [empty_outcome(spec, reason, notes, decision)]
    if problem is not None:
        outs = []
        for seg in segments:
            need = spec.required_samples(baseline_rate(spec, seg.baseline), len(segments))
            outs.append(_outcome(spec, seg, problem[0], problem[1], need, seg.current, notes))
        return outs
    if spec.sampled:
        return _decide_sampled(spec, segments, notes, pooled if pooled is not None else pooled_audit(segments))
    return _decide_windows(spec, segments, notes)


# --- evaluator metrics: the release's whole sample ---------------------------------------


def parts(seg: SegmentInputs, k: int) -> list[Arm]:
    """The sample cut into ``k`` consecutive parts of about equal evaluations, at window
    boundaries (the tail after the last complete window is the last unit): each cut at the
    boundary nearest its share. Fewer than ``k`` parts when fewer units hold evaluations."""
    units = [w.arm for w in seg.windows] + ([seg.tail] if seg.tail is not None else [])
    units = [u for u in units if u.n > 0]
    if len(units) <= k:
        return units
    cumulative = []
    done = 0
    for u in units:
        done += u.n
        cumulative.append(done)
    cuts: list[int] = []  # index of the last unit of each part but the last
    for j in range(1, k):
        lo = cuts[-1] + 1 if cuts else 0
        hi = len(units) - 1 - (k - j)  # leave a unit for every part still to come
        target = done * j / k
        cuts.append(min(range(lo, hi + 1), key=lambda i: (abs(cumulative[i] - target), i)))
    out: list[Arm] = []
    start = 0
    for end in [*cuts, len(units) - 1]:
        acc: Arm | None = None
        for u in units[start : end + 1]:
            acc = add_arms(acc, u)
        assert acc is not None
        out.append(acc)
        start = end + 1
    return out


def need_of(spec: GateSpec, seg: SegmentInputs, family: int) -> int:
    """The effective n per arm a sampled gate needs in a segment: at the larger of the judge's
    and the (calibrated) baseline rate — a calibrated baseline that came out low would
    otherwise lower its own bar."""
    return spec.required_samples(max(baseline_rate(spec, seg.baseline), seg.baseline.judge_rate), family)


def calibrate_to_decide(spec: GateSpec, seg: SegmentInputs, pooled: Pooled, family: int
                        ) -> tuple[SegmentInputs, LabelSource | None, str | None]:  # fmt: skip
    """``calibrate_inputs``, kept only when the calibrated arms reach the gate's need: labels
    too few for that leave both arms judge-only (the judge's rate, which does decide), with a
    note of what the labels gave — an arm that can never decide is no use, and the note says
    how far the audit is from calibrating."""
    cal, labels, note = calibrate_inputs(spec, seg, pooled)
    if labels is None:
        return cal, labels, note
    need = need_of(spec, cal, family)
    cur = (cal.current or EMPTY).effective_n
    base = math.inf if _threshold(spec) else cal.baseline.effective_n
    if cur >= need and base >= need:
        return cal, labels, None
    have = f"current {cur:.0f}" + ("" if _threshold(spec) else f", baseline {base:.0f}")
    return seg, None, (f"calibration: none — the audit labels give an effective n of {have}, short of the"
                       f" {need} needed: the judge's rate is used uncorrected (tracejury review plan says how"
                       " many labels reach it)")  # fmt: skip


def _decide_sampled(spec: GateSpec, raw: Sequence[SegmentInputs], notes: list[str], pooled: Pooled) -> list[Outcome]:
    m = len(raw)
    calibrated = [calibrate_to_decide(spec, seg, pooled, m) for seg in raw]
    segments = [c[0] for c in calibrated]
    needs = [need_of(spec, s, m) for s in segments]
    compared: dict[int, Compared] = {}
    for i, seg in enumerate(segments):
        cur = seg.current or EMPTY
        if cur.effective_n >= needs[i] and (_threshold(spec) or seg.baseline.effective_n >= needs[i]):
            compared[i] = compare(spec, cur, seg.baseline, spec.margin.of(baseline_rate(spec, seg.baseline)))
    order = sorted(compared)
    flags = adjust([compared[i][2] for i in order], spec.alpha, spec.correction) if order else []
    significant = dict(zip(order, flags, strict=True))
    return [
        _decide_sample_one(spec, seg, needs[i], compared.get(i), significant.get(i, False), len(order),
                           [*notes, *([calibrated[i][2]] if calibrated[i][2] else [])], calibrated[i][1])
        for i, seg in enumerate(segments)
    ]


def _decide_sample_one(spec: GateSpec, seg: SegmentInputs, need: int, got: Compared | None, significant: bool,
                       family: int, notes: list[str], labels: LabelSource | None) -> Outcome:  # fmt: skip
    cur = seg.current or EMPTY
    base_rate = baseline_rate(spec, seg.baseline)
    margin = spec.margin.of(base_rate)
    out = _outcome(spec, seg, "pass", "", need, cur, notes)
    out.family_size = family if got is not None else 0
    k = spec.hysteresis.windows
    cut = parts(seg, k)
    if labels is not None:  # each part calibrated with the arm's correction (a part holds too few labels)
        cut = [calibrate(part, labels) for part in cut]
        base_cal = "" if _threshold(spec) or seg.baseline.calibrated is None else (
            f", baseline {seg.baseline.calibrated.labelled} ({seg.baseline.strata})")
        out.notes.append(f"calibration: ppi on audit labels: current {labels[0].labelled} ({labels[2]}){base_cal};"
                         " each part uses the current arm's correction")  # fmt: skip
    for j, part in enumerate(cut):
        est, interval, p = compare(spec, part, seg.baseline, margin)
        out.windows.append(WindowResult(j, part.n, part.effective_n, part.rate, est, interval, p, est > margin,
                                        False, True, 0, base_rate))  # fmt: skip
    out.streak = sum(1 for _ in _takewhile_last(out.windows))
    if len(seg.windows) > 0 and not _threshold(spec):
        out.notes.append(f"each of the {len(cut)} part(s) is compared with the whole baseline sample")
    versions_cur = set(cur.versions)
    if seg.baseline.versions and versions_cur and set(seg.baseline.versions) != versions_cur:
        out.decision = "inconclusive"
        out.reason = (f"evaluator versions differ: baseline {sorted(seg.baseline.versions)},"
                      f" current {sorted(versions_cur)}")  # fmt: skip
        return out
    arms = [("current", cur)] + ([] if _threshold(spec) else [("baseline", seg.baseline)])
    problem = evidence_problem(spec, arms) if spec.metric.evaluator else None
    if problem:
        out.decision, out.reason = "inconclusive", problem
        return out
    if got is None:
        out.decision = "insufficient_data"
        have = min(cur.effective_n, seg.baseline.effective_n if not _threshold(spec) else math.inf)
        out.reason = (f"needs {need} effective evaluations per arm, has current {cur.effective_n:.0f}"
                      + ("" if _threshold(spec) else f", baseline {seg.baseline.effective_n:.0f}")
                      + (f" (short by {need - have:.0f})" if have < need else ""))  # fmt: skip
        return out
    out.estimate, out.interval, out.p_value = got
    if not seg.windows:
        out.decision = "insufficient_data"
        out.reason = "the release holds no complete window of traffic: the newest data cannot be checked"
        return out
    latest = seg.windows[-1]
    floor = max(1, math.ceil(need / (2 * len(seg.windows))))
    if latest.arm.effective_n < floor:
        out.decision = "insufficient_data"
        out.reason = (f"the newest window ({latest.start} on) holds {latest.arm.effective_n:.0f} effective"
                      f" evaluations, fewer than its share {floor}: score it before deciding")  # fmt: skip
        return out
    critical = spec.critical.of(base_rate) if spec.critical else None
    if significant and critical is not None and got[1][0] > critical:
        out.decision = "block"
        out.reason = f"critical: lower bound {got[1][0]:.4g} > critical margin {critical:.4g}"
        return out
    if significant:
        if len(cut) < k:
            out.decision = "insufficient_data"
            out.reason = (f"regression beyond the margin (p {got[2]:.2g}), but the sample spans {len(cut)}"
                          f" part(s) of the {k} persistence needs")  # fmt: skip
            return out
        if all(w.regression for w in out.windows):
            out.decision = "block"
            out.reason = (f"regressed: lower bound {got[1][0]:.4g} > margin {margin:.4g} (p {got[2]:.2g}),"
                          f" above the margin in each of {k} part(s)")  # fmt: skip
            return out
        out.reason = (f"rise beyond the margin overall (p {got[2]:.2g}) but not in every part of the sample:"
                      " not persistent")  # fmt: skip
        return out
    out.reason = f"no regression beyond the margin {margin:.4g} (p {got[2]:.2g})"
    return out


def _takewhile_last(results: Sequence[WindowResult]) -> list[WindowResult]:
    """The trailing run of regressed results (a streak)."""
    run: list[WindowResult] = []
    for r in reversed(results):
        if not (r.evaluated and r.regression):
            break
        run.append(r)
    return run


# --- signal metrics: windows of traffic ---------------------------------------------------


def _decide_windows(spec: GateSpec, segments: Sequence[SegmentInputs], notes: list[str]) -> list[Outcome]:
    needs = [spec.required_samples(baseline_rate(spec, s.baseline), len(segments)) for s in segments]
    # p-values per (segment, window); the correction runs per window across the segments
    by_window: dict[int, list[tuple[int, float]]] = {}
    compared: dict[tuple[int, int], Compared] = {}
    for s, seg in enumerate(segments):
        for w in seg.windows:
            base = w.baseline or seg.baseline
            if w.arm.effective_n >= needs[s] and (_threshold(spec) or base.effective_n >= needs[s]):
                margin = spec.margin.of(baseline_rate(spec, seg.baseline))
                compared[(s, w.index)] = compare(spec, w.arm, base, margin)
                by_window.setdefault(w.index, []).append((s, compared[(s, w.index)][2]))
    significant: dict[tuple[int, int], tuple[bool, int]] = {}
    for index, entries in by_window.items():
        flags = adjust([p for _, p in entries], spec.alpha, spec.correction)
        for (s, _), flag in zip(entries, flags, strict=True):
            significant[(s, index)] = (flag, len(entries))
    return [_decide_window_one(spec, s, seg, compared, significant, needs[s], notes) for s, seg in enumerate(segments)]


def _decide_window_one(
    spec: GateSpec,
    s: int,
    seg: SegmentInputs,
    compared: dict[tuple[int, int], Compared],
    significant: dict[tuple[int, int], tuple[bool, int]],
    need: int,
    notes: list[str],
) -> Outcome:
    base_rate = baseline_rate(spec, seg.baseline)  # the whole baseline's: every window faces one bar
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
        regression, family = significant[(s, w.index)]
        critical = critical_margin is not None and regression and interval[0] > critical_margin
        bw = w.baseline.rate if w.baseline is not None else base_rate
        results.append(WindowResult(w.index, w.arm.n, w.arm.effective_n, w.arm.rate, est,
                                    interval, p, regression, critical, True, family, bw))  # fmt: skip
    streak = len(_takewhile_last(results))  # an unevaluated window breaks a streak
    latest = results[-1] if results else None
    current = seg.windows[-1].arm if seg.windows else None
    out = _outcome(spec, seg, "pass", "", need, current, notes)
    out.windows, out.streak = results, streak
    out.family_size = latest.family if latest else 0
    if latest is not None and latest.evaluated:
        out.estimate, out.interval, out.p_value = latest.estimate, latest.interval, latest.p_value
    reused = _reuse_note(seg)
    if reused:
        out.notes.append(reused)
    if latest is None:
        out.decision = "insufficient_data"
        out.reason = (f"no complete window of {_window_label(spec)} in the release (baseline n_eff"
                      f" {seg.baseline.effective_n:.0f})")  # fmt: skip
        return out
    if not latest.evaluated:
        w = seg.windows[-1]
        base = w.baseline or seg.baseline
        out.decision = "insufficient_data"
        out.reason = (f"the newest window ({w.start} on) cannot be evaluated: needs {need} per arm, has current"
                      f" {w.arm.effective_n:.0f}" + ("" if _threshold(spec) else f", baseline {base.effective_n:.0f}"))
        return out
    if latest.critical:
        out.decision = "block"
        out.reason = f"critical: lower bound {latest.interval[0]:.4g} > critical margin {critical_margin:.4g}"
        return out
    if streak >= spec.hysteresis.windows:
        out.decision = "block"
        out.reason = (
            f"regressed in {streak} consecutive window(s) (needs {spec.hysteresis.windows}):"
            f" lower bound {latest.interval[0]:.4g} > margin {margin:.4g}"
        )
        return out
    out.reason = (f"streak {streak} of {spec.hysteresis.windows}" if streak
                  else f"no regression beyond the margin {margin:.4g}")  # fmt: skip
    return out


def _window_label(spec: GateSpec) -> str:
    w = spec.hysteresis.window
    return f"{w.traces} traces" if w.traces is not None else f"{w.hours} h"


def _reuse_note(seg: SegmentInputs) -> str | None:
    """Say when windows of a streak do not each meet fresh baseline data."""
    if not seg.windows:
        return None
    if all(w.baseline is None for w in seg.windows):
        return "every window is compared with the whole baseline (shorter than one window): weaker hysteresis"
    used = [w.baseline_index for w in seg.windows if w.baseline is not None and w.baseline_index is not None]
    if len(set(used)) < len(used):
        return (f"{len(seg.windows)} current windows reuse {len(set(used))} baseline window(s)"
                " (window k meets baseline window k mod B)")
    return None


def run_decision(outcomes: Sequence[Outcome]) -> Decision:
    """block if any blocks; else inconclusive; else insufficient_data; else pass. A run with
    no outcome at all is ``insufficient_data``: nothing was shown, so nothing may ship."""
    if not outcomes:
        return "insufficient_data"
    decisions = {o.decision for o in outcomes}
    return next((d for d in DECISION_ORDER if d in decisions), "pass")
