"""Trace schema v1: the example passes; each kind of bad line gets its own clear message."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tracejury.core.errors import InvalidTrace
from tracejury.core.trace import Trace
from tracejury.core.validation import TraceValidator

validator = TraceValidator()


def _error(raw: bytes) -> InvalidTrace:
    with pytest.raises(InvalidTrace) as info:
        validator.parse(raw)
    return info.value


def test_example_passes_schema_and_model(example_trace: dict[str, Any]) -> None:
    doc = validator.parse(orjson.dumps(example_trace))
    trace = Trace.model_validate(doc)
    assert trace.traceId == "tr_7f3a9c2e01"
    assert trace.evidence.tool[0].status == "success"


def test_minimal_trace_without_optional_parts_passes(example_trace: dict[str, Any]) -> None:
    for key in ("evidence", "feedback", "sample"):
        del example_trace[key]
    for key in ("channel", "locale", "sessionTurn", "intent", "toolRequired"):
        del example_trace["req"][key]
    for key in ("stageLatencyMs", "guardrails", "stopReason", "retryCount", "rateLimited"):
        del example_trace["runtime"][key]
    assert validator.validate(example_trace)["traceId"] == "tr_7f3a9c2e01"
    Trace.model_validate(example_trace)


def test_unknown_extra_fields_are_kept(example_trace: dict[str, Any]) -> None:
    example_trace["vendorExtension"] = {"a": 1}
    example_trace["runtime"]["gpuName"] = "h100"
    doc = validator.parse(orjson.dumps(example_trace))
    assert doc["vendorExtension"] == {"a": 1}
    assert Trace.model_validate(doc).runtime.model_extra == {"gpuName": "h100"}


def test_not_json() -> None:
    e = _error(b'{"traceId": "x",')
    assert e.path == "$"
    assert e.message.startswith("not JSON:")


@pytest.mark.parametrize(
    ("raw", "what"), [(b"[1, 2]", "an array"), (b'"hi"', "a string"), (b"3", "a number")]
)
def test_not_an_object(raw: bytes, what: str) -> None:
    assert _error(raw).message == f"expected a JSON object, got {what}"


def test_missing_field_names_field_and_parent(example_trace: dict[str, Any]) -> None:
    del example_trace["outputs"]["formatValid"]
    e = _error(orjson.dumps(example_trace))
    assert (e.path, e.message) == ("$.outputs", "missing required field 'formatValid'")
    assert e.trace_id == "tr_7f3a9c2e01"


def test_missing_trace_id_has_no_trace_id(example_trace: dict[str, Any]) -> None:
    del example_trace["traceId"]
    e = _error(orjson.dumps(example_trace))
    assert (e.path, e.message, e.trace_id) == ("$", "missing required field 'traceId'", None)


def test_wrong_type(example_trace: dict[str, Any]) -> None:
    example_trace["runtime"]["truncated"] = "no"
    e = _error(orjson.dumps(example_trace))
    assert (e.path, e.message) == ("$.runtime.truncated", "expected boolean, got string")


def test_negative_count(example_trace: dict[str, Any]) -> None:
    example_trace["runtime"]["completionTokenCount"] = -3
    e = _error(orjson.dumps(example_trace))
    assert (e.path, e.message) == ("$.runtime.completionTokenCount", "must be >= 0, got -3")


def test_bad_timestamp(example_trace: dict[str, Any]) -> None:
    example_trace["timestamp"] = "2026-13-45 noon"
    e = _error(orjson.dumps(example_trace))
    assert e.path == "$.timestamp"
    assert "not a valid date-time" in e.message


def test_unknown_schema_version(example_trace: dict[str, Any]) -> None:
    example_trace["schemaVersion"] = "tracejury.trace/v7"
    e = _error(orjson.dumps(example_trace))
    assert e.path == "$.schemaVersion"
    assert e.message == "unknown schemaVersion 'tracejury.trace/v7' (supported: tracejury.trace/v1)"


def test_nested_array_path(example_trace: dict[str, Any]) -> None:
    example_trace["evidence"]["retrieval"]["topKScoreBins"] = [8, 12]
    e = _error(orjson.dumps(example_trace))
    assert e.path == "$.evidence.retrieval.topKScoreBins[1]"


def test_messages_are_one_line(example_trace: dict[str, Any]) -> None:
    example_trace["runtime"]["guardrails"][0]["decision"] = "maybe\nor not"
    e = _error(orjson.dumps(example_trace))
    assert "\n" not in str(e)
    assert e.path == "$.runtime.guardrails[0].decision"
