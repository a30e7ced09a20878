"""OpenAI-shaped response bodies, shared by the mock judge server and the tests' fake servers.

Pure builders of dicts: a chat completion (``id``, ``object``, ``created``, ``model``,
``choices[0].message`` with ``content`` or ``refusal``, ``finish_reason``, ``usage``), an
error body, and the model list.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MOCK_MODEL", "chat_completion", "error_body", "model_list"]

MOCK_MODEL = "mock-judge"
"""The model name the mock judge lists and answers as by default."""


def chat_completion(
    content: str | None,
    *,
    model: str = MOCK_MODEL,
    refusal: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    completion_id: str = "chatcmpl-mock",
    created: int = 0,
) -> dict[str, Any]:
    """A ``chat.completion`` body with one choice whose message has ``content`` or ``refusal``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def model_list(models: tuple[str, ...] = (MOCK_MODEL,)) -> dict[str, Any]:
    """The ``GET /v1/models`` body listing ``models``."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "tracejury"} for m in models
        ],
    }
