"""The erring mock judge's pure parts: bias specs, flip draws, and flipped replies."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from judges.mock import Bias, evidence_of, flip_draw, reply_for, rubric_of
from tests.unit.test_judge_mock_verdict import body_for, with_answer
from tracejury.core.errors import ConfigError

CONTRADICTION = "Your order 48213 was delivered on Nov 19."
N = 2000


def bodies(trace: dict[str, Any], n: int, labels: tuple[str, ...] = ("pass", "fail")) -> list[dict[str, Any]]:
    """Request bodies for ``n`` traces that differ only in their question (distinct evidence)."""
    out = []
    for i in range(n):
        twin = copy.deepcopy(trace)
        twin["sample"]["inputText"] = f"Where is my order? (ticket {i})"
        out.append(body_for(twin, labels))
    return out


@pytest.fixture
def passing(example_trace: dict[str, Any]) -> list[dict[str, Any]]:
    found = bodies(example_trace, N)
    assert {reply_for(b)["label"] for b in found} == {"pass"}
    return found


@pytest.fixture
def failing(example_trace: dict[str, Any]) -> list[dict[str, Any]]:
    found = bodies(with_answer(example_trace, CONTRADICTION), N)
    assert {reply_for(b)["label"] for b in found} == {"fail"}
    return found


def flipped(found: list[dict[str, Any]], bias: Bias, seed: int = 0) -> set[int]:
    """Indexes of the bodies whose label ``bias`` changes."""
    return {i for i, b in enumerate(found) if reply_for(b, bias=bias, seed=seed)["label"] != reply_for(b)["label"]}


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "bias"),
    [
        ("", Bias()),
        ("  ", Bias()),
        ("fail_to_pass=0.5", Bias(fail_to_pass=0.5)),
        ("pass_to_fail=1", Bias(pass_to_fail=1.0)),
        (" pass_to_fail = 0.1 , fail_to_pass=0 ", Bias(fail_to_pass=0.0, pass_to_fail=0.1)),
    ],
)
def test_parse(spec: str, bias: Bias) -> None:
    assert Bias.parse(spec) == bias


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("lenient=0.5", "unknown key 'lenient'"),
        ("fail_to_pass", "item 'fail_to_pass' is not KEY=R"),
        ("fail_to_pass=", "is not KEY=R"),
        ("=0.5", "is not KEY=R"),
        ("fail_to_pass=0.5,", "item '' is not KEY=R"),
        ("fail_to_pass=half", "rate 'half' of fail_to_pass is not a number"),
        ("pass_to_fail=1.5", "rate 1.5 of pass_to_fail is not in [0, 1]"),
        ("pass_to_fail=-0.1", "not in [0, 1]"),
        ("pass_to_fail=nan", "not in [0, 1]"),
        ("fail_to_pass=0.1,fail_to_pass=0.2", "key 'fail_to_pass' given twice"),
    ],
)
def test_bad_bias_specs(spec: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Bias.parse(spec)
    message = str(caught.value)
    assert why in message and message.startswith("--bias: bad bias spec ") and "\n" not in message


def test_active() -> None:
    assert not Bias().active and not Bias.parse("fail_to_pass=0,pass_to_fail=0").active
    assert Bias(fail_to_pass=0.01).active and Bias(pass_to_fail=1).active


# --------------------------------------------------------------------------- draws


def test_flip_draws_are_stable_uniform_and_seeded() -> None:
    evidences = [{"trace_id": f"tr_{i}", "final_answer": "x"} for i in range(N)]
    draws = [flip_draw(3, "answer_correctness", e) for e in evidences]
    assert all(0.0 <= u < 1.0 for u in draws)
    assert draws == [flip_draw(3, "answer_correctness", copy.deepcopy(e)) for e in evidences]
    assert 0.45 < sum(u < 0.5 for u in draws) / N < 0.55
    assert sum(draws) / N == pytest.approx(0.5, abs=0.03)
    assert draws != [flip_draw(4, "answer_correctness", e) for e in evidences]
    assert draws != [flip_draw(3, "groundedness", e) for e in evidences]


def test_flip_draws_do_not_depend_on_key_order() -> None:
    evidence = {"a": 1, "b": {"c": [1, 2], "d": None}}
    reordered = {"b": {"d": None, "c": [1, 2]}, "a": 1}
    assert flip_draw(0, "r", evidence) == flip_draw(0, "r", reordered)
    assert flip_draw(0, "r", evidence) != flip_draw(0, "r", {**evidence, "a": 2})
    assert 0.0 <= flip_draw(0, "r", None) < 1.0


@pytest.mark.parametrize(
    ("label", "draw", "bias", "expected"),
    [
        ("fail", 0.0, Bias(), "fail"),
        ("fail", 0.29, Bias(fail_to_pass=0.3), "pass"),
        ("fail", 0.3, Bias(fail_to_pass=0.3), "fail"),
        ("fail", 0.999, Bias(fail_to_pass=1.0), "pass"),
        ("fail", 0.0, Bias(pass_to_fail=1.0), "fail"),
        ("pass", 0.0, Bias(fail_to_pass=1.0), "pass"),
        ("pass", 0.999, Bias(pass_to_fail=1.0), "fail"),
        ("middle", 0.0, Bias(fail_to_pass=1.0, pass_to_fail=1.0), "middle"),
    ],
)
def test_apply(label: str, draw: float, bias: Bias, expected: str) -> None:
    assert bias.apply(label, "pass", "fail", draw) == expected


def test_the_rubric_is_the_schema_name_or_the_system_text(example_trace: dict[str, Any]) -> None:
    assert rubric_of(body_for(example_trace)) == "answer_correctness"
    plain = body_for(example_trace, json_schema=False)
    assert rubric_of(plain) == plain["messages"][0]["content"]


# --------------------------------------------------------------------------- replies


def test_rate_zero_changes_nothing(passing: list[dict[str, Any]], failing: list[dict[str, Any]]) -> None:
    none = Bias.parse("fail_to_pass=0,pass_to_fail=0")
    for body in passing[:200] + failing[:200]:
        assert reply_for(body, bias=none, seed=1) == reply_for(body)


def test_rate_one_flips_every_fail_to_pass_silently(failing: list[dict[str, Any]]) -> None:
    for body in failing[:300]:
        plain, lenient = reply_for(body), reply_for(body, bias=Bias(fail_to_pass=1.0), seed=9)
        assert lenient == {**plain, "label": "pass"}  # same rationale and confidence: no marker


def test_half_the_fails_flip_at_rate_one_half(failing: list[dict[str, Any]]) -> None:
    share = len(flipped(failing, Bias(fail_to_pass=0.5))) / N
    assert 0.45 < share < 0.55  # ± 4.5 standard deviations of Binomial(2000, 0.5) / 2000


def test_same_seed_same_flips_other_seed_others(failing: list[dict[str, Any]]) -> None:
    bias = Bias(fail_to_pass=0.5)
    first = flipped(failing, bias, seed=11)
    again = flipped([copy.deepcopy(b) for b in failing], bias, seed=11)
    assert first == again
    other = flipped(failing, bias, seed=12)
    assert other != first and 0.45 < len(other) / N < 0.55
    assert 0.15 < len(first & other) / N < 0.35  # independent draws: about a quarter overlap


def test_identical_evidence_flips_alike_whatever_the_rest_of_the_request(
    failing: list[dict[str, Any]],
) -> None:
    bias = Bias(fail_to_pass=0.5)
    for body in failing[:100]:
        resent = copy.deepcopy(body)
        resent["seed"] = 3  # another sample of the same request
        resent["messages"][1]["content"] = "Judge again.\n\n" + resent["messages"][1]["content"]
        assert evidence_of(resent) == evidence_of(body)
        assert reply_for(resent, bias=bias, seed=5) == reply_for(body, bias=bias, seed=5)


def test_pass_to_fail_is_independent_of_fail_to_pass(
    passing: list[dict[str, Any]], failing: list[dict[str, Any]]
) -> None:
    assert not flipped(passing, Bias(fail_to_pass=1.0))
    assert not flipped(failing, Bias(pass_to_fail=1.0))
    harsh = flipped(passing, Bias(pass_to_fail=0.3), seed=2)
    assert harsh == flipped(passing, Bias(fail_to_pass=0.9, pass_to_fail=0.3), seed=2)
    assert 0.25 < len(harsh) / N < 0.35
    lenient = flipped(failing, Bias(fail_to_pass=0.4), seed=2)
    assert lenient == flipped(failing, Bias(fail_to_pass=0.4, pass_to_fail=0.7), seed=2)


def test_rate_one_flips_every_pass_to_fail(passing: list[dict[str, Any]]) -> None:
    for body in passing[:300]:
        assert reply_for(body, bias=Bias(pass_to_fail=1.0))["label"] == "fail"


def test_other_label_sets(example_trace: dict[str, Any]) -> None:
    both = Bias(fail_to_pass=1.0, pass_to_fail=1.0)
    contradicted = with_answer(example_trace, CONTRADICTION)
    assert reply_for(body_for(contradicted, ("good", "bad")), bias=both)["label"] == "good"
    assert reply_for(body_for(example_trace, ("no", "yes")), bias=both)["label"] == "no"
    scale = ("1", "2", "3", "4", "5")
    assert reply_for(body_for(contradicted, scale), bias=both)["label"] == "5"
    assert reply_for(body_for(example_trace, scale), bias=both)["label"] == "1"
    single = body_for(example_trace, ("ok",))
    assert reply_for(single, bias=both) == reply_for(single)  # no opposite: unchanged


def test_a_middle_label_stays(example_trace: dict[str, Any]) -> None:
    rag = with_answer(example_trace, "Shipping is quick.")  # borderline: the middle of a scale
    rag["evidence"].pop("tool")
    rag["req"]["toolRequired"] = False
    rag["sample"]["toolSnapshots"] = []
    body = body_for(rag, ("1", "2", "3", "4", "5"))
    assert reply_for(body)["label"] == "3"
    assert reply_for(body, bias=Bias(fail_to_pass=1.0, pass_to_fail=1.0))["label"] == "3"
