"""`tracejury rubrics lint|list|show` on real files and a real store."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tracejury.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def rubrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    target = tmp_path / "rubrics"
    shutil.copytree(ROOT / "rubrics", target)
    monkeypatch.setenv("TRACEJURY_RUBRICS_DIR", str(target))
    return target


def test_shipped_rubrics_lint_clean(rubrics: Path) -> None:
    result = runner.invoke(app, ["rubrics", "lint"])
    assert result.exit_code == 0, result.output
    assert "11 rubric file(s) OK" in result.stdout


def test_lint_reports_file_line_and_field(rubrics: Path) -> None:
    bad = rubrics / "bad.yaml"
    bad.write_text("id: bad\nversion: '1'\nchecker: json_valid\nparams:\n  strict: true\n")
    result = runner.invoke(app, ["rubrics", "lint"])
    assert result.exit_code == 1
    assert f"{bad}:" in result.stdout
    assert "checker json_valid has no parameter 'strict'" in result.stdout


def test_changed_content_under_unchanged_version(
    rubrics: Path, engine: Any, example_trace: dict[str, Any]
) -> None:
    from judges.catalog import load_catalog

    # the store sees json_valid v1 once, through a real (checker-only) scoring run
    from tracejury.core.segments import default_segmentation
    from tracejury.settings import Settings
    from tracejury.store.ingest import ingest_lines
    from workers.pipeline import score_release

    ingest_lines(
        engine, "t", [(1, orjson.dumps(example_trace))], segmentation=default_segmentation()
    )
    settings = Settings()
    asyncio.run(
        score_release(engine, settings, load_catalog(rubrics), "r42", rubric_ids=["json_valid"])
    )

    path = rubrics / "checks" / "json_valid.yaml"
    path.write_text(path.read_text().replace("parses as JSON.", "parses as JSON (strict)."))
    result = runner.invoke(app, ["rubrics", "lint"])
    assert result.exit_code == 1
    assert (
        "rubric json_valid changed but its version is still '1'; bump the version" in result.stdout
    )
    refused = runner.invoke(app, ["score", "--release", "r42", "--rubric", "json_valid"])
    assert refused.exit_code != 0
    path.write_text(path.read_text().replace('version: "1"', 'version: "2"'))
    assert runner.invoke(app, ["rubrics", "lint"]).exit_code == 0


def test_list_and_show(rubrics: Path) -> None:
    listed = orjson.loads(runner.invoke(app, ["rubrics", "list", "--json"]).stdout)
    assert {r["id"] for r in listed} >= {"answer_correctness", "helpfulness"}
    shown = orjson.loads(runner.invoke(app, ["rubrics", "show", "helpfulness"]).stdout)
    assert shown["replySchema"]["properties"]["label"]["enum"] == ["1", "2", "3", "4", "5"]
    assert shown["fingerprint"].startswith("sha256:")
    missing = runner.invoke(app, ["rubrics", "show", "nope"])
    assert missing.exit_code != 0
