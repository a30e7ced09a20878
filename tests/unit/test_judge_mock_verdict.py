"""The mock judge's pure parts: verdicts from evidence, labels, fault specs and draws."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import orjson
import pytest

from judges.evidence import evidence_block, evidence_from_trace
from judges.llm import JudgeRequest
from judges.mock import (
    CONFIDENCE,
    FaultPlan,
    assess,
    choose_label,
    evidence_of,
    faulty_reply,
    labels_of,
    parse_faults,
    reply_for,
)
from tracejury.core.errors import ConfigError
from tracejury.core.simulate import parse_regression, simulate


def schema(labels: tuple[str, ...], confidence: bool = True) -> dict[str, Any]:
    properties: dict[str, Any] = {"label": {"enum": list(labels)}, "rationale": {"type": "string"}}
    if confidence:
        properties["confidence"] = {"type": "number", "minimum": 0, "maximum": 1}
    return {"type": "object", "required": ["label", "rationale"], "properties": properties,
            "additionalProperties": False}  # fmt: skip


def body_for(
    trace: dict[str, Any],
    labels: tuple[str, ...] = ("pass", "fail"),
    *,
    json_schema: bool = True,
    confidence: bool = True,
) -> dict[str, Any]:
    """The request body a judge client would send for ``trace``."""
    block = evidence_block(evidence_from_trace(trace).as_data())
    request = JudgeRequest(
        messages=(
            {"role": "system", "content": f"Judge.\nAllowed labels: {', '.join(labels)}\n"},
            {"role": "user", "content": f"Is the answer correct?\n\n{block}"},
        ),
        output_schema=schema(labels, confidence),
        labels=labels,
        schema_name="answer_correctness",
    )
    return request.body("mock-judge", wire="json_schema" if json_schema else "none")


def with_answer(trace: dict[str, Any], answer: str | None, json_wrap: bool = True) -> dict:
    trace = copy.deepcopy(trace)
    if answer is not None and json_wrap:
        answer = orjson.dumps({"answer": answer, "citations": ["tool:order_status"]}).decode()
    trace["sample"]["finalAnswer"] = answer
    return trace


def test_an_answer_that_agrees_with_the_snapshot_passes(example_trace: dict[str, Any]) -> None:
    reply = reply_for(body_for(example_trace))
    assert reply["label"] == "pass" and reply["confidence"] == 0.9
    assert "tool snapshot" in reply["rationale"]


@pytest.mark.parametrize(
    "answer",
    [
        "Your order 48213 was delivered on Nov 19.",  # another state
        "Your order 48213 shipped on Nov 17 and is out for delivery today.",  # another date
        "Your order 48213 shipped on 2026-11-16 and is out for delivery.",
        "Order 48213 is still processing.",
    ],
)
def test_an_answer_that_contradicts_the_snapshot_fails(
    example_trace: dict[str, Any], answer: str
) -> None:
    reply = reply_for(body_for(with_answer(example_trace, answer)))
    assert reply["label"] == "fail" and reply["confidence"] == 0.9
    assert reply["rationale"].startswith("Contradicts the tool")


@pytest.mark.parametrize(
    "answer",
    [
        "Order 48213 shipped on 2026-11-18 and is out for delivery now.",
        "It left on 18 November and is Out For Delivery.",
    ],
)
def test_dates_and_states_in_other_spellings_agree(
    example_trace: dict[str, Any], answer: str
) -> None:
    assert (
        reply_for(body_for(with_answer(example_trace, answer, json_wrap=False)))["label"] == "pass"
    )


def test_a_required_tool_that_failed_fails(example_trace: dict[str, Any]) -> None:
    example_trace["evidence"]["tool"][0]["status"] = "error"
    reply = reply_for(body_for(example_trace))
    assert reply["label"] == "fail" and "required" in reply["rationale"]


def _rag_trace(trace: dict[str, Any], answer: str) -> dict[str, Any]:
    trace = with_answer(trace, answer)
    trace["evidence"].pop("tool")
    trace["req"]["toolRequired"] = False
    trace["sample"]["toolSnapshots"] = []
    return trace


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("Standard shipping takes 3-5 business days after dispatch.", "pass"),
        ("Shipping is quick.", "borderline"),  # one shared content word
        ("I'm not sure, but: standard shipping takes 3-5 business days.", "borderline"),
        ("Our gift cards never expire.", "fail"),
    ],
)
def test_retrieval_grounding(example_trace: dict[str, Any], answer: str, outcome: str) -> None:
    body = body_for(_rag_trace(example_trace, answer))
    assert assess(evidence_of(body)).outcome == outcome
    reply = reply_for(body)
    assert reply["label"] == ("fail" if outcome == "fail" else "pass")
    assert reply["confidence"] == CONFIDENCE[outcome]


def test_an_ordinal_scale_maps_pass_fail_and_borderline(example_trace: dict[str, Any]) -> None:
    scale = ("1", "2", "3", "4", "5")
    rag = {
        "5": "Standard shipping takes 3-5 business days after dispatch.",
        "3": "Shipping is quick.",
        "1": "Our gift cards never expire.",
    }
    for label, answer in rag.items():
        assert reply_for(body_for(_rag_trace(example_trace, answer), scale))["label"] == label


def test_a_missing_answer_cannot_be_judged(example_trace: dict[str, Any]) -> None:
    reply = reply_for(body_for(with_answer(example_trace, None)))
    assert (reply["label"], reply["confidence"]) == ("fail", CONFIDENCE["unjudgeable"])
    scale = ("1", "2", "3")
    assert reply_for(body_for(with_answer(example_trace, None), scale))["label"] == "1"


def test_a_request_without_evidence_cannot_be_judged() -> None:
    body = {"messages": [{"role": "user", "content": "Is 2 + 2 = 4?"}]}
    reply = reply_for(body)
    assert reply["label"] == "fail" and reply["confidence"] == CONFIDENCE["unjudgeable"]


def test_labels_come_from_the_schema_or_the_system_prompt(example_trace: dict[str, Any]) -> None:
    assert labels_of(body_for(example_trace, ("good", "bad"))) == ("good", "bad")
    plain = body_for(example_trace, ("a", "b", "c"), json_schema=False)
    assert "response_format" not in plain
    assert labels_of(plain) == ("a", "b", "c")
    assert reply_for(plain)["label"] == "c"
    assert labels_of({"messages": []}) == ("pass", "fail")


def test_content_parts_are_read(example_trace: dict[str, Any]) -> None:
    body = body_for(example_trace)
    text = body["messages"][1]["content"]
    body["messages"][1]["content"] = [{"type": "text", "text": text}]
    assert evidence_of(body) is not None and reply_for(body)["label"] == "pass"


@pytest.mark.parametrize(
    ("labels", "best", "worst"),
    [
        (("pass", "fail"), "pass", "fail"),
        (("fail", "pass"), "pass", "fail"),
        (("no", "yes"), "yes", "no"),
        (("bad", "good"), "good", "bad"),
        (("x", "y"), "y", "x"),
        (("1", "2", "3", "4"), "4", "1"),
    ],
)
def test_choose_label(labels: tuple[str, ...], best: str, worst: str) -> None:
    assert choose_label(labels, "pass") == best
    assert choose_label(labels, "fail") == worst
    assert choose_label(labels, "unjudgeable") == worst


def test_confidence_is_left_out_when_the_schema_has_none(example_trace: dict[str, Any]) -> None:
    body = body_for(example_trace, confidence=False)
    reply = reply_for(body)
    assert "confidence" not in reply
    validator = jsonschema_rs.validator_for(body["response_format"]["json_schema"]["schema"])
    assert validator.is_valid(reply)


def test_replies_are_deterministic_and_valid(example_trace: dict[str, Any]) -> None:
    body = body_for(example_trace)
    assert reply_for(body) == reply_for(copy.deepcopy(body))
    validator = jsonschema_rs.validator_for(body["response_format"]["json_schema"]["schema"])
    assert validator.is_valid(reply_for(body))


def test_simulated_contradictions_fail_and_their_clean_twins_pass() -> None:
    regression = parse_regression("answer_contradicts_tool:0.5")
    clean = list(simulate("r1", 400, seed=3))
    planted = list(simulate("r1", 400, seed=3, regressions=[regression]))
    compared = 0
    for before, after in zip(clean, planted, strict=True):
        if before["sample"]["finalAnswer"] == after["sample"]["finalAnswer"]:
            continue
        compared += 1
        assert reply_for(body_for(before))["label"] == "pass", before["traceId"]
        assert reply_for(body_for(after))["label"] == "fail", after["traceId"]
    assert compared > 30


# --------------------------------------------------------------------------- faults


def test_parse_faults() -> None:
    spec = "http500=0.2,http503=0.1,http429=0.1,hang=0.05,malformed=0.05,schema=0.05,label=0.05,refusal=0.05"  # noqa: E501
    rates = parse_faults(spec)
    assert rates["http500"] == 0.2 and rates["refusal"] == 0.05 and len(rates) == 8
    assert parse_faults("") == {} and parse_faults("  ") == {}
    assert parse_faults(" hang = 1 ") == {"hang": 1.0}


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("http404=0.1", "unknown fault kind 'http404'"),
        ("http500", "is not KIND=RATE"),
        ("http500=", "is not KIND=RATE"),
        ("http500=0.1,", "is not KIND=RATE"),
        ("http500=lots", "is not a number"),
        ("http500=1.5", "not in [0, 1]"),
        ("http500=-0.1", "not in [0, 1]"),
        ("http500=0.1,http500=0.2", "given twice"),
        ("http500=0.6,hang=0.6", "add up to 1.2"),
    ],
)
def test_bad_fault_specs(spec: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_faults(spec)
    message = str(caught.value)
    assert why in message and message.startswith("--faults: ") and "\n" not in message


def test_draws_are_deterministic_and_follow_the_rates() -> None:
    plan = FaultPlan({"http500": 0.3, "malformed": 0.1}, seed=7)
    digests = [bytes([i % 256, i // 256]) * 8 for i in range(5000)]
    draws = [plan.draw(d, 0) for d in digests]
    assert draws == [plan.draw(d, 0) for d in digests]
    assert 0.27 < draws.count("http500") / len(draws) < 0.33
    assert 0.08 < draws.count("malformed") / len(draws) < 0.12
    other = FaultPlan({"http500": 0.3, "malformed": 0.1}, seed=8)
    assert draws != [other.draw(d, 0) for d in digests]


def test_a_retry_of_the_same_body_draws_afresh() -> None:
    plan = FaultPlan({"http500": 0.5}, seed=0)
    digest = b"d" * 16
    assert {plan.draw(digest, seen) for seen in range(40)} == {"http500", None}


def test_rate_one_always_and_no_plan_never() -> None:
    assert all(FaultPlan({"hang": 1.0}).draw(bytes([i]), i) == "hang" for i in range(100))
    assert not FaultPlan().active and FaultPlan().draw(b"x", 0) is None
    assert not FaultPlan({"hang": 0.0}).active


def test_faulty_replies_break_the_schema_or_the_scale() -> None:
    labels = ("pass", "fail")
    reply = {"label": "pass", "rationale": "ok", "confidence": 0.9}
    validator = jsonschema_rs.validator_for(schema(labels))
    for variant in (0, 1):
        assert not validator.is_valid(faulty_reply("schema", reply, labels, variant))
    odd = faulty_reply("label", reply, ("pass", "not_a_label"), 0)
    assert odd["label"] not in ("pass", "not_a_label") and odd["rationale"] == "ok"
    with pytest.raises(ValueError):
        faulty_reply("hang", reply, labels, 0)
