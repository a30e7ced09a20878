"""Redaction at ingest: a versioned policy that removes personal data and secrets from a trace
before anything is stored or sent to a judge.

A policy (YAML, ``defaults/redaction.yaml`` shipped) names built-in detectors, custom regexes
and per-field rules by JSON path. Text detectors replace what they find with a numbered
placeholder (``[EMAIL_1]``): the same value gets the same placeholder within one trace, so the
text stays judgeable ("reply to [EMAIL_1]" still reads as an e-mail reply). Field rules
``redact`` (the whole value → ``[REDACTED]``), ``hash`` (keyed HMAC-SHA256, hex) or ``drop``.
``keep`` paths (ids, hashes, config) are never scanned. The stored trace carries
``tracejuryRedaction: {policy, counts}``.

Detectors are hand-written regexes with checks, not Presidio: ``presidio-analyzer`` builds a
spaCy NLP engine by default (a downloaded model) and pulls spaCy in even for its regex
recognizers; its card, IBAN and IP recognizers are the same regex-plus-checksum idea as here.
Phone candidates are confirmed by ``phonenumbers`` (Google's libphonenumber metadata), which
tells a phone number from a date or an order id; its own ``PhoneNumberMatcher`` scans text
several times slower, so a cheap regex finds candidates first.

    card    digits 13–19 (spaces/dashes), Luhn-checked       iban  mod-97 checked
    phone   candidate regex, phonenumbers.is_valid_number    ip    IPv4; IPv6 via ipaddress
    email   RFC-ish local@domain.tld                          secret provider key formats,
                                                                     bearer tokens, PEM keys

Speed: most traces hold nothing to redact, so all strings of a trace are scanned joined, once
per detector, and the trace is walked exactly (``keep`` paths, field rules, placeholders) only
when something was found or the policy has field rules (bench/ingest.py ``--prepare``).
A quarantined line is not a valid trace, so its "ids" may hold anything: it is scanned whole,
``keep`` paths included. Dict keys are not scanned.

OTLP spans are staged before their trace is whole (``otlp_assembly``), so they are redacted at
staging, before they are stored, with placeholders keyed by value (``[EMAIL_#<16 hex>]``, an
HMAC of the trace id and the value under ``TRACEJURY_REDACTION_HMAC_KEY``, else under a key of
the receiving process): fragments of one trace staged apart agree on a value without holding
it. The sweeper renumbers them (``Renumbering``) into ``[EMAIL_1]`` before the trace is mapped,
so the hashes the mapping computes do not depend on the key.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tracejury.core.errors import ConfigError
from tracejury.core.redaction_detectors import (
    NUMERIC_DETECTORS,
    Finding,
    Runs,
    custom_finder,
    find_card,
    find_email,
    find_iban,
    find_ip,
    find_secret,
    iban_ok,
    luhn_ok,
    numeric_runs,
    phone_finder,
)
from tracejury.core.yamlconf import load_model

__all__ = [
    "META_KEY",
    "BUILTIN_DETECTORS",
    "RedactionPolicy",
    "Redactor",
    "Renumbering",
    "collect_strings",
    "STAGED_TOKEN",
    "default_policy",
    "load_policy",
    "luhn_ok",
    "iban_ok",
]

META_KEY = "tracejuryRedaction"
"""Top-level key of a stored trace holding ``{"policy": version, "counts": {detector: n}}``."""

DetectorName = Literal["email", "phone", "card", "iban", "ip", "secret"]
BUILTIN_DETECTORS: tuple[str, ...] = ("secret", "email", "iban", "card", "ip", "phone")
"""Built-in detectors in priority order: where two findings overlap, the earlier one wins."""


class CustomDetector(BaseModel):
    """A regex of the policy's own; every match is replaced (no check)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    """Name in counts; upper-cased it is the placeholder's label (``order_id`` → ``[ORDER_ID_1]``)."""
    pattern: str
    """A Python regex; the whole match is replaced."""


class FieldRule(BaseModel):
    """What to do with the value at a JSON path (``$.sample.toolSnapshots[*].snapshot.email``)."""

    model_config = ConfigDict(extra="forbid")
    path: str
    """``$``-rooted dotted path; ``*`` is any key, ``[*]`` any array element, ``[2]`` one."""
    action: Literal["redact", "hash", "drop"]
    """``redact``: value → ``[REDACTED]``; ``hash``: keyed HMAC-SHA256; ``drop``: removed."""


class RedactionPolicy(BaseModel):
    """A redaction policy file."""

    model_config = ConfigDict(extra="forbid")
    version: str
    """Stored with every trace it redacted; bump it when the policy changes."""
    detectors: list[DetectorName] = Field(default_factory=lambda: list(BUILTIN_DETECTORS))
    """Built-in text detectors to run over every free-text value."""
    phone_region: str | None = "US"
    """Region for phone numbers written without ``+``/``00`` country code; null: only international."""
    custom: list[CustomDetector] = Field(default_factory=list)
    """Regexes of your own (order ids, employee numbers…), run before the built-ins."""
    fields: list[FieldRule] = Field(default_factory=list)
    """Per-field rules; a field with a rule is not scanned by the detectors."""
    keep: list[str] = Field(default_factory=list)
    """Paths never scanned (ids, hashes, config): everything under them stays as sent."""


_PROTECTED_TOP = {"schemaVersion", "traceId", "releaseId", "timestamp", "config", "evidence", "runtime", "outputs"}
_PROTECTED_REQ = {"inputTextHash", "sessionIdHash", "channel", "locale", "sessionTurn", "intent", "toolRequired"}


# ----------------------------------------------------------------------------------- paths

_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\*|\d+)\]")


def _path_tokens(path: str) -> list[str | int]:
    """``$.a[*].b`` → ``["a", "[*]", "b"]``; an index is an int."""
    if not path.startswith("$"):
        raise ValueError(f"path {path!r} must start with $")
    tokens: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None:
            raise ValueError(f"path {path!r}: cannot read {path[pos:]!r}")
        key, index = m.groups()
        tokens.append(key if key is not None else ("[*]" if index == "*" else int(index)))
        pos = m.end()
    return tokens


@dataclass
class _Node:
    """A trie of path rules: children by key or index, wildcards, the action ending here."""

    children: dict[str | int, _Node] = field(default_factory=dict)
    action: str | None = None

    def step(self, key: str | int) -> list[_Node]:
        """The nodes a child at ``key`` is under (exact and wildcard)."""
        if not self.children:
            return []
        out = []
        if (c := self.children.get(key)) is not None:
            out.append(c)
        if (c := self.children.get("*" if isinstance(key, str) else "[*]")) is not None:
            out.append(c)
        return out


def _step(nodes: list[_Node], key: str | int) -> list[_Node]:
    return nodes[0].step(key) if len(nodes) == 1 else [c for n in nodes for c in n.step(key)]


_ACTION_RANK = {"drop": 0, "hash": 1, "redact": 2, "keep": 3}


# ---------------------------------------------------------------------------------- redactor


STAGED_TOKEN = re.compile(r"\[([A-Z][A-Z0-9_]*)_#([0-9a-f]{16})\]")
"""A placeholder put in at OTLP staging: the detector's label and a keyed digest of the value."""
_STAGED_TOKEN_BYTES = re.compile(STAGED_TOKEN.pattern.encode())
_PROCESS_KEY = secrets.token_bytes(32)
"""Staging's key when no HMAC key is set: the same value gets the same placeholder within the
receiving process (fragments of one trace staged by two processes then number it twice)."""


