"""Escalation policy: which judgments go to people, why, and how urgently. Pure.

A rubric's ``escalation`` block (``judges.rubric.Escalation``) names the policy; this module
applies it to one trace: the rubric's own evaluation and the evaluations of the checkers it
names. The result is a review item's reasons and priority, or nothing.

Reasons and their weights, strongest first::

    judge_failed       50   the judge failed after its retries, on a rubric marked high_risk
    checker_disagrees  40   a checker named in on_checker_disagreement passed where the judge
                            failed the trace, or the other way round
    low_confidence     30   the judge's confidence is below confidence_below
    samples_disagree   20   self-consistency samples gave more than one label
                            (on_sample_disagreement)
    audit              10   a random audit draw below audit_rate

An item's **priority** is the weight of its strongest reason plus one for each further
reason: any checker disagreement outranks any low confidence, and among items with the same
strongest reason, more reasons come first. The audit draw is ``sha256(domain | rubric id |
version | trace id)`` mapped to [0, 1): every rerun and every worker decides the same, and
each segment gets the same share ``audit_rate`` of its traces audited.

Only ``scored`` judgments are compared, made uncertain or audited; ``judge_failed`` ones
escalate only on a high-risk rubric; ``not_applicable`` and ``missing_evidence`` never do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

__all__ = [
    "REASONS",
    "REASON_WEIGHT",
    "EscalationPolicy",
    "Escalated",
    "Judgment",
    "Reason",
    "audit_draw",
    "escalate",
    "priority",
]

Reason = Literal["judge_failed", "checker_disagrees", "low_confidence", "samples_disagree", "audit"]
"""Why a judgment went to review."""
REASONS: tuple[str, ...] = get_args(Reason)
"""Every reason, strongest first."""
REASON_WEIGHT: dict[str, int] = {
    "judge_failed": 50,
    "checker_disagrees": 40,
    "low_confidence": 30,
    "samples_disagree": 20,
    "audit": 10,
}
"""Priority weight of each reason (see the module docstring)."""
AUDIT_DOMAIN = "tracejury.audit"


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
    """Reasons, strongest first."""
    priority: int
    """Higher is reviewed first (see ``priority``)."""
    evaluation_ids: tuple[int, ...]
    """The judge's evaluation first, then each disagreeing checker's."""


def audit_draw(rubric_id: str, rubric_version: str, trace_id: str) -> float:
    """The trace's audit draw in [0, 1) for this rubric version: the same on every rerun."""
    digest = hashlib.sha256(f"{AUDIT_DOMAIN}|{rubric_id}|{rubric_version}|{trace_id}".encode()).digest()
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
