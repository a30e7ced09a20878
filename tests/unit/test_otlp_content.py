"""Prompt, answer, tool calls and tool results from the official OpenAI instrumentations, as
they really emit them (tests/fixtures/otlp, made by its capture.py): spans, span events and
log records joined to their spans."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.otlp import capture as app
from tests.otlp_builder import attributes
from tracejury.core.otlp import map_trace
from tracejury.core.otlp_genai import Unmappable
from tracejury.core.otlp_spans import Event, Span, decode_any_value, decode_attributes, decode_spans
from tracejury.core.validation import TraceValidator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"
CAPTURED = ["openai-v2-legacy", "openai-v2-span-only", "openai-v2-event-only", "openai-v2-span-and-event",
            "openinference"]  # fmt: skip
"""Cases whose app turned content capture on (openinference captures by default)."""
NOT_CAPTURED = ["openai-v2-legacy-nocontent", "openai-v2-nocontent", "openinference-hidetext"]
"""Capture off; or OpenInference told to hide message texts (it writes `__REDACTED__` and keeps
the request and response bodies in input.value / output.value, which are not taken for text)."""
RESOURCE = {"service.version": "r42", "tracejury.system_prompt_version": "sp-12"}
"""What the app sets on its resource for tracejury (the instrumentations know neither)."""
SESSION = {"tracejury.session_id_hash": "sha256:session"}
"""The chat scenario has no span of the app's own to carry the conversation id."""


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _hex(raw: str) -> str:
    return base64.b64decode(raw).hex()  # MessageToJson writes ids in base64


def load(case: str, scenario: str, resource: dict[str, Any]) -> list[Span]:
    """The fixture's spans with ``resource`` added, each log record appended to its span's
    events, as the log ingest joins them (by trace and span id, in time order)."""
    traces = orjson.loads((FIXTURES / f"{case}.{scenario}.traces.json").read_bytes())
    for rs in traces["resourceSpans"]:
        rs["resource"]["attributes"] += attributes(resource)
    spans, reports = decode_spans(traces)
    assert reports == [] and len({s.trace_id for s in spans}) == 1
    logs = orjson.loads((FIXTURES / f"{case}.{scenario}.logs.json").read_bytes())
    joined: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for record in (r for rl in logs.get("resourceLogs", []) for sl in rl["scopeLogs"] for r in sl["logRecords"]):
        attrs = decode_attributes(record.get("attributes"))
        event = Event(name=record.get("eventName") or attrs["event.name"],
                      time_ns=int(record.get("timeUnixNano") or record.get("observedTimeUnixNano") or 0),
                      attrs=attrs, body=decode_any_value(record.get("body")))  # fmt: skip
        joined[(_hex(record["traceId"]), _hex(record["spanId"]))].append(event)
    out = []
    for span in spans:
        records = sorted(joined.pop((span.trace_id, span.span_id), []), key=lambda e: e.time_ns)
        out.append(dataclasses.replace(span, events=span.events + tuple(records)))
    assert not joined, "every log record names a span of the trace"
    return out


def mapped(spans: list[Span]) -> dict[str, Any]:
    trace, ignored = map_trace(spans)
    assert ignored == []
    TraceValidator().parse(orjson.dumps(trace))  # what the mapping emits must pass ingest's validation
    return trace


@pytest.mark.parametrize("case", CAPTURED)
def test_plain_chat(case: str) -> None:
    trace = mapped(load(case, "chat", RESOURCE | SESSION))
    assert trace["sample"] == {"inputText": app.CHAT_QUESTION, "finalAnswer": app.CHAT_ANSWER,
                               "systemInstructions": app.SYSTEM, "retrievedChunks": [], "toolSnapshots": []}  # fmt: skip
    assert trace["req"] == {"inputTextHash": sha(app.CHAT_QUESTION), "sessionIdHash": "sha256:session"}
    assert trace["outputs"] == {"rawModelTextHash": sha(app.CHAT_ANSWER), "finalAnswerHash": sha(app.CHAT_ANSWER),
                                "formatValid": True}  # fmt: skip
    # OpenInference records only the answering model (llm.model_name); its request's is in
    # llm.invocation_parameters, not read for the model (that would move existing traces' segments)
    name = app.RESPONSE_MODEL if case == "openinference" else app.MODEL
    assert trace["config"]["model"] == {"name": name, "version": app.RESPONSE_MODEL}
    assert (trace["config"]["temperature"], trace["config"]["maxTokens"]) == (0.2, 800)
    runtime = trace["runtime"]
    assert (runtime["inputTokenCount"], runtime["completionTokenCount"]) == app.USAGE["chat"]
    assert runtime["stopReason"] == "stop" and runtime["truncated"] is False
    assert trace["evidence"] == {"tool": []}


