"""``batch results`` and ``diff`` calibrate an evaluator's fail rate by people's audit labels:
a judge that misses failures reads low, the labels say so, and the calibrated rate — the
group's own labels when it holds ``MIN_LABELS``, its evaluator's pooled ones otherwise, none
when the pool is short too — equals the prediction-powered estimate computed by hand from the
items. Review items are written as escalation writes them; labels go through ``label_item``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from tests.integration.gate_data import ingest_release, score
from tracejury.cli import app
from tracejury.core.calibration import MIN_FAILED_LABELS, PSEUDO
from tracejury.core.results import MIN_LABELS
from tracejury.core.segments import project_key
from tracejury.core.stats import wilson
from tracejury.store.review import label_item
from tracejury.store.tables import ReviewItem, StoredTrace

runner = CliRunner()
Z = 1.959963984540054
AC = "answer_correctness"


def _config(evaluator: str) -> dict[str, Any]:
    """A batch config snapshot naming the rubric version (its label scale: binary)."""
    return {"evaluators": [{"id": evaluator, "version": "1", "fingerprint": "f", "kind": "rubric"}],
            "rubrics": [{"id": evaluator, "version": "1"}]}  # fmt: skip


@dataclass
class Trace:
    """One sampled trace: the judge's verdict, the truth, its draw and its review."""

    trace_id: str
    group: str
    p: float
    status: str
    judge_failed: bool
    truth_failed: bool
    audit_rate: float = 0.0
    reasons: list[str] = field(default_factory=list)
    item: int | None = None
    label_failed: bool | None = None


def build(engine: Any, example: dict[str, Any], release: str, day: int, *, truth: float, miss: float,
          audit: tuple[float, float, float], evaluator: str = AC, seed: int = 0, n: int = 600,
          ingest: bool = True) -> tuple[str, list[Trace]]:  # fmt: skip
    """A release of ``n`` traces over three model versions, scored by a batch whose judge
    misses a ``miss`` share of the failures (rate ``truth``) and falsely fails 3% of passes,
    sampled with p = 1 where the judge failed and 1/2 elsewhere. The audit draws a scored
    judgment of model group k with probability ``audit[k]``; 5% of traces go to review for low
    confidence and judge failures always do. Every item is labelled with the truth. Without
    ``ingest``, the release's traces are already stored (another evaluator's batch)."""
    if ingest:
        ids = ingest_release(engine, example, release, day, n, models=3, tie=1, seed=seed)
    else:
        ids = [f"{release}_{i:05d}" for i in range(n)]
    with engine.connect() as conn:
        t = StoredTrace.__table__
        keys = dict(conn.execute(select(t.c.trace_id, t.c.segment_key).where(t.c.release_id == release)).all())
    rng = random.Random(f"{release}/{evaluator}")
    traces = []
    for i, trace_id in enumerate(ids):
        truth_failed = rng.random() < truth
        judge_failed = rng.random() < (1 - miss if truth_failed else 0.03)
        status = "judge_failed" if rng.random() < 0.02 else "scored"
        tr = Trace(trace_id, project_key(keys[trace_id], ["model"]), 1.0 if judge_failed else 0.5, status,
                   judge_failed, truth_failed)  # fmt: skip
        if status == "judge_failed":
            tr.reasons = ["judge_failed"]
        else:
            if rng.random() < 0.05:
                tr.reasons.append("low_confidence")
            if rng.random() < audit[i % 3]:
                tr.audit_rate = audit[i % 3]
                tr.reasons.append("audit")
        traces.append(tr)
    by_id = {t.trace_id: t for t in traces}
    batch = score(engine, release, ids,
                  lambda i: (traces[i].status, None if traces[i].status == "judge_failed" else not traces[i].judge_failed),
                  evaluator=evaluator, probability=lambda i: traces[i].p, config=_config(evaluator))  # fmt: skip
    now = datetime.now(UTC)
    rows = [{
        "trace_id": t.trace_id, "evaluator_id": evaluator, "evaluator_version": "1", "batch_id": batch,
        "release_id": release, "segment_key": "", "reasons": orjson.dumps(t.reasons).decode(), "priority": 0,
        "evaluation_ids": "[]", "audit_rate": t.audit_rate or None,
        "inclusion_p": t.p * t.audit_rate if t.audit_rate else None, "state": "claimed", "claimed_by": "ann",
        "lease_expires_at": now + timedelta(hours=1), "created_at": now, "updated_at": now,
    } for t in traces if t.reasons]  # fmt: skip
    r = ReviewItem.__table__
    with engine.begin() as conn:
        conn.execute(r.insert(), rows)
        for item_id, trace_id in conn.execute(select(r.c.id, r.c.trace_id).where(r.c.batch_id == batch)):
            by_id[trace_id].item = item_id
    for t in traces:
        if t.item is not None:
            relabel(engine, t, t.truth_failed)
    return batch, traces


