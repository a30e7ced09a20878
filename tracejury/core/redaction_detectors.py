"""The text detectors of redaction (``tracejury.core.redaction``): regexes with checks.

Each finder takes a text and its numeric runs (``numeric_runs``: digits with separators, one
scan shared by the card, IPv4 and phone finders) and returns ``Finding`` tuples; overlaps are
resolved by the caller. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

import phonenumbers

__all__ = [
    "NUMERIC_DETECTORS",
    "Finding",
    "Runs",
    "custom_finder",
    "find_card",
    "find_email",
    "find_iban",
    "find_ip",
    "find_secret",
    "iban_ok",
    "luhn_ok",
    "numeric_runs",
    "phone_finder",
]

# ---------------------------------------------------------------------------------- checks


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn check (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """Whether a compact upper-case IBAN passes ISO 13616's mod-97 check."""
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# ------------------------------------------------------------------------------- detectors

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}(?![\w-])"
)
_NUMERIC = re.compile(r"\d[\d ().\-/]{5,}\d")
"""Runs of digits and separators: card, IPv4 and phone candidates lie in one (one scan for three)."""
_CARD = re.compile(r"\d(?<![\w-]\d)(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")
_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
_PHONE = re.compile(r"(?:(?<![\w+.-])(?:\+|00)|(?<![\w+.-]))\(?\d[\d ().\-/]{5,20}\d(?!\w)")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_SECRET_HINTS = ("PRIVATE KEY", "sk-", "AKIA", "ASIA", "ABIA", "ACCA", "hp_", "ho_", "hu_", "hs_", "hr_",
                 "github_pat_", "xox", "hooks.slack", "AIza")  # fmt: skip
_SECRET_HINTS_CI = ("bearer", "aws_secret")
_SECRET = re.compile(
    "|".join((
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
        r"\bsk-ant-[A-Za-z0-9_-]{20,}",  # Anthropic
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",  # OpenAI
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key id
        r"(?i:aws_secret_access_key|aws_secret_key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
        r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{22,255}",
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack tokens
        r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
        r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",  # Google API key
        r"(?i:\bbearer)\s+[A-Za-z0-9._~+/=-]{16,}",
    ))
)  # fmt: skip
Finding = tuple[int, int, str, str, str]
"""(start, end, detector, label, normalized value)."""
Runs = list[tuple[int, int, int, int]]
"""Numeric runs: (start, end, digits, dots)."""
_V6_HINT = re.compile(r"[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:")


def numeric_runs(text: str) -> Runs:
    """The runs of digits and separators in ``text``, with their digit and dot counts."""
    out = []
    for m in _NUMERIC.finditer(text):
        run = m.group()
        seps = run.count(" ") + run.count("-") + run.count("(") + run.count(")") + run.count("/")
        dots = run.count(".")
        out.append((m.start(), m.end(), len(run) - seps - dots, dots))
    return out


def _windows(pattern: re.Pattern[str], text: str, runs: Runs, before: int = 0, *, digits: int = 0,
             dots: int = 0) -> list[re.Match[str]]:  # fmt: skip
    """Matches of ``pattern`` inside the numeric runs with at least ``digits`` digits and
    ``dots`` dots (a character of context either side)."""
    out: list[re.Match[str]] = []
    for s, e, n, d in runs:
        if n >= digits and d >= dots:
            out += pattern.finditer(text, max(0, s - before), min(len(text), e + 1))
    return out


def find_email(text: str, runs: Runs) -> list[Finding]:
    """E-mail addresses."""
    if "@" not in text:
        return []
    return [(m.start(), m.end(), "email", "EMAIL", m.group().lower()) for m in _EMAIL.finditer(text)]


def find_card(text: str, runs: Runs) -> list[Finding]:
    """Payment card numbers: 13–19 digits passing Luhn."""
    out = []
    for m in _windows(_CARD, text, runs, digits=13):
        digits = m.group().replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            out.append((m.start(), m.end(), "card", "CARD", digits))
    return out


def find_iban(text: str, runs: Runs) -> list[Finding]:
    """IBANs passing mod-97."""
    out = []
    for m in _IBAN.finditer(text):
        compact = m.group().replace(" ", "")
        if iban_ok(compact):
            out.append((m.start(), m.end(), "iban", "IBAN", compact))
    return out


def find_ip(text: str, runs: Runs) -> list[Finding]:
    """IPv4 and IPv6 addresses."""
    out = []
    for m in _windows(_IPV4, text, runs, digits=4, dots=3):
        if all(int(octet) <= 255 for octet in m.group().split(".")):
            out.append((m.start(), m.end(), "ip", "IP", m.group()))
    if "::" in text or (text.count(":") >= 5 and _V6_HINT.search(text)):
        for m in _IPV6.finditer(text):
            if max(map(len, m.group().split(":"))) < 3:  # a::b, 12:30:45 are no addresses worth the risk
                continue
            try:
                addr = ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            out.append((m.start(), m.end(), "ip", "IP", addr.compressed))
    return out


def find_secret(text: str, runs: Runs) -> list[Finding]:
    """Provider API keys, bearer tokens, PEM private keys."""
    if not any(h in text for h in _SECRET_HINTS):
        lower = text.lower()
        if not any(h in lower for h in _SECRET_HINTS_CI):
            return []
    return [(m.start(), m.end(), "secret", "SECRET", m.group()) for m in _SECRET.finditer(text)]


def phone_finder(region: str | None) -> Callable[[str, Runs], list[Finding]]:
    """Phone numbers valid for libphonenumber; national numbers are read as ``region``'s."""
    def find(text: str, runs: Runs) -> list[Finding]:
        out = []
        for m in _windows(_PHONE, text, runs, before=3, digits=7):
            cand = m.group().rstrip("( .-/").lstrip(" .-/")
            if cand.startswith("(") and ")" not in cand:
                cand = cand[1:]
            digits = sum(c.isdigit() for c in cand)
            if not 7 <= digits <= 15 or _DATE.fullmatch(cand):
                continue
            try:
                num = phonenumbers.parse(cand, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(num) and phonenumbers.is_valid_number(num):
                e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
                start = m.start() + m.group().index(cand)
                out.append((start, start + len(cand), "phone", "PHONE", e164))
        return out

    return find


def custom_finder(name: str, pattern: re.Pattern[str]) -> Callable[[str, Runs], list[Finding]]:
    """A finder for a policy's own regex: every non-empty match, labelled ``NAME``."""
    label = name.upper()
    return lambda text, runs: [(m.start(), m.end(), name, label, m.group()) for m in pattern.finditer(text)
                               if m.end() > m.start()]  # fmt: skip


NUMERIC_DETECTORS = {"card", "ip", "phone"}
