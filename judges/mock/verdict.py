"""The mock judge's verdicts: computed from the evidence in the request, deterministically.

Pure: a request body (the JSON of ``POST /chat/completions``) goes in, a reply object
(``{"label", "rationale", "confidence"}``) comes out. The evidence is the JSON block of the
last user message (``parse_evidence_block``); the labels come from ``response_format``'s
schema (``properties.label.enum``; the schema of ``json_schema``, or the ``schema`` beside
``json_object`` as llama.cpp's servers take it) or, without one, from an
``Allowed labels: a, b`` line of the system message. Rules, first match wins:

1. no evidence block, or no final answer → the rubric cannot be judged: fail, confidence 0.2;
2. a successful tool call's snapshot contradicts the answer (its ``state`` is not mentioned,
   or the answer states a date the snapshot does not hold) → fail;
3. a snapshot agrees with the answer → pass;
4. a tool was required but no call succeeded → fail;
5. retrieval was on, non-empty, with chunk texts: the answer shares ≥ 3 content words with
   them → pass (borderline if it hedges, "not sure …"), 1–2 → borderline, none → fail;
6. otherwise → pass.

Binary labels map pass/fail to the label that reads as a pass (``pass``, ``yes``, …; else
the last) and the other; borderline is a pass at confidence 0.55. An ordinal scale (more than
two labels, best last) maps pass → last, fail → first, borderline → the middle label.

With a :class:`~judges.mock.bias.Bias`, ``reply_for`` then flips some pass/fail labels to the
other pole (bias.py), keeping the rationale and confidence: the judge errs silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from judges.checks.builtin import answer_text
from judges.evidence import parse_evidence_block
from judges.mock.bias import Bias, flip_draw

__all__ = [
    "CONFIDENCE",
    "DEFAULT_LABELS",
    "Assessment",
    "Outcome",
    "assess",
    "choose_label",
    "evidence_of",
    "labels_of",
    "reply_for",
    "rubric_of",
    "schema_of",
]

Outcome = Literal["pass", "fail", "borderline", "unjudgeable"]
"""What the mock concluded before mapping it to the rubric's labels."""
CONFIDENCE: dict[str, float] = {"pass": 0.9, "fail": 0.9, "borderline": 0.55, "unjudgeable": 0.2}
"""The confidence the mock reports for each outcome."""
DEFAULT_LABELS = ("pass", "fail")
"""Labels used when the request names none."""

_PASS_WORDS = frozenset({"pass", "yes", "true", "correct", "good", "grounded", "supported",
                         "appropriate", "helpful", "ok"})  # fmt: skip
_HEDGES = ("not sure", "not certain", "might be wrong", "may be wrong")
_ALLOWED = re.compile(r"^\s*Allowed labels:\s*(.+?)\s*$", re.M)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "about",
        "after",
        "also",
        "been",
        "before",
        "being",
        "could",
        "does",
        "from",
        "have",
        "here",
        "into",
        "just",
        "more",
        "most",
        "only",
        "other",
        "over",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "very",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "within",
        "would",
        "your",
        "yours",
        "you",
    ]
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MON = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?"
)
_ISO_DATE = re.compile(r"\b\d{4}-(\d{2})-(\d{2})\b")
_MONTH_DAY = re.compile(rf"\b{_MON}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", re.I)
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON}", re.I)


@dataclass(frozen=True)
class Assessment:
    """The mock's conclusion about one trace, before labels."""

    outcome: Outcome
    """pass, fail, borderline or unjudgeable (no answer or no evidence)."""
    rationale: str
    """One sentence saying why."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _messages(body: dict[str, Any], role: str) -> list[str]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == role]


def evidence_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The evidence data of the request's last user message, or None."""
    users = _messages(body, "user")
    return parse_evidence_block(users[-1]) if users else None


def schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The reply schema the request's ``response_format`` carries (``json_schema.schema``, or
    ``schema`` beside ``json_object``), else None."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    inner = fmt.get("json_schema")
    schema = inner.get("schema") if isinstance(inner, dict) else fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def labels_of(body: dict[str, Any]) -> tuple[str, ...]:
    """The labels the request offers (see the module docstring), else ``DEFAULT_LABELS``."""
    try:
        enum = schema_of(body)["properties"]["label"]["enum"]  # type: ignore[index]
    except (KeyError, TypeError):
        enum = None
    if isinstance(enum, list) and enum and all(isinstance(x, str) for x in enum):
        return tuple(enum)
    for system in _messages(body, "system"):
        found = _ALLOWED.search(system)
        if found:
            labels = tuple(x.strip() for x in found.group(1).split(",") if x.strip())
            if labels:
                return labels
    return DEFAULT_LABELS


def rubric_of(body: dict[str, Any]) -> str:
    """The rubric id the request names (``response_format``'s schema name), else its system text."""
    try:
        name = body["response_format"]["json_schema"]["name"]
    except (KeyError, TypeError):
        name = None
    return name if isinstance(name, str) else "\n".join(_messages(body, "system"))


