"""Wire formats, reasoning-model parameters, refusals and the format memory, without a network.

The client is driven by ``httpx.MockTransport`` fakes; each test gets its own
:class:`FormatMemory`, so nothing learned leaks into another test.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
import pytest

from judges.llm import (
    LADDERS,
    FormatMemory,
    JudgeClient,
    JudgeFailure,
    JudgeOutcome,
    JudgeProfile,
    JudgeRequest,
    JudgeVerdict,
    is_format_refusal,
    json_instruction,
    parse_completion,
)
from judges.mock import chat_completion

BASE_URL = "http://judge.test/v1"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["label", "rationale"],
    "properties": {"label": {"enum": ["pass", "fail"]}, "rationale": {"type": "string"}},
    "additionalProperties": False,
}
SYSTEM = {"role": "system", "content": "You are a judge.\nAllowed labels: pass, fail"}
USER = {"role": "user", "content": "Grade this.\n<evidence>\n{}\n</evidence>"}
REQUEST = JudgeRequest((SYSTEM, USER), SCHEMA, ("pass", "fail"), "answer_correctness", seed=7)
VERDICT = '{"label": "pass", "rationale": "Fine."}'
PROFILE = JudgeProfile(name="t", model="judge-1", max_attempts=3, backoff_initial_s=0.01)
# llama-cpp-python's real reply to {"type": "json_schema"} (FastAPI's validation error, wrapped)
LLAMACPP_500 = {"error": {"message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format',"
                          " 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
                          "type": "internal_server_error", "param": None, "code": None}}  # fmt: skip
OPENAI_SCHEMA_KEY = {"error": {"message": "Unknown parameter: 'response_format.schema'.", "type": "invalid_request_error",
                               "param": "response_format.schema", "code": "unknown_parameter"}}  # fmt: skip


# --------------------------------------------------------------------------- bodies


def test_json_schema_body_keeps_the_messages_and_sends_the_cap() -> None:
    body = REQUEST.body("m", max_tokens=512)
    assert body["messages"] == [SYSTEM, USER]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.0, 7, 512)
    assert body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer_correctness", "schema": SCHEMA, "strict": True},
    }  # fmt: skip
    assert "max_completion_tokens" not in body


@pytest.mark.parametrize(
    ("wire", "response_format"),
    [
        ("json_object_schema", {"type": "json_object", "schema": SCHEMA}),
        ("json_object", {"type": "json_object"}),
        ("none", None),
    ],
)
def test_other_formats_put_the_schema_in_the_system_prompt(wire: Any, response_format: Any) -> None:
    body = REQUEST.body("m", wire=wire, max_tokens=64)
    assert body.get("response_format") == response_format
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith(SYSTEM["content"])
    assert system["content"].endswith(json_instruction(SCHEMA)) and "JSON Schema" in system["content"]
    assert user == USER  # the evidence stays last, untouched
    assert REQUEST.messages == (SYSTEM, USER)  # the request is not mutated


def test_the_instruction_makes_its_own_system_message_when_there_is_none() -> None:
    request = JudgeRequest((USER,), SCHEMA, ("pass", "fail"), "s")
    first, second = request.body("m", wire="none")["messages"]
    assert first == {"role": "system", "content": json_instruction(SCHEMA)} and second == USER


def test_the_instruction_does_not_depend_on_key_order() -> None:
    assert json_instruction(dict(reversed(list(SCHEMA.items())))) == json_instruction(SCHEMA)


def test_a_reasoning_model_gets_max_completion_tokens_and_no_temperature() -> None:
    body = REQUEST.body("o3-mini", max_tokens=2048, reasoning=True)
    assert body["max_completion_tokens"] == 2048 and body["seed"] == 7
    assert "max_tokens" not in body and "temperature" not in body


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("status", "body", "refusal"),
    [
        (500, LLAMACPP_500, True),  # llama-cpp-python
        (500, {"error": {"code": 500, "message": 'response_format type must be one of "text" or "json_object",'
                         " but got: json_schema", "type": "server_error"}}, True),  # old llama-server  # fmt: skip
        (400, {"object": "error", "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type')}]",
               "type": "BadRequestError", "param": None, "code": 400}, True),  # old vLLM  # fmt: skip
        (400, OPENAI_SCHEMA_KEY, True),
        (422, {"detail": [{"loc": ["body", "response_format"], "msg": "bad"}]}, True),
        (500, {"error": {"message": "injected fault http500", "type": "server_error"}}, False),
        (503, {"error": {"message": "response_format busy"}}, False),  # not a refusal status
        (400, {"error": {"message": "context length exceeded"}}, False),
        (401, {"error": {"message": "bad key for response_format"}}, False),
    ],
)
def test_what_counts_as_a_response_format_refusal(status: int, body: Any, refusal: bool) -> None:
    assert is_format_refusal(status, orjson.dumps(body).decode()) is refusal


def test_ladders() -> None:
    assert LADDERS["auto"] == ("json_schema", "json_object_schema", "json_object", "none")
    assert LADDERS["json_object"] == ("json_object_schema", "json_object")
    assert len(LADDERS["json_schema"]) == len(LADDERS["none"]) == 1


def test_the_memory_moves_down_once_per_refused_rung(caplog: pytest.LogCaptureFixture) -> None:
    memory, ladder, key = FormatMemory(), LADDERS["auto"], ("u", "m", "auto")
    assert memory.current(key, ladder) == "json_schema"
    with caplog.at_level(logging.WARNING, logger="tracejury.judges"):
        assert memory.refused(key, ladder, "json_schema", 500, "no") == "json_object_schema"
        # a call that was sent json_schema before the move learns the new rung, and logs nothing
        assert memory.refused(key, ladder, "json_schema", 500, "no") == "json_object_schema"
    assert len(caplog.records) == 1 and "refused response format json_schema" in caplog.text
    assert memory.current(key, ladder) == "json_object_schema"
    assert memory.current(("u", "other", "auto"), ladder) == "json_schema"  # per endpoint
    assert memory.refused(key, ladder, "json_object_schema", 400, "no") == "json_object"
    assert memory.refused(key, ladder, "json_object", 400, "no") == "none"
    assert memory.refused(key, ladder, "none", 400, "no") is None
    assert [r.now for r in memory.refusals] == ["json_object_schema", "json_object", "none"]
    assert memory.refused(("u", "m", "json_schema"), LADDERS["json_schema"], "json_schema", 400, "no") is None


# --------------------------------------------------------------------------- the client


class Endpoint:
    """A fake server: refuses the response_format types in ``refuse`` with (status, body)."""

    def __init__(self, refuse: dict[str, tuple[int, Any]], content: str = VERDICT, schema_key: tuple[int, Any] | None = None) -> None:
        self.refuse, self.content, self.schema_key = refuse, content, schema_key
        self.requests: list[httpx.Request] = []

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.content) for r in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fmt = orjson.loads(request.content).get("response_format") or {}
        if fmt.get("type") in self.refuse:
            status, body = self.refuse[fmt["type"]]
            return httpx.Response(status, json=body)
        if "schema" in fmt and self.schema_key is not None:
            return httpx.Response(self.schema_key[0], json=self.schema_key[1])
        return httpx.Response(200, json=chat_completion(self.content, prompt_tokens=40, completion_tokens=8))


def judge(
    server: Endpoint,
    profile: JudgeProfile = PROFILE,
    memory: FormatMemory | None = None,
    *,
    calls: int = 1,
    api_key: str | None = None,
    concurrent: bool = False,
) -> tuple[list[JudgeOutcome], JudgeClient]:
    memory = memory or FormatMemory()

    async def no_sleep(_: float) -> None:
        pass

    async def main() -> tuple[list[JudgeOutcome], JudgeClient]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL, api_key=api_key, sleep=no_sleep, formats=memory)
            if concurrent:
                return list(await asyncio.gather(*(client.judge(REQUEST) for _ in range(calls)))), client
            return [await client.judge(REQUEST) for _ in range(calls)], client

    return asyncio.run(main())


def test_auto_falls_back_from_a_llamacpp_500_once_and_remembers() -> None:
    server = Endpoint({"json_schema": (500, LLAMACPP_500)})
    memory = FormatMemory()
    outcomes, client = judge(server, memory=memory, calls=3)
    assert all(isinstance(o, JudgeVerdict) for o in outcomes), outcomes
    assert [o.attempts for o in outcomes] == [2, 1, 1]  # the refused request, then one each
    types = [b["response_format"]["type"] for b in server.bodies]
    assert types == ["json_schema", "json_object", "json_object", "json_object"]
    assert server.bodies[1]["response_format"]["schema"] == SCHEMA
    assert client.wire_format == "json_object_schema" and len(memory.refusals) == 1
    # a new client of the same endpoint starts where the process left off
    again = Endpoint({"json_schema": (500, LLAMACPP_500)})
    judge(again, memory=memory)
    assert [b["response_format"]["type"] for b in again.bodies] == ["json_object"]


def test_concurrent_first_calls_wait_for_one_probe() -> None:
    server = Endpoint({"json_schema": (500, LLAMACPP_500)})
    outcomes, _ = judge(server, calls=8, concurrent=True)
    assert all(isinstance(o, JudgeVerdict) for o in outcomes)
    assert [b["response_format"]["type"] for b in server.bodies].count("json_schema") == 1
    assert len(server.requests) == 9


def test_auto_goes_down_to_none_when_every_json_mode_is_refused() -> None:
    refusal = (400, {"object": "error", "message": "response_format is not supported", "type": "BadRequestError"})
    server = Endpoint({"json_schema": refusal, "json_object": refusal}, content=f"Verdict: {VERDICT} Done.")
    [outcome], client = judge(server)
    assert isinstance(outcome, JudgeVerdict) and outcome.attempts == 4, outcome
    assert client.wire_format == "none" and "response_format" not in server.bodies[-1]


def test_json_object_drops_the_schema_key_where_it_is_unknown() -> None:
    server = Endpoint({}, schema_key=(400, OPENAI_SCHEMA_KEY))
    profile = PROFILE.model_copy(update={"structured_output": "json_object"})
    [outcome], client = judge(server, profile)
    assert isinstance(outcome, JudgeVerdict) and outcome.attempts == 2
    assert server.bodies[-1]["response_format"] == {"type": "json_object"}
    assert client.wire_format == "json_object"


def test_an_explicit_json_schema_refusal_is_an_http_error_without_retries() -> None:
    server = Endpoint({"json_schema": (500, LLAMACPP_500)})
    profile = PROFILE.model_copy(update={"structured_output": "json_schema"})
    [outcome], _ = judge(server, profile)
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("http_error", 500, 1)
    assert outcome.message.startswith("the endpoint refuses response format json_schema")


def test_a_500_about_something_else_is_retried_and_stays_an_http_error() -> None:
    server = Endpoint({"json_schema": (500, {"error": {"message": "CUDA out of memory", "type": "server_error"}})})
    memory = FormatMemory()
    [outcome], client = judge(server, memory=memory)
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("http_error", 500, PROFILE.max_attempts)
    assert client.wire_format == "json_schema" and not memory.refusals


def test_a_reasoning_profile_sends_its_parameters() -> None:
    server = Endpoint({})
    profile = PROFILE.model_copy(update={"reasoning": True, "max_output_tokens": 4096, "model": "o3-mini"})
    judge(server, profile)
    body = server.bodies[0]
    assert body["max_completion_tokens"] == 4096 and "temperature" not in body and "max_tokens" not in body


def test_azure_puts_the_api_version_in_the_url_and_the_key_in_api_key() -> None:
    server = Endpoint({})
    profile = PROFILE.model_copy(update={"api_version": "2024-10-21", "api_key_env": "AZ_KEY",
                                         "base_url": "https://res.openai.azure.com/openai/deployments/judge"})  # fmt: skip
    [outcome], client = judge(server, profile, api_key="secret")
    assert isinstance(outcome, JudgeVerdict)
    sent = server.requests[0]
    assert str(sent.url) == "https://res.openai.azure.com/openai/deployments/judge/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "secret" and "authorization" not in sent.headers
    assert client.url.endswith("?api-version=2024-10-21")


@pytest.mark.parametrize(
    ("content", "kind"),
    [("Sure! It passes.", "invalid_output"), ('{"label": "meh", "rationale": "x"}', "rubric_mismatch")],
)
def test_a_billed_reply_without_a_verdict_keeps_its_tokens(content: str, kind: str) -> None:
    [outcome], _ = judge(Endpoint({}, content=content))
    assert isinstance(outcome, JudgeFailure) and outcome.kind == kind
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (40, 8)


# --------------------------------------------------------------------------- parsing


def completion(content: str) -> dict[str, Any]:
    return chat_completion(content)


@pytest.mark.parametrize(
    "content",
    [f"Here is my verdict: {VERDICT}", f"Sure.\n```json\n{VERDICT}\n```\nHope it helps.", f"{VERDICT}\n\nThanks!"],
)
def test_prose_around_one_object_is_read_only_without_response_format(content: str) -> None:
    parsed = parse_completion(completion(content), REQUEST, embedded=True)
    assert parsed.label == "pass"  # type: ignore[union-attr]
    strict = parse_completion(completion(content), REQUEST)
    assert strict.kind == "invalid_output"  # type: ignore[union-attr]


def test_two_objects_in_prose_are_ambiguous() -> None:
    parsed = parse_completion(completion(f"First {VERDICT}, then {VERDICT}"), REQUEST, embedded=True)
    assert parsed.kind == "invalid_output" and "2 JSON objects" in parsed.message  # type: ignore[union-attr]


def test_an_embedded_object_must_still_fit_the_schema() -> None:
    parsed = parse_completion(completion('The answer: {"label": "pass"} ok'), REQUEST, embedded=True)
    assert parsed.kind == "invalid_output"  # type: ignore[union-attr]
    braces = parse_completion(completion("set {a, b} and {"), REQUEST, embedded=True)
    assert braces.kind == "invalid_output"  # type: ignore[union-attr]


def test_an_error_that_only_echoes_the_request_is_not_a_format_refusal() -> None:
    """FastAPI and pydantic echo the request in validation errors: a 422 about the messages
    names response_format in the echo, and must not move the endpoint down the ladder."""
    echo = {"detail": [{"type": "missing", "loc": ["body", "messages", 0, "content"], "msg": "Field required",
                        "input": {"role": "user", "response_format": {"type": "json_schema"}}}]}  # fmt: skip
    assert not is_format_refusal(422, orjson.dumps(echo).decode())
    text = ("1 validation error for Request\nmessages.0\n  Value error [type=value_error,"
            " input_value={'role': 'user', 'response_format': {}}, input_type=dict]")  # fmt: skip
    assert not is_format_refusal(400, text)
    llama = {"error": {"type": "internal_server_error", "message": "1 validation error\nresponse_format.type\n"
             "  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]"}}
    assert is_format_refusal(500, orjson.dumps(llama).decode())  # its own words still count
