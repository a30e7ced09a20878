"""Escalation policy: which judgments go to people, why, in what order, and how many. Pure.

A rubric's ``escalation`` block (``judges.rubric.Escalation``) names the policy; ``escalate``
applies it to one trace: the rubric's own evaluation and the evaluations of the checkers it
names. The result is a review item's reasons and priority, or nothing. ``select_within_budget``
then keeps, of a batch's escalated judgments, as many as the review budget has room for.

Reasons, in order of value (what a label on such an item is worth), and their weights::

    audit              50   a random audit draw below audit_rate: what makes the judge's
                            error measurable (calibration, judge agreement)
    judge_failed       40   the judge failed after its retries, on a rubric marked high_risk
    checker_disagrees  30   a checker named in on_checker_disagreement passed where the judge
                            failed the trace, or the other way round
    samples_disagree   20   self-consistency samples gave more than one label
                            (on_sample_disagreement)
    low_confidence     10   the judge's confidence is below confidence_below

An item's **priority** is the weight of its strongest reason plus one for each further
reason: any audit item is reviewed before any judge failure, and among items with the same
strongest reason, more reasons come first. The audit draw is ``sha256(domain | rubric id |
version | trace id)`` mapped to [0, 1): every rerun and every worker decides the same, and
each segment gets the same share ``audit_rate`` of its traces audited.

Only ``scored`` judgments are compared, made uncertain or audited; ``judge_failed`` ones
escalate only on a high-risk rubric; ``not_applicable`` and ``missing_evidence`` never do.

**The review budget** (``Caps``: ``max_items_per_batch``, ``max_items_per_day``, per rubric
and overall) is filled in order of value: a candidate's class is its strongest reason. Within
the audit class, candidates go by ``audit draw / audit_rate`` — the audit's own random order,
so what the cap keeps is still a probability sample (its rate lowered to ``audit_rate ×
kept``, ``Selection.audit_kept``), never one skewed towards some segments. Within every other
class, by how much a label would move a gate: the trace's segment nearest a gate's margin
first (``margin_distance``), then the larger estimate weight ``1/p`` (a label moves a weighted
rate by its weight), then a seeded hash. What the budget leaves out is counted per rubric and
reason, never dropped silently.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from tracejury.core.segments import parse_segment_key

__all__ = [
    "REASONS",
    "REASON_WEIGHT",
    "Budget",
    "Candidate",
    "Caps",
    "Escalated",
    "EscalationPolicy",
    "GateMargin",
    "Judgment",
    "Reason",
    "Selection",
    "audit_draw",
    "escalate",
    "margin_distance",
    "nearest_margin",
    "order_hash",
    "priority",
    "rank_key",
    "select_within_budget",
]

Reason = Literal["audit", "judge_failed", "checker_disagrees", "samples_disagree", "low_confidence"]
"""Why a judgment went to review."""
REASONS: tuple[str, ...] = get_args(Reason)
"""Every reason, most valuable first (the order the review budget fills in)."""
REASON_WEIGHT: dict[str, int] = {
    "audit": 50,
    "judge_failed": 40,
    "checker_disagrees": 30,
    "samples_disagree": 20,
    "low_confidence": 10,
}
"""Priority weight of each reason (see the module docstring)."""
AUDIT_DOMAIN = "tracejury.audit"
ORDER_DOMAIN = "tracejury.review-order"


class EscalationPolicy(Protocol):
    """A rubric's escalation settings (``judges.rubric.Escalation`` has this shape)."""

    @property
    def confidence_below(self) -> float | None: ...
    @property
    def on_sample_disagreement(self) -> bool: ...
    @property
    def on_checker_disagreement(self) -> Sequence[str]: ...
    @property
    def high_risk(self) -> bool: ...
    @property
    def audit_rate(self) -> float: ...
    @property
    def max_items_per_batch(self) -> int | None: ...
    @property
    def max_items_per_day(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Judgment:
    """What escalation looks at in one evaluation."""

    evaluation_id: int
    """The evaluation row's id (recorded on the review item)."""
    status: str
    """``scored``, ``judge_failed``, ``not_applicable`` or ``missing_evidence``."""
    passed: bool | None = None
    """Whether the verdict passes (scored only)."""
    confidence: float | None = None
    """The judge's confidence, when it reported one."""
    sample_labels: tuple[str, ...] = ()
    """Self-consistency labels, when the rubric samples more than once."""


@dataclass(frozen=True, slots=True)
class Escalated:
    """Why a judgment goes to review, how urgently, and the evaluations behind it."""

    reasons: tuple[str, ...]
    """Reasons, most valuable first."""
    priority: int
    """Higher is reviewed first (see ``priority``)."""
    evaluation_ids: tuple[int, ...]
    """The judge's evaluation first, then each disagreeing checker's."""


def audit_draw(rubric_id: str, rubric_version: str, trace_id: str) -> float:
    """The trace's audit draw in [0, 1) for this rubric version: the same on every rerun."""
    digest = hashlib.sha256(f"{AUDIT_DOMAIN}|{rubric_id}|{rubric_version}|{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def order_hash(rubric_id: str, trace_id: str) -> float:
    """A seeded hash in [0, 1): the budget's last tie-break, the same on every rerun."""
    digest = hashlib.sha256(f"{ORDER_DOMAIN}|{rubric_id}|{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def priority(reasons: Sequence[str]) -> int:
    """The strongest reason's weight plus one per further reason; 0 for no reason."""
    if not reasons:
        return 0
    return max(REASON_WEIGHT[r] for r in reasons) + len(reasons) - 1


def escalate(
    policy: EscalationPolicy,
    *,
    rubric_id: str,
    rubric_version: str,
    trace_id: str,
    judgment: Judgment,
    checkers: Mapping[str, Judgment] | None = None,
) -> Escalated | None:
    """Apply a rubric's policy to its judgment of one trace.

    ``checkers`` maps checker rubric ids to their judgment of the same trace (those the
    policy does not name are ignored; a missing one cannot disagree). Returns None when
    nothing escalates.
    """
    reasons: set[str] = set()
    ids = [judgment.evaluation_id]
    if judgment.status == "judge_failed":
        if policy.high_risk:
            reasons.add("judge_failed")
    elif judgment.status == "scored":
        for checker_id in policy.on_checker_disagreement:
            other = (checkers or {}).get(checker_id)
            if other is None or other.status != "scored" or other.passed is None:
                continue
            if other.passed != judgment.passed:
                reasons.add("checker_disagrees")
                ids.append(other.evaluation_id)
        threshold = policy.confidence_below
        if threshold is not None and judgment.confidence is not None and judgment.confidence < threshold:
            reasons.add("low_confidence")
        if policy.on_sample_disagreement and len(set(judgment.sample_labels)) > 1:
            reasons.add("samples_disagree")
        if policy.audit_rate > 0 and audit_draw(rubric_id, rubric_version, trace_id) < policy.audit_rate:
            reasons.add("audit")
    if not reasons:
        return None
    ordered = tuple(r for r in REASONS if r in reasons)
    return Escalated(ordered, priority(ordered), tuple(ids))


# --- gate margins ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateMargin:
    """How close one gate outcome of an evaluator was to its margin, for one segment group."""

    evaluator: str
    """The rubric the gate reads."""
    group: Mapping[str, str]
    """The group's ``{dim: value}`` (empty: every trace)."""
    distance: float
    """``margin_distance`` of the outcome: 0 when the margin lies inside the interval."""


def margin_distance(interval: Sequence[float], margin: float) -> float:
    """How far a gate's margin lies from its interval of the bad-direction difference: 0 when
    inside (a few labels can move the decision), else the gap to the nearer bound."""
    lo, hi = interval
    if lo <= margin <= hi:
        return 0.0
    return min(abs(lo - margin), abs(hi - margin))


def nearest_margin(evaluator: str, segment_key: str, margins: Sequence[GateMargin]) -> float | None:
    """The smallest distance to a margin over the gate outcomes of ``evaluator`` whose group
    holds the trace's segment; None when no gate outcome covers it."""
    parts = parse_segment_key(segment_key) if segment_key else {}
    found = [m.distance for m in margins
             if m.evaluator == evaluator and all(parts.get(d) == v for d, v in m.group.items())]  # fmt: skip
    return min(found) if found else None


# --- the review budget -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caps:
    """Caps on the review items escalated; None is no cap, 0 lets nothing through."""

    max_items_per_batch: int | None = None
    """Items one batch may enqueue."""
    max_items_per_day: int | None = None
    """Items all batches together may enqueue per UTC day."""

    def as_dict(self) -> dict[str, int | None]:
        """``{"maxItemsPerBatch": …, "maxItemsPerDay": …}``: how a batch records them."""
        return {"maxItemsPerBatch": self.max_items_per_batch, "maxItemsPerDay": self.max_items_per_day}

    @classmethod
    def from_dict(cls, data: Mapping[str, int | None]) -> Caps:
        """The inverse of ``as_dict``."""
        return cls(data.get("maxItemsPerBatch"), data.get("maxItemsPerDay"))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One escalated judgment waiting for room in the review budget."""

    ref: int
    """The caller's handle (e.g. an index into its rows)."""
    rubric_id: str
    reasons: tuple[str, ...]
    """As ``Escalated.reasons``: most valuable first; the first is the candidate's class."""
    audit_key: float | None = None
    """``audit draw / audit_rate`` in [0, 1) for an audit candidate: the audit's random order."""
    gate_distance: float | None = None
    """``nearest_margin`` of the trace's segment; None: no gate outcome covers it."""
    weight: float = 1.0
    """The trace's estimate weight ``1/p`` (how much a label moves a weighted rate)."""
    tiebreak: float = 0.0
    """``order_hash``: the last, deterministic tie-break."""


def rank_key(c: Candidate) -> tuple[float, ...]:
    """The fill order: class (strongest reason, in ``REASONS`` order) first; audits by their
    random key; every other class by gate distance (none known: last), weight, then hash."""
    cls = REASONS.index(c.reasons[0])
    if c.reasons[0] == "audit":
        return (cls, c.audit_key if c.audit_key is not None else 1.0, c.tiebreak)
    distance = math.inf if c.gate_distance is None else c.gate_distance
    return (cls, distance, -c.weight, c.tiebreak)


@dataclass(frozen=True)
class Budget:
    """The caps in force and what they have already let through."""

    overall: Caps = Caps()
    rubrics: Mapping[str, Caps] = field(default_factory=dict)
    """Per-rubric caps (a rubric not named has none)."""
    batch_used: Mapping[str, int] = field(default_factory=dict)
    """Items this batch already enqueued, per rubric (a rerun counts them)."""
    day_used: Mapping[str, int] = field(default_factory=dict)
    """Items enqueued this UTC day by every batch, per rubric."""


@dataclass(frozen=True)
class Selection:
    """What the budget let through and what it left out."""

    chosen: tuple[Candidate, ...]
    """The candidates to enqueue, in fill order."""
    left_out: Mapping[tuple[str, str], int]
    """(rubric, reason: the candidate's strongest) → candidates the caps left out."""
    audit_kept: Mapping[str, float]
    """Per rubric with audit candidates: the share of its audit draw kept, in (0, 1] — the
    smallest audit key left out, or 1.0 when none was (the kept audit's rate is
    ``audit_rate × audit_kept``)."""


def _room(caps: Caps, batch: int, day: int) -> bool:
    return (caps.max_items_per_batch is None or batch < caps.max_items_per_batch) and (
        caps.max_items_per_day is None or day < caps.max_items_per_day
    )


def select_within_budget(candidates: Sequence[Candidate], budget: Budget) -> Selection:
    """Fill the budget in ``rank_key`` order: a candidate goes in while its rubric's caps and
    the overall caps all have room (counting what the batch and the day already used)."""
    batch = Counter(budget.batch_used)
    day = Counter(budget.day_used)
    batch_total, day_total = sum(batch.values()), sum(day.values())
    chosen: list[Candidate] = []
    left_out: Counter[tuple[str, str]] = Counter()
    audit_kept: dict[str, float] = {}
    for c in sorted(candidates, key=rank_key):
        r = c.rubric_id
        audit = c.reasons[0] == "audit"
        if audit:
            audit_kept.setdefault(r, 1.0)
        own = budget.rubrics.get(r, Caps())
        if _room(own, batch[r], day[r]) and _room(budget.overall, batch_total, day_total):
            chosen.append(c)
            batch[r] += 1
            day[r] += 1
            batch_total += 1
            day_total += 1
            continue
        left_out[(r, c.reasons[0])] += 1
        if audit and c.audit_key is not None:
            audit_kept[r] = min(audit_kept[r], c.audit_key)
    return Selection(tuple(chosen), dict(left_out), audit_kept)