def relabel(engine: Any, t: Trace, failed: bool) -> None:
    label_item(engine, t.item, "ann", "fail" if failed else "pass")  # type: ignore[arg-type]
    t.label_failed = failed


def _predictor(t: Trace) -> bool | None:
    """The verdict gates count: a label in place of the judge's unless the audit alone drew it."""
    if t.label_failed is not None and t.reasons != ["audit"]:
        return t.label_failed
    return t.judge_failed if t.status == "scored" else None


def hand_ppi(sample: list[Trace], audit: list[Trace], drawn_from: int) -> tuple[float, tuple[float, float], float]:
    """θ, its 95% interval and λ, item by item (``tracejury.core.calibration``'s formulas)."""
    s = [(1 / t.p, float(g)) for t in sample if (g := _predictor(t)) is not None]
    a = [(1 / (t.p * t.audit_rate), float(_predictor(t)), float(t.label_failed)) for t in audit]  # type: ignore[arg-type]
    sw = sum(w for w, _ in s)
    big_g = sum(w * g for w, g in s) / sw
    v_s = sum(w * w * (g - big_g) ** 2 for w, g in s) / sw**2
    sv = sum(v for v, _, _ in a)
    gbar, hbar = sum(v * g for v, g, _ in a) / sv, sum(v * h for v, _, h in a) / sv
    # the moments count a quarter observation (at the mean v) in each disagreement cell
    vbar = sv / len(a)
    pad = [(PSEUDO * vbar, PSEUDO * vbar * vbar, 0.0, 1.0), (PSEUDO * vbar, PSEUDO * vbar * vbar, 1.0, 0.0)]
    m = [(v, v * v, g, h) for v, g, h in a] + pad  # (Σv, Σv², g, h)
    pv = sum(x[0] for x in m)
    pg, ph = sum(x[0] * x[2] for x in m) / pv, sum(x[0] * x[3] for x in m) / pv
    s_gg = sum(x[1] * (x[2] - pg) ** 2 for x in m) / pv**2
    s_gh = sum(x[1] * (x[2] - pg) * (x[3] - ph) for x in m) / pv**2
    s_hh = sum(x[1] * (x[3] - ph) ** 2 for x in m) / pv**2
    f = min(len(a) / drawn_from, 1.0)
    lam = min(max(s_gh * (1 - f) / (v_s + s_gg * (1 - 2 * f)), 0.0), 1.0)
    theta = lam * big_g + hbar - lam * gbar
    var = lam**2 * v_s + 2 * lam * f * (s_gh - lam * s_gg) + (s_hh - 2 * lam * s_gh + lam**2 * s_gg)
    # reported: the Wilson interval at the effective n p(1−p)/V (p held off 0 by half a label)
    floor = 0.5 / len(a)
    p = min(max(min(max(theta, 0.0), 1.0), floor), 1 - floor)
    n_eff = min(p * (1 - p) / var, float(len(s)))
    rate = min(max(theta, 0.0), 1.0)
    return theta, wilson(rate * n_eff, n_eff, 0.05), lam


def _counted(traces: list[Trace]) -> int:
    return sum(_predictor(t) is not None for t in traces)


def _audited(traces: list[Trace]) -> list[Trace]:
    return [t for t in traces if "audit" in t.reasons and t.status == "scored"]


def results(batch: str, by: str = "model") -> dict[str, dict[str, Any]]:
    out = runner.invoke(app, ["batch", "results", batch, "--by", by, "--json"])
    assert out.exit_code == 0, out.output
    return {r["segment"]: r for r in orjson.loads(out.stdout)["results"]}


