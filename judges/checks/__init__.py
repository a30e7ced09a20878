"""Deterministic checkers (pure). Importing this package registers the shipped checkers."""

from judges.checks import builtin as _builtin  # noqa: F401 - registers the checkers
from judges.checks.base import CHECKERS, CheckerSpec, CheckResult, checker, checker_fingerprint, invalid_result

__all__ = ["CHECKERS", "CheckResult", "CheckerSpec", "checker", "checker_fingerprint", "invalid_result"]
