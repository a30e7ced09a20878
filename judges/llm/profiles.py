"""Judge profiles: where a judge lives and how hard the client may push it.

A profile names an OpenAI-compatible endpoint (base URL, model), the *name* of the environment
variable that holds its API key, and the client's limits (timeout, attempts, concurrency,
requests and tokens per minute, backoff). This module reads no environment: the settings
layer resolves the base URL and the key and passes them to the client.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_JUDGE_BASE_URL", "DEFAULT_PROFILE_NAME", "JudgeProfile", "default_profile"]

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
    max_concurrency: int = Field(default=64, ge=1)
    """Calls in flight at once from one client (and the size of its connection pool)."""
    requests_per_minute: int | None = Field(default=None, ge=1)
    """Request budget per minute of this process; None = unlimited."""
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Token budget (estimated prompt + completion) per minute of this process; None = no cap."""
    supports_json_schema: bool = True
    """Whether the endpoint honours ``response_format`` with a JSON Schema."""
    backoff_initial_s: float = Field(default=0.5, ge=0)
    """Cap of the first retry's wait; doubles with every attempt (full jitter below it)."""
    backoff_max_s: float = Field(default=20.0, ge=0)
    """Longest wait between attempts, ``Retry-After`` included."""


def default_profile(base_url: str | None = None) -> JudgeProfile:
    """The shipped ``default`` profile: the mock judge at ``base_url`` (default: where
    ``tracejury mock-judge`` listens), model ``mock-judge``, no API key."""
    return JudgeProfile(
        name=DEFAULT_PROFILE_NAME,
        base_url=base_url or DEFAULT_JUDGE_BASE_URL,
        model="mock-judge",
    )
