"""Judge spend: prices, the cost of a call, and worst-case bounds for hard caps. Pure.

A profile's :class:`Price` is in US dollars per million tokens, as providers quote it. A call
costs what its *reported* usage says (prompt tokens at the input price, cached prompt tokens
at the cached-input price when one is given, completion tokens at the output price); a call
whose endpoint reported no usage costs ``None`` (unknown), never 0. A verdict served from the
cache made no call: it costs 0, and what it would have cost is counted as *saved*.

A cap must hold before a reply says what a call cost, so a call reserves its worst case
first (:func:`worst_case_cost`) and settles to the reported cost after: its prompt can be at
most one token per UTF-8 byte (byte-level BPE vocabularies never emit more tokens than
bytes) plus a few per message, and its reply at most the ``max_tokens`` the request sends.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "PLAN_SHARE",
    "Price",
    "call_cost",
    "capped_scale",
    "prompt_token_bound",
    "traces_for_cap",
    "worst_case_cost",
]

MESSAGE_OVERHEAD_TOKENS = 8
"""Tokens a chat template adds per message (role markers, separators), at most, in practice."""


class Price(BaseModel):
    """A judge model's price in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_million: float = Field(ge=0)
    """USD per million prompt tokens."""
    output_per_million: float = Field(ge=0)
    """USD per million completion tokens (reasoning tokens included, as providers bill them)."""
    cached_input_per_million: float | None = Field(default=None, ge=0)
    """USD per million prompt tokens the provider served from its prompt cache; None = the
    input price."""


def call_cost(
    price: Price | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cached_prompt_tokens: int | None = None,
) -> float | None:
    """USD a call cost by its reported usage; None when unpriced or nothing was reported.

    ``cached_prompt_tokens`` (a part of ``prompt_tokens``) are billed at the cached-input
    price when the price has one.
    """
    if price is None or (prompt_tokens is None and completion_tokens is None):
        return None
    prompt = prompt_tokens or 0
    cached = min(cached_prompt_tokens or 0, prompt)
    cached_rate = (
        price.input_per_million
        if price.cached_input_per_million is None
        else price.cached_input_per_million
    )
    micro = (
        (prompt - cached) * price.input_per_million
        + cached * cached_rate
        + (completion_tokens or 0) * price.output_per_million
    )
    return micro / 1_000_000


def prompt_token_bound(prompt_bytes: int, messages: int) -> int:
    """Most tokens a prompt of ``prompt_bytes`` UTF-8 bytes in ``messages`` messages can be."""
    return prompt_bytes + MESSAGE_OVERHEAD_TOKENS * messages


def worst_case_cost(price: Price, prompt_bytes: int, messages: int, max_output_tokens: int) -> float:
    """The most a call can cost: its prompt's token bound and a full ``max_output_tokens`` reply."""
    prompt = prompt_token_bound(prompt_bytes, messages)
    return (prompt * price.input_per_million + max_output_tokens * price.output_per_million) / 1_000_000


PLAN_SHARE = 0.9
"""A capped batch plans its expected cost to this share of the cap: the rest absorbs the
spread of the real cost around its estimate, so the cap rarely has to stop a batch."""


def traces_for_cap(max_cost: float, cost_per_trace: float, share: float = PLAN_SHARE) -> float:
    """The expected sample size whose expected judge cost is ``share`` of ``max_cost``
    (infinite when judging costs nothing)."""
    if max_cost <= 0:
        raise ValueError("a cost cap must be positive")
    if cost_per_trace <= 0:
        return float("inf")
    return share * max_cost / cost_per_trace


def capped_scale(traces_run: int, traces_sampled: int) -> float:
    """The factor a batch stopped by its cap multiplies inclusion probabilities by.

    Chunks are a random partition of the sample and run in a random order, and the cap stops
    whole chunks only, so a sampled trace was *run* with probability (traces run ÷ traces
    sampled): its inclusion probability is p × that share, and its weight 1/p ÷ that share.
    (Exact when the stop does not depend on which chunks came first; it depends on them only
    through their cost, a second-order effect — docs/cost.md.)"""
    if traces_sampled <= 0 or not 0 <= traces_run <= traces_sampled:
        raise ValueError("traces run must be between 0 and the traces sampled")
    return traces_run / traces_sampled