def _expect(row: dict[str, Any], traces: list[Trace], group: str | None) -> None:
    """``row``'s calibration is the hand-computed one: the group's own labels or the pool's
    (``group`` None: the whole batch)."""
    mine = [t for t in traces if group is None or t.group == group]
    own = _audited(mine)
    assert row["labelled"] == len(own)
    own_failed = sum(bool(t.label_failed) for t in own)
    strata, audit, drawn = ("group", own, _counted(mine)) if len(own) >= MIN_LABELS and own_failed >= MIN_FAILED_LABELS else \
        ("pooled", _audited(traces), _counted(traces))  # fmt: skip
    theta, interval, lam = hand_ppi(mine, audit, drawn)
    cal = row["calibrated"]
    assert cal["strata"] == strata and cal["labelled"] == len(audit)
    assert cal["rate"] == pytest.approx(theta, abs=1e-12)
    assert cal["interval95"] == pytest.approx(list(interval), abs=1e-12)
    assert cal["lambda"] == pytest.approx(lam, abs=1e-12)
    assert cal["humanRate"] == pytest.approx(
        sum(t.label_failed / (t.p * t.audit_rate) for t in audit) / sum(1 / (t.p * t.audit_rate) for t in audit)
    )
    s = [t for t in mine if _predictor(t) is not None]
    assert cal["judgeRate"] == pytest.approx(sum(_predictor(t) / t.p for t in s) / sum(1 / t.p for t in s))


