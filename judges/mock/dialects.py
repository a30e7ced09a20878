"""Server dialects the mock judge can speak: each one's request checks and error bodies.

Pure: :func:`check` takes what a request sent (body, headers, query, the Azure deployment of
its path) and returns the error reply that dialect's real server gives it, or None (answer
it). The errors are the servers' own, read from their sources and issue trackers:

    openai     (default) reasoning models (o1, o3, o4…, gpt-5…) refuse ``max_tokens`` (400
               ``unsupported_parameter``) and a ``temperature`` other than 1 (400
               ``unsupported_value``); ``response_format.schema`` is an unknown parameter (400
               ``unknown_parameter``); ``json_object`` needs the word "json" in the messages.
               Requests the client sent before issue 14 pass unchanged.
    vllm-old   vLLM of early 2024 (0.4–0.5: no ``json_schema``; extra fields forbidden until ~0.6.4):
               ``response_format.type`` must be ``text`` or ``json_object`` and no field
               may be unknown — 400 ``{"object": "error", "message": <pydantic errors>,
               "type": "BadRequestError", "param": null, "code": 400}``.
    llamacpp   llama-cpp-python's server: ``response_format.type`` must be ``text`` or
               ``json_object`` (a ``schema`` beside it constrains decoding); anything else
               fails FastAPI's validation *inside* its error-wrapping route, so the reply is
               HTTP 500 ``internal_server_error`` carrying the validation error. Unknown
               fields (``max_completion_tokens``) are ignored.
    ollama     Ollama's ``/v1`` route: ``json_schema`` and ``json_object`` are taken, unknown
               fields ignored (``max_completion_tokens`` too: no reply cap); a model it does
               not have is 404 ``not_found_error``, bad messages 400 ``invalid_request_error``.
    azure      Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions`` needs
               ``?api-version=`` (404 ``Resource not found`` without it) and an ``api-key``
               header (401 ``Access denied…``); a reasoning deployment refuses what OpenAI's
               reasoning models do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from judges.mock.replies import MOCK_MODEL

__all__ = ["DIALECTS", "Dialect", "check", "is_reasoning_model"]

Dialect = Literal["openai", "vllm-old", "llamacpp", "ollama", "azure"]
"""A server the mock judge imitates."""
DIALECTS: tuple[str, ...] = get_args(Dialect)
"""Every dialect, the default (``openai``) first."""

Reply = tuple[int, dict[str, Any]]

_REASONING = re.compile(r"^(o\d|gpt-5)", re.I)
# vLLM 0.5's ChatCompletionRequest fields (extra="forbid"); max_completion_tokens came in 0.6
_VLLM_OLD_FIELDS = frozenset({
    "model", "messages", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens", "n",
    "presence_penalty", "response_format", "seed", "stop", "stream", "temperature", "top_p", "tools",
    "tool_choice", "user", "best_of", "use_beam_search", "top_k", "min_p", "repetition_penalty",
    "length_penalty", "early_stopping", "ignore_eos", "min_tokens", "stop_token_ids", "skip_special_tokens",
    "spaces_between_special_tokens", "echo", "add_generation_prompt", "include_stop_str_in_output",
    "guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend",
    "guided_whitespace_pattern",
})  # fmt: skip
_AZURE_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key"
    " for an active subscription and use a correct regional API endpoint for your resource."
)


def is_reasoning_model(name: str) -> bool:
    """Whether OpenAI treats ``name`` as a reasoning model (o1, o3-mini, o4…, gpt-5…)."""
    return bool(_REASONING.match(name))


def _openai_error(message: str, param: str | None, code: str | None) -> Reply:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _openai_checks(body: dict[str, Any], model: str) -> Reply | None:
    """What OpenAI's chat completions refuse among what a judge client sends."""
    if is_reasoning_model(model):
        if "max_tokens" in body:
            return _openai_error(
                "Unsupported parameter: 'max_tokens' is not supported with this model."
                " Use 'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter",
            )  # fmt: skip
        temperature = body.get("temperature", 1)
        if temperature != 1:
            return _openai_error(
                f"Unsupported value: 'temperature' does not support {temperature} with this model."
                " Only the default (1) value is supported.", "temperature", "unsupported_value",
            )  # fmt: skip
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        extra = sorted(set(fmt) - {"type", "json_schema"})
        if extra:
            where = f"response_format.{extra[0]}"
            return _openai_error(f"Unknown parameter: '{where}'.", where, "unknown_parameter")
        if fmt.get("type") == "json_object" and "json" not in str(body.get("messages")).lower():
            return _openai_error("'messages' must contain the word 'json' in some form, to use 'response_format'"
                                 " of type 'json_object'.", "messages", None)  # fmt: skip
    return None


