"""Turning one raw input line into a validated trace dict, or a precise ``InvalidTrace``.

Order of checks, so each kind of bad line gets its own message: not JSON → not an object →
unknown ``schemaVersion`` → the first JSON Schema error (path + message). The schema is
compiled once (jsonschema-rs, ~2 µs per trace) and formats such as ``date-time`` are checked.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import orjson

from tracejury.core.errors import InvalidTrace
from tracejury.core.trace import SUPPORTED_SCHEMA_VERSIONS, trace_json_schema

__all__ = ["TraceValidator", "json_path"]

_MAX_MESSAGE = 200
_JSON_TYPE_NAMES = {
    type(None): "null", bool: "boolean", int: "integer", float: "number",
    str: "string", list: "array", dict: "object",
}  # fmt: skip


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """Render an instance path as ``$.runtime.guardrails[0].decision``."""
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _describe(error: Any) -> str:
    """A one-line message for a jsonschema-rs error, friendlier for the common kinds."""
    kind = type(error.kind).__name__
    if kind == "Required":
        return f"missing required field {error.kind.property!r}"
    if kind == "Type":
        want = error.kind.types if hasattr(error.kind, "types") else None
        got = _JSON_TYPE_NAMES.get(type(error.instance), type(error.instance).__name__)
        if want:
            return f"expected {' or '.join(map(str, want))}, got {got}"
    if kind == "Minimum" and isinstance(error.instance, int | float):
        return f"must be >= {error.kind.limit}, got {error.instance}"
    if kind == "Format":
        return f"{error.instance!r} is not a valid {error.kind.format}"
    return _one_line(error.message)


class TraceValidator:
    """Validates trace lines against the shipped JSON Schema; reuse one per process."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self._validator = jsonschema_rs.Draft202012Validator(schema or trace_json_schema(), validate_formats=True)

    def parse(self, raw: bytes | str) -> dict[str, Any]:
        """Parse and validate one line; return the trace dict or raise ``InvalidTrace``."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidTrace(f"not JSON: {_one_line(str(exc))}") from exc
        return self.validate(doc)

    def validate(self, doc: Any) -> dict[str, Any]:
        """Validate an already-decoded document; return it or raise ``InvalidTrace``."""
        if not isinstance(doc, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
            raise InvalidTrace(f"expected a JSON object, got {kind.get(type(doc), 'a number')}")
        trace_id = doc.get("traceId") if isinstance(doc.get("traceId"), str) else None
        version = doc.get("schemaVersion")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(SUPPORTED_SCHEMA_VERSIONS)
            what = "missing schemaVersion" if version is None else f"unknown schemaVersion {version!r}"
            raise InvalidTrace(f"{what} (supported: {supported})", path="$.schemaVersion", trace_id=trace_id)
        if self._validator.is_valid(doc):
            return doc
        error = next(iter(self._validator.iter_errors(doc)))
        raise InvalidTrace(_describe(error), path=json_path(list(error.instance_path)), trace_id=trace_id)
