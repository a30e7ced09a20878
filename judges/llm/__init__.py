"""OpenAI-compatible LLM judges: requests, profiles, retry decisions, parsing, the client.

Everything a caller needs is re-exported here; the submodules hold one concept each. The
client and its transport (aiohttp, httpx, tenacity) load on first use of their names, so what
only reads profiles (``batch create``, the catalog) does not import them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from judges.llm.concurrency import (
    OVERLOAD_STATUSES,
    AdaptiveLimit,
    AdaptiveSettings,
    AdaptiveSlots,
    Concurrency,
    Signal,
    signal_for,
)
from judges.llm.dialect import (
    FORMATS,
    LADDERS,
    FormatMemory,
    FormatRefusal,
    WireFormat,
    chat_body,
    is_format_refusal,
    json_instruction,
    with_json_instruction,
)
from judges.llm.limiter import BURST_S, Limiter, RateLimiter, TokenBucket, estimate_tokens
from judges.llm.parse import ParsedReply, ReplyProblem, billed_tokens, parse_completion, reply_validator
from judges.llm.profiles import (
    DEFAULT_JUDGE_BASE_URL,
    DEFAULT_PROFILE_NAME,
    JudgeProfile,
    StructuredOutput,
    default_profile,
)
from judges.llm.retry import (
    RetryDecision,
    decision_for_status,
    is_retryable_status,
    next_wait,
    parse_retry_after,
)
from judges.llm.types import JudgeFailure, JudgeOutcome, JudgeRequest, JudgeVerdict, one_line

if TYPE_CHECKING:
    from judges.llm.client import JudgeClient
    from judges.llm.transport import (
        TRANSPORTS,
        HttpxPoster,
        JudgeHTTP,
        Poster,
        Reply,
        TransportError,
        TransportName,
        TransportTimeout,
        make_http_client,
        poster_for,
    )

_LAZY = {"JudgeClient": "judges.llm.client"} | {
    name: "judges.llm.transport"
    for name in ("TRANSPORTS", "HttpxPoster", "JudgeHTTP", "Poster", "Reply", "TransportError", "TransportName",
                 "TransportTimeout", "make_http_client", "poster_for")
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """The client's and the transport's names, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value

__all__ = [
    "BURST_S",
    "DEFAULT_JUDGE_BASE_URL",
    "DEFAULT_PROFILE_NAME",
    "FORMATS",
    "LADDERS",
    "OVERLOAD_STATUSES",
    "TRANSPORTS",
    "AdaptiveLimit",
    "AdaptiveSettings",
    "AdaptiveSlots",
    "Concurrency",
    "FormatMemory",
    "FormatRefusal",
    "HttpxPoster",
    "JudgeClient",
    "JudgeFailure",
    "JudgeHTTP",
    "JudgeOutcome",
    "JudgeProfile",
    "JudgeRequest",
    "JudgeVerdict",
    "Limiter",
    "ParsedReply",
    "Poster",
    "RateLimiter",
    "Reply",
    "ReplyProblem",
    "RetryDecision",
    "Signal",
    "StructuredOutput",
    "TokenBucket",
    "TransportError",
    "TransportName",
    "TransportTimeout",
    "WireFormat",
    "billed_tokens",
    "chat_body",
    "decision_for_status",
    "default_profile",
    "estimate_tokens",
    "is_format_refusal",
    "is_retryable_status",
    "json_instruction",
    "make_http_client",
    "next_wait",
    "one_line",
    "parse_completion",
    "parse_retry_after",
    "poster_for",
    "reply_validator",
    "signal_for",
    "with_json_instruction",
]
