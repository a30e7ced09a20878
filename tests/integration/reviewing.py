"""Building a real store for review tests: simulated traces ingested and scored by `tracejury
score` (in-process CLI) against the real mock judge, on whatever store ``db_url`` names."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from tracejury.cli import app

runner = CliRunner()


def rubrics_with(fast_rubrics: Path, tmp_path: Path, escalation: dict[str, dict[str, Any]]) -> Path:
    """A copy of the fast rubrics whose judges' ``escalation`` blocks are replaced."""
    target = tmp_path / "review-rubrics"
    shutil.copytree(fast_rubrics, target)
    for rubric_id, policy in escalation.items():
        path = target / f"{rubric_id}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["escalation"] = policy
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def invoke(*args: str) -> Any:
    """Run the CLI in-process; fail with its output if it exits non-zero."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def populate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    judge_url: str,
    rubrics_dir: Path,
    traces: int = 150,
    seed: int = 3,
) -> None:
    """Simulate and ingest release r1 (half the tool answers contradict the tool), and point
    the CLI at the judge and the rubrics. No overall review budget: these tests check the
    policy and the queue (``test_review_budget.py`` sets the caps it checks)."""
    monkeypatch.setenv("TRACEJURY_JUDGE_BASE_URL", judge_url)
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "none")
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_DAY", "none")
    monkeypatch.setenv("TRACEJURY_RUBRICS_DIR", str(rubrics_dir))
    path = tmp_path / "r1.jsonl"
    invoke("simulate", "--release", "r1", "--traces", str(traces), "--seed", str(seed), "-o", str(path),
           "--regress", "answer_contradicts_tool:0.5")  # fmt: skip
    invoke("ingest", str(path))


def score(*rubrics: str) -> dict[str, Any]:
    """`tracejury score --release r1 --json` with these rubrics; its JSON."""
    args = [a for r in rubrics for a in ("--rubric", r)]
    return orjson.loads(invoke("score", "--release", "r1", "--json", *args).stdout)
