"""``tracejury judge-check``: one probe call to a judge profile's endpoint, and what it showed.

The probe is a fixed, tiny rubric-like request (the shipped system prompt, labels pass/fail,
one agreeing tool snapshot) sent through the real judge client with a fresh memory of
response formats, so it finds out from scratch which wire format the endpoint takes
(``structured_output: auto`` walks the ladder as a scoring run would), and whether the reply
parsed against the schema.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tracejury.cli.app import _catalog, _print_json, _settings, app, out
from tracejury.core.errors import ConfigError

PROBE_LABELS = ("pass", "fail")
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["label", "rationale", "confidence"],
    "additionalProperties": False,
    "properties": {
        "label": {"type": "string", "enum": list(PROBE_LABELS)},
        "rationale": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
PROBE_EVIDENCE: dict[str, Any] = {
    "input_text": "Where is my order 48213?",
    "final_answer": "Your order 48213 was delivered on Nov 18.",
    "retrieval": None,
    "tool_required": True,
    "tool_calls": [{"tool_name": "order_lookup", "schema_version": "v1", "status": "success",
                    "snapshot": {"order_id": "48213", "state": "delivered", "delivered_at": "2024-11-18"}}],
    "truncated": False,
    "guardrails": [],
}  # fmt: skip


def probe_request() -> Any:
    """The probe: what a tool-grounded correctness rubric would send for a passing trace."""
    from judges.evidence import evidence_block
    from judges.llm import JudgeRequest
    from judges.rubric import SYSTEM_PROMPT

    user = "Does the final answer agree with the tool snapshot?\n\n" + evidence_block(PROBE_EVIDENCE)
    system = SYSTEM_PROMPT.format(labels=", ".join(PROBE_LABELS))
    messages = ({"role": "system", "content": system}, {"role": "user", "content": user})
    return JudgeRequest(messages, PROBE_SCHEMA, PROBE_LABELS, "judge_check")


async def run_check(profile: Any, *, base_url: str, api_key: str | None) -> dict[str, Any]:
    """Send the probe through a fresh client of ``profile``; the result as JSON-ready data."""
    from judges.llm import FormatMemory, JudgeClient, JudgeVerdict, make_http_client

    memory = FormatMemory()
    async with make_http_client(profile) as http:
        client = JudgeClient(http, profile, base_url=base_url, api_key=api_key, formats=memory)
        outcome = await client.judge(probe_request())
    verdict = isinstance(outcome, JudgeVerdict)
    return {
        "profile": profile.name,
        "url": client.url,
        "model": profile.model,
        "structuredOutput": profile.structured_output,
        "format": client.wire_format,
        "refused": [{"format": r.wire, "httpStatus": r.http_status, "message": r.message} for r in memory.refusals],
        "reasoning": profile.reasoning,
        "parsed": verdict,
        "label": outcome.label if verdict else None,
        "failure": None if verdict else {"kind": outcome.kind, "httpStatus": outcome.http_status,
                                         "message": outcome.message},  # fmt: skip
        "attempts": outcome.attempts,
        "latencyMs": outcome.latency_ms,
        "promptTokens": outcome.prompt_tokens,
        "completionTokens": outcome.completion_tokens,
        "answeredBy": outcome.model if verdict else None,
    }


@app.command("judge-check")
def judge_check(
    profile: Annotated[str, typer.Option(help="Judge profile to probe (profiles.yaml of the rubrics directory).")],
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Send one probe call to a judge profile: the response format it takes, latency, tokens, parsing."""
    import asyncio
    import logging

    from judges.llm import default_profile

    logging.getLogger("tracejury.judges").disabled = True  # the refusals are printed below

    settings = _settings()
    profiles = dict(_catalog(settings).profiles)
    profiles.setdefault("default", default_profile(settings.judge_base_url))
    if profile not in profiles:
        raise ConfigError(f"unknown judge profile {profile!r} (known: {', '.join(sorted(profiles))})",
                          field="--profile")  # fmt: skip
    chosen = profiles[profile]
    data = asyncio.run(run_check(chosen, base_url=settings.judge_base_url,
                                 api_key=settings.api_key(chosen.api_key_env)))  # fmt: skip
    if json:
        _print_json(data)
    else:
        _print(data)
    if not data["parsed"]:
        raise typer.Exit(1)


def _print(data: dict[str, Any]) -> None:
    tokens = "-"
    if data["promptTokens"] is not None:
        tokens = f"{data['promptTokens']} prompt + {data['completionTokens']} completion"
    out.print(f"profile {data['profile']}: {data['url']} (model {data['model']}"
              + (", reasoning" if data["reasoning"] else "") + ")", soft_wrap=True)  # fmt: skip
    out.print(f"response format: {data['format']} (structured_output {data['structuredOutput']})")
    for refusal in data["refused"]:
        out.print(f"  refused {refusal['format']}: HTTP {refusal['httpStatus']}: {refusal['message']}",
                  soft_wrap=True, markup=False)  # fmt: skip
    out.print(f"latency {data['latencyMs']} ms over {data['attempts']} attempt(s); tokens {tokens}")
    if data["parsed"]:
        out.print(f"reply parsed: label {data['label']!r} (answered by {data['answeredBy']})", markup=False)
    else:
        failure = data["failure"]
        status = f", HTTP {failure['httpStatus']}" if failure["httpStatus"] else ""
        out.print(f"reply NOT parsed: {failure['kind']}{status}: {failure['message']}", soft_wrap=True, markup=False)
