"""Redaction on every ingest path: files, ``POST /traces`` and OTLP store no raw e-mail or card
number (traces, conflicts, quarantine), and a judge scoring the stored traces never receives
one: the requests are recorded by a proxy in front of the real mock judge process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from tests.integration.judge_proxy import JudgeProxy, judge_proxy
from tests.integration.procs import EXE
from tests.otlp_builder import RESOURCE, attributes, genai_trace, request
from tracejury.api import create_app
from tracejury.cli import app
from tracejury.core.otlp_genai import content_hash
from tracejury.core.otlp_spans import decode_spans
from tracejury.core.redaction import META_KEY
from tracejury.core.segments import default_segmentation
from tracejury.core.validation import TraceValidator
from tracejury.settings import Settings
from tracejury.store import otlp_staging as st
from tracejury.store.tables import OtlpFragment, QuarantinedLine, StoredTrace, TraceConflict
from tracejury.store.tokens import create_token

ROOT = Path(__file__).resolve().parents[2]
EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"
SECRETS = (b"jane.doe@example.com", b"4111 1111 1111 1111", b"4111111111111111")


def _personal(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace with an e-mail address and a card number in its free text."""
    sample = dict(trace.get("sample") or {})
    sample["inputText"] = f"I am {EMAIL}, my card {CARD} was charged twice"
    sample["finalAnswer"] = f"We refunded card {CARD} and wrote to {EMAIL}."
    sample["retrievedChunks"] = [{"docId": "doc:1", "text": f"contact {EMAIL}"}]
    return {**trace, "sample": sample}


