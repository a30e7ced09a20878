"""The evaluation record: what one evaluator said about one trace — or why it could not say.

A judge failure is recorded as what it is (``judge_failed`` with its kind), never as a score:
it has no label and no ``passed``, and every metric downstream skips it explicitly.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "EVALUATION_STATUSES",
    "FAILURE_KINDS",
    "Evaluation",
    "EvaluationStatus",
    "EvaluatorKind",
    "FailureKind",
]

EvaluationStatus = Literal["scored", "judge_failed", "not_applicable", "missing_evidence"]
"""``scored``: a verdict; ``judge_failed``: the evaluator could not produce one (see kind);
``not_applicable``: the evaluator does not apply to this trace; ``missing_evidence``: it
applies, but the trace lacks the raw text or snapshot it needs."""
FailureKind = Literal[
    "timeout",
    "http_error",
    "rate_limited",
    "invalid_output",
    "rubric_mismatch",
    "refused",
    "config_error",
    "checker_error",
    "budget_exhausted",
]
"""Why a judge (or a checker) failed: ``timeout`` (no reply in time), ``http_error`` (a 4xx/5xx
or a broken connection after the retries), ``rate_limited`` (429 until the attempt budget
ran out), ``invalid_output`` (not JSON, or JSON that breaks the reply schema),
``rubric_mismatch`` (a label outside the rubric's labels), ``refused`` (the model declined),
``config_error`` (a missing API key, an unknown profile), ``checker_error`` (a checker raised
on this trace), ``budget_exhausted`` (the call was not sent: its worst-case cost did not fit in
what is left of the batch's cost cap or the profile's daily cap)."""
EvaluatorKind = Literal["checker", "rubric"]
EVALUATION_STATUSES: tuple[str, ...] = get_args(EvaluationStatus)
FAILURE_KINDS: tuple[str, ...] = get_args(FailureKind)


class Evaluation(BaseModel):
    """One evaluator's result on one trace (one row per batch, trace, evaluator, version)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trace_id: str
    """The trace evaluated."""
    evaluator_id: str
    """Checker name or rubric id."""
    evaluator_version: str
    """Checker version or the rubric's explicit ``version``."""
    evaluator_fingerprint: str
    """Hash of the evaluator's canonical content (rubric YAML, checker name + params)."""
    evaluator_kind: EvaluatorKind
    """``checker`` (deterministic) or ``rubric`` (LLM judge)."""
    status: EvaluationStatus
    """See ``EvaluationStatus``."""
    label: str | None = None
    """The verdict's label (scored only): ``pass``/``fail`` or an ordinal label."""
    passed: bool | None = None
    """Whether the label passes (scored only)."""
    score: float | None = None
    """Ordinal score of the label, when the rubric has a scale."""
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    """Judge's confidence, or self-consistency agreement when sampled several times."""
    rationale: str | None = None
    """The judge's or checker's reason, one paragraph at most."""
    failure_kind: FailureKind | None = None
    """Why it failed (judge_failed only)."""
    http_status: int | None = None
    """Last HTTP status, when the failure came from HTTP."""
    attempts: int = 0
    """HTTP attempts made (0 for checkers and cache hits)."""
    error: str | None = None
    """Last error message (judge_failed only), one line."""
    judge_profile: str | None = None
    """Judge profile name (rubrics only)."""
    judge_model: str | None = None
    """Model the judge profile called (rubrics only)."""
    evidence_hash: str
    """Hash of the evidence the evaluator saw; with the fingerprint, the cache key."""
    latency_ms: int | None = None
    """Wall time of the evaluation, all attempts and samples included."""
    prompt_tokens: int | None = None
    """Prompt tokens used (judges)."""
    completion_tokens: int | None = None
    """Completion tokens used (judges)."""
    cost_usd: float | None = None
    """USD the judge calls of this evaluation cost (0 when every verdict came from the cache;
    None when the profile has no price or the endpoint reported no usage)."""
    saved_usd: float | None = None
    """USD the cached verdicts would have cost had they been called again (judges)."""
    cached: bool = False
    """True when the verdict came from the cache (no call made)."""
    sample_labels: tuple[str, ...] = ()
    """Labels of the self-consistency samples, in sample order (judges with samples > 1)."""

    @model_validator(mode="after")
    def _consistent(self) -> Evaluation:
        scored = self.status == "scored"
        if scored and (self.label is None or self.passed is None):
            raise ValueError("a scored evaluation needs a label and passed")
        if not scored and (self.label is not None or self.passed is not None):
            raise ValueError(f"a {self.status} evaluation has no label and no passed")
        if (self.status == "judge_failed") != (self.failure_kind is not None):
            raise ValueError("failure_kind is set exactly when status is judge_failed")
        return self
