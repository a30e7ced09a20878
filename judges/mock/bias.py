"""A deliberately erring mock judge: flip some verdicts to the opposite label, silently.

A spec such as ``fail_to_pass=0.3,pass_to_fail=0.1`` (either key optional) makes a lenient
and/or harsh judge: a verdict that would carry the rubric's failing label gets its passing
label with probability ``fail_to_pass``, and a passing one the failing label with probability
``pass_to_fail``. Labels between the two poles (an ordinal scale's middle) stay as they are.

Whether a verdict flips is decided by ``flip_draw``: a hash of (seed, rubric id, the request's
evidence data) mapped to [0, 1) and compared with the rate. The same evidence for the same
rubric always flips the same way — as a judge at temperature 0 would err — on every worker
and every rerun; another seed picks another set of verdicts to flip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from judges.mock.faults import parse_rates

__all__ = ["BIAS_KEYS", "Bias", "flip_draw"]

BIAS_KEYS = ("fail_to_pass", "pass_to_fail")
"""The keys a bias spec may hold."""
_DOMAIN = b"tracejury-mock-bias-v1"  # change it and every flip moves: version the draw


def flip_draw(seed: int, rubric: str, evidence: dict[str, Any] | None) -> float:
    """The flip draw in [0, 1) for one rubric and one evidence object (None: no evidence).

    The evidence is hashed as canonical JSON (sorted keys), so key order does not matter.
    """
    content = orjson.dumps(evidence, option=orjson.OPT_SORT_KEYS)
    key = b"%s:%d:%s\0" % (_DOMAIN, seed, rubric.encode()) + content
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


@dataclass(frozen=True)
class Bias:
    """How often the mock judge turns a failing verdict into a pass and a passing one into a fail."""

    fail_to_pass: float = 0.0
    """Probability that a failing label becomes the passing label (a lenient judge)."""
    pass_to_fail: float = 0.0
    """Probability that a passing label becomes the failing label (a harsh judge)."""

    @classmethod
    def parse(cls, spec: str) -> Bias:
        """Parse ``fail_to_pass=R[,pass_to_fail=R]`` (either key optional; empty = no bias).

        Raises :class:`ConfigError` (field ``--bias``) naming the item and what is wrong.
        """

        rates = parse_rates(spec, BIAS_KEYS, what="bias", noun="key", pattern="KEY=R",
                            expected="fail_to_pass=R,pass_to_fail=R, R in [0, 1]", field="--bias")  # fmt: skip
        return cls(**rates)

    @property
    def active(self) -> bool:
        """Whether any verdict can flip at all."""
        return self.fail_to_pass > 0 or self.pass_to_fail > 0

    def apply(self, label: str, passing: str, failing: str, draw: float) -> str:
        """``label``, or its opposite pole when ``draw`` (from ``flip_draw``) falls under its rate."""
        if label == failing and draw < self.fail_to_pass:
            return passing
        if label == passing and draw < self.pass_to_fail:
            return failing
        return label
