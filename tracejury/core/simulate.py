"""Simulated production traffic: realistic v1 traces of a customer-support agent.

The agent answers four kinds of requests: ``order_status`` (calls the ``order_status`` tool,
sometimes also retrieves the shipping policy), ``shipping_policy`` / ``returns`` / ``account``
(RAG over a small help centre) and ``smalltalk``. Sessions run over several turns; longer
sessions truncate their context more often. Latencies are lognormal per stage, tools time out or
fail now and then, guardrails rewrite or block a few answers, users leave feedback.

Everything is drawn from ``random.Random(f"{release}/{seed}")``: the same arguments give the
same traces, byte for byte. Planted :class:`Regression` s use their own random stream, so the
traces they do not touch are identical to a run without them, and nothing in a trace says it
was regressed. The module is pure: no I/O, no clock, constant memory whatever ``n`` is.

Hashes are ``sha256:<hex>`` of the text they name; ``argsHash`` and ``responseHash`` hash the
canonical JSON (sorted keys, no spaces) of the tool arguments and of the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from json.encoder import encode_basestring_ascii as _enc
from typing import Any

from tracejury.core.errors import ConfigError
from tracejury.core.segments import default_segmentation, key_matches, segment_key
from tracejury.core.simulate_texts import (
    _ADVERSARIAL,
    _CARRIERS,
    _CHANNELS,
    _DOCS,
    _FORMAT_ERRORS,
    _HANDOFF,
    _HELP,
    _INTENT_MIX,
    _LEADS,
    _LOCALES,
    _NAMES,
    _NOT_SURE,
    _NOTHING_FOUND,
    _ORDER_ANSWERS,
    _ORDER_QUESTIONS,
    _ORDER_STATES,
    _OTHER_DOCS,
    _POLICY_SENTENCE,
    _REFUSAL,
    _SMALLTALK,
    _STATE_NAMES,
    _TOOL_DOWN,
)

__all__ = ["REGRESSION_KINDS", "Regression", "parse_regression", "simulate"]

REGRESSION_KINDS: tuple[str, ...] = (
    "format_invalid",
    "tool_skipped",
    "answer_contradicts_tool",
    "truncation",
)
"""The regressions :func:`simulate` can plant."""

_WINDOW_MS = 86_400_000  # traces spread over 24 hours from ``start``
_DEFAULT_START = datetime(2026, 11, 20, tzinfo=UTC)
_POOL = 24  # sessions active at once; their turns interleave
_CONTEXT_BUDGET = 3200  # input tokens a truncated prompt is trimmed to


def _json_answer(body: str, cites: list[str]) -> str:
    """``json.dumps({"answer": body, "citations": cites})``, without the encoder overhead."""
    return f'{{"answer": {_enc(body)}, "citations": [{", ".join(map(_enc, cites))}]}}'


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    u = rng.random()
    for value, weight in weighted:
        u -= weight
        if u < 0:
            return value
    return weighted[-1][0]


def _rfc3339(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"  # dt is in UTC


# Faster than random.Random's randint/choice/lognormvariate, and just as deterministic.
def _below(rng: random.Random, k: int) -> int:
    return int(rng.random() * k)


def _int(rng: random.Random, lo: int, hi: int) -> int:
    return lo + int(rng.random() * (hi - lo + 1))


def _one(rng: random.Random, seq: Sequence[Any]) -> Any:
    return seq[int(rng.random() * len(seq))]


def _lognorm(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(sigma * rng.gauss(0.0, 1.0))


# --------------------------------------------------------------------------- regressions


@dataclass(frozen=True)
class Regression:
    """A planted regression: ``kind`` hits a trace matching ``where`` with probability ``rate``.

    ``where`` maps default-segmentation dimensions to values and is matched against the
    trace's segment key before the regression is applied; empty means every trace.
    """

    kind: str
    rate: float
    where: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", dict(self.where))
        problem = _problem(self.kind, self.rate, self.where)
        if problem:
            raise ConfigError(f"bad regression {self.kind}:{self.rate}: {problem}")


def _problem(kind: str, rate: float, where: Mapping[str, str]) -> str | None:
    if kind not in REGRESSION_KINDS:
        return f"unknown kind {kind!r} (known: {', '.join(REGRESSION_KINDS)})"
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        return f"rate {rate!r} is not a number in [0, 1]"
    dims = default_segmentation().names
    for dim in where:
        if dim not in dims:
            return f"unknown dimension {dim!r} (known: {', '.join(dims)})"
    return None


def parse_regression(spec: str) -> Regression:
    """Parse ``KIND:RATE[:DIM=VALUE[,DIM=VALUE...]]``, e.g. ``format_invalid:0.05:rag=off``.

    Raises :class:`ConfigError` with a one-line message naming the spec and what is wrong.
    """

    def bad(why: str) -> ConfigError:
        return ConfigError(f"bad regression spec {spec!r}: {why} (expected KIND:RATE[:DIM=VALUE,...])")

    parts = spec.strip().split(":", 2)
    if len(parts) < 2:
        raise bad("missing ':RATE'")
    kind, rate_text = parts[0].strip(), parts[1].strip()
    where: dict[str, str] = {}
    if len(parts) == 3:
        for item in parts[2].split(","):
            dim, sep, value = (p.strip() for p in item.partition("="))
            if not sep or not dim or not value:
                raise bad(f"malformed condition {item.strip()!r}, expected DIM=VALUE")
            if dim in where:
                raise bad(f"dimension {dim!r} given twice")
            where[dim] = value
    try:
        rate = float(rate_text)
    except ValueError:
        raise bad(f"rate {rate_text!r} is not a number in [0, 1]") from None
    problem = _problem(kind, rate, where)
    if problem:
        raise bad(problem)
    return Regression(kind, rate, where)


# --------------------------------------------------------------------------- drawing


class _Session:
    __slots__ = (
        "left",
        "turn",
        "hash",
        "channel",
        "locale",
        "order_id",
        "snapshot",
        "hashes",
        "email",
        "intent",
    )


class _Turn:
    """Everything drawn for one trace; rendering it draws nothing more."""

    __slots__ = (
        "trace_id",
        "dt",
        "day",
        "s",
        "turn",
        "history",
        "intent",
        "input_text",
        "body",
        "grounded",
        "order_id",
        "wants_human",
        "blocked",
        "ret_docs",
        "ret_bins",
        "ret_texts",
        "ret_ms",
        "reranked",
        "policy",
        "tool_status",
        "tool_ms",
        "snapshot",
        "hashes",
        "stated",
        "variant",
        "pii",
        "fmt",
        "fmt_cut",
        "truncated",
        "dropped",
        "hist_tok",
        "slack",
        "tok_noise",
        "ttft",
        "per_tok",
        "post_ms",
        "retry_ms",
        "rate_limited",
        "fb",
        "sample",
    )


def _new_session(rng: random.Random, tag: str) -> _Session:
    s = _Session()
    turns = 1
    while turns < 30 and rng.random() > 0.4:  # geometric: 40% single-turn, ~8% of traces 6+
        turns += 1
    s.left, s.turn, s.hash, s.intent = turns, 0, _sha(tag), ""
    s.channel, s.locale = _pick(rng, _CHANNELS), _pick(rng, _LOCALES)
    s.order_id, s.snapshot = str(_int(rng, 10000, 99999)), None
    s.email = f"{_one(rng, _NAMES)}{_int(rng, 1, 99)}@example.com"
    return s


def _order_facts(rng: random.Random, order_id: str, day: date, exclude: str | None = None) -> dict[str, Any]:
    """An order-status tool response; ``exclude`` draws any state but that one."""
    state = _pick(rng, _ORDER_STATES) if exclude is None else _one(rng, [s for s in _STATE_NAMES if s != exclude])
    days = timedelta(days=1)
    shipped = delivered = None
    if state == "processing":
        placed = day - _int(rng, 0, 2) * days
    else:
        if state == "delivered":
            delivered = day - _int(rng, 0, 3) * days
            shipped = delivered - _int(rng, 1, 4) * days
        else:
            shipped = day - _int(rng, 0 if state == "shipped" else 1, 4) * days
        placed = shipped - _int(rng, 0, 2) * days
    return {
        "orderId": order_id,
        "state": state,
        "placedAt": placed.isoformat(),
        "shippedAt": shipped and shipped.isoformat(),
        "deliveredAt": delivered and delivered.isoformat(),
        "carrier": None if state == "processing" else _one(rng, _CARRIERS),
    }


def _draw_retrieval(rng: random.Random, t: _Turn, doc: str, chunk: int) -> None:
    t.ret_ms = int(_lognorm(rng, 150, 0.35))
    t.reranked = rng.random() < 0.7
    if rng.random() < 0.04:
        t.ret_docs, t.ret_bins, t.ret_texts, t.grounded = [], [], [], False
        return
    u = rng.random()
    top = _int(rng, 7, 9) if u < 0.80 else _int(rng, 4, 6) if u < 0.94 else _int(rng, 0, 3)
    t.grounded = rng.random() < (0.97 if top >= 7 else 0.8 if top >= 4 else 0.4)
    k = 3 if rng.random() < 0.85 else 2
    others = rng.sample(_OTHER_DOCS[doc], k - 1 if t.grounded else k)
    texts = [_DOCS[o][_below(rng, len(_DOCS[o]))] for o in others]
    if t.grounded:
        others.insert(0, doc)
        texts.insert(0, _DOCS[doc][chunk])
    bins = [top]
    for _ in range(k - 1):
        bins.append(max(0, bins[-1] - _int(rng, 0, 3)))
    t.ret_docs, t.ret_bins, t.ret_texts = others, bins, texts


def _draw_request(rng: random.Random, t: _Turn) -> None:
    s, intent = t.s, t.intent
    t.ret_docs = t.ret_bins = t.ret_texts = t.tool_status = t.snapshot = None
    t.body, t.grounded, t.wants_human, t.blocked, t.policy = "", True, False, False, False
    if intent == "order_status":
        if s.snapshot is not None and rng.random() < 0.2:  # a follow-up about another order
            s.order_id, s.snapshot = str(_int(rng, 10000, 99999)), None
        if s.snapshot is None:  # the order's status stays the same within a session
            s.snapshot = _order_facts(rng, s.order_id, t.day)
            s.hashes = _sha(_canon({"orderId": s.order_id})), _sha(_canon(s.snapshot))
        t.order_id, t.snapshot, t.hashes = s.order_id, s.snapshot, s.hashes
        t.input_text = _one(rng, _ORDER_QUESTIONS).format(o=t.order_id)
        t.variant = _below(rng, 2)
        u = rng.random()
        t.tool_status = "timeout" if u < 0.01 else "error" if u < 0.025 else "success"
        if t.tool_status == "success":
            t.tool_ms = int(_lognorm(rng, 120, 0.45))
        else:  # a timeout waits for the 3 s deadline; errors come back fast
            slow = u < 0.01
            t.tool_ms = 3000 + int(_lognorm(rng, 60, 0.8)) if slow else int(_lognorm(rng, 200, 0.6))
        if rng.random() < 0.30:
            _draw_retrieval(rng, t, "doc:shipping-policy", 0)
            t.policy = bool(t.ret_docs) and t.grounded
            t.grounded = True
    elif intent == "smalltalk":
        u = rng.random()
        if u < 0.015:
            t.input_text, t.body = _one(rng, _ADVERSARIAL)
            t.blocked = True
        elif u < 0.10:
            t.input_text, t.body = _HANDOFF
            t.wants_human = True
        else:
            t.input_text, t.body = _one(rng, _SMALLTALK)
    else:
        doc, by_chunk = _HELP[intent]
        chunk = _below(rng, len(by_chunk))
        t.input_text = _one(rng, by_chunk[chunk])
        lead = _one(rng, _LEADS)
        _draw_retrieval(rng, t, doc, chunk)
        if t.ret_texts:
            t.body = (lead if t.grounded else _NOT_SURE) + t.ret_texts[0]


def _draw(rng: random.Random, s: _Session, dt: datetime, sample_rate: float) -> _Turn:
    t = _Turn()
    t.s, t.dt, t.day, t.stated = s, dt, dt.date(), None
    t.turn, t.history = s.turn, 2 * s.turn - 1
    if not s.intent or rng.random() >= 0.6:  # 60% of follow-ups keep the topic
        s.intent = _pick(rng, _INTENT_MIX)
    t.intent = s.intent
    _draw_request(rng, t)
    t.pii = not t.blocked and rng.random() < 0.01
    t.fmt = _one(rng, _FORMAT_ERRORS) if rng.random() < 0.002 and not t.blocked else None
    t.fmt_cut = rng.random()
    # logistic in history length: ~1.5% at turn 1, ~16% at turn 6, ~48% at turn 9
    p_trunc = 1.0 / (1.0 + math.exp(-0.254 * (t.history - 17.4)))
    t.truncated = rng.random() < p_trunc
    t.dropped = _int(rng, 1, (t.history - 1) // 2 + 1) if t.truncated else 0
    t.hist_tok = int(_lognorm(rng, 85, 0.3))
    t.slack = _below(rng, 160)
    t.tok_noise = _lognorm(rng, 1.0, 0.15)
    t.ttft = _lognorm(rng, 320, 0.35)
    t.per_tok = _lognorm(rng, 7.0, 0.2)
    t.post_ms = int(_lognorm(rng, 30, 0.4))
    retry = rng.random() < 0.015
    t.rate_limited = retry and rng.random() < 0.6
    t.retry_ms = int(_lognorm(rng, 700, 0.5)) if retry else 0
    t.fb = (rng.random(), rng.random(), rng.random(), _int(rng, 5, 600))
    t.sample = rng.random() < sample_rate
    return t


# --------------------------------------------------------------------------- regressions


def _eligible(kind: str, t: _Turn) -> bool:
    if kind == "format_invalid":
        return not t.blocked and t.fmt is None
    if kind == "tool_skipped":
        return t.intent == "order_status" and t.tool_status is not None
    if kind == "answer_contradicts_tool":
        return t.tool_status == "success" and t.stated is None
    return not t.truncated


def _plant(kind: str, t: _Turn, rng: random.Random) -> None:
    if kind == "format_invalid":
        t.fmt, t.fmt_cut = _one(rng, _FORMAT_ERRORS), rng.random()
    elif kind == "tool_skipped":
        t.tool_status = None
        t.stated = _order_facts(rng, t.order_id, t.day)
    elif kind == "answer_contradicts_tool":
        t.stated = _order_facts(rng, t.order_id, t.day, exclude=t.snapshot["state"])
    else:
        t.truncated = True
        t.dropped = _int(rng, 1, (t.history - 1) // 2 + 1)


# --------------------------------------------------------------------------- rendering


def _answer(t: _Turn) -> tuple[str, list[str], bool, bool]:
    """The answer body, its citations, whether it was a fallback, whether it is wrong."""
    if t.intent == "order_status":
        if t.tool_status in ("timeout", "error"):
            return _TOOL_DOWN.format(o=t.order_id), [], True, False
        facts = t.stated or t.snapshot
        body = _ORDER_ANSWERS[facts["state"]][t.variant].format(o=t.order_id, **facts)
        cites = ["tool:order_status"] if t.tool_status else []
        if t.policy and facts["state"] == "shipped":
            body += _POLICY_SENTENCE
            cites.append("doc:shipping-policy")
        return body, cites, False, facts["state"] != t.snapshot["state"]
    if t.ret_docs is None:
        return t.body, [], False, False
    if not t.ret_docs:
        return _NOTHING_FOUND, [], True, False
    return t.body, [t.ret_docs[0]], False, not t.grounded


def _broken(text: str, body: str, code: str, cut: float) -> str:
    """Output that really is not valid JSON, in the way ``code`` says."""
    if code == "json_truncated":
        return text[: 12 + int(cut * (len(text) - 14))]
    if code == "json_parse":
        return "Sure! Here is the answer in JSON:\n" + text
    return body


def _render(t: _Turn, release: str) -> dict[str, Any]:
    body, cites, fallback, wrong = _answer(t)
    raw_body = final_body = body
    if t.pii:
        raw_body = f"{body} I've sent a copy to {t.s.email}."
        final_body = f"{body} I've sent a copy to [email redacted]."
    raw = _json_answer(raw_body, cites)
    final = _REFUSAL if t.blocked else _json_answer(final_body, cites)
    if t.fmt:
        raw = _broken(raw, raw_body, t.fmt, t.fmt_cut)
        final = _broken(final, final_body, t.fmt, t.fmt_cut)

    evidence: dict[str, Any] = {}
    stages: dict[str, int] = {}
    if t.ret_docs is not None:
        evidence["retrieval"] = {
            "empty": not t.ret_docs,
            "topKDocIds": list(t.ret_docs),
            "topKScoreBins": list(t.ret_bins or ()),
            "usedInFinalAnswer": any(c.startswith("doc:") for c in cites),
            "reranked": t.reranked,
            "rerankConfigId": "rr-1" if t.reranked else None,
            "queryRewriteHash": _sha("rewrite:" + t.input_text.lower()),
        }
        stages["retrieval"] = t.ret_ms
    args_hash, snap_hash = t.hashes if t.tool_status else (None, None)
    snap_hash = snap_hash if t.tool_status == "success" else None
    if t.tool_status:
        evidence["tool"] = [
            {
                "toolName": "order_status",
                "schemaVersion": "tool_v1",
                "argsHash": args_hash,
                "status": t.tool_status,
                "responseHash": snap_hash,
                "latencyMs": t.tool_ms,
            }
        ]
        stages["tool"] = t.tool_ms

    prior = max(0, t.history - 1 - t.dropped) if t.truncated else t.history - 1
    tokens_in = 800 + len(t.input_text) // 4 + prior * t.hist_tok + 48 * len(t.ret_docs or ())
    tokens_in += 64 if snap_hash else 0
    tokens_in = _CONTEXT_BUDGET - t.slack if t.truncated else min(tokens_in, _CONTEXT_BUDGET)
    cut_off = t.fmt == "json_truncated"
    tokens_out = 800 if cut_off else max(6, int(len(raw) * 0.27 * t.tok_noise))
    stages["generation"] = int(t.ttft + tokens_out * t.per_tok + tokens_in * 0.05) + t.retry_ms
    stages["postprocess"] = t.post_ms
    bad = fallback or wrong or t.blocked or t.fmt is not None
    trace: dict[str, Any] = {
        "schemaVersion": "tracejury.trace/v1",
        "traceId": t.trace_id,
        "releaseId": release,
        "timestamp": _rfc3339(t.dt),
        "req": {
            "inputTextHash": _sha(t.input_text),
            "sessionIdHash": t.s.hash,
            "channel": t.s.channel,
            "locale": t.s.locale,
            "sessionTurn": t.turn,
            "intent": t.intent,
            "toolRequired": t.intent == "order_status",
        },
        "config": {
            "model": {"name": "acme-chat", "version": "2026-10-01"},
            "systemPromptVersion": "sp-12",
            "temperature": 0.2,
            "topP": 1.0,
            "maxTokens": 800,
            "retryPolicyId": "rp-2",
            "toolSchemaVersion": "tool_v1",
            "retrievalConfigVersion": "ret-7",
            "embeddingModelVersion": "emb-3",
        },
        "evidence": evidence,
        "runtime": {
            "truncated": t.truncated,
            "inputTokenCount": tokens_in,
            "completionTokenCount": tokens_out,
            "latencyMs": sum(stages.values()),
            "stageLatencyMs": stages,
            "guardrails": [
                {
                    "ruleId": "pii-1",
                    "decision": "rewrite" if t.pii else "allow",
                    "reasonCode": "email_address" if t.pii else None,
                },
                {
                    "ruleId": "safety-2",
                    "decision": "block" if t.blocked else "allow",
                    "reasonCode": "data_exfiltration" if t.blocked else None,
                },
            ],
            "fallbackUsed": fallback,
            "stopReason": "length" if cut_off else "stop",
            "historyLength": t.history,
            "droppedItemCount": t.dropped if t.truncated else 0,
            "retryCount": 1 if t.retry_ms else 0,
            "rateLimited": t.rate_limited,
        },
        "outputs": {
            "rawModelTextHash": _sha(raw),
            "finalAnswerHash": _sha(final),
            "formatValid": t.fmt is None,
            "formatErrorCode": t.fmt,
        },
        "feedback": _feedback(t, bad),
    }
    if t.sample:
        pairs = zip(t.ret_docs or (), t.ret_texts or (), strict=True)
        trace["sample"] = {
            "inputText": t.input_text,
            "finalAnswer": final,
            "retrievedChunks": [{"docId": d, "text": x} for d, x in pairs],
            "toolSnapshots": ([{"responseHash": snap_hash, "snapshot": dict(t.snapshot)}] if snap_hash else []),
        }
    return trace


def _feedback(t: _Turn, bad: bool) -> list[dict[str, str]]:
    u_vote, u_handoff, u_ticket, delay = t.fb
    p_down = 0.20 if bad else 0.04 if t.truncated else 0.015
    p_up = 0.01 if bad else 0.06
    kinds = []
    if u_vote < p_down:
        kinds.append("thumbs_down")
    elif u_vote < p_down + p_up:
        kinds.append("thumbs_up")
    if u_handoff < (0.8 if t.wants_human else 0.15 if bad else 0.01):
        kinds.append("handoff")
    if u_ticket < (0.03 if bad else 0.002):
        kinds.append("ticket")
    return [{"kind": k, "at": _rfc3339(t.dt + timedelta(seconds=delay + 30 * j))} for j, k in enumerate(kinds)]


# --------------------------------------------------------------------------- public entry


def simulate(
    release: str,
    n: int,
    seed: int,
    regressions: Sequence[Regression] = (),
    *,
    start: datetime | None = None,
    sample_rate: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` v1 trace dicts of release ``release``, deterministic in all arguments.

    Timestamps increase over 24 hours from ``start`` (default 2026-11-20T00:00:00Z; a naive
    ``start`` is taken as UTC). Each trace keeps its raw text in ``sample`` with probability
    ``sample_rate``. ``regressions`` are planted where their ``where`` matches the trace's
    segment key (default segmentation) computed before planting. Memory use does not grow
    with ``n``. Bad arguments raise :class:`ConfigError` at call time.
    """
    if not isinstance(release, str) or not 1 <= len(release) <= 200:
        raise ConfigError(f"release must be a non-empty string of at most 200 chars: {release!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be an integer >= 0, got {n!r}")
    if not 0.0 <= sample_rate <= 1.0:
        raise ConfigError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
    regs = tuple(regressions)
    for r in regs:
        if not isinstance(r, Regression):
            raise ConfigError(f"not a Regression: {r!r} (use parse_regression)")
    if start is None:
        start = _DEFAULT_START
    start = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
    return _generate(release, n, seed, regs, start, sample_rate)