@pytest.mark.parametrize("case", CAPTURED)
def test_tool_round_without_a_tool_span(case: str) -> None:
    """The app ran the tool itself: the call and its result are in the messages of the two chat
    requests, not in an execute_tool span, so they are sample content, not ``evidence.tool``."""
    trace = mapped(load(case, "tool", RESOURCE))
    sample = trace["sample"]
    assert (sample["inputText"], sample["finalAnswer"]) == (app.TOOL_QUESTION, app.TOOL_ANSWER)
    assert sample["systemInstructions"] == app.SYSTEM
    assert sample["modelToolCalls"] == [{
        "toolCallId": app.TOOL_CALL_ID, "toolName": app.TOOL_NAME, "arguments": orjson.loads(app.TOOL_ARGS),
        "result": orjson.loads(app.TOOL_RESULT),
    }]  # fmt: skip
    assert sample["toolSnapshots"] == [] and trace["evidence"] == {"tool": []}
    assert trace["req"] == {"inputTextHash": sha(app.TOOL_QUESTION), "sessionIdHash": sha(app.CONVERSATION_ID)}
    assert trace["outputs"]["rawModelTextHash"] == trace["outputs"]["finalAnswerHash"] == sha(app.TOOL_ANSWER)
    runtime = trace["runtime"]
    (p1, c1), (p2, c2) = app.USAGE["tool_call"], app.USAGE["tool_answer"]
    assert (runtime["inputTokenCount"], runtime["completionTokenCount"]) == (p1 + p2, c1 + c2)
    assert runtime["stopReason"] == "stop" and set(runtime["stageLatencyMs"]) == {"generation"}


@pytest.mark.parametrize("case", CAPTURED)
def test_keep_sample_false_drops_the_text_not_the_hashes(case: str) -> None:
    trace = mapped(load(case, "chat", RESOURCE | SESSION | {"tracejury.keep_sample": False}))
    assert "sample" not in trace
    assert trace["req"]["inputTextHash"] == sha(app.CHAT_QUESTION)
    assert trace["outputs"]["finalAnswerHash"] == sha(app.CHAT_ANSWER)


@pytest.mark.parametrize("case", NOT_CAPTURED)
@pytest.mark.parametrize("scenario", app.SCENARIOS)
def test_capture_off_maps_from_tracejury_hashes_without_a_sample(case: str, scenario: str) -> None:
    with pytest.raises(Unmappable, match="missing outputs.rawModelTextHash"):
        map_trace(load(case, scenario, RESOURCE | SESSION))
    hashes = {"tracejury.input_text_hash": "sha256:in", "tracejury.raw_model_text_hash": "sha256:out"}
    trace = mapped(load(case, scenario, RESOURCE | SESSION | hashes))
    assert "sample" not in trace
    assert trace["req"]["inputTextHash"] == "sha256:in"
    assert trace["outputs"] == {"rawModelTextHash": "sha256:out", "finalAnswerHash": "sha256:out", "formatValid": True}


def test_keep_sample_true_without_content_keeps_only_what_was_recorded() -> None:
    """The legacy events name the tool call (id, name) even with capture off; nothing else."""
    hashes = {"tracejury.input_text_hash": "sha256:in", "tracejury.raw_model_text_hash": "sha256:out"}
    spans = load("openai-v2-legacy-nocontent", "tool", RESOURCE | hashes | {"tracejury.keep_sample": True})
    assert mapped(spans)["sample"] == {"retrievedChunks": [], "toolSnapshots": [], "modelToolCalls": [
        {"toolCallId": app.TOOL_CALL_ID, "toolName": app.TOOL_NAME}]}  # fmt: skip


