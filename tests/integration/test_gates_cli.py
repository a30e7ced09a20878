"""`tracejury gate run|show|history` and `report` over simulated releases in a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tracejury.cli import app

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "rubrics" / "gates" / "format_validity.yaml"
runner = CliRunner()


RELEASES = [
    ("r41", 1, "2026-11-18T00:00:00Z", []),
    ("r42", 2, "2026-11-20T00:00:00Z", ["--regress", "format_invalid:0.01:rag=off"]),
]


@pytest.fixture(scope="module")
def _simulated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """r41 (baseline) and r42 with format breaking in rag=off traffic, as JSONL files."""
    tmp = tmp_path_factory.mktemp("releases")
    paths = []
    for release, seed, start, extra in RELEASES:
        path = tmp / f"{release}.jsonl"
        args = ["simulate", "--release", release, "--traces", "20000", "--seed", str(seed),
                "--start", start, "-o", str(path), *extra]  # fmt: skip
        assert runner.invoke(app, args).exit_code == 0
        paths.append(path)
    return paths


class _Templates:
    """Per backend, built once on first use: a store with both releases ingested (a SQLite
    file, or a PostgreSQL database), copied into each test's store."""

    def __init__(self, simulated: list[Path], tmp: pytest.TempPathFactory, request: pytest.FixtureRequest) -> None:
        self.simulated, self.tmp, self.request = simulated, tmp, request
        self.built: dict[str, str] = {}

    def _build(self, backend: str) -> str:
        if backend == "sqlite":
            where = str(self.tmp.mktemp("template") / "t.db")
            url = f"sqlite:///{where}"
        else:
            server = self.request.getfixturevalue("pg_server")
            where = server.create_database()
            url = server.url(where)
        for path in self.simulated:
            assert runner.invoke(app, ["ingest", str(path)], env={"TRACEJURY_DATABASE_URL": url}).exit_code == 0
        return where

    def copy_to(self, db_url: str) -> None:
        """Make the (empty) store at ``db_url`` a copy of the template of its backend."""
        backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
        if backend not in self.built:
            self.built[backend] = self._build(backend)
        template = self.built[backend]
        if backend == "sqlite":
            import sqlite3

            source, target = sqlite3.connect(template), sqlite3.connect(db_url.removeprefix("sqlite:///"))
            source.backup(target)
            source.close()
            target.close()
        else:
            from sqlalchemy.engine import make_url

            self.request.getfixturevalue("pg_server").clone_database(template, make_url(db_url).database)

    def drop(self) -> None:
        if "postgresql" in self.built:
            self.request.getfixturevalue("pg_server").drop_database(self.built["postgresql"])


@pytest.fixture(scope="module")
def _templates(
    _simulated: list[Path], tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[_Templates]:
    templates = _Templates(_simulated, tmp_path_factory, request)
    yield templates
    templates.drop()


@pytest.fixture
def releases(_templates: _Templates, db_url: str) -> None:
    """A copy of the template store as this test's store."""
    _templates.copy_to(db_url)


def test_gate_run_blocks_the_regressed_segment_only(releases: None) -> None:
    result = runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(GATE), "--json"])
    assert result.exit_code == 1  # block
    run = orjson.loads(result.stdout)
    assert (run["decision"], run["baseline"]) == ("block", "r41")
    by_segment = {o["segment"]: o for o in run["outcomes"]}
    assert by_segment["rag=off"]["decision"] == "block"
    assert by_segment["rag=on"]["decision"] == "pass"
    off = by_segment["rag=off"]
    assert off["interval"][0] > off["margin"] and off["streak"] >= 2
    assert set(off) >= {"gate", "segment", "decision", "baseline", "current", "interval"}
    assert set(off["baseline"]) >= {"failures", "n"}


def test_same_data_same_decision_and_replay(releases: None, engine: object) -> None:
    from tracejury.store.gates import load_run
    from workers.reducer import replay

    first = orjson.loads(runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(GATE), "--json"]).stdout)
    second = orjson.loads(
        runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(GATE), "--json"]).stdout
    )
    strip = lambda r: [{k: v for k, v in o.items()} for o in r["outcomes"]]  # noqa: E731
    assert strip(first) == strip(second)
    _, audits = load_run(engine, first["runId"])  # type: ignore[arg-type, misc]
    off = next(a for a in audits if a["inputs"]["segment"] == "rag=off")
    assert off["baselineSource"] == {"kind": "previous_release", "release": "r41", "windows": 2}
    first_two = [w["baseline"] for w in off["inputs"]["windows"][:2]]
    assert all(first_two) and first_two[0] != first_two[1]  # each window meets a fresh baseline window
    replayed = {(o.gate, o.segment): o.decision for o in replay(audits)}
    assert replayed == {(o["gate"], o["segment"]): o["decision"] for o in first["outcomes"]}


def test_baseline_against_itself_passes_and_dry_run_stores_nothing(releases: None) -> None:
    result = runner.invoke(app, ["gate", "run", "--release", "r41", "--baseline", "r41", "--gates", str(GATE),
                                 "--json", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["runId"] is None
    history = orjson.loads(runner.invoke(app, ["gate", "history", "format_validity", "--json"]).stdout)
    assert history == []


def test_insufficient_data_exits_3(releases: None, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(GATE.read_text().replace("min_samples: 2000", "min_samples: 50000"))
    result = runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(strict)])
    assert result.exit_code == 3


def test_show_history_markdown_and_html(releases: None, tmp_path: Path) -> None:
    run = orjson.loads(runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(GATE), "--json"]).stdout)
    shown = orjson.loads(runner.invoke(app, ["gate", "show", run["runId"], "--json"]).stdout)
    assert shown["decision"] == "block" and len(shown["outcomes"]) == 2
    md = runner.invoke(app, ["gate", "show", run["runId"], "--format", "markdown"]).stdout
    assert md.startswith("## tracejury gates: **BLOCK**") and "| `format_validity` | `rag=off` | **BLOCK** |" in md
    history = orjson.loads(
        runner.invoke(app, ["gate", "history", "format_validity", "--segment", "rag=off", "--json"]).stdout
    )
    assert [h["decision"] for h in history] == ["block"]
    page = tmp_path / "report.html"
    assert runner.invoke(app, ["report", "--run", run["runId"], "-o", str(page)]).exit_code == 0
    text = page.read_text()
    assert "Content-Security-Policy" in text and "<svg" in text and "format_validity" in text
    assert text.index("rag=off") < text.index("rag=on")  # blocked first


def test_bad_gate_spec_is_a_one_line_usage_error(releases: None, tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("id: g\nmetric: {signal: format_invalid}\nhysteresis: {windows: 0}\n")
    exe = Path(sys.executable).parent / "tracejury"
    proc = subprocess.run([exe, "gate", "run", "--release", "r42", "--gates", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {bad}:3 hysteresis.windows:")
    assert "Traceback" not in proc.stderr


def test_diff_ranks_the_planted_regression_first(releases: None) -> None:
    result = runner.invoke(app, ["diff", "--release", "r42", "--baseline", "r41", "--json", "--by", "rag,tool"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["configChanges"] == []  # same config: the simulator changed behaviour only
    top = data["moves"][0]
    assert (top["what"], top["segment"], top["direction"]) == ("format_invalid_rate", "rag=off", "up")
    assert top["pValue"] < 1e-6
