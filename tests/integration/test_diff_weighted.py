"""``tracejury diff`` ranks evaluator fail rates by their Horvitz–Thompson estimates: a
release whose batch oversampled failures does not look regressed; a real regression does."""

from __future__ import annotations

from typing import Any

import orjson
from typer.testing import CliRunner

from tests.integration.gate_data import ingest_release, score
from tracejury.cli import app

runner = CliRunner()


def test_diff_weighs_sampled_verdicts(engine: Any, example_trace: dict[str, Any]) -> None:
    r1 = ingest_release(engine, example_trace, "r1", 18, 2000, models=1, tie=1)
    r2 = ingest_release(engine, example_trace, "r2", 20, 2000, models=1, tie=1, seed=1)
    score(engine, "r1", r1, lambda i: ("scored", i % 5 != 0))  # 20% fail, every trace scored
    # r2 fails as often, but its batch scored every failure (p = 1) and a quarter of the passes (p = 1/4)
    fails = {t for i, t in enumerate(r2) if i % 5 == 0}
    sampled = [t for i, t in enumerate(r2) if i % 5 in (0, 1)]
    score(engine, "r2", sampled, lambda i: ("scored", sampled[i] not in fails),
          probability=lambda i: 1.0 if sampled[i] in fails else 0.25)  # fmt: skip
    score(engine, "r1", r1, lambda i: ("scored", i % 50 != 0), evaluator="helpfulness")  # 2% ...
    score(engine, "r2", r2, lambda i: ("scored", i % 12 != 0), evaluator="helpfulness")  # ... to 8.3%: real

    result = runner.invoke(app, ["diff", "--release", "r2", "--baseline", "r1", "--json", "--by", "model",
                                 "--top", "100"])  # fmt: skip
    assert result.exit_code == 0, result.output
    moves = {(m["what"], m["segment"]): m for m in orjson.loads(result.stdout)["moves"]}
    ac = moves[("answer_correctness fail rate", "")]
    assert ac["current"] == [400, 800] and ac["baseline"] == [400, 2000]  # raw counts: 50% against 20%
    assert abs(ac["currentRate"] - 0.2) < 1e-9 and abs(ac["baselineRate"] - 0.2) < 1e-9  # weighted: 20% both
    assert abs(ac["delta"]) < 1e-9 and ac["pValue"] > 0.3
    helpful = moves[("helpfulness fail rate", "")]
    assert helpful["direction"] == "up" and helpful["pValue"] < 1e-6
    ranked = list(moves)
    assert ranked.index(("helpfulness fail rate", "")) < ranked.index(("answer_correctness fail rate", ""))
