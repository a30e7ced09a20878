"""A batch finaliser that fails is never silent: the batch still ends ``done`` (its
evaluations are real), ``batch status`` says which finaliser failed and why, ``tracejury
score`` exits non-zero and suggests ``tracejury review escalate BATCH``, and that rerun
clears the failure."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from judges.catalog import load_catalog
from tracejury.cli import app
from tracejury.core.sampling import default_sampling
from tracejury.core.segments import default_segmentation
from tracejury.settings import Settings
from tracejury.store import batches as store
from tracejury.store.ingest import ingest_lines
from workers import review
from workers.batches import create_queued_batch, finish
from workers.service import batch_status

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def populated(engine: Any, example_trace: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRACEJURY_RUBRICS_DIR", str(ROOT / "rubrics"))
    lines = []
    for i in range(20):
        t = copy.deepcopy(example_trace)
        t["traceId"] = f"tr_{i:03d}"
        t["releaseId"] = "r42"
        lines.append((i + 1, orjson.dumps(t)))
    ingest_lines(engine, "t", lines, segmentation=default_segmentation())
    return engine


@pytest.fixture
def broken_escalation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The escalation finaliser fails: its store call raises."""

    def unreachable(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("review store unreachable\nsecond line")

    monkeypatch.setattr(review, "escalate_batch", unreachable)


def _queued_batch_ended(engine: Any) -> str:
    created = create_queued_batch(
        engine, Settings(chunk_size=10), load_catalog(ROOT / "rubrics"), default_sampling(), release="r42",
        rubric_ids=["json_valid"], seed=1, enqueue=lambda b, c: None, sample_size=None, budget=None,
    )  # fmt: skip
    b = created.batch_id
    for c in range(created.chunks):
        assert store.claim_chunk(engine, b, c, "w", 10)
        assert store.complete_chunk(engine, b, c, "w")
    finish(engine, b)
    return b


def test_a_failed_finaliser_is_shown_in_batch_status(populated: Any, broken_escalation: None) -> None:
    b = _queued_batch_ended(populated)
    status = batch_status(populated, b)
    assert status["state"] == "done"
    assert status["finalisers"] == {"escalation": "failed: ConnectionError: review store unreachable second line"}
    cli = runner.invoke(app, ["batch", "status", b, "--json"])
    assert cli.exit_code == 0, cli.output
    assert orjson.loads(cli.output)["finalisers"] == status["finalisers"]
    text = runner.invoke(app, ["batch", "status", b])
    assert "escalation failed" in text.output and f"tracejury review escalate {b}" in text.output


def test_a_finaliser_that_succeeds_is_shown_ok(populated: Any) -> None:
    b = _queued_batch_ended(populated)
    assert batch_status(populated, b)["finalisers"] == {"escalation": "ok"}


def test_score_exits_non_zero_and_suggests_the_rerun(populated: Any, broken_escalation: None) -> None:
    cli = runner.invoke(app, ["score", "--release", "r42", "--rubric", "json_valid", "--json"])
    assert cli.exit_code != 0
    data = orjson.loads(cli.stdout)
    b = data["batchId"]
    assert data["finalisers"] == {"escalation": "failed: ConnectionError: review store unreachable second line"}
    assert "escalation failed" in cli.stderr and f"tracejury review escalate {b}" in cli.stderr
    assert batch_status(populated, b)["state"] == "done"
    table = runner.invoke(app, ["score", "--release", "r42", "--rubric", "json_valid"])
    assert table.exit_code != 0 and "tracejury review escalate" in table.stderr


def test_the_suggested_rerun_clears_the_failure(populated: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = review.escalate_batch
    monkeypatch.setattr(review, "escalate_batch", lambda *a, **k: (_ for _ in ()).throw(OSError("down")))
    b = _queued_batch_ended(populated)
    assert batch_status(populated, b)["finalisers"] == {"escalation": "failed: OSError: down"}
    monkeypatch.setattr(review, "escalate_batch", real)
    rerun = runner.invoke(app, ["review", "escalate", b])
    assert rerun.exit_code == 0, rerun.output
    assert batch_status(populated, b)["finalisers"] == {"escalation": "ok"}


def test_batch_wait_exits_non_zero_on_a_failed_finaliser(populated: Any, broken_escalation: None) -> None:
    b = _queued_batch_ended(populated)
    cli = runner.invoke(app, ["batch", "wait", b, "--timeout", "10"])
    assert cli.exit_code == 1, cli.output
    assert "escalation failed" in cli.stderr and f"tracejury review escalate {b}" in cli.stderr


def test_batch_wait_exits_zero_when_the_finalisers_succeeded(populated: Any) -> None:
    b = _queued_batch_ended(populated)
    cli = runner.invoke(app, ["batch", "wait", b, "--timeout", "10"])
    assert cli.exit_code == 0, cli.output
    assert "done" in cli.stdout and "finaliser" not in cli.stderr and "escalat" not in cli.stderr
