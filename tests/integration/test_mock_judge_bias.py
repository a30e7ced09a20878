"""The erring mock judge over loopback: biased verdicts through the real judge client and CLI.

Flips seen over HTTP are the pure ``reply_for``'s flips: the same on every server started with
the same seed (as on every worker), another set with another seed.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from judges.llm import JudgeClient, JudgeOutcome, JudgeRequest, JudgeVerdict, make_http_client
from judges.mock import MOCK_MODEL, Bias, reply_for, running_mock_judge, serve
from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tests.integration.test_mock_judge import CONTRADICTION, PROFILE, judge_request
from tracejury.core.errors import ConfigError

pytestmark = pytest.mark.integration


def judge_all(requests: list[JudgeRequest], *, bias: Bias | str, seed: int) -> list[str]:
    """Start a mock judge with ``bias`` and ``seed``, judge every request, return the labels."""

    async def main() -> list[JudgeOutcome]:
        async with (
            running_mock_judge(bias=bias, seed=seed) as mock,
            make_http_client(PROFILE) as http,
        ):
            client = JudgeClient(http, PROFILE, base_url=mock.base_url)
            return await asyncio.gather(*(client.judge(r) for r in requests))

    outcomes = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert all(isinstance(o, JudgeVerdict) for o in outcomes), outcomes
    return [o.label for o in outcomes if isinstance(o, JudgeVerdict)]


def contradicted(trace: dict[str, Any], i: int) -> dict[str, Any]:
    trace = copy.deepcopy(trace)
    trace["sample"]["finalAnswer"] = CONTRADICTION
    trace["sample"]["inputText"] = f"Where is my order? (ticket {i})"
    return trace


def test_a_lenient_judge_passes_a_contradiction_silently(example_trace: dict[str, Any]) -> None:
    request = judge_request(contradicted(example_trace, 0))

    async def main() -> JudgeOutcome:
        async with running_mock_judge(bias="fail_to_pass=1", seed=1) as mock, make_http_client(PROFILE) as http:
            return await JudgeClient(http, PROFILE, base_url=mock.base_url).judge(request)

    outcome = asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert isinstance(outcome, JudgeVerdict), outcome
    assert (outcome.label, outcome.confidence) == ("pass", 0.9)
    assert outcome.rationale.startswith("Contradicts the tool")  # the rationale is the honest one


def test_a_harsh_judge_fails_an_agreeing_answer(example_trace: dict[str, Any]) -> None:
    assert judge_all([judge_request(example_trace)], bias=Bias(pass_to_fail=1.0), seed=0) == ["fail"]
    assert judge_all([judge_request(example_trace)], bias=Bias(fail_to_pass=1.0), seed=0) == ["pass"]


def test_every_server_with_the_seed_flips_the_same_verdicts(example_trace: dict[str, Any]) -> None:
    requests = [judge_request(contradicted(example_trace, i)) for i in range(80)]
    bias = Bias(fail_to_pass=0.5)
    first = judge_all(requests, bias=bias, seed=21)
    assert first == judge_all(requests, bias="fail_to_pass=0.5", seed=21)
    expected = [reply_for(r.body(MOCK_MODEL), bias=bias, seed=21)["label"] for r in requests]
    assert first == expected
    assert 20 < first.count("pass") < 60
    assert judge_all(requests, bias=bias, seed=22) != first


def test_serve_rejects_a_bad_bias_before_binding() -> None:
    with pytest.raises(ConfigError, match="--bias: .*unknown key 'lenient'"):
        serve("127.0.0.1", 0, bias="lenient=0.5")


def test_the_cli_flag(example_trace: dict[str, Any], tmp_path: Path) -> None:
    bad = subprocess.run([EXE, "mock-judge", "--port", "0", "--bias", "fail_to_pass=2"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: --bias: bad bias spec 'fail_to_pass=2': rate 2 of fail_to_pass is not in [0, 1]"
        " (expected fail_to_pass=R,pass_to_fail=R, R in [0, 1])"
    ]

    port = free_port()
    proc = start([EXE, "mock-judge", "--port", str(port), "--bias", "fail_to_pass=1", "--seed", "3"],
                 dict(os.environ), tmp_path / "mock-judge.log")  # fmt: skip
    try:
        wait_port(port)
        request = judge_request(contradicted(example_trace, 0))

        async def main() -> JudgeOutcome:
            async with make_http_client(PROFILE) as http:
                return await JudgeClient(http, PROFILE, base_url=f"http://127.0.0.1:{port}/v1").judge(request)

        outcome = asyncio.run(asyncio.wait_for(main(), timeout=20))
        assert isinstance(outcome, JudgeVerdict) and outcome.label == "pass", outcome
    finally:
        stop(proc)
