"""Fault injection for the mock judge: a spec of rates, and deterministic draws from it.

A spec such as ``http500=0.2,http429=0.1,hang=0.05,malformed=0.05`` gives each fault kind a
rate; the rates add up to at most 1 and the rest of the requests are answered normally. A
draw hashes (seed, request body digest, how many times the server has seen that body), so a
run is reproducible and a retry of the same request draws afresh — it can succeed.

    http500, http503   an HTTP 500 / 503 error
    http429            an HTTP 429 with ``Retry-After: 1``
    hang               no reply for ``HANG_S`` seconds (past any sane client timeout)
    malformed          content that is not JSON
    schema             JSON that breaks the output schema (no rationale, or wrong types)
    label              a label outside the rubric's labels
    refusal            ``message.refusal`` set and no content
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from tracejury.core.errors import ConfigError

__all__ = ["FAULT_KINDS", "HANG_S", "FaultKind", "FaultPlan", "faulty_reply", "parse_faults"]

FaultKind = Literal[
    "http500", "http503", "http429", "hang", "malformed", "schema", "label", "refusal"
]  # fmt: skip
"""A fault the mock judge can inject."""
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
"""Every fault kind, in the order draws walk them."""
HANG_S = 120.0
"""How long a ``hang`` holds the request before giving up (bounded, so servers stop)."""


def parse_faults(spec: str) -> dict[str, float]:
    """Parse ``KIND=RATE[,KIND=RATE...]`` (empty = no faults) into rates by kind.

    Raises :class:`ConfigError` (field ``--faults``) naming the item and what is wrong.
    """
    rates = parse_rates(spec, FAULT_KINDS, what="fault", noun="fault kind", pattern="KIND=RATE",
                        expected=f"KIND=RATE,...; kinds: {', '.join(FAULT_KINDS)}", field="--faults")  # fmt: skip
    total = sum(rates.values())
    if total > 1.0 + 1e-9:
        raise ConfigError(f"bad fault spec {spec!r}: the rates add up to {total:g}, more than 1", field="--faults")
    return rates


def parse_rates(spec: str, keys: tuple[str, ...], *, what: str, noun: str, pattern: str, expected: str,
                field: str) -> dict[str, float]:  # fmt: skip
    """``KEY=RATE[,KEY=RATE...]`` (empty: none) as rates by key, each in [0, 1] and known;
    a bad item is a ``ConfigError`` on ``field`` naming it (``--faults`` and ``--bias``)."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"bad {what} spec {spec!r}: {why} (expected {expected})", field=field)

    rates: dict[str, float] = {}
    if not spec.strip():
        return rates
    for item in spec.split(","):
        key, sep, rate_text = (p.strip() for p in item.partition("="))
        if not sep or not key or not rate_text:
            raise bad(f"item {item.strip()!r} is not {pattern}")
        if key not in keys:
            raise bad(f"unknown {noun} {key!r}")
        if key in rates:
            raise bad(f"{noun} {key!r} given twice")
        try:
            rate = float(rate_text)
        except ValueError:
            raise bad(f"rate {rate_text!r} of {key} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise bad(f"rate {rate_text} of {key} is not in [0, 1]")
        rates[key] = rate
    return rates


@dataclass(frozen=True)
class FaultPlan:
    """Fault rates and the seed their draws are made from."""

    rates: Mapping[str, float] = field(default_factory=dict)
    """Rate of each fault kind (kinds absent never happen)."""
    seed: int = 0
    """Seed of the draws: the same seed and requests give the same faults."""

    @property
    def active(self) -> bool:
        """Whether any fault can happen at all."""
        return any(rate > 0 for rate in self.rates.values())

    def draw(self, body_digest: bytes, seen: int) -> str | None:
        """The fault for a request body seen ``seen`` times before, or None (answer it)."""
        if not self.active:
            return None
        key = b"%d:%d:" % (self.seed, seen) + body_digest
        u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64
        for kind in FAULT_KINDS:
            u -= self.rates.get(kind, 0.0)
            if u < 0:
                return kind
        return None


def faulty_reply(
    kind: str, reply: Mapping[str, Any], labels: tuple[str, ...], variant: int
) -> dict[str, Any]:
    """The reply object a ``schema`` or ``label`` fault sends instead of ``reply``.

    ``schema``: without ``rationale`` (even ``variant``) or with a label and rationale of the
    wrong types (odd). ``label``: a label that none of ``labels`` is.
    """
    if kind == "schema":
        if variant % 2 == 0:
            return {k: v for k, v in reply.items() if k != "rationale"}
        return {**reply, "label": [reply.get("label")], "rationale": 42}
    if kind == "label":
        odd = "not_a_label"
        while odd in labels:
            odd += "_"
        return {**reply, "label": odd}
    raise ValueError(f"{kind!r} is not a fault of the reply object")
