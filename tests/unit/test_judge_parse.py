"""Strict parsing of judge replies: each way a reply can fail has its failure kind."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from judges.llm import JudgeRequest, ParsedReply, ReplyProblem, parse_completion, reply_validator
from judges.mock import chat_completion

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["label", "rationale"],
    "properties": {
        "label": {"enum": ["pass", "fail"]},
        "rationale": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "additionalProperties": False,
}
REQUEST = JudgeRequest(
    messages=({"role": "user", "content": "grade"},),
    output_schema=SCHEMA,
    labels=("pass", "fail"),
    schema_name="answer_correctness",
)


def _body(content: str | None, **kwargs: Any) -> dict[str, Any]:
    return chat_completion(content, prompt_tokens=120, completion_tokens=30, **kwargs)


def _kind(result: ParsedReply | ReplyProblem) -> str:
    assert isinstance(result, ReplyProblem), result
    assert "\n" not in result.message
    return result.kind


def test_a_valid_reply_parses() -> None:
    content = '{"label": "fail", "rationale": "It contradicts the tool.", "confidence": 0.8}'
    assert parse_completion(_body(content), REQUEST) == ParsedReply(
        "fail", "It contradicts the tool.", 0.8, 120, 30
    )


def test_confidence_is_optional_and_usage_may_be_missing() -> None:
    body = _body('{"label": "pass", "rationale": "ok"}')
    del body["usage"]
    assert parse_completion(body, REQUEST) == ParsedReply("pass", "ok", None, None, None)


def test_one_json_fence_is_accepted() -> None:
    fenced = '```json\n{"label": "pass", "rationale": "fine"}\n```'
    result = parse_completion(_body(fenced), REQUEST)
    assert isinstance(result, ParsedReply) and result.label == "pass"


@pytest.mark.parametrize(
    "content",
    [
        '```\n{"label": "pass", "rationale": "fine"}\n```',  # no json tag
        '```python\n{"label": "pass", "rationale": "fine"}\n```',
        'Here you go: ```json\n{"label": "pass", "rationale": "fine"}\n```',
        '```json\n```json\n{"label": "pass", "rationale": "fine"}\n```\n```',  # two wrappings
        'The label is {"label": "pass", "rationale": "fine"}',
        '{"label": "pass", "rationale": "fine"} trailing',
        "pass",
    ],
)
def test_anything_looser_is_invalid_output(content: str) -> None:
    assert _kind(parse_completion(_body(content), REQUEST)) == "invalid_output"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {"object": "chat.completion"},
        {"choices": []},
        {"choices": ["x"]},
        {"choices": [{"finish_reason": "stop"}]},
        chat_completion(None),
        chat_completion("   "),
    ],
)
def test_not_a_completion_is_invalid_output(body: Any) -> None:
    assert _kind(parse_completion(body, REQUEST)) == "invalid_output"


@pytest.mark.parametrize(
    "reply",
    [
        ["pass", "ok"],
        "pass",
        {"label": "pass"},  # no rationale
        {"label": "pass", "rationale": 3},
        {"label": ["pass"], "rationale": "x"},
        {"label": "pass", "rationale": "x", "confidence": 1.5},
        {"label": "pass", "rationale": "x", "extra": True},
    ],
)
def test_json_that_breaks_the_schema_is_invalid_output(reply: Any) -> None:
    body = _body(orjson.dumps(reply).decode())
    assert _kind(parse_completion(body, REQUEST)) == "invalid_output"


def test_confidence_is_checked_even_when_the_schema_does_not() -> None:
    loose = JudgeRequest(REQUEST.messages, {"type": "object"}, ("pass", "fail"), "loose")
    body = _body('{"label": "pass", "rationale": "x", "confidence": 7}')
    assert _kind(parse_completion(body, loose)) == "invalid_output"
    body = _body('{"label": "pass", "rationale": "x", "confidence": true}')
    assert _kind(parse_completion(body, loose)) == "invalid_output"


def test_a_label_outside_the_scale_is_rubric_mismatch() -> None:
    body = _body('{"label": "maybe", "rationale": "unsure", "confidence": 0.5}')
    result = parse_completion(body, REQUEST)
    assert _kind(result) == "rubric_mismatch"
    assert "maybe" in result.message  # type: ignore[union-attr]


def test_rubric_mismatch_without_an_enum_in_the_schema() -> None:
    loose = JudgeRequest(REQUEST.messages, {"type": "object"}, ("1", "2", "3"), "scale")
    body = _body('{"label": "4", "rationale": "x"}')
    assert _kind(parse_completion(body, loose)) == "rubric_mismatch"


def test_a_refusal_is_refused() -> None:
    body = _body(None, refusal="I can't help with that.")
    result = parse_completion(body, REQUEST)
    assert _kind(result) == "refused"
    assert "can't help" in result.message  # type: ignore[union-attr]


def test_a_content_filter_stop_is_refused() -> None:
    body = _body('{"label": "pass", "rationale": "x"}', finish_reason="content_filter")
    assert _kind(parse_completion(body, REQUEST)) == "refused"


def test_messages_stay_on_one_line() -> None:
    body = _body("line one\nline two\n" + "x" * 500)
    result = parse_completion(body, REQUEST)
    assert isinstance(result, ReplyProblem)
    assert "\n" not in result.message and len(result.message) <= 300


def test_validators_are_compiled_once_per_schema() -> None:
    same = orjson.loads(orjson.dumps(SCHEMA))  # equal content, another object, other key order
    same = dict(reversed(list(same.items())))
    assert reply_validator(SCHEMA) is reply_validator(same)
    assert reply_validator(SCHEMA) is not reply_validator({"type": "object"})
