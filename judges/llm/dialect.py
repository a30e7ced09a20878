"""How a judge call asks for JSON, per endpoint: wire formats, their bodies, refusals, memory.

A profile's ``structured_output`` names a *ladder* of wire formats, tried in order; a call
moves one rung down only when the endpoint refuses the rung's ``response_format``:

    structured_output   ladder
    json_schema         json_schema
    json_object         json_object_schema → json_object
    none                none
    auto                json_schema → json_object_schema → json_object → none

    json_schema          response_format {"type": "json_schema", "json_schema": {name, schema, strict}}
    json_object_schema   response_format {"type": "json_object", "schema": <schema>} — llama.cpp's
                         servers (llama-cpp-python, llama-server) constrain decoding by that schema;
                         OpenAI and Azure reject the extra key (400 ``unknown_parameter``), vLLM
                         before 0.6.4 too (400 ``extra_forbidden``); vLLM ≥ 0.6.4 and Ollama ignore it
    json_object          response_format {"type": "json_object"}
    none                 no response_format

Every rung but ``json_schema`` appends an instruction with the schema to the system prompt
(:func:`with_json_instruction`); every rung's reply is validated against the schema.

A *refusal* (:func:`is_format_refusal`) is HTTP 400, 422 or 500 whose body names the
response format (``response_format``, ``json_schema``, ``json_object``): llama-cpp-python answers
``{"type": "json_schema"}`` with a 500 (its pydantic validation error, wrapped as
``internal_server_error``), old llama-server with a 500 ``response_format type must be one of
"text" or "json_object"``, old vLLM with a 400, OpenAI with a 400 naming ``response_format``.
A 500 that names no response format is an ordinary server error (retried, then ``http_error``).

What each endpoint (URL + model + mode) accepted is remembered for the process in a
:class:`FormatMemory` (:data:`FORMATS` by default): one line is logged when it moves down a
rung, and later calls start at the rung it learned.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import orjson

__all__ = [
    "FORMATS",
    "LADDERS",
    "FormatMemory",
    "FormatRefusal",
    "WireFormat",
    "chat_body",
    "is_format_refusal",
    "json_instruction",
    "with_json_instruction",
]

log = logging.getLogger("tracejury.judges")

WireFormat = Literal["json_schema", "json_object_schema", "json_object", "none"]
"""What one request sends to get JSON back (see the module docstring)."""

LADDERS: dict[str, tuple[WireFormat, ...]] = {
    "json_schema": ("json_schema",),
    "json_object": ("json_object_schema", "json_object"),
    "none": ("none",),
    "auto": ("json_schema", "json_object_schema", "json_object", "none"),
}
"""The wire formats each ``structured_output`` mode may use, in the order they are tried."""

_REFUSAL_STATUSES = frozenset({400, 422, 500})
_REFUSAL_WORDS = ("response_format", "response format", "json_schema", "json_object", "responseformat")


_ECHOED = frozenset({"input", "input_value", "body", "ctx"})
"""Keys under which validation errors (pydantic, FastAPI) echo the request back: a body that
merely repeats the request names ``response_format`` without refusing it."""
_ECHOED_DICT = re.compile(r"input_value=\{.*?\}(?=, input_type=)", re.S)


def _what_it_says(text: str) -> str:
    """The error's own words: its JSON without echoed request parts, or the text without
    pydantic's echoed dicts (a scalar echo such as ``input_value='json_schema'`` stays)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _ECHOED_DICT.sub("", text)
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in _ECHOED:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            parts.append(_ECHOED_DICT.sub("", str(value)))

    walk(data)
    return " ".join(parts)


def is_format_refusal(status: int, text: str) -> bool:
    """Whether an error reply refuses the request's ``response_format``: HTTP 400, 422 or
    500 whose body names it in its own words, not only in an echo of the request (see the
    module docstring)."""
    if status not in _REFUSAL_STATUSES:
        return False
    lowered = _what_it_says(text[:8192]).lower()
    return any(word in lowered for word in _REFUSAL_WORDS)


@lru_cache(maxsize=256)
def _instruction(canonical_schema: bytes) -> str:
    return (
        "Reply with one JSON object only — no code fence, no text before or after it — that "
        "validates against this JSON Schema:\n" + canonical_schema.decode()
    )


