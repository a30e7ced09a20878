"""Judge profiles: where a judge lives and how hard the client may push it.

A profile names an OpenAI-compatible endpoint (base URL, model), the *name* of the environment
variable that holds its API key, and the client's limits (timeout, attempts, concurrency,
requests and tokens per minute, backoff). This module reads no environment: the settings
layer resolves the base URL and the key and passes them to the client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judges.llm.concurrency import AdaptiveSettings
from tracejury.core.cost import Price

__all__ = [
    "DEFAULT_JUDGE_BASE_URL",
    "DEFAULT_PROFILE_NAME",
    "JudgeProfile",
    "StructuredOutput",
    "default_profile",
]

StructuredOutput = Literal["json_schema", "json_object", "none", "auto"]
"""How a profile asks for a JSON reply: ``json_schema`` (``response_format`` with the rubric's
JSON Schema), ``json_object`` (JSON mode, the schema in the prompt and beside the type, as
llama.cpp's servers take it — dropped once where the endpoint refuses the key), ``none`` (the
prompt alone), or ``auto`` (json_schema, moving down json_object with schema → json_object →
none one step per refusal of the endpoint, remembered per endpoint for the process). See
:mod:`judges.llm.dialect` and docs/judges.md."""

DEFAULT_JUDGE_BASE_URL = "http://127.0.0.1:8100/v1"
"""Where ``tracejury mock-judge`` listens by default; the ``default`` profile's fallback."""
DEFAULT_PROFILE_NAME = "default"
"""Name of the profile that ships with tracejury (the mock judge)."""


class JudgeProfile(BaseModel):
    """An OpenAI-compatible judge endpoint and the client's limits for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    """Profile name, as rubrics refer to it and evaluations record it."""
    base_url: str | None = None
    """Base URL up to ``/v1``; None takes the caller-supplied default (the settings' one)."""
    model: str = Field(min_length=1)
    """Model name sent in each request."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; None = no key needed."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Wall-clock budget of one HTTP attempt (connect, send, wait, read)."""
    max_attempts: int = Field(default=4, ge=1)
    """HTTP attempts per judge call, the first included."""
    max_concurrency: int = Field(default=1024, ge=1)
    """The most calls in flight at once to this endpoint — a cap: the client learns the limit
    below it (``adaptive_concurrency``) — and the size of each client's connection pool. Shared
    by every worker with a Redis broker, per process with the embedded one."""
    adaptive_concurrency: bool = True
    """Learn the limit from the endpoint: grow while its latency holds and no 429/503/504 or
    timeout comes back, cut on them (see :mod:`judges.llm.concurrency`). False: the limit is
    ``max_concurrency``, fixed."""
    min_concurrency: int = Field(default=4, ge=1)
    """The learnt limit never goes below this (nor above ``max_concurrency``)."""
    initial_concurrency: int = Field(default=32, ge=1)
    """The learnt limit before the endpoint has answered (it doubles every round trip until
    the first overload)."""
    requests_per_minute: int | None = Field(default=None, ge=1)
    """Request budget per minute of this process; None = unlimited."""
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Token budget (estimated prompt + completion) per minute of this process; None = no cap."""
    structured_output: StructuredOutput = "auto"
    """How replies are asked to be JSON (see :data:`StructuredOutput`); every mode validates
    the reply against the rubric's schema."""
    api_version: str | None = None
    """Azure OpenAI: the ``api-version`` query parameter; set, the key goes in an ``api-key``
    header instead of ``Authorization: Bearer``."""
    reasoning: bool = False
    """A reasoning model: no ``temperature`` is sent, and the reply cap goes in
    ``max_completion_tokens`` instead of ``max_tokens``."""
    max_output_tokens: int = Field(default=1024, ge=1)
    """The reply cap sent with every call (``max_tokens``, or ``max_completion_tokens`` for
    reasoning models, whose reasoning counts against it); a cost cap's worst case uses it."""
    price: Price | None = None
    """USD per million tokens; None = spend is counted in tokens only (cost unknown)."""
    max_cost_per_day: float | None = Field(default=None, gt=0)
    """USD this profile may spend per UTC day across every worker; None = no daily cap.
    Needs ``price``."""
    backoff_initial_s: float = Field(default=0.5, ge=0)
    """Cap of the first retry's wait; doubles with every attempt (full jitter below it)."""
    backoff_max_s: float = Field(default=20.0, ge=0)
    """Longest wait between attempts, ``Retry-After`` included."""

    def concurrency_settings(self) -> AdaptiveSettings:
        """How this profile's concurrency limit moves (fixed at ``max_concurrency`` when not
        adaptive; the floor and start clamped under the cap, so old profiles load as they were)."""
        cap = self.max_concurrency
        if not self.adaptive_concurrency:
            return AdaptiveSettings.fixed(cap)
        return AdaptiveSettings(
            initial=min(cap, self.initial_concurrency), floor=min(cap, self.min_concurrency), cap=cap
        )

    @model_validator(mode="before")
    @classmethod
    def _read_old_snapshots(cls, data: Any) -> Any:
        """Batches queued before ``structured_output`` froze ``supports_json_schema``: false
        meant the prompt alone (``none``), true the schema (today's ``auto`` tries it first)."""
        if isinstance(data, dict) and "supports_json_schema" in data:
            data = dict(data)
            old = data.pop("supports_json_schema")
            if old is False:
                data.setdefault("structured_output", "none")
        return data

    @model_validator(mode="after")
    def _cap_needs_price(self) -> JudgeProfile:
        if self.max_cost_per_day is not None and self.price is None:
            raise ValueError("max_cost_per_day needs a price (price: {input_per_million, output_per_million})")
        return self


def default_profile(base_url: str | None = None) -> JudgeProfile:
    """The shipped ``default`` profile: the mock judge at ``base_url`` (default: where
    ``tracejury mock-judge`` listens), model ``mock-judge``, no API key."""
    return JudgeProfile(
        name=DEFAULT_PROFILE_NAME,
        base_url=base_url or DEFAULT_JUDGE_BASE_URL,
        model="mock-judge",
    )
