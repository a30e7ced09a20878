"""The checker protocol and registry.

A checker is a pure function of a trace's evidence (and its parameters from the rubric) that
returns a ``CheckResult``. Checkers register by name with ``@checker(name, version)``; every
evaluation records the name, version and a fingerprint of the parameters used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from judges.evidence import Evidence

__all__ = ["CHECKERS", "CheckResult", "CheckerSpec", "checker", "checker_fingerprint", "invalid_result"]

CheckStatus = Literal["scored", "not_applicable", "missing_evidence"]
CHECK_STATUSES: frozenset[str] = frozenset(CheckStatus.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CheckResult:
    """What a checker found: a verdict, or why it has none."""

    status: CheckStatus
    passed: bool | None = None
    rationale: str = ""

    @classmethod
    def ok(cls, why: str = "") -> CheckResult:
        """Passed."""
        return cls("scored", True, why)

    @classmethod
    def fail(cls, why: str) -> CheckResult:
        """Failed, with the reason."""
        return cls("scored", False, why)

    @classmethod
    def skip(cls, why: str) -> CheckResult:
        """Does not apply to this trace."""
        return cls("not_applicable", None, why)

    @classmethod
    def missing(cls, what: str) -> CheckResult:
        """Applies, but the trace lacks the evidence it needs."""
        return cls("missing_evidence", None, f"missing evidence: {what}")


def invalid_result(result: object) -> str | None:
    """Why ``result`` is not a valid ``CheckResult`` (one line), or None if it is one: a
    checker's bug is recorded as a ``checker_error``, never read as a verdict."""
    if not isinstance(result, CheckResult):
        return f"invalid result: {type(result).__name__}, not CheckResult"
    if result.status not in CHECK_STATUSES:
        return f"invalid result: status {result.status!r}"
    if result.status == "scored" and not isinstance(result.passed, bool):
        return f"invalid result: scored with passed={result.passed!r} (True or False expected)"
    return None


CheckFn = Callable[[Evidence, Mapping[str, Any]], CheckResult]


@dataclass(frozen=True)
class CheckerSpec:
    """A registered checker."""

    name: str
    version: str
    fn: CheckFn
    params: frozenset[str]
    """Parameter names it accepts (anything else is a lint error)."""
    description: str


CHECKERS: dict[str, CheckerSpec] = {}
"""Every registered checker by name."""


def checker(name: str, version: str, params: tuple[str, ...] = ()) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as checker ``name`` at ``version``, accepting ``params``."""

    def register(fn: CheckFn) -> CheckFn:
        if name in CHECKERS:
            raise ValueError(f"checker {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        CHECKERS[name] = CheckerSpec(name, version, fn, frozenset(params), doc[0] if doc else "")
        return fn

    return register


def checker_fingerprint(spec: CheckerSpec, params: Mapping[str, Any]) -> str:
    """Fingerprint of a checker at its version with these parameters."""
    canonical = orjson.dumps(
        {"checker": spec.name, "version": spec.version, "params": dict(params)},
        option=orjson.OPT_SORT_KEYS,
    )
    return "sha256:" + hashlib.sha256(canonical).hexdigest()
