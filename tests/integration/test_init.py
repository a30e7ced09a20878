"""``tracejury init`` writes the shipped defaults; commands run there read them (rubrics,
``segmentation.yaml``, ``sampling.yaml``), the ``TRACEJURY_*`` variables still win, and a
command without a setup says how to get one in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracejury.cli import app
from tracejury.core.errors import ConfigError, TracejuryError
from tracejury.core.sampling import default_sampling
from tracejury.core.segments import default_segmentation
from tracejury.defaults import setup_files, shipped_defaults
from tracejury.settings import Settings
from workers.service import catalog, sampling, segmentation

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with no ``TRACEJURY_*`` path set."""
    for name in ("RUBRICS_DIR", "SEGMENTATION_PATH", "SAMPLING_PATH"):
        monkeypatch.delenv(f"TRACEJURY_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_shipped_rubrics_are_the_repository_s() -> None:
    shipped = {rel for rel, _ in setup_files() if rel.startswith("rubrics/")}
    assert shipped == {p.relative_to(ROOT).as_posix() for p in (ROOT / "rubrics").rglob("*.yaml")}
    assert (shipped_defaults() / "segmentation.yaml").is_file()


def test_init_writes_the_setup_and_refuses_to_overwrite(here: Path) -> None:
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    files = list(setup_files())
    assert result.stdout.startswith(f"wrote {len(files)} files here:\n")
    for rel, source in files:
        assert (here / rel).read_bytes() == source.read_bytes()
        assert f"  {rel}\n" in result.stdout
    assert "next:\n  tracejury simulate" in result.stdout and "cd " not in result.stdout
    assert catalog(Settings()).rubrics.keys() >= {"answer_correctness", "json_valid", "tool_grounding"}

    (here / "sampling.yaml").write_text("# mine\n")
    refused = runner.invoke(app, ["init"])
    assert type(refused.exception) is TracejuryError
    assert f"{len(files)} of the setup's files exist in ." in str(refused.exception)
    assert (here / "sampling.yaml").read_text() == "# mine\n"  # nothing written

    forced = runner.invoke(app, ["init", "--force"])
    assert forced.exit_code == 0 and f"({len(files)} overwritten)" in forced.stdout
    assert (here / "sampling.yaml").read_bytes() == (shipped_defaults() / "sampling.yaml").read_bytes()


def test_init_into_a_directory_says_cd_first(here: Path) -> None:
    result = runner.invoke(app, ["init", "setup/prod"])
    assert result.exit_code == 0, result.output
    assert (here / "setup/prod/rubrics/gates/tool_grounding.yaml").is_file()
    assert "wrote 23 files in setup/prod:" in result.stdout and "next:\n  cd setup/prod\n" in result.stdout


def test_segmentation_and_sampling_come_from_the_working_directory_then_the_variables(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert segmentation(Settings()) == default_segmentation() and sampling(Settings()) == default_sampling()
    assert runner.invoke(app, ["init"]).exit_code == 0
    for name, old, new in [("segmentation.yaml", "version: seg-v1", "version: seg-mine"),
                           ("sampling.yaml", "version: samp-v2", "version: samp-mine")]:  # fmt: skip
        text = (here / name).read_text()
        assert old in text
        (here / name).write_text(text.replace(old, new))
    assert segmentation(Settings()).version == "seg-mine" and sampling(Settings()).version == "samp-mine"

    elsewhere = here / "other"
    elsewhere.mkdir()
    for name in ("segmentation.yaml", "sampling.yaml"):
        (elsewhere / name).write_bytes((shipped_defaults() / name).read_bytes())
    monkeypatch.setenv("TRACEJURY_SEGMENTATION_PATH", str(elsewhere / "segmentation.yaml"))
    monkeypatch.setenv("TRACEJURY_SAMPLING_PATH", str(elsewhere / "sampling.yaml"))
    assert segmentation(Settings()).version == "seg-v1" and sampling(Settings()).version == "samp-v2"
    notes = runner.invoke(app, ["init", "again"])
    assert "note: TRACEJURY_SEGMENTATION_PATH=" in notes.stderr and "note: TRACEJURY_SAMPLING_PATH=" in notes.stderr

    monkeypatch.setenv("TRACEJURY_SAMPLING_PATH", str(elsewhere / "missing.yaml"))
    with pytest.raises(TracejuryError, match=r"missing.yaml: cannot read sampling config: No such file"):
        sampling(Settings())


@pytest.mark.parametrize(("rubrics_dir", "message"), [
    (None, "no rubrics in ./rubrics (TRACEJURY_RUBRICS_DIR); run `tracejury init` to write the shipped defaults here"),
    ("sub/rubrics", "no rubrics in ./sub/rubrics (TRACEJURY_RUBRICS_DIR); run `tracejury init sub` to write the shipped defaults there"),
    ("/nowhere/rubrics", "no rubrics in /nowhere/rubrics (TRACEJURY_RUBRICS_DIR); run `tracejury init /nowhere` to write the shipped defaults there"),
    ("mine", "no rubrics in ./mine (TRACEJURY_RUBRICS_DIR); `tracejury init DIR` writes the shipped defaults to DIR/rubrics"),
])  # fmt: skip
def test_without_a_setup_a_command_says_how_to_get_one(
    here: Path, monkeypatch: pytest.MonkeyPatch, rubrics_dir: str | None, message: str
) -> None:
    if rubrics_dir is not None:
        monkeypatch.setenv("TRACEJURY_RUBRICS_DIR", rubrics_dir)
    result = runner.invoke(app, ["rubrics", "list"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == message


def test_an_installation_built_without_rubrics_says_so(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracejury.defaults

    monkeypatch.setattr(tracejury.defaults, "shipped_defaults", lambda: here)  # a tree whose rubrics link dangled
    result = runner.invoke(app, ["init", "out"])
    assert isinstance(result.exception, ConfigError) and "lacks its shipped rubrics" in str(result.exception)
    assert not (here / "out").exists()