def test_tool_span_without_its_result_takes_the_result_fed_back_under_its_call_id() -> None:
    spans = load("openai-v2-span-only", "tool", RESOURCE | {"tracejury.tool_schema_version": "tool_v1"})
    root = next(s for s in spans if s.parent_id is None)
    tool = dataclasses.replace(root, span_id="00000000000000aa", parent_id=root.span_id, name="execute_tool",
                               attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": app.TOOL_NAME,
                                      "gen_ai.tool.call.id": app.TOOL_CALL_ID,
                                      "gen_ai.tool.call.arguments": app.TOOL_ARGS}, events=())  # fmt: skip
    trace = mapped([*spans, tool])
    [call] = trace["evidence"]["tool"]
    assert call["responseHash"] == sha(app.TOOL_RESULT) and call["toolCallId"] == app.TOOL_CALL_ID
    assert trace["sample"]["toolSnapshots"] == [{"responseHash": sha(app.TOOL_RESULT),
                                                 "snapshot": orjson.loads(app.TOOL_RESULT)}]  # fmt: skip


def _chat_span(attrs: dict[str, Any], events: tuple[Event, ...] = ()) -> Span:
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.response.model": "m-1",
            "gen_ai.request.temperature": 0.0, "gen_ai.request.max_tokens": 64,
            "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 2}  # fmt: skip
    return Span("ab" * 16, "cd" * 8, None, "chat m", 1, 2, base | attrs, RESOURCE | SESSION, events=events)


def test_system_instructions_and_per_message_span_events() -> None:
    """Other instrumentations: ``gen_ai.system_instructions`` as parts, and the legacy
    per-message events as span events with their content in attributes."""
    events = (Event("gen_ai.user.message", 1, {"content": "Hi?"}),
              Event("gen_ai.choice", 2, {"index": 0, "message": '{"role": "assistant", "content": "Hello."}'}))  # fmt: skip
    span = _chat_span({"gen_ai.system_instructions": '[{"type": "text", "content": "Be kind."}]'}, events)
    sample = mapped([span])["sample"]
    assert (sample["inputText"], sample["finalAnswer"], sample["systemInstructions"]) == ("Hi?", "Hello.", "Be kind.")


def test_malformed_messages_name_the_attribute_and_span() -> None:
    span = _chat_span({"gen_ai.input.messages": "[{not json"})
    with pytest.raises(Unmappable, match="gen_ai.input.messages is not JSON") as err:
        map_trace([span])
    assert err.value.span is span


def test_text_openinference_hid_never_reaches_the_sample() -> None:
    """Not from ``__REDACTED__`` messages, nor from the request and response bodies that still
    hold the text."""
    hashes = {"tracejury.input_text_hash": "sha256:in", "tracejury.raw_model_text_hash": "sha256:out"}
    spans = load("openinference-hidetext", "tool", RESOURCE | hashes | {"tracejury.keep_sample": True})
    sample = mapped(spans)["sample"]
    assert not {"inputText", "finalAnswer", "systemInstructions"} & set(sample)
    assert sample["modelToolCalls"] == [{"toolCallId": app.TOOL_CALL_ID, "toolName": app.TOOL_NAME,
                                         "arguments": orjson.loads(app.TOOL_ARGS)}]  # fmt: skip
    assert all(t not in orjson.dumps(sample).decode() for t in (app.TOOL_QUESTION, app.TOOL_ANSWER, "out_for_delivery"))


@pytest.mark.parametrize("case", CAPTURED)
def test_release_alone_is_enough_when_content_was_captured(case: str) -> None:
    """An app that sets only service.version: the trace is its own session, and the captured
    system instructions name the prompt's version; the other content the same."""
    trace = mapped(load(case, "chat", {"service.version": "r42"}))
    assert trace["req"]["sessionIdHash"] == sha(f"otlp-trace:{trace['traceId']}")
    assert trace["config"]["systemPromptVersion"] == sha(app.SYSTEM)
    assert trace["sample"]["systemInstructions"] == app.SYSTEM
    # what the app sets wins
    trace = mapped(load(case, "chat", RESOURCE | SESSION))
    assert (trace["req"]["sessionIdHash"], trace["config"]["systemPromptVersion"]) == ("sha256:session", "sp-12")


@pytest.mark.parametrize("case", NOT_CAPTURED)
def test_without_captured_instructions_the_prompt_version_is_required(case: str) -> None:
    hashes = {"tracejury.input_text_hash": "sha256:in", "tracejury.raw_model_text_hash": "sha256:out"}
    with pytest.raises(Unmappable, match="missing config.systemPromptVersion"):
        map_trace(load(case, "chat", {"service.version": "r42"} | hashes))