def _generate(
    release: str,
    n: int,
    seed: int,
    regs: tuple[Regression, ...],
    start: datetime,
    sample_rate: float,
) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"{release}/{seed}")
    plant_rng = random.Random(f"{release}/{seed}/regressions")
    seg = default_segmentation() if regs else None
    pool: list[_Session | None] = [None] * _POOL
    sessions = 0
    for i in range(n):
        offset = i * _WINDOW_MS // n
        span = (i + 1) * _WINDOW_MS // n - offset
        dt = start + timedelta(milliseconds=offset + _below(rng, span))
        slot = _below(rng, _POOL)
        s = pool[slot]
        if s is None or s.left == 0:
            s = pool[slot] = _new_session(rng, f"{release}/{seed}/session/{sessions}")
            sessions += 1
        s.left -= 1
        s.turn += 1
        t = _draw(rng, s, dt, sample_rate)
        t.trace_id = f"tr_{release}_{seed}_{i:08d}"
        trace = _render(t, release)
        if seg is not None:
            key = segment_key(trace, seg)
            planted = False
            for r in regs:
                if not (_eligible(r.kind, t) and key_matches(key, r.where)):
                    continue
                if plant_rng.random() < r.rate:
                    _plant(r.kind, t, plant_rng)
                    planted = True
            if planted:
                trace = _render(t, release)
        yield trace
