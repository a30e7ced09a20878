"""What goes into a judge call and what comes out of it.

A call is a :class:`JudgeRequest`; its outcome is either a :class:`JudgeVerdict` (a label the
rubric offers, with a rationale) or a :class:`JudgeFailure` (why there is no verdict, with the
kind the evaluation record stores). A failure is never a verdict: it has no label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from judges.llm.dialect import WireFormat, chat_body
from tracejury.core.evaluation import FailureKind

__all__ = ["JudgeFailure", "JudgeOutcome", "JudgeRequest", "JudgeVerdict", "one_line"]


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class JudgeRequest:
    """One call to a judge: the chat messages and the shape its reply must have."""

    messages: tuple[dict[str, Any], ...]
    """OpenAI chat messages (``{"role": ..., "content": ...}``), system first, evidence last."""
    output_schema: dict[str, Any]
    """JSON Schema of the reply object, e.g. required ``label`` (an enum) and ``rationale``."""
    labels: tuple[str, ...]
    """The labels the rubric offers; a reply with any other label is ``rubric_mismatch``."""
    schema_name: str
    """Name of the schema in ``response_format`` (letters, digits, ``_`` and ``-``)."""
    temperature: float = 0.0
    """Sampling temperature sent to the model."""
    seed: int | None = None
    """Sampling seed sent to the model when set (self-consistency samples use distinct seeds)."""

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("a judge request needs at least one label")
        if not self.messages:
            raise ValueError("a judge request needs at least one message")

    def body(
        self,
        model: str,
        *,
        wire: WireFormat = "json_schema",
        max_tokens: int | None = None,
        reasoning: bool = False,
    ) -> dict[str, Any]:
        """The ``POST /chat/completions`` JSON body for ``model`` in one wire format.

        ``json_schema`` sends the messages as they are and ``response_format`` with the strict
        JSON Schema; the other formats (``json_object_schema``, ``json_object``, ``none``) add
        the schema to the system prompt as an instruction (see :mod:`judges.llm.dialect`).
        ``max_tokens`` is the reply cap (``max_completion_tokens`` when ``reasoning``, which
        also drops ``temperature``).
        """
        return chat_body(
            model, self.messages, self.output_schema, self.schema_name, wire=wire,
            temperature=self.temperature, seed=self.seed, max_tokens=max_tokens, reasoning=reasoning,
        )  # fmt: skip


@dataclass(frozen=True)
class JudgeVerdict:
    """A judge's verdict: a label the rubric offers, and the call's cost."""

    label: str
    """One of the request's labels."""
    rationale: str
    """The judge's reason, as it gave it."""
    confidence: float | None
    """The judge's confidence in [0, 1], when it gave one."""
    prompt_tokens: int | None
    """Prompt tokens the endpoint reported (``usage``), if any."""
    completion_tokens: int | None
    """Completion tokens the endpoint reported (``usage``), if any."""
    attempts: int
    """HTTP attempts made, the successful one included."""
    latency_ms: int
    """Time the attempts spent on the wire, from send to reply (waits for a slot, the budget
    and backoffs left out)."""
    model: str
    """The model that answered (the reply's ``model``, else the profile's)."""
    timeouts: int = 0
    """Attempts that timed out: each may have been billed, its usage unknown (cost caps
    settle them at their worst case)."""


@dataclass(frozen=True)
class JudgeFailure:
    """Why a judge call produced no verdict; stored as a ``judge_failed`` evaluation."""

    kind: FailureKind
    """``timeout``, ``http_error``, ``rate_limited``, ``invalid_output``, ``rubric_mismatch``,
    ``refused`` or ``config_error``."""
    message: str
    """What went wrong, on one line."""
    http_status: int | None
    """The last HTTP status, when there was one."""
    attempts: int
    """HTTP attempts made (0 when the call was never sent)."""
    latency_ms: int
    """Time the attempts spent on the wire, from send to reply (waits for a slot, the budget
    and backoffs left out)."""
    prompt_tokens: int | None = None
    """Prompt tokens the endpoint reported for a reply it billed but that held no verdict
    (an invalid or off-rubric reply): spent money too."""
    completion_tokens: int | None = None
    """Completion tokens reported with such a reply."""
    timeouts: int = 0
    """Attempts that timed out (see :attr:`JudgeVerdict.timeouts`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", one_line(self.message))


JudgeOutcome = JudgeVerdict | JudgeFailure
"""What :meth:`JudgeClient.judge` returns: a verdict or a failure, never an exception."""
