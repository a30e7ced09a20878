"""The traffic simulator: schema-valid, deterministic, realistic, regressions only where asked."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from statistics import mean
from typing import Any

import jsonschema_rs
import orjson
import pytest

from tracejury.core.errors import ConfigError
from tracejury.core.segments import default_segmentation, key_matches, segment_key
from tracejury.core.simulate import REGRESSION_KINDS, Regression, parse_regression, simulate

N = 20_000
PHRASES = {
    "processing": "processing",
    "shipped": "shipped",
    "out_for_delivery": "out for delivery",
    "delivered": "delivered",
}
KEY_DATE = {
    "processing": "placedAt",
    "shipped": "shippedAt",
    "out_for_delivery": "shippedAt",
    "delivered": "deliveredAt",
}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
Trace = dict[str, Any]


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def answer(t: Trace) -> str:
    return json.loads(t["sample"]["finalAnswer"])["answer"]


def valid(t: Trace) -> bool:
    return t["outputs"]["formatValid"]


def stated_states(text: str) -> list[str]:
    return [state for state, phrase in PHRASES.items() if phrase in text]


def tool_calls(t: Trace) -> list[Trace]:
    return t["evidence"].get("tool") or []


def retrieval(t: Trace) -> Trace | None:
    return t["evidence"].get("retrieval")


def rate(traces: list[Trace], pred: Any) -> float:
    assert traces, "rate of an empty population"
    return sum(1 for t in traces if pred(t)) / len(traces)


def keys_before(base: list[Trace]) -> list[str]:
    seg = default_segmentation()
    return [segment_key(t, seg) for t in base]


def run(*specs: str, n: int = N) -> list[Trace]:
    return list(simulate("r42", n, 7, [parse_regression(s) for s in specs]))


@pytest.fixture(scope="module")
def validator() -> Any:
    text = resources.files("tracejury.core").joinpath("schemas/trace.v1.json").read_text()
    return jsonschema_rs.Draft202012Validator(json.loads(text), validate_formats=True)


@pytest.fixture(scope="module")
def base() -> list[Trace]:
    return list(simulate("r42", N, 7))


@pytest.fixture(scope="module")
def base_keys(base: list[Trace]) -> list[str]:
    return keys_before(base)


# --------------------------------------------------------------------------- shape


@pytest.mark.parametrize("specs", [(), tuple(f"{k}:0.3" for k in REGRESSION_KINDS)])
def test_every_trace_is_schema_valid_and_json(validator: Any, specs: tuple[str, ...]) -> None:
    regs = [parse_regression(s) for s in specs]
    traces = list(simulate("r7", 2000, 3, regs, sample_rate=0.5))
    assert len(traces) == 2000
    for t in traces:
        errors = [e.message for e in validator.iter_errors(t)]
        assert errors == [], (t["traceId"], errors)
        assert orjson.loads(orjson.dumps(t)) == t
        assert t["releaseId"] == "r7"
        assert t["config"]["model"] == {"name": "acme-chat", "version": "2026-10-01"}
        assert t["config"]["toolSchemaVersion"] == "tool_v1"


def test_timestamps_are_rfc3339_ms_and_increase_over_a_day(base: list[Trace]) -> None:
    stamps = [t["timestamp"] for t in base]
    assert all(RFC3339_MS.match(s) for s in stamps)
    assert stamps == sorted(stamps)
    assert stamps[0].startswith("2026-11-20T00:")
    assert stamps[-1].startswith("2026-11-20T23:")
    for t in base[:2000]:
        for f in t["feedback"]:
            assert RFC3339_MS.match(f["at"]) and f["at"] > t["timestamp"]


@pytest.mark.parametrize(
    ("start", "first_day"),
    [
        (datetime(2027, 3, 1, 12, tzinfo=UTC), "2027-03-01T12:"),
        (datetime(2027, 3, 1, 12), "2027-03-01T12:"),  # naive counts as UTC
        (datetime(2027, 3, 1, 13, tzinfo=timezone(timedelta(hours=1))), "2027-03-01T12:"),
    ],
)
def test_start_moves_the_window(start: datetime, first_day: str) -> None:
    traces = list(simulate("r1", 100, 1, start=start))
    assert traces[0]["timestamp"].startswith(first_day)
    last = datetime.fromisoformat(traces[-1]["timestamp"].replace("Z", "+00:00"))
    assert last - start.replace(tzinfo=UTC) < timedelta(hours=24)


def test_trace_ids_are_unique_and_carry_the_release(base: list[Trace]) -> None:
    ids = [t["traceId"] for t in base]
    assert len(set(ids)) == len(ids)
    assert all("r42" in i for i in ids)


def test_hashes_are_sha256_of_their_texts(base: list[Trace]) -> None:
    for t in base[:3000]:
        s = t["sample"]
        assert t["req"]["inputTextHash"] == sha(s["inputText"])
        assert t["outputs"]["finalAnswerHash"] == sha(s["finalAnswer"])
        for call in tool_calls(t):
            order_id = re.search(r"\d{5}", s["inputText"]).group()
            assert call["argsHash"] == sha(json.dumps({"orderId": order_id}, separators=(",", ":")))
            if call["status"] == "success":
                (snap,) = s["toolSnapshots"]
                canonical = json.dumps(snap["snapshot"], sort_keys=True, separators=(",", ":"))
                assert call["responseHash"] == snap["responseHash"] == sha(canonical)
            else:
                assert call["responseHash"] is None and s["toolSnapshots"] == []


# --------------------------------------------------------------------------- determinism


def test_same_arguments_give_byte_identical_output() -> None:
    regs = [parse_regression("format_invalid:0.2:rag=off"), parse_regression("truncation:0.3")]

    def dump(**kw: Any) -> list[bytes]:
        return [orjson.dumps(t) for t in simulate("r42", 1500, 11, regs, **kw)]

    assert dump() == dump()
    assert dump(sample_rate=0.4) == dump(sample_rate=0.4)
    assert dump() != [orjson.dumps(t) for t in simulate("r42", 1500, 12, regs)]


def test_releases_never_share_trace_or_session_ids() -> None:
    a = list(simulate("r1", 3000, 5))
    b = list(simulate("r2", 3000, 5))
    assert not {t["traceId"] for t in a} & {t["traceId"] for t in b}
    assert not {t["req"]["sessionIdHash"] for t in a} & {t["req"]["sessionIdHash"] for t in b}
    assert [t["req"]["intent"] for t in a] != [t["req"]["intent"] for t in b]


def test_it_streams_in_constant_memory() -> None:
    huge = simulate("r1", 10**12, 1)
    assert isinstance(huge, Iterator)
    assert len(list(itertools.islice(huge, 50))) == 50
    peaks = []
    for n in (1000, 4000):
        tracemalloc.start()
        try:
            for _ in simulate("r1", n, 1):
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 1.2 * peaks[0] + 50_000, peaks  # 4x the traces, not 4x the memory


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"release": "", "n": 1}, "release"),
        ({"release": "r1", "n": -1}, "n must be"),
        ({"release": "r1", "n": 1, "sample_rate": 1.5}, "sample_rate"),
        ({"release": "r1", "n": 1, "regressions": ["truncation:0.1"]}, "not a Regression"),
    ],
)
def test_bad_arguments_raise_config_error_at_call_time(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        simulate(seed=1, **kwargs)


def test_zero_traces() -> None:
    assert list(simulate("r1", 0, 1)) == []


# --------------------------------------------------------------------------- realism


def test_intent_mix(base: list[Trace]) -> None:
    intents = Counter(t["req"]["intent"] for t in base)
    rag = intents["shipping_policy"] + intents["returns"] + intents["account"]
    assert 0.32 < intents["order_status"] / N < 0.38
    assert 0.42 < rag / N < 0.48
    assert 0.17 < intents["smalltalk"] / N < 0.23
    for t in base:
        assert t["req"]["toolRequired"] == (t["req"]["intent"] == "order_status")
        if t["req"]["intent"] == "smalltalk":
            assert retrieval(t) is None and not tool_calls(t)
        elif t["req"]["intent"] != "order_status":
            assert retrieval(t) is not None and not tool_calls(t)
    order = [t for t in base if t["req"]["intent"] == "order_status"]
    assert 0.2 < rate(order, lambda t: retrieval(t) is not None) < 0.4


def test_sessions_grow_turn_by_turn(base: list[Trace]) -> None:
    turns: dict[str, list[int]] = defaultdict(list)
    for t in base:
        turns[t["req"]["sessionIdHash"]].append(t["req"]["sessionTurn"])
        assert t["runtime"]["historyLength"] == 2 * t["req"]["sessionTurn"] - 1
    for seq in turns.values():
        assert seq == list(range(1, len(seq) + 1))
    lengths = Counter(len(seq) for seq in turns.values())
    assert 0.3 < lengths[1] / len(turns) < 0.5  # many single-turn sessions
    assert max(lengths) >= 10  # and a tail
    assert 0.04 < rate(base, lambda t: t["req"]["sessionTurn"] >= 6) < 0.15


def test_truncation_rises_with_session_length(base: list[Trace]) -> None:
    first = [t for t in base if t["req"]["sessionTurn"] == 1]
    late = [t for t in base if t["req"]["sessionTurn"] >= 9]
    assert 0.003 < rate(first, lambda t: t["runtime"]["truncated"]) < 0.035
    assert rate(late, lambda t: t["runtime"]["truncated"]) > 0.3
    for t in base:
        rt = t["runtime"]
        assert (rt["droppedItemCount"] > 0) == rt["truncated"]


def test_tokens_and_latencies(base: list[Trace]) -> None:
    for t in base:
        rt, ev = t["runtime"], t["evidence"]
        stages = rt["stageLatencyMs"]
        assert rt["latencyMs"] == sum(stages.values())
        assert ("retrieval" in stages) == ("retrieval" in ev)
        assert ("tool" in stages) == ("tool" in ev)
        assert set(stages) >= {"generation", "postprocess"}
        if ev.get("tool"):
            assert stages["tool"] == ev["tool"][0]["latencyMs"]
        assert 0 < rt["completionTokenCount"] <= t["config"]["maxTokens"]
    calm = [t for t in base if not t["runtime"]["truncated"]]
    early = mean(t["runtime"]["inputTokenCount"] for t in calm if t["req"]["sessionTurn"] == 1)
    later = mean(t["runtime"]["inputTokenCount"] for t in calm if t["req"]["sessionTurn"] >= 4)
    assert later > early + 300
    by_tokens = sorted(base, key=lambda t: t["runtime"]["completionTokenCount"])
    gen = [t["runtime"]["stageLatencyMs"]["generation"] for t in by_tokens]
    assert mean(gen[-N // 4 :]) > 1.2 * mean(gen[: N // 4])
    latencies = sorted(t["runtime"]["latencyMs"] for t in base)
    assert latencies[N // 2] < latencies[int(N * 0.99)] / 1.5  # a long right tail


def test_tool_outcomes(base: list[Trace]) -> None:
    calls = [t for t in base if tool_calls(t)]
    status = Counter(tool_calls(t)[0]["status"] for t in calls)
    assert 0.005 < status["timeout"] / len(calls) < 0.02
    assert 0.007 < status["error"] / len(calls) < 0.025
    for t in calls:
        call, rt = tool_calls(t)[0], t["runtime"]
        assert (call["toolName"], call["schemaVersion"]) == ("order_status", "tool_v1")
        if call["status"] == "timeout":
            assert call["latencyMs"] >= 3000
        failed = call["status"] != "success"
        assert rt["fallbackUsed"] == failed
        if failed and valid(t):
            assert "can't check" in answer(t)


def test_retrieval_evidence(base: list[Trace]) -> None:
    rag = [t for t in base if retrieval(t) is not None]
    assert 0.02 < rate(rag, lambda t: retrieval(t)["empty"]) < 0.07
    full = [t for t in rag if not retrieval(t)["empty"]]
    assert rate(full, lambda t: retrieval(t)["topKScoreBins"][0] >= 7) > 0.7
    assert rate(full, lambda t: retrieval(t)["topKScoreBins"][0] <= 3) > 0.02
    for t in rag:
        r, s = retrieval(t), t["sample"]
        assert len(r["topKDocIds"]) == len(r["topKScoreBins"])
        assert r["topKScoreBins"] == sorted(r["topKScoreBins"], reverse=True)
        assert [c["docId"] for c in s["retrievedChunks"]] == r["topKDocIds"]
        if r["empty"]:
            assert r["topKDocIds"] == [] and not r["usedInFinalAnswer"]
        elif r["usedInFinalAnswer"] and t["req"]["intent"] != "order_status" and valid(t):
            top = s["retrievedChunks"][0]
            assert top["text"] in answer(t)
            assert json.loads(s["finalAnswer"])["citations"] == [top["docId"]]
    intents = {"doc:shipping-policy", "doc:returns", "doc:account"}
    top_docs = Counter(retrieval(t)["topKDocIds"][0] for t in full)
    assert sum(top_docs[d] for d in intents) / len(full) > 0.85


def test_output_format_baseline(base: list[Trace]) -> None:
    invalid = [t for t in base if not t["outputs"]["formatValid"]]
    assert 0.0005 < len(invalid) / N < 0.005
    for t in base:
        out, final = t["outputs"], t["sample"]["finalAnswer"]
        if out["formatValid"]:
            assert out["formatErrorCode"] is None
            assert set(json.loads(final)) == {"answer", "citations"}
        else:
            assert out["formatErrorCode"] in {"json_parse", "json_truncated", "not_json"}
            with pytest.raises(json.JSONDecodeError):
                json.loads(final)


def test_guardrails(base: list[Trace]) -> None:
    def decision(t: Trace) -> str:
        order = ["allow", "rewrite", "block"]
        return max((g["decision"] for g in t["runtime"]["guardrails"]), key=order.index)

    counts = Counter(decision(t) for t in base)
    assert 0.004 < counts["rewrite"] / N < 0.02
    assert 0.001 < counts["block"] / N < 0.007
    for t in base:
        assert {g["ruleId"] for g in t["runtime"]["guardrails"]} == {"pii-1", "safety-2"}
        if decision(t) == "block":
            assert "can't help with that" in answer(t)
            assert t["outputs"]["rawModelTextHash"] != t["outputs"]["finalAnswerHash"]
        if decision(t) == "rewrite":
            assert "[email redacted]" in t["sample"]["finalAnswer"]
        if decision(t) == "allow" and t["outputs"]["formatValid"]:
            assert t["outputs"]["rawModelTextHash"] == t["outputs"]["finalAnswerHash"]


def test_feedback_follows_answer_quality(base: list[Trace]) -> None:
    def has(kind: str) -> Any:
        return lambda t: any(f["kind"] == kind for f in t["feedback"])

    fell_back = [t for t in base if t["runtime"]["fallbackUsed"]]
    fine = [t for t in base if not t["runtime"]["fallbackUsed"] and t["outputs"]["formatValid"]]
    assert rate(fell_back, has("thumbs_down")) > 3 * rate(fine, has("thumbs_down"))
    assert rate(fell_back, has("handoff")) > 3 * rate(fine, has("handoff"))
    assert 0.02 < rate(fine, has("thumbs_up")) < 0.12


def test_sample_rate_is_honoured() -> None:
    assert not any("sample" in t for t in simulate("r1", 500, 1, sample_rate=0.0))
    some = list(simulate("r1", 4000, 1, sample_rate=0.3))
    assert 0.25 < rate(some, lambda t: "sample" in t) < 0.35


def test_tool_answers_state_exactly_the_snapshot(base: list[Trace]) -> None:
    checked = 0
    for t in base:
        calls = tool_calls(t)
        if not calls or calls[0]["status"] != "success" or not t["outputs"]["formatValid"]:
            continue
        snap = t["sample"]["toolSnapshots"][0]["snapshot"]
        text = answer(t)
        assert stated_states(text) == [snap["state"]], text
        assert snap[KEY_DATE[snap["state"]]] in text
        assert snap["orderId"] in text
        assert "tool:order_status" in json.loads(t["sample"]["finalAnswer"])["citations"]
        checked += 1
    assert checked > 5000


# --------------------------------------------------------------------------- regressions


def assert_untouched_outside(
    traces: list[Trace], base: list[Trace], keys: list[str], where: dict[str, str]
) -> list[int]:
    """Traces outside ``where`` equal the baseline; returns the indexes inside it."""
    inside = []
    for i, (t, b) in enumerate(zip(traces, base, strict=True)):
        if key_matches(keys[i], where):
            inside.append(i)
            assert set(t) == set(b) and set(t["runtime"]) == set(b["runtime"])
            assert b"regress" not in orjson.dumps(t)
        else:
            assert t == b
    return inside


def test_format_invalid_only_inside_its_segment(base: list[Trace], base_keys: list[str]) -> None:
    traces = run("format_invalid:0.1:rag=off")
    inside = assert_untouched_outside(traces, base, base_keys, {"rag": "off"})
    invalid = [traces[i] for i in inside if not traces[i]["outputs"]["formatValid"]]
    assert 0.08 < len(invalid) / len(inside) < 0.12
    for t in invalid:
        assert t["outputs"]["formatErrorCode"]
        with pytest.raises(json.JSONDecodeError):
            json.loads(t["sample"]["finalAnswer"])
    on = [t for t in traces if retrieval(t) is not None]
    assert rate(on, lambda t: not t["outputs"]["formatValid"]) < 0.01


def test_tool_skipped(base: list[Trace], base_keys: list[str]) -> None:
    traces = run("tool_skipped:0.3")
    assert_untouched_outside(traces, base, base_keys, {})
    required = [t for t in traces if t["req"]["toolRequired"]]
    skipped = [t for t in required if not tool_calls(t)]
    assert 0.26 < len(skipped) / len(required) < 0.34
    assert all(tool_calls(t) for t in base if t["req"]["toolRequired"])
    for t in skipped:
        assert "tool" not in t["runtime"]["stageLatencyMs"]
        assert t["sample"]["toolSnapshots"] == []
        assert not t["runtime"]["fallbackUsed"]
        assert t["config"]["toolSchemaVersion"] == "tool_v1"
        if t["outputs"]["formatValid"]:
            assert len(stated_states(answer(t))) == 1  # it makes a state up
            assert "tool:order_status" not in json.loads(t["sample"]["finalAnswer"])["citations"]


def test_answer_contradicts_tool(base: list[Trace], base_keys: list[str]) -> None:
    where = {"tool": "order_status@tool_v1"}
    traces = run("answer_contradicts_tool:0.2:tool=order_status@tool_v1")
    inside = assert_untouched_outside(traces, base, base_keys, where)
    ok = [
        i
        for i in inside
        if tool_calls(traces[i])[0]["status"] == "success" and traces[i]["outputs"]["formatValid"]
    ]
    wrong = 0
    for i in ok:
        t, b = traces[i], base[i]
        assert t["sample"]["toolSnapshots"] == b["sample"]["toolSnapshots"]
        assert tool_calls(t) == tool_calls(b)
        (stated,) = stated_states(answer(t))
        wrong += stated != t["sample"]["toolSnapshots"][0]["snapshot"]["state"]
    assert 0.16 < wrong / len(ok) < 0.24
    for i in inside:  # failed calls have no answer to contradict
        if tool_calls(base[i])[0]["status"] != "success":
            assert traces[i] == base[i]


def test_truncation_only_in_long_sessions(base: list[Trace], base_keys: list[str]) -> None:
    traces = run("truncation:0.5:turns=6+")
    inside = assert_untouched_outside(traces, base, base_keys, {"turns": "6+"})
    before = rate([base[i] for i in inside], lambda t: t["runtime"]["truncated"])
    after = rate([traces[i] for i in inside], lambda t: t["runtime"]["truncated"])
    assert after > before + 0.25
    assert all(
        traces[i]["runtime"]["droppedItemCount"] > 0
        for i in inside
        if traces[i]["runtime"]["truncated"]
    )


def test_where_with_two_dimensions_and_full_rate(base: list[Trace], base_keys: list[str]) -> None:
    where = {"rag": "off", "turns": "1"}
    traces = run("format_invalid:1:rag=off,turns=1")
    inside = assert_untouched_outside(traces, base, base_keys, where)
    blocked = [i for i in inside if "block" in base_keys[i]]
    assert all(not traces[i]["outputs"]["formatValid"] for i in inside if i not in blocked)


def test_rate_zero_changes_nothing() -> None:
    assert run(*(f"{k}:0" for k in REGRESSION_KINDS), n=3000) == run(n=3000)


# --------------------------------------------------------------------------- parse_regression


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("format_invalid:0.05:rag=off", Regression("format_invalid", 0.05, {"rag": "off"})),
        ("tool_skipped:0.3", Regression("tool_skipped", 0.3, {})),
        (
            "answer_contradicts_tool:0.2:tool=order_status@tool_v1",
            Regression("answer_contradicts_tool", 0.2, {"tool": "order_status@tool_v1"}),
        ),
        ("truncation:0.5:turns=6+", Regression("truncation", 0.5, {"turns": "6+"})),
        (
            " truncation : 1 : turns=6+ , rag=on ",
            Regression("truncation", 1.0, {"turns": "6+", "rag": "on"}),
        ),
        ("truncation:0", Regression("truncation", 0.0)),
        (
            "format_invalid:1e-2:model=acme-chat@2026-10-01",
            Regression("format_invalid", 0.01, {"model": "acme-chat@2026-10-01"}),
        ),
    ],
)
def test_parse_regression_good_specs(spec: str, expected: Regression) -> None:
    assert parse_regression(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("format_invalid", ["missing ':RATE'"]),
        ("nope:0.1", ["unknown kind 'nope'", ", ".join(REGRESSION_KINDS)]),
        ("truncation:abc", ["rate 'abc' is not a number in [0, 1]"]),
        ("truncation:1.5", ["is not a number in [0, 1]"]),
        ("truncation:-0.1", ["is not a number in [0, 1]"]),
        ("truncation:nan", ["is not a number in [0, 1]"]),
        ("truncation:0.5:colour=red", ["unknown dimension 'colour'", "model, rag, tool"]),
        ("truncation:0.5:rag", ["malformed condition 'rag'", "DIM=VALUE"]),
        ("truncation:0.5:rag=", ["malformed condition 'rag='"]),
        ("truncation:0.5:", ["malformed condition ''"]),
        ("truncation:0.5:rag=on,rag=off", ["dimension 'rag' given twice"]),
    ],
)
def test_parse_regression_bad_specs(spec: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_regression(spec)
    message = str(info.value)
    assert repr(spec) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "nope", "rate": 0.1}, "unknown kind"),
        ({"kind": "truncation", "rate": 2.0}, "not a number in [0, 1]"),
        ({"kind": "truncation", "rate": 0.1, "where": {"colour": "red"}}, "unknown dimension"),
    ],
)
def test_regression_validates_itself(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        Regression(**kwargs)