def test_batch_results_calibrate_a_judge_that_misses_failures(
    engine: Any, example_trace: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, traces = build(engine, example_trace, "r1", 18, truth=0.2, miss=0.5, audit=(0.5, 0.05, 0.0))
    rows = results(batch)
    groups = sorted({t.group for t in traces})
    assert sorted(rows) == groups
    g0, g1, g2 = (rows[g] for g in groups)
    # the judge's weighted rate is unchanged: every scored verdict, weighted by 1/p
    scored0 = [t for t in traces if t.group == groups[0] and t.status == "scored"]
    judge0 = sum(t.judge_failed / t.p for t in scored0) / sum(1 / t.p for t in scored0)
    assert g0["weightedFailRate"] == pytest.approx(judge0) and g0["scored"] == len(scored0)
    # group 0 has its own labels, group 1 too few, group 2 none: both borrow the pool
    assert g0["labelled"] >= MIN_LABELS > g1["labelled"] > 0 and g2["labelled"] == 0
    assert (g0["calibrated"]["strata"], g1["calibrated"]["strata"], g2["calibrated"]["strata"]) == \
        ("group", "pooled", "pooled")  # fmt: skip
    for g in groups:
        _expect(rows[g], traces, g)
    # the judge missed half the failures; the labels move the rate up, beyond the judge's
    truth0 = sum(t.truth_failed / t.p for t in scored0) / sum(1 / t.p for t in scored0)
    cal0 = g0["calibrated"]
    assert cal0["rate"] > g0["weightedFailRate"] + 0.05
    assert cal0["interval95"][0] < truth0 < cal0["interval95"][1]
    # the whole batch as one group: its own labels
    (whole,) = results(batch, by="").values()
    assert whole["calibrated"]["strata"] == "group" and whole["labelled"] == len(_audited(traces))
    _expect(whole, traces, None)

    # a relabel (the newest label wins) changes the calibrated rate, to the hand-computed one
    flipped = next(t for t in _audited(traces) if t.group == groups[0] and t.reasons == ["audit"] and t.truth_failed)
    relabel(engine, flipped, False)
    again = results(batch)
    assert again[groups[0]]["calibrated"]["rate"] < cal0["rate"]
    for g in groups:
        _expect(again[g], traces, g)

    # the table shows both rates and the labels (on a console wide enough not to wrap the cells)
    from tracejury.cli.app import out

    monkeypatch.setattr(out, "width", 200)
    table = runner.invoke(app, ["batch", "results", batch, "--by", "model"])
    assert table.exit_code == 0, table.output
    assert "calibrated %" in table.stdout and "labels" in table.stdout
    assert f"{100 * again[groups[0]]['calibrated']['rate']:.2f}%" in table.stdout


def test_too_few_labels_anywhere_leave_the_rate_uncalibrated(engine: Any, example_trace: dict[str, Any]) -> None:
    batch, traces = build(engine, example_trace, "r1", 18, truth=0.2, miss=0.5, audit=(0.03, 0.03, 0.03))
    assert 0 < len(_audited(traces)) < MIN_LABELS
    rows = results(batch)
    for g, row in rows.items():
        assert row["calibrated"] is None
        assert row["labelled"] == len([t for t in _audited(traces) if t.group == g])
    (whole,) = results(batch, by="").values()
    assert whole["calibrated"] is None and whole["labelled"] == len(_audited(traces))
    table = runner.invoke(app, ["batch", "results", batch])
    assert table.exit_code == 0 and " - " in table.stdout


def test_the_api_returns_what_the_cli_prints(engine: Any, db_url: str, example_trace: dict[str, Any],
                                             tmp_path: Path) -> None:  # fmt: skip
    from tracejury.api import create_app
    from tracejury.settings import Settings
    from tracejury.store.tokens import create_token

    batch, _ = build(engine, example_trace, "r1", 18, truth=0.2, miss=0.5, audit=(0.5, 0.05, 0.0))
    settings = Settings(database_url=db_url, broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    with TestClient(create_app(settings)) as client:
        token = create_token(client.app.state.engine(), "admin", "test")[0]  # type: ignore[attr-defined]
        got = client.get(f"/batches/{batch}/results", params={"by": "model"},
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        missing = client.get("/batches/b_nope/results", headers={"Authorization": f"Bearer {token}"})
        client.app.state.engine().dispose()  # type: ignore[attr-defined]
    assert got.status_code == 200
    assert {r["segment"]: r for r in got.json()["results"]} == results(batch)
    assert missing.status_code == 404
    cli = runner.invoke(app, ["batch", "results", "b_nope"])  # main() prints the error's one line
    assert cli.exit_code != 0 and str(cli.exception) == "no batch 'b_nope'"


def _diff(*args: str) -> dict[tuple[str, str], dict[str, Any]]:
    out = runner.invoke(app, ["diff", "--release", "r2", "--baseline", "r1", "--json", "--top", "1000", *args])
    assert out.exit_code == 0, out.output
    return {(m["what"], m["segment"]): m for m in orjson.loads(out.stdout)["moves"]}


def test_diff_moves_calibrated_rates_where_both_releases_have_labels(
    engine: Any, example_trace: dict[str, Any]
) -> None:
    b1, _ = build(engine, example_trace, "r1", 18, truth=0.2, miss=0.3, audit=(0.4, 0.4, 0.1), n=900)
    b2, _ = build(engine, example_trace, "r2", 20, truth=0.3, miss=0.6, audit=(0.4, 0.4, 0.1), n=900, seed=1)
    # helpfulness: labels in r2 only — its moves stay the judge's (both arms or neither)
    for release, day, audit in (("r1", 18, (0.0, 0.0, 0.0)), ("r2", 20, (0.5, 0.5, 0.5))):
        build(engine, example_trace, release, day, truth=0.1, miss=0.0, audit=audit, evaluator="helpfulness",
              n=900, ingest=False)  # fmt: skip
    moves = _diff("--by", "model")
    whole = moves[(f"{AC} fail rate", "")]
    assert whole["calibrated"] is True
    (r1,), (r2,) = results(b1, by="").values(), results(b2, by="").values()
    # the calibrated rates are batch results' (the same arms, the same labels)
    assert whole["baselineRate"] == pytest.approx(r1["calibrated"]["rate"], abs=1e-12)
    assert whole["currentRate"] == pytest.approx(r2["calibrated"]["rate"], abs=1e-12)
    assert whole["judgeBaselineRate"] == pytest.approx(r1["calibrated"]["judgeRate"], abs=1e-12)
    assert whole["judgeCurrentRate"] == pytest.approx(r2["calibrated"]["judgeRate"], abs=1e-12)
    # the judge missed more of r2's failures: it sees a smaller move than the labels do
    assert whole["delta"] > whole["judgeCurrentRate"] - whole["judgeBaselineRate"] + 0.03
    assert whole["direction"] == "up"
    per_model = {s: m for (what, s), m in moves.items() if what == f"{AC} fail rate" and s}
    assert len(per_model) == 3 and all(m["calibrated"] for m in per_model.values())  # own labels or pooled
    rows1, rows2 = results(b1), results(b2)
    assert {r["calibrated"]["strata"] for r in rows2.values()} == {"group", "pooled"}  # the small group borrows
    for segment, m in per_model.items():
        assert m["baselineRate"] == pytest.approx(rows1[segment]["calibrated"]["rate"], abs=1e-12)
        assert m["currentRate"] == pytest.approx(rows2[segment]["calibrated"]["rate"], abs=1e-12)
    helpful = moves[("helpfulness fail rate", "")]
    assert helpful["calibrated"] is False and "judgeCurrentRate" not in helpful
    table = runner.invoke(
        app, ["diff", "--release", "r2", "--baseline", "r1", "--by", "model", "--top", "1000"], env={"COLUMNS": "250"}
    )
    assert table.exit_code == 0, table.output
    assert "ᶜ" in table.stdout
