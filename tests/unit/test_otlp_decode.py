"""Decoding OTLP/HTTP bodies (no store): encodings, compression limits, clear errors."""

from __future__ import annotations

import base64
import copy
import gzip
import zlib
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.otlp_builder import RESOURCE, genai_trace, request
from tracejury.api.errors import ApiError
from tracejury.api.otlp import JSON, PROTOBUF, decode_body
from tracejury.core.otlp import map_export_request
from tracejury.core.otlp_pb import decode_spans_pb
from tracejury.core.otlp_spans import decode_spans

TA = "0af7651916cd43dd8448eb211c80319c"
DOC = request(genai_trace(TA), RESOURCE)
LIMIT = 1 << 20
_REQUEST = ExportTraceServiceRequest


def _protobuf(doc: dict[str, Any]) -> bytes:
    """The binary request; ids as the bytes they stand for (``ParseDict`` reads bytes as base64)."""
    doc = copy.deepcopy(doc)
    for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [(None, lambda b: b), ("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)],
)
def test_protobuf_and_json_decode_to_the_same_traces(encoding: str | None, compress: object) -> None:
    pb = _protobuf(DOC)
    from_pb = decode_body(compress(pb), f"{PROTOBUF}; charset=binary", encoding, LIMIT, _REQUEST())  # type: ignore[operator]
    from_json = decode_body(compress(orjson.dumps(DOC)), JSON, encoding, LIMIT, _REQUEST())  # type: ignore[operator]
    assert isinstance(from_pb, ExportTraceServiceRequest) and isinstance(from_json, dict)
    assert decode_spans_pb(from_pb) == decode_spans(from_json)
    assert map_export_request(from_json).traces[0]["traceId"] == TA


def test_decompressed_size_is_limited() -> None:
    bomb = gzip.compress(b" " * (LIMIT + 10))
    assert len(bomb) < 10_000
    with pytest.raises(ApiError) as err:
        decode_body(bomb, JSON, "gzip", LIMIT, _REQUEST())
    assert (err.value.status, err.value.code) == (413, "too_large")


@pytest.mark.parametrize(
    ("body", "ctype", "encoding", "status", "message"),
    [
        (gzip.compress(b"{}", mtime=0)[:-6], JSON, "gzip", 400, "gzip body is truncated"),  # stable test id
        (b"plain", JSON, "gzip", 400, "gzip body cannot be decompressed"),
        (b"{}", JSON, "zstd", 415, "Content-Encoding 'zstd' is not supported"),
        (b"{}", None, None, 415, "Content-Type '(none)' is not application/x-protobuf or application/json"),
        (b"\x0a\x05\xff", PROTOBUF, None, 400, "body is not a protobuf ExportTraceServiceRequest"),
        (b'"a string"', JSON, None, 400, "body must be a JSON object (ExportTraceServiceRequest), got str"),
    ],
)
def test_bad_bodies(body: bytes, ctype: str | None, encoding: str | None, status: int, message: str) -> None:
    with pytest.raises(ApiError) as err:
        decode_body(body, ctype, encoding, LIMIT, _REQUEST())
    assert err.value.status == status
    assert err.value.message.startswith(message), err.value.message