class _TraceState:
    """Placeholders and counts of one trace."""

    __slots__ = ("counts", "numbers", "seen")

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}
        self.numbers: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def placeholder(self, detector: str, label: str, value: str) -> str:
        self.counts[detector] = self.counts.get(detector, 0) + 1
        key = (label, value)
        if (p := self.seen.get(key)) is None:
            n = self.numbers[label] = self.numbers.get(label, 0) + 1
            p = self.seen[key] = f"[{label}_{n}]"
        return p

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class _StagingState(_TraceState):
    """Placeholders of a staged fragment: keyed by value, not numbered, so the fragments of one
    trace staged apart agree."""

    __slots__ = ("key", "scope")

    def __init__(self, key: bytes, scope: str) -> None:
        super().__init__()
        self.key, self.scope = key, scope

    def placeholder(self, detector: str, label: str, value: str) -> str:
        self.counts[detector] = self.counts.get(detector, 0) + 1
        digest = hmac.new(self.key, f"{self.scope}\x00{label}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"[{label}_#{digest[:16]}]"


class Renumbering:
    """Staged placeholders of one trace (``[EMAIL_#…]``) into numbered ones (``[EMAIL_1]``), in
    the order they are first met; counts every one met, by detector (its label, lower-cased)."""

    __slots__ = ("counts", "_numbers", "_seen")

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}
        self._numbers: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def _one(self, m: re.Match[str]) -> str:
        label = m.group(1)
        detector = label.lower()
        self.counts[detector] = self.counts.get(detector, 0) + 1
        if (p := self._seen.get(m.group())) is None:
            n = self._numbers[label] = self._numbers.get(label, 0) + 1
            p = self._seen[m.group()] = f"[{label}_{n}]"
        return p

    def text(self, text: str) -> str:
        """``text`` with its staged placeholders numbered."""
        return STAGED_TOKEN.sub(self._one, text) if "_#" in text else text

    def raw(self, raw: bytes) -> bytes:
        """The same over bytes (a placeholder holds no character JSON escapes)."""
        if b"_#" not in raw:
            return raw
        return _STAGED_TOKEN_BYTES.sub(lambda m: self._one(STAGED_TOKEN.fullmatch(m.group().decode())).encode(), raw)


_DROP = object()


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _text(value: str, out: list[str]) -> None:
    # a sha256 hash (most of a trace's strings) is not worth scanning: it cannot be personal data
    if len(value) != 71 or not value.startswith("sha256:") or _HEX64.fullmatch(value, 7) is None:
        out.append(value)


def collect_strings(value: Any, out: list[str]) -> None:
    """Append every string in ``value`` that a detector could match (and large integers, as
    text) to ``out``: what ``Redactor.finds_any`` takes."""
    _strings(value, out)


def _strings(value: Any, out: list[str]) -> None:
    """Append every string in ``value`` (and large integers, as text) to ``out``."""
    t = type(value)
    if t is str:
        _text(value, out)
    elif t is dict:
        for v in value.values():
            if type(v) is str:
                _text(v, out)
            else:
                _strings(v, out)
    elif t is list:
        for v in value:
            if type(v) is str:
                _text(v, out)
            else:
                _strings(v, out)
    elif t is int and not -1_000_000 < value < 1_000_000:
        out.append(str(value))


class Redactor:
    """A compiled policy: ``redact_trace`` for validated traces, ``redact_raw`` for quarantine."""

    def __init__(self, policy: RedactionPolicy | None, *, hmac_key: str | None = None, file: str = "<policy>") -> None:
        self.policy = policy
        self._args = (policy, hmac_key, file)
        self.version = policy.version if policy else None
        self._key = hmac_key.encode() if hmac_key else None
        self._prior: Mapping[str, int] = {}
        self._finders: list[tuple[str, Callable[[str, Runs], list[Finding]]]] = []
        self._root = _Node()
        self._raw_root = _Node()
        self._numeric = self._has_field_rules = False
        if policy is None:
            return
        for d in policy.custom:
            try:
                pattern = re.compile(d.pattern)
            except re.error as exc:
                raise ConfigError(f"custom detector {d.name!r}: invalid regex: {exc}", file=file) from exc
            self._finders.append((d.name, custom_finder(d.name, pattern)))
        builtin = {"email": find_email, "card": find_card, "iban": find_iban, "ip": find_ip, "secret": find_secret,
                   "phone": phone_finder(policy.phone_region)}  # fmt: skip
        self._finders += [(name, builtin[name]) for name in BUILTIN_DETECTORS if name in policy.detectors]
        self._has_field_rules = bool(policy.fields)
        self._numeric = any(name in NUMERIC_DETECTORS for name, _ in self._finders)
        rules = [(p, "keep") for p in policy.keep] + [(r.path, r.action) for r in policy.fields]
        for path, action in rules:
            try:
                tokens = _path_tokens(path)
            except ValueError as exc:
                raise ConfigError(str(exc), file=file, field="fields" if action != "keep" else "keep") from exc
            if action != "keep":
                self._check_rule(path, tokens, action, file)
            # a quarantined line is not a valid trace: its "ids" may hold anything, so it is
            # walked without the keep paths
            for root in (self._root,) if action == "keep" else (self._root, self._raw_root):
                node = root
                for t in tokens:
                    node = node.children.setdefault(t, _Node())
                if node.action is None or _ACTION_RANK[action] < _ACTION_RANK[node.action]:
                    node.action = action

    def _check_rule(self, path: str, tokens: list[str | int], action: str, file: str) -> None:
        if not tokens or tokens[0] in _PROTECTED_TOP or tokens[0] == "*" or (
            tokens[0] == "req" and (len(tokens) == 1 or tokens[1] in _PROTECTED_REQ or tokens[1] == "*")
        ):  # fmt: skip
            raise ConfigError(f"field rule {path!r}: ids, hashes, config and the trace's facts cannot be "
                              "redacted (only $.sample, $.feedback, $.req's extra fields and fields "
                              "outside the schema)", file=file, field="fields")  # fmt: skip
        if action == "hash" and self._key is None:
            raise ConfigError(f"field rule {path!r} hashes, but no key is set (TRACEJURY_REDACTION_HMAC_KEY)",
                              file=file, field="fields")  # fmt: skip

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its policy (ingest's worker processes compile it again)."""
        policy, key, file = self._args
        return (_rebuild, (policy, key, file))

    @classmethod
    def off(cls) -> Redactor:
        """No redaction at all (benchmarks, tests of the rest of ingest)."""
        return cls(None)

    @property
    def enabled(self) -> bool:
        """Whether this redactor changes anything."""
        return self.policy is not None

    # -- text

    def redact_text(self, text: str, state: _TraceState | None = None) -> str:
        """Text with every detector's findings replaced by placeholders."""
        if state is None:
            state = _TraceState()
        if len(text) < 6:
            return text
        runs = numeric_runs(text) if self._numeric else []
        found: list[Finding] = []
        for name, find in self._finders:
            if not runs and name in NUMERIC_DETECTORS and (name != "ip" or ":" not in text):
                continue
            found += find(text, runs)
        if not found:
            return text
        taken: list[Finding] = []
        for f in found:  # in priority order: keep a finding that overlaps none kept before it
            if all(f[1] <= t[0] or f[0] >= t[1] for t in taken):
                taken.append(f)
        taken.sort()
        parts, pos = [], 0
        for start, end, detector, label, value in taken:
            parts += [text[pos:start], state.placeholder(detector, label, value)]
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def _hash(self, value: Any) -> str:
        data = value.encode() if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        assert self._key is not None
        return "hmac-sha256:" + hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def _walk(self, value: Any, nodes: list[_Node], state: _TraceState) -> Any:
        action = None
        for n in nodes:
            if n.action is not None and (action is None or _ACTION_RANK[n.action] < _ACTION_RANK[action]):
                action = n.action
        if action == "keep":
            return value
        if action is not None:
            state.count(f"field_{action}")
            return _DROP if action == "drop" else "[REDACTED]" if action == "redact" else self._hash(value)
        if isinstance(value, str):
            return self.redact_text(value, state)
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                r = self._walk(v, _step(nodes, k), state)
                if r is not _DROP:
                    out[k] = r
            return out
        if isinstance(value, list):
            out_list = []
            for i, v in enumerate(value):
                r = self._walk(v, _step(nodes, i), state)
                if r is not _DROP:
                    out_list.append(r)
            return out_list
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1_000_000:
            text = str(value)  # a card or phone number sent as a JSON number
            redacted = self.redact_text(text, state)
            return value if redacted == text else redacted
        return value

    def _collect(self, doc: dict[str, Any]) -> list[str]:
        """The text the detectors would scan, and more: only top-level ``keep`` paths are
        left out (a finding in a kept field only costs the exact walk)."""
        out: list[str] = []
        kept = self._root.children
        for k, v in doc.items():
            node = kept.get(k)
            if node is None or node.action != "keep":
                _strings(v, out)
        return out

    def finds_any(self, texts: list[str]) -> bool:
        """Whether any detector finds anything in ``texts`` (``collect_strings``)."""
        return self.policy is not None and self._any_finding(texts)

    def _any_finding(self, texts: list[str]) -> bool:
        """Whether any detector finds anything in ``texts`` (one pass over them all, joined
        by NUL, which no detector matches across)."""
        joined = "\x00".join(t for t in texts if len(t) >= 6)
        if not joined:
            return False
        runs = numeric_runs(joined) if self._numeric else []
        for name, find in self._finders:
            if not runs and name in NUMERIC_DETECTORS and (name != "ip" or ":" not in joined):
                continue
            if any("\x00" not in joined[f[0] : f[1]] for f in find(joined, runs)):
                return True
        return False

    # -- OTLP staging

    def staging(self, trace_id: str) -> _StagingState | None:
        """The placeholders of one staged OTLP fragment of ``trace_id`` (``stage_value``);
        None when this redactor changes nothing."""
        if self.policy is None:
            return None
        return _StagingState(self._key or _PROCESS_KEY, trace_id)

    def stage_value(self, value: Any, state: _StagingState) -> Any:
        """An attribute value (text, number, list, map) with every detector's findings
        replaced by keyed placeholders (field rules and ``keep`` paths name places in a v1
        trace: they apply when the trace is assembled)."""
        if isinstance(value, str):
            return self.redact_text(value, state)
        return self._walk(value, [], state)

    def after_staging(self, counts: Mapping[str, int]) -> Redactor:
        """This redactor, adding ``counts`` (what staging redacted, ``Renumbering.counts``) to
        the counts it stores with the trace."""
        twin = copy.copy(self)
        twin._prior = counts
        return twin

    # -- traces

    def redact_trace(self, doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """The trace with the policy applied and ``tracejuryRedaction`` set; the counts per
        detector (and ``field_redact`` / ``field_hash`` / ``field_drop``)."""
        if self.policy is None:
            return doc, {}
        state = _TraceState()
        for name, n in self._prior.items():
            state.counts[name] = n
        body = {k: v for k, v in doc.items() if k != META_KEY}
        if not self._has_field_rules and not self._any_finding(self._collect(body)):
            body[META_KEY] = {"policy": self.version, "counts": dict(sorted(state.counts.items()))}
            return body, state.counts
        out = self._walk(body, [self._root], state)
        out[META_KEY] = {"policy": self.version, "counts": dict(sorted(state.counts.items()))}
        return out, state.counts

    def redact_raw(self, raw: bytes) -> bytes:
        """A quarantined line after redaction: JSON is redacted value by value (keys and
        shape kept, every value scanned: ``keep`` is for validated traces), anything else as text."""
        if self.policy is None:
            return raw
        raw = Renumbering().raw(raw)  # staged OTLP spans that never made a trace
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw.decode("utf-8", "surrogateescape")
            return self.redact_text(text).encode("utf-8", "surrogateescape")
        state = _TraceState()
        out = self._walk(doc, [self._raw_root], state)
        return orjson.dumps(None if out is _DROP else out)


def _rebuild(policy: RedactionPolicy | None, hmac_key: str | None, file: str) -> Redactor:
    return Redactor(policy, hmac_key=hmac_key, file=file)


def load_policy(path: str | Path | None, *, hmac_key: str | None = None) -> Redactor:
    """The redactor of a policy file (``None``: the shipped default); parsed once per version
    of the file and key."""
    if path is None:
        return default_policy(hmac_key=hmac_key)
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"redaction policy not found: {exc}", file=str(path)) from exc
    return _load_file(str(p), mtime, hmac_key)


@functools.lru_cache(maxsize=8)
def _load_file(path: str, mtime: int, hmac_key: str | None) -> Redactor:
    text = Path(path).read_text()
    return Redactor(load_model(RedactionPolicy, text, file=path), hmac_key=hmac_key, file=path)


@functools.lru_cache(maxsize=4)
def default_policy(*, hmac_key: str | None = None) -> Redactor:
    """The shipped default policy (``defaults/redaction.yaml`` in this package)."""
    name = "tracejury/core/defaults/redaction.yaml"
    text = resources.files("tracejury.core").joinpath("defaults/redaction.yaml").read_text()
    return Redactor(load_model(RedactionPolicy, text, file=name), hmac_key=hmac_key, file=name)