def json_instruction(schema: dict[str, Any]) -> str:
    """The prompt line asking for a reply object that validates against ``schema``."""
    return _instruction(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def with_json_instruction(
    messages: Sequence[dict[str, Any]], schema: dict[str, Any]
) -> list[dict[str, Any]]:
    """``messages`` with :func:`json_instruction` appended to the leading system message (a
    system message is put first when there is none, or when its content is not text).

    The instruction joins the system prompt rather than following the evidence, so the
    evidence stays the last message and chat templates that allow one system message work.
    """
    instruction = json_instruction(schema)
    first = messages[0] if messages else None
    if first is not None and first.get("role") == "system" and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content'].rstrip()}\n\n{instruction}"}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def chat_body(
    model: str,
    messages: Sequence[dict[str, Any]],
    schema: dict[str, Any],
    schema_name: str,
    *,
    wire: WireFormat = "json_schema",
    temperature: float = 0.0,
    seed: int | None = None,
    max_tokens: int | None = None,
    reasoning: bool = False,
) -> dict[str, Any]:
    """The ``POST /chat/completions`` body for one wire format.

    ``max_tokens`` is the reply cap: sent as ``max_tokens``, or as ``max_completion_tokens``
    for a ``reasoning`` model (whose hidden reasoning counts against it). A reasoning model
    gets no ``temperature`` (OpenAI's accept only the default); the seed is sent either way.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages) if wire == "json_schema" else with_json_instruction(messages, schema),
    }
    if not reasoning:
        body["temperature"] = temperature
    if seed is not None:
        body["seed"] = seed
    if max_tokens is not None:
        body["max_completion_tokens" if reasoning else "max_tokens"] = max_tokens
    if wire == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
    elif wire == "json_object_schema":
        body["response_format"] = {"type": "json_object", "schema": schema}
    elif wire == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


@dataclass(frozen=True)
class FormatRefusal:
    """One endpoint refusing one wire format (kept for ``tracejury judge-check``)."""

    endpoint: tuple[str, str, str]
    """(chat completions URL, model, structured_output mode)."""
    wire: WireFormat
    """The format refused."""
    http_status: int
    """The refusal's HTTP status."""
    message: str
    """The refusal, on one line."""
    now: WireFormat
    """The format used from then on."""


class FormatMemory:
    """What each endpoint accepted, for this process: thread-safe (Celery threads each run
    an event loop; an asyncio task never blocks on the lock for long)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[tuple[str, str, str], WireFormat] = {}
        self._answered: set[tuple[str, str, str]] = set()
        self.refusals: list[FormatRefusal] = []
        """Every move down a ladder, oldest first."""

    def current(self, endpoint: tuple[str, str, str], ladder: tuple[WireFormat, ...]) -> WireFormat:
        """The format to send to ``endpoint`` now: the last one learned, else the ladder's first."""
        return self._learned.get(endpoint, ladder[0])

    def answered(self, endpoint: tuple[str, str, str]) -> bool:
        """Whether ``endpoint`` has answered a request in the format :meth:`current` names."""
        return endpoint in self._answered

    def mark_answered(self, endpoint: tuple[str, str, str]) -> None:
        """Record that ``endpoint`` answered (2xx) a request in its current format."""
        if endpoint not in self._answered:
            with self._lock:
                self._answered.add(endpoint)

    def refused(
        self,
        endpoint: tuple[str, str, str],
        ladder: tuple[WireFormat, ...],
        wire: WireFormat,
        http_status: int,
        message: str,
    ) -> WireFormat | None:
        """Record that ``endpoint`` refused ``wire``; the format to use now, or None when the
        ladder has no rung below it. Logs one line when this call moved the endpoint down."""
        position = ladder.index(wire)
        if position + 1 >= len(ladder):
            return None
        with self._lock:
            now = self._learned.get(endpoint, ladder[0])
            if ladder.index(now) > position:  # another call moved it meanwhile
                return now
            now = ladder[position + 1]
            self._learned[endpoint] = now
            self._answered.discard(endpoint)
            self.refusals.append(FormatRefusal(endpoint, wire, http_status, message, now))
        url, model, mode = endpoint
        log.warning(
            "judge endpoint %s (model %s, structured_output %s) refused response format %s"
            " (HTTP %d); using %s from now on in this process: %s",
            url, model, mode, wire, http_status, now, message,
        )  # fmt: skip
        return now

    def forget(self) -> None:
        """Forget everything learned (tests)."""
        with self._lock:
            self._learned.clear()
            self._answered.clear()
            self.refusals.clear()


FORMATS = FormatMemory()
"""The process's memory of what each endpoint accepted (the client's default)."""