def _pydantic_errors(body: dict[str, Any], *, forbid_extra: bool, types: tuple[str, ...]) -> list[dict[str, Any]]:
    """The pydantic v2 errors a server whose ``response_format.type`` is one of ``types`` reports."""
    errors: list[dict[str, Any]] = []
    expected = " or ".join(f"'{t}'" for t in types)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in types:
        errors.append({"type": "literal_error", "loc": ("body", "response_format", "type"),
                       "msg": f"Input should be {expected}", "input": fmt.get("type"),
                       "ctx": {"expected": expected}})  # fmt: skip
    if forbid_extra:
        if isinstance(fmt, dict):
            for key in sorted(set(fmt) - {"type"}):
                errors.append({"type": "extra_forbidden", "loc": ("body", "response_format", key),
                               "msg": "Extra inputs are not permitted", "input": fmt[key]})  # fmt: skip
        for key in sorted(set(body) - _VLLM_OLD_FIELDS):
            errors.append({"type": "extra_forbidden", "loc": ("body", key),
                           "msg": "Extra inputs are not permitted", "input": body[key]})  # fmt: skip
    return errors


def _vllm_old(body: dict[str, Any]) -> Reply | None:
    errors = _pydantic_errors(body, forbid_extra=True, types=("text", "json_object"))
    if not errors:
        return None
    return 400, {"object": "error", "message": str(errors), "type": "BadRequestError", "param": None, "code": 400}


def _llamacpp(body: dict[str, Any]) -> Reply | None:
    errors = _pydantic_errors(body, forbid_extra=False, types=("text", "json_object"))
    if not errors:
        return None
    # FastAPI's RequestValidationError, str()-ed by llama_cpp.server's RouteErrorHandler
    message = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''}:\n" + "".join(
        f"  {e}\n" for e in errors
    ) + '  File "llama_cpp/server/app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
    return 500, {"error": {"message": message, "type": "internal_server_error", "param": None, "code": None}}


def _ollama(body: dict[str, Any], models: tuple[str, ...]) -> Reply | None:
    def error(status: int, message: str) -> Reply:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return status, {"error": {"message": message, "type": kind, "param": None, "code": None}}

    if not body.get("messages"):
        return error(400, "[] is too short - 'messages'")
    for message in body["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str | list):
            return error(400, f"invalid message content type: {type(content).__name__}")
    model = body.get("model")
    if model not in models:
        return error(404, f'model "{model}" not found, try pulling it first')
    return None


def check(
    dialect: str,
    body: dict[str, Any],
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    deployment: str | None = None,
    models: tuple[str, ...] = (MOCK_MODEL,),
) -> Reply | None:
    """The (status, JSON body) ``dialect``'s server answers this chat request with when it
    refuses it, or None when it would answer. ``deployment`` is the Azure path's deployment
    (None on ``/v1/chat/completions``); ``models`` are the models an Ollama server has."""
    model = body.get("model") if isinstance(body.get("model"), str) else ""
    if dialect == "openai":
        return _openai_checks(body, model)
    if dialect == "vllm-old":
        return _vllm_old(body)
    if dialect == "llamacpp":
        return _llamacpp(body)
    if dialect == "ollama":
        return _ollama(body, models)
    if dialect == "azure":
        if deployment is None or not query.get("api-version"):
            return 404, {"error": {"code": "404", "message": "Resource not found"}}
        if not headers.get("api-key"):
            return 401, {"error": {"code": "401", "message": _AZURE_DENIED}}
        return _openai_checks(body, deployment)
    raise ValueError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})")