def _dates(text: str) -> set[tuple[int, int]]:
    """(month, day) of every date the text states (ISO, "Nov 18", "18 November")."""
    found = {(int(m), int(d)) for m, d in _ISO_DATE.findall(text)}
    for mon, day in _MONTH_DAY.findall(text):
        found.add((_MONTHS.index(mon.lower()[:3]) + 1, int(day)))
    for day, mon in _DAY_MONTH.findall(text):
        found.add((_MONTHS.index(mon.lower()[:3]) + 1, int(day)))
    return found


def _contradiction(answer: str, snapshot: dict[str, Any]) -> str | None:
    """Why the answer disagrees with a tool snapshot's key facts, or None."""
    lowered = answer.lower()
    state = snapshot.get("state")
    if isinstance(state, str) and state.strip():
        phrase = state.replace("_", " ").strip().lower()
        if phrase not in lowered:
            return f"the answer does not state the order's state '{phrase}' from the tool snapshot"
    known = set().union(*(_dates(v) for v in snapshot.values() if isinstance(v, str)))
    stray = sorted(_dates(answer) - known)
    if stray:
        month, day = stray[0]
        return f"the answer states the date {_MONTHS[month - 1].title()} {day}, which the tool snapshot does not hold"
    return None


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 4 and w not in _STOP}


def assess(evidence: dict[str, Any] | None) -> Assessment:
    """Apply the rules of the module docstring to one evidence object."""
    if evidence is None:
        return Assessment("unjudgeable", "The request holds no evidence block to judge.")
    final = evidence.get("final_answer")
    if not isinstance(final, str) or not final.strip():
        return Assessment("unjudgeable", "The trace has no final answer, so it cannot be judged.")
    answer = answer_text(final)
    calls = [c for c in evidence.get("tool_calls") or [] if isinstance(c, dict)]
    succeeded = [c for c in calls if c.get("status") in ("success", "ok")]
    snapshots = [c["snapshot"] for c in succeeded if isinstance(c.get("snapshot"), dict)]
    for snapshot in snapshots:
        why = _contradiction(answer, snapshot)
        if why:
            return Assessment("fail", f"Contradicts the tool: {why}.")
    if snapshots:
        return Assessment("pass", "The answer agrees with the tool snapshot's key facts.")
    if evidence.get("tool_required") is True and not succeeded:
        return Assessment("fail", "A tool call was required but none succeeded.")
    retrieval = evidence.get("retrieval")
    if isinstance(retrieval, dict) and not retrieval.get("empty"):
        chunks = [c.get("text") for c in retrieval.get("chunks") or [] if isinstance(c, dict)]
        texts = [t for t in chunks if isinstance(t, str)]
        if texts:
            shared = _content_words(answer) & _content_words(" ".join(texts))
            if len(shared) >= 3 and any(h in answer.lower() for h in _HEDGES):
                why = "The answer repeats retrieved text but hedges that it may not fit."
                return Assessment("borderline", why)
            if len(shared) >= 3:
                why = f"The answer agrees with the retrieved text ({len(shared)} shared words)."
                return Assessment("pass", why)
            if shared:
                why = "The answer overlaps the retrieved text only slightly."
                return Assessment("borderline", why)
            return Assessment("fail", "The answer is not supported by the retrieved text.")
    return Assessment("pass", "Nothing in the evidence contradicts the answer.")


def _poles(labels: tuple[str, ...]) -> tuple[str, str]:
    """(pass label, fail label) of a binary or ordinal label list."""
    if len(labels) == 2:
        first, second = labels
        if first.lower() in _PASS_WORDS and second.lower() not in _PASS_WORDS:
            return first, second
        return second, first
    return labels[-1], labels[0]


def choose_label(labels: tuple[str, ...], outcome: Outcome) -> str:
    """The label that stands for ``outcome`` among ``labels`` (see the module docstring)."""
    if len(labels) == 1:
        return labels[0]
    best, worst = _poles(labels)
    if outcome == "pass":
        return best
    if outcome == "borderline":
        return labels[len(labels) // 2] if len(labels) > 2 else best
    return worst


def reply_for(body: dict[str, Any], *, bias: Bias | None = None, seed: int = 0) -> dict[str, Any]:
    """The mock judge's reply object for a chat-completion request body.

    With ``bias``, the label may flip to the opposite pole, drawn from ``seed``, the rubric
    and the evidence (see bias.py).
    """
    labels = labels_of(body)
    evidence = evidence_of(body)
    found = assess(evidence)
    label = choose_label(labels, found.outcome)
    if bias is not None and bias.active and len(labels) > 1:
        label = bias.apply(label, *_poles(labels), flip_draw(seed, rubric_of(body), evidence))
    reply: dict[str, Any] = {"label": label, "rationale": found.rationale}
    schema = schema_of(body)
    properties = schema.get("properties") if schema is not None else None
    if not isinstance(properties, dict) or "confidence" in properties:
        reply["confidence"] = CONFIDENCE[found.outcome]
    return reply