def _stored_bytes(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        bodies = list(conn.execute(select(StoredTrace.body)).scalars())
        bodies += list(conn.execute(select(TraceConflict.body)).scalars())
        for raw, message in conn.execute(select(QuarantinedLine.raw, QuarantinedLine.message)):
            bodies += [bytes(raw), message.encode()]
    return [bytes(b) for b in bodies]


def _assert_clean(engine: Engine) -> list[bytes]:
    stored = _stored_bytes(engine)
    assert stored
    for blob in stored:
        for secret in SECRETS:
            assert secret not in blob, blob[:300]
    return stored


def test_file_ingest_stores_no_personal_data(engine: Engine, example_trace: dict[str, Any], tmp_path: Path) -> None:
    good = _personal(example_trace)
    conflict = {**_personal(example_trace), "releaseId": "r-other"}
    bad = {**good, "traceId": "bad-1", "runtime": {"latencyMs": EMAIL}}  # breaks the schema, quotes it
    lines = [orjson.dumps(d) for d in (good, conflict, bad)] + [f"not json {EMAIL} {CARD}".encode()]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(app, ["ingest", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"ingested": 1, "duplicates": 0, "conflicts": 1, "quarantined": 2}
    _assert_clean(engine)
    with engine.connect() as conn:
        body = orjson.loads(conn.execute(select(StoredTrace.body)).scalar_one())
    assert body["sample"]["inputText"] == "I am [EMAIL_1], my card [CARD_1] was charged twice"
    assert body["sample"]["retrievedChunks"][0]["text"] == "contact [EMAIL_1]"
    assert body[META_KEY] == {"policy": "default-1", "counts": {"card": 2, "email": 3}}


def test_a_policy_file_from_the_setting_is_applied(
    engine: Engine, example_trace: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "redaction.yaml"
    policy.write_text("version: strict-2\nfields:\n  - path: $.sample.finalAnswer\n    action: drop\n")
    monkeypatch.setenv("TRACEJURY_REDACTION_PATH", str(policy))
    path = tmp_path / "t.jsonl"
    path.write_bytes(orjson.dumps(_personal(example_trace)) + b"\n")
    assert CliRunner().invoke(app, ["ingest", str(path)]).exit_code == 0
    with engine.connect() as conn:
        body = orjson.loads(conn.execute(select(StoredTrace.body)).scalar_one())
    assert "finalAnswer" not in body["sample"] and body[META_KEY]["policy"] == "strict-2"


def test_post_traces_stores_no_personal_data(db_url: str, tmp_path: Path, example_trace: dict[str, Any]) -> None:
    settings = Settings(database_url=db_url, rubrics_dir=str(ROOT / "rubrics"),
                        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.engine()
        token = create_token(engine, "ingest", "test-ingest")[0]
        bad = {**_personal(example_trace), "traceId": "bad-1", "timestamp": EMAIL}
        body = orjson.dumps([_personal(example_trace), bad])
        r = client.post("/traces", content=body, headers={"authorization": f"Bearer {token}",
                                                          "content-type": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["ingested"] == 1 and r.json()["quarantined"] == 1
        _assert_clean(engine)
        engine.dispose()


def _otlp_spans(trace: str) -> list[dict[str, Any]]:
    """A GenAI trace whose answer and tool result carry an e-mail address and a card number."""
    spans = genai_trace(trace)
    answer = f'[{{"role": "assistant", "parts": [{{"type": "text", "content": "Mail {EMAIL}, card {CARD}."}}]}}]'
    for s in spans:
        attrs = {a["key"]: a["value"] for a in s["attributes"]}
        if "gen_ai.output.messages" in attrs:
            attrs["gen_ai.output.messages"] = {"stringValue": answer}
        if "gen_ai.tool.call.result" in attrs:
            attrs["gen_ai.tool.call.result"] = {"stringValue": orjson.dumps({"email": EMAIL}).decode()}
        if s.get("parentSpanId") is None:
            attrs["tracejury.keep_sample"] = {"boolValue": True}
        s["attributes"] = [{"key": k, "value": v} for k, v in attrs.items()]
    return spans


def test_otlp_traces_and_quarantine_store_no_personal_data(engine: Engine) -> None:
    assert attributes  # the builder's attribute encoding is the one used above
    whole, rootless = "a1" * 16, "b2" * 16
    spans, reports = decode_spans(request(_otlp_spans(whole) + _otlp_spans(rootless)[1:], RESOURCE))
    assert not reports
    st.stage(engine, "otlp:tok", spans, [], max_items=100_000, now=1000.0)
    kw: dict[str, Any] = {"segmentation": default_segmentation(), "validator": TraceValidator(), "idle_s": 5.0,
                          "max_wait_s": 600.0, "keep_s": 3600.0}  # fmt: skip
    assert st.sweep(engine, now=1010.0, **kw).assembled == 1
    assert st.sweep(engine, now=1700.0, **kw).expired == 1  # the rootless one: quarantined whole
    stored = _assert_clean(engine)
    assert any(b"[EMAIL_1]" in b for b in stored)  # the text was there, and was redacted
    with engine.connect() as conn:
        body = orjson.loads(conn.execute(select(StoredTrace.body)).scalar_one())
        raw = conn.execute(select(QuarantinedLine.raw)).scalar_one()
    assert body["sample"]["finalAnswer"] == "Mail [EMAIL_1], card [CARD_1]."
    assert body["sample"]["toolSnapshots"][0]["snapshot"] == {"email": "[EMAIL_1]"}
    assert b"[EMAIL_1]" in raw and b"[CARD_1]" in raw


def _with_attr(span: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    return {**span, "attributes": [*span["attributes"], {"key": key, "value": {"stringValue": value}}]}


def test_otlp_staging_stores_no_personal_data_and_one_value_keeps_one_placeholder(engine: Engine) -> None:
    """Fragments are redacted before they are staged: a value in two requests of one trace
    (tool result, then the root's answer) gets one placeholder; session ids are hashed as the
    mapping would; the stored counts include what staging found."""
    trace = "c3" * 16
    spans = _otlp_spans(trace)
    root = next(s for s in spans if s.get("parentSpanId") is None)
    children = [s for s in spans if s is not root]
    root = _with_attr(root, "session.id", "sess-owner@example.org")
    children[0] = _with_attr(children[0], "user.note", f"reach me at {EMAIL}")
    for part in (children, [root]):  # two requests: the root span comes last
        got, reports = decode_spans(request(part, RESOURCE))
        assert not reports
        st.stage(engine, "otlp:tok", got, [], max_items=100_000, now=1000.0)
    with engine.connect() as conn:
        staged = [bytes(b) for b in conn.execute(select(OtlpFragment.body)).scalars()]
    assert len(staged) == 2
    for blob in staged:
        for secret in (*SECRETS, b"sess-owner@example.org"):
            assert secret not in blob, blob[:300]
    assert any(b"[EMAIL_#" in b for b in staged) and b"sha256:" in staged[1]
    kw: dict[str, Any] = {"segmentation": default_segmentation(), "validator": TraceValidator(), "idle_s": 5.0,
                          "max_wait_s": 600.0, "keep_s": 3600.0}  # fmt: skip
    assert st.sweep(engine, now=1010.0, **kw).assembled == 1
    _assert_clean(engine)
    with engine.connect() as conn:
        body = orjson.loads(conn.execute(select(StoredTrace.body)).scalar_one())
        assert conn.execute(select(OtlpFragment.id)).first() is None
    assert body["sample"]["finalAnswer"] == "Mail [EMAIL_1], card [CARD_1]."
    assert body["sample"]["toolSnapshots"][0]["snapshot"] == {"email": "[EMAIL_1]"}
    assert body["req"]["sessionIdHash"] == content_hash("sess-owner@example.org")
    assert b"_#" not in orjson.dumps(body)
    counts = body[META_KEY]["counts"]
    assert counts["card"] >= 1 and counts["email"] >= 2, counts


def test_staged_placeholders_do_not_depend_on_arrival_order(engine: Engine) -> None:
    """Two e-mail addresses in two spans: numbered by span start time, whichever request came first."""
    answers = []
    for trace, order in (("d4" * 16, 1), ("e5" * 16, -1)):
        spans = _otlp_spans(trace)
        root = next(s for s in spans if s.get("parentSpanId") is None)
        children = [s for s in spans if s is not root]
        for c in children:  # the tool's result names another address than the answer
            for a in c["attributes"]:
                if a["key"] == "gen_ai.tool.call.result":
                    a["value"] = {"stringValue": orjson.dumps({"email": "other@example.net"}).decode()}
        for part in [[root], children][::order]:
            st.stage(engine, "otlp:tok", decode_spans(request(part, RESOURCE))[0], [], max_items=100_000, now=1000.0)
    kw: dict[str, Any] = {"segmentation": default_segmentation(), "validator": TraceValidator(), "idle_s": 5.0,
                          "max_wait_s": 600.0, "keep_s": 3600.0}  # fmt: skip
    assert st.sweep(engine, now=1010.0, **kw).assembled == 2
    with engine.connect() as conn:
        for raw in conn.execute(select(StoredTrace.body).order_by(StoredTrace.trace_id)).scalars():
            body = orjson.loads(raw)
            answers.append((body["sample"]["finalAnswer"], body["sample"]["toolSnapshots"][0]["snapshot"],
                            body["outputs"]["finalAnswerHash"]))  # fmt: skip
    assert answers[0] == answers[1]
    # the tool span starts before the chat span that writes the answer
    assert answers[0][:2] == ("Mail [EMAIL_2], card [CARD_1].", {"email": "[EMAIL_1]"})


@pytest.fixture
def recorder(mock_judge: str) -> Iterator[JudgeProxy]:
    """What reaches the real mock judge, recorded by a proxy in front of it."""
    with judge_proxy(mock_judge) as proxy:
        yield proxy


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=180)


def test_the_judge_never_receives_a_redacted_value(
    tmp_path: Path, base_env: dict[str, str], recorder: JudgeProxy
) -> None:
    sim = tmp_path / "sim.jsonl"
    assert _run("simulate", "--release", "r1", "--traces", "30", "--seed", "3", "-o", str(sim),
                env=base_env).returncode == 0  # fmt: skip
    traces = [_personal(orjson.loads(line)) for line in sim.read_bytes().splitlines() if line.strip()]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in traces))
    assert _run("ingest", str(path), env=base_env).returncode == 0
    env = {**base_env, "TRACEJURY_JUDGE_BASE_URL": recorder.url}
    proc = _run("score", "--release", "r1", "--json", "--rubric", "answer_correctness", "--rubric", "helpfulness",
                env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["status"]["scored"] > 0
    assert recorder.bodies, "no request reached the judge"
    sent = b"\n".join(recorder.bodies)
    for secret in SECRETS:
        assert secret not in sent
    assert b"[EMAIL_1]" in sent or b"[CARD_1]" in sent  # the redacted text did reach the judge
