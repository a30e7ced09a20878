"""Turning an HTTP body into ingest lines: a JSON array (or one JSON object) under
``application/json``, JSON lines under ``application/x-ndjson`` / ``application/jsonl``; with
no or another content type, a body starting with ``[`` is an array and anything else JSON
lines. Lines then take the CLI's path: the same validation, quarantine and idempotency."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine

from tracejury.api.errors import ApiError
from tracejury.settings import Settings

__all__ = ["body_lines", "ingest_body"]

_JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonlines")


def body_lines(body: bytes, content_type: str | None) -> list[tuple[int, bytes]]:
    """``(line or element number, raw trace)`` pairs of a request body; a body that cannot be
    read at all (empty, not UTF-8, not JSON where JSON was declared) is a 400."""
    if not body.strip():
        raise ApiError(400, "empty_body", "request body is empty; send a JSON array of traces or JSON lines")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"request body is not valid UTF-8 (byte {exc.start})") from exc
    media = (content_type or "").split(";")[0].strip().lower()
    as_json = media == "application/json" or (media not in _JSONL_TYPES and body.lstrip()[:1] == b"[")
    if not as_json:
        return list(enumerate(body.split(b"\n"), 1))
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not JSON: {exc}") from exc
    if isinstance(doc, dict):
        return [(1, body)]
    if not isinstance(doc, list):
        raise ApiError(400, "invalid_json", f"request body must be a JSON array of traces, got {type(doc).__name__}")
    return [(i, orjson.dumps(item)) for i, item in enumerate(doc, 1)]


def ingest_body(engine: Engine, settings: Settings, source: str, lines: list[tuple[int, bytes]]) -> dict[str, Any]:
    """Ingest the lines like ``tracejury ingest`` does; the ``--json`` counts."""
    from tracejury.core.redaction import load_policy
    from tracejury.store.ingest import ingest_lines
    from workers.service import segmentation

    redaction = load_policy(settings.redaction_path, hmac_key=settings.redaction_hmac_key)
    counts = ingest_lines(engine, source, lines, segmentation=segmentation(settings),
                          batch_size=settings.ingest_batch_size, redaction=redaction)  # fmt: skip
    return counts.as_dict()
