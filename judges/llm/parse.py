"""Strict parsing of a judge's chat-completion reply into a verdict, or the reason it is none.

The reply content must be one JSON object that validates against the request's output schema
(JSON Schema, checked with ``jsonschema_rs``; validators are compiled once per schema). The
only wrapping accepted is a single fenced block opening with three backticks and ``json``,
as models without a JSON mode often write it — except for replies to requests that sent no
``response_format`` (``embedded=True``, the ``none`` wire format): a model free to write prose
often wraps the object in a sentence, so there the one JSON object found in the text is taken,
and text holding two or more objects is ``invalid_output`` (which one is the verdict is a
guess). Either way the object must validate against the schema. Everything else is classified:

    not a chat completion, no choices, no content  → invalid_output
    content not JSON, not an object, breaks schema  → invalid_output
    message.refusal set, finish_reason content_filter → refused
    a label (a string) outside the request's labels → rubric_mismatch
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import jsonschema_rs
import orjson

from judges.llm.types import JudgeRequest, one_line
from tracejury.core.evaluation import FailureKind

__all__ = ["ParsedReply", "ReplyProblem", "billed_tokens", "parse_completion", "reply_validator"]

_FENCE = re.compile(r"\A```json[ \t]*\r?\n(.*?)\r?\n?```\Z", re.S)
_DECODER = json.JSONDecoder()


class ParsedReply(NamedTuple):
    """A reply that holds a verdict: (label, rationale, confidence, prompt, completion tokens)."""

    label: str
    """One of the request's labels."""
    rationale: str
    """The judge's reason."""
    confidence: float | None
    """The judge's confidence in [0, 1], if given."""
    prompt_tokens: int | None
    """``usage.prompt_tokens``, if reported."""
    completion_tokens: int | None
    """``usage.completion_tokens``, if reported."""


@dataclass(frozen=True)
class ReplyProblem:
    """Why a reply holds no verdict (the client adds attempts and latency)."""

    kind: FailureKind
    """``invalid_output``, ``refused`` or ``rubric_mismatch``."""
    message: str
    """What was wrong, on one line."""


@lru_cache(maxsize=256)
def _compiled(canonical_schema: bytes) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(orjson.loads(canonical_schema))


def reply_validator(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """The compiled validator of ``schema``, shared by every call with the same schema."""
    return _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def _usage(body: dict[str, Any], key: str) -> int | None:
    usage = body.get("usage")
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def billed_tokens(body: Any) -> tuple[int | None, int | None]:
    """(``usage.prompt_tokens``, ``usage.completion_tokens``) of a decoded reply, each None
    when not reported: what a reply cost, verdict or not."""
    if not isinstance(body, dict):
        return None, None
    return _usage(body, "prompt_tokens"), _usage(body, "completion_tokens")


def _embedded_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects standing in ``text`` (outermost ones, left to right)."""
    found: list[dict[str, Any]] = []
    start = text.find("{")
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        start = text.find("{", end)
    return found


def _invalid(message: str) -> ReplyProblem:
    return ReplyProblem("invalid_output", one_line(message))


def _unwrap(content: str) -> str:
    text = content.strip()
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text


def parse_completion(
    body: Any, request: JudgeRequest, *, embedded: bool = False
) -> ParsedReply | ReplyProblem:
    """Classify a decoded ``/chat/completions`` response body against ``request``.

    ``embedded``: the request sent no ``response_format``; a reply that is not JSON as a
    whole may hold its one JSON object inside prose (see the module docstring)."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return _invalid("the reply is not a chat completion (no choices list)")
    if not body["choices"] or not isinstance(body["choices"][0], dict):
        return _invalid("the reply has no choices")
    choice = body["choices"][0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return _invalid("the reply's first choice has no message")
    refusal = message.get("refusal")
    if refusal:
        return ReplyProblem("refused", one_line(f"the judge refused: {refusal}"))
    if choice.get("finish_reason") == "content_filter":
        return ReplyProblem("refused", "the endpoint's content filter stopped the reply")
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        return _invalid("the reply has no text content")
    try:
        data = orjson.loads(_unwrap(content))
    except orjson.JSONDecodeError as exc:
        objects = _embedded_objects(content) if embedded else []
        if len(objects) > 1:
            return _invalid(f"the reply holds {len(objects)} JSON objects, not one: {content[:80]!r}")
        if not objects:
            return _invalid(f"the reply content is not JSON ({exc}): {content[:80]!r}")
        data = objects[0]
    if not isinstance(data, dict):
        return _invalid(f"the reply content is JSON but not an object: {content[:80]!r}")
    label = data.get("label")
    if isinstance(label, str) and label not in request.labels:
        return ReplyProblem(
            "rubric_mismatch",
            one_line(f"label {label[:60]!r} is not one of the rubric's labels {request.labels}"),
        )
    validator = reply_validator(request.output_schema)
    error = next(iter(validator.iter_errors(data)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.instance_path) or "(root)"
        return _invalid(f"the reply breaks the output schema at {where}: {error.message}")
    rationale, confidence = data.get("rationale"), data.get("confidence")
    if not isinstance(label, str) or not isinstance(rationale, str):
        return _invalid("the reply needs a string label and a string rationale")
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0)
    ):
        return _invalid(f"confidence {confidence!r} is not a number in [0, 1]")
    return ParsedReply(
        label,
        rationale,
        None if confidence is None else float(confidence),
        _usage(body, "prompt_tokens"),
        _usage(body, "completion_tokens"),
    )
