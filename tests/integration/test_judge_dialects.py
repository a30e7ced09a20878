"""The real judge client against the real mock judge in each server dialect, over loopback.

Each test starts a mock judge imitating one server (``--dialect``) on a free port and gives
the client a fresh format memory, so what ``auto`` learns is the test's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from judges.llm import (
    FormatMemory,
    JudgeClient,
    JudgeFailure,
    JudgeOutcome,
    JudgeProfile,
    JudgeRequest,
    JudgeVerdict,
    make_http_client,
)
from judges.mock import MOCK_MODEL, running_mock_judge
from tracejury.cli.judgecheck import probe_request

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "tracejury")
PROFILE = JudgeProfile(name="mock", model=MOCK_MODEL, timeout_s=5, max_attempts=2,
                       backoff_initial_s=0.01, backoff_max_s=0.05)  # fmt: skip


def run(
    dialect: str,
    profile: JudgeProfile = PROFILE,
    *,
    calls: int = 1,
    api_key: str | None = None,
    memory: FormatMemory | None = None,
    faults: str = "",
    base_path: str = "/v1",
    request: JudgeRequest | None = None,
) -> tuple[list[JudgeOutcome], JudgeClient, FormatMemory]:
    """Start a mock judge in ``dialect``; judge the probe request ``calls`` times, one after another."""
    memory = memory or FormatMemory()

    async def main() -> tuple[list[JudgeOutcome], JudgeClient]:
        async with running_mock_judge(dialect=dialect, faults=faults, seed=1) as mock:
            base = f"http://{mock.host}:{mock.port}{base_path}"
            chosen = profile.model_copy(update={"base_url": base})
            async with make_http_client(chosen) as http:
                client = JudgeClient(http, chosen, base_url=base, api_key=api_key, formats=memory)
                return [await client.judge(request or probe_request()) for _ in range(calls)], client

    outcomes, client = asyncio.run(asyncio.wait_for(main(), timeout=30))
    return outcomes, client, memory


def test_openai_takes_json_schema_at_once() -> None:
    outcomes, client, memory = run("openai", calls=2)
    assert [(o.label, o.attempts) for o in outcomes] == [("pass", 1), ("pass", 1)]  # type: ignore[union-attr]
    assert client.wire_format == "json_schema" and not memory.refusals


def test_llamacpp_auto_falls_back_to_json_object_once_and_remembers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tracejury.judges"):
        outcomes, client, memory = run("llamacpp", calls=3)
    assert all(isinstance(o, JudgeVerdict) and o.label == "pass" for o in outcomes), outcomes
    assert [o.attempts for o in outcomes] == [2, 1, 1]
    assert client.wire_format == "json_object_schema"
    [refusal] = memory.refusals
    assert (refusal.wire, refusal.http_status) == ("json_schema", 500)
    assert "HTTP 500" in refusal.message and "'response_format', 'type'" in refusal.message
    assert len([r for r in caplog.records if "refused response format" in r.getMessage()]) == 1


def test_the_memory_is_per_endpoint_and_shared_by_clients() -> None:
    memory = FormatMemory()

    async def main() -> list[JudgeOutcome]:
        async with running_mock_judge(dialect="llamacpp") as mock:
            profile = PROFILE.model_copy(update={"base_url": mock.base_url})
            outcomes = []
            for _ in range(2):  # two clients, as two chunks of a worker would have
                async with make_http_client(profile) as http:
                    client = JudgeClient(http, profile, base_url=mock.base_url, formats=memory)
                    outcomes.append(await client.judge(probe_request()))
            return outcomes

    first, second = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert (first.attempts, second.attempts) == (2, 1)
    assert isinstance(second, JudgeVerdict) and len(memory.refusals) == 1


def test_llamacpp_with_explicit_json_schema_is_an_http_error_without_retries() -> None:
    profile = PROFILE.model_copy(update={"structured_output": "json_schema"})
    [outcome], _, _ = run("llamacpp", profile)
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("http_error", 500, 1)


def test_a_500_fault_on_llamacpp_stays_a_retried_http_error() -> None:
    profile = PROFILE.model_copy(update={"structured_output": "json_object"})
    [outcome], _, memory = run("llamacpp", profile, faults="http500=1")
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("http_error", 500, PROFILE.max_attempts)
    assert not memory.refusals


def test_vllm_old_walks_down_to_bare_json_object() -> None:
    outcomes, client, memory = run("vllm-old", calls=2)
    assert isinstance(outcomes[0], JudgeVerdict) and outcomes[0].attempts == 3, outcomes[0]
    assert outcomes[1].attempts == 1
    assert client.wire_format == "json_object"
    assert [(r.wire, r.http_status) for r in memory.refusals] == [("json_schema", 400), ("json_object_schema", 400)]
    assert "extra_forbidden" in memory.refusals[1].message


def test_openai_json_object_drops_the_unknown_schema_key() -> None:
    profile = PROFILE.model_copy(update={"structured_output": "json_object"})
    [outcome], client, memory = run("openai", profile)
    assert isinstance(outcome, JudgeVerdict) and outcome.attempts == 2
    assert client.wire_format == "json_object" and "unknown_parameter" in memory.refusals[0].message


def test_none_on_every_dialect_but_azure() -> None:
    profile = PROFILE.model_copy(update={"structured_output": "none"})
    for dialect in ("openai", "vllm-old", "llamacpp", "ollama"):
        [outcome], _, _ = run(dialect, profile)
        assert isinstance(outcome, JudgeVerdict) and outcome.attempts == 1, (dialect, outcome)


def test_ollama_takes_json_schema_and_names_a_missing_model() -> None:
    [outcome], client, _ = run("ollama")
    assert isinstance(outcome, JudgeVerdict) and client.wire_format == "json_schema"
    [missing], _, memory = run("ollama", PROFILE.model_copy(update={"model": "llama3.2"}))
    assert isinstance(missing, JudgeFailure) and (missing.kind, missing.http_status) == ("http_error", 404)
    assert "try pulling it first" in missing.message and not memory.refusals


@pytest.mark.parametrize("dialect", ["openai", "azure"])
def test_reasoning_models_refuse_max_tokens_and_temperature_unless_the_profile_says_reasoning(dialect: str) -> None:
    path = "/openai/deployments/o3-mini" if dialect == "azure" else "/v1"
    profile = PROFILE.model_copy(update={"model": "o3-mini", "api_version": "2024-10-21" if dialect == "azure" else None})
    [plain], _, memory = run(dialect, profile, api_key="k", base_path=path)
    assert isinstance(plain, JudgeFailure) and (plain.kind, plain.http_status, plain.attempts) == ("http_error", 400, 1)
    assert "Unsupported parameter: 'max_tokens'" in plain.message and not memory.refusals
    reasoning = profile.model_copy(update={"reasoning": True})
    [outcome], _, _ = run(dialect, reasoning, api_key="k", base_path=path)
    assert isinstance(outcome, JudgeVerdict) and outcome.model == "o3-mini", outcome


def test_azure_needs_the_api_version_and_the_api_key_header() -> None:
    azure = PROFILE.model_copy(update={"model": "gpt-4o", "api_version": "2024-10-21"})
    path = "/openai/deployments/gpt-4o"
    [ok], client, _ = run("azure", azure, api_key="k", base_path=path)
    assert isinstance(ok, JudgeVerdict) and client.url.endswith("/gpt-4o/chat/completions?api-version=2024-10-21")
    [no_key], _, _ = run("azure", azure, base_path=path)
    assert isinstance(no_key, JudgeFailure) and no_key.http_status == 401 and "Access denied" in no_key.message
    bearer = azure.model_copy(update={"api_version": None})  # a Bearer key and no api-version: OpenAI-style
    [no_version], _, _ = run("azure", bearer, api_key="k", base_path=path)
    assert isinstance(no_version, JudgeFailure) and no_version.http_status == 404
    assert "Resource not found" in no_version.message


def test_a_billed_reply_without_a_verdict_keeps_its_tokens() -> None:
    for fault, kind in (("malformed", "invalid_output"), ("label", "rubric_mismatch"), ("schema", "invalid_output")):
        [outcome], _, _ = run("llamacpp", PROFILE.model_copy(update={"structured_output": "json_object"}),
                              faults=f"{fault}=1")  # fmt: skip
        assert isinstance(outcome, JudgeFailure) and outcome.kind == kind, (fault, outcome)
        assert outcome.prompt_tokens and outcome.completion_tokens, (fault, outcome)


def test_the_reply_cap_is_sent() -> None:
    sent: list[dict[str, Any]] = []
    request = probe_request()

    async def main() -> None:
        from aiohttp import web

        async def handler(req: web.Request) -> web.Response:
            sent.append(await req.json())
            return web.json_response({"error": {"message": "nope"}}, status=400)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        profile = PROFILE.model_copy(update={"max_output_tokens": 77, "base_url": f"http://127.0.0.1:{port}/v1"})
        try:
            async with make_http_client(profile) as http:
                await JudgeClient(http, profile, base_url="", formats=FormatMemory()).judge(request)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert sent[0]["max_tokens"] == 77 and "max_completion_tokens" not in sent[0]


def test_judge_check_cli_against_a_llamacpp_mock(tmp_path: Path) -> None:
    async def main() -> subprocess.CompletedProcess[str]:
        async with running_mock_judge(dialect="llamacpp") as mock:
            (tmp_path / "profiles.yaml").write_text(
                f"profiles:\n  - name: local\n    base_url: {mock.base_url}\n    model: smollm2\n"
            )
            env = {**os.environ, "TRACEJURY_RUBRICS_DIR": str(tmp_path)}
            proc = await asyncio.create_subprocess_exec(
                EXE, "judge-check", "--profile", "local", "--json",
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            return subprocess.CompletedProcess([], proc.returncode or 0, out.decode(), err.decode())

    done = asyncio.run(main())
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    assert (data["format"], data["parsed"], data["label"], data["attempts"]) == ("json_object_schema", True, "pass", 2)
    assert [r["format"] for r in data["refused"]] == ["json_schema"] and data["promptTokens"] > 0
