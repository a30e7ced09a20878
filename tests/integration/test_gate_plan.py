"""Planning the sample: `gate plan` says what each gate needs and has, `batch create
--for-gates` sizes the sample so the evaluator gates can decide, and a too-small sample is
named in one warning — in a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from judges.catalog import load_catalog
from tests.integration.gate_data import ingest_release, score
from tracejury.cli import app
from tracejury.core.gate_plan import expected_effective_n
from tracejury.core.gates import GateSpec
from tracejury.core.sampling import default_sampling
from tracejury.settings import Settings
from workers.batches import create_queued_batch
from workers.planning import gate_plan

ROOT = Path(__file__).resolve().parents[2]
GATE = GateSpec.model_validate({
    "id": "answer_correctness", "metric": {"evaluator": "answer_correctness"},
    "min_samples": {"mde": 0.06, "power": 0.8}, "margin": {"absolute": 0.01, "relative": 0.2},
    "hysteresis": {"windows": 2, "window": {"traces": 500}},
})  # fmt: skip


def _releases(engine: Any, example: dict[str, Any]) -> tuple[list[str], list[str]]:
    return (ingest_release(engine, example, "r1", 18, 3000, models=1, tie=1),
            ingest_release(engine, example, "r2", 20, 3000, models=1, tie=1, seed=1))  # fmt: skip


def test_gate_plan_says_what_is_needed_and_what_a_batch_gives(engine: Any, example_trace: dict[str, Any],
                                                              db_url: str) -> None:  # fmt: skip
    r1, r2 = _releases(engine, example_trace)
    score(engine, "r1", r1, lambda i: ("scored", i % 33 != 0))  # 3% fail, every trace judged
    score(engine, "r2", r2[::30], lambda i: ("scored", True))  # a 3% sample: 100 evaluations
    (plan,) = gate_plan(engine, [GATE], "r2", "r1")
    (seg,) = plan["segments"]
    assert plan["design"] == "sample" and len(plan["batches"]) == 1
    assert seg["needed"] == GATE.required_samples(91 / 3000, 1) and seg["baselineRate"] == 91 / 3000
    assert (seg["current"], seg["verdict"]) == (100.0, "insufficient_data")
    assert seg["shortBy"] == seg["needed"] - 100 and seg["moreSampled"] == seg["shortBy"]
    result = CliRunner().invoke(app, ["gate", "plan", "--release", "r2", "--baseline", "r1", "--json"],
                                env={"TRACEJURY_DATABASE_URL": db_url,
                                     "TRACEJURY_RUBRICS_DIR": str(ROOT / "rubrics")})  # fmt: skip
    assert result.exit_code == 0, result.output
    shipped = {g["gate"]: g for g in orjson.loads(result.stdout)["gates"]}
    assert shipped["answer_correctness"]["segments"][0]["verdict"] == "insufficient_data"
    assert shipped["format_validity"]["design"] == "windows"


def _create(engine: Any, db_url: str, **kwargs: Any) -> Any:
    settings = Settings(database_url=db_url, rubrics_dir=str(ROOT / "rubrics"))
    catalog = load_catalog(ROOT / "rubrics")
    queued: list[tuple[str, int]] = []
    created = create_queued_batch(engine, settings, catalog, default_sampling(), release="r2",
                                  rubric_ids=["answer_correctness"], seed=1,
                                  enqueue=lambda b, c: queued.append((b, c)), gates=[GATE], baseline="r1",
                                  **{"sample_size": None, "budget": None, **kwargs})  # fmt: skip
    return created


def test_for_gates_sizes_the_sample_and_a_small_one_is_named(engine: Any, example_trace: dict[str, Any],
                                                             db_url: str) -> None:  # fmt: skip
    r1, _ = _releases(engine, example_trace)
    score(engine, "r1", r1, lambda i: ("scored", i % 33 != 0))
    need = GATE.required_samples(91 / 3000, 1)  # at the baseline batch's rate
    sized = _create(engine, db_url, for_gates=True)
    assert sized.warnings == []
    # the expected effective n of the sample reaches the need, and not by sampling everything
    assert need * 0.8 < sized.sampled < 3000
    assert expected_effective_n([min(1.0, sized.base_rate)] * 3000) >= need
    small = _create(engine, db_url, sample_size=60)
    (warning,) = small.warnings
    assert warning.startswith("too small for 1 gate group(s) to decide: answer_correctness (all) (expects 60")
    assert warning.endswith("; size it with --for-gates")
    capped = _create(engine, db_url, for_gates=True, budget=100)
    assert capped.sampled < 150 and capped.warnings[0].startswith("the gates need about")
    assert "--budget 100 buys 100 traces" in capped.warnings[0]
