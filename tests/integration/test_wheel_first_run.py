"""A first run from ``pip install`` of the built wheel, in an empty directory (README: "Quick
start from the wheel").

The wheel is built from a copy of the sources (``pyproject.toml``, ``README.md``, the three
packages and the top-level ``rubrics/``, whose link ``tracejury/core/defaults/rubrics`` the
build copies into the wheel) and installed, with its dependencies resolved by pip, into a fresh
virtualenv that does not see this checkout: no ``PYTHONPATH``, no editable install, no
``TRACEJURY_*`` variable, and every command runs in an empty temporary directory. So what
``tracejury init`` writes can only come from the data inside the wheel. Building and installing
take about 20 s (pip's cache; the first run downloads the dependencies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from tests.integration.procs import free_port, start, stop, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "tracejury", "judges", "workers", "rubrics"]


def _run(args: list[str], *, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` directory of a fresh virtualenv with the built wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
        else:
            shutil.copy2(ROOT / name, src / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)])
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("tracejury-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ["rubrics/profiles.yaml", "rubrics/checks/json_valid.yaml", "rubrics/gates/tool_grounding.yaml",
                    "segmentation.yaml", "sampling.yaml"]:  # fmt: skip
        assert f"tracejury/core/defaults/{shipped}" in names
    assert not any(n.startswith("rubrics/") for n in names)  # no top-level package named rubrics
    _run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)], timeout=900)
    assert installed.returncode == 0, installed.stderr
    return python.parent


@pytest.fixture
def env(venv: Path) -> dict[str, str]:
    """The environment of a user who installed the wheel: its venv first on PATH, nothing of ours."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("TRACEJURY_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # fmt: skip
    return {**keep, "PATH": f"{venv}{os.pathsep}{keep.get('PATH', '')}", "COLUMNS": "200"}


def test_init_simulate_ingest_score_from_the_wheel(venv: Path, env: dict[str, str], tmp_path: Path) -> None:
    here = tmp_path / "empty"
    here.mkdir()

    def tj(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return _run([str(venv / "tracejury"), *args], cwd=here, env={**env, **extra}, timeout=300)

    where = _run([str(venv / "python"), "-c", "import judges, tracejury, workers;"
                  "print(tracejury.__file__, judges.__file__, workers.__file__)"], cwd=here, env=env)  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert all(Path(p).is_relative_to(venv.parent) for p in where.stdout.split()), where.stdout

    init = tj("init")
    assert init.returncode == 0, init.stderr
    assert "wrote 23 files here:" in init.stdout and "tracejury score --release r1" in init.stdout
    for written in ["rubrics/profiles.yaml", "rubrics/checks/json_valid.yaml", "rubrics/gates/tool_grounding.yaml",
                    "segmentation.yaml", "sampling.yaml"]:  # fmt: skip
        assert (here / written).read_bytes() == (ROOT / "tracejury/core/defaults" / written).read_bytes()
    again = tj("init")
    assert again.returncode == 2 and "--force overwrites them" in again.stderr

    assert tj("simulate", "--release", "r1", "--traces", "200", "--seed", "1", "-o", "r1.jsonl.gz").returncode == 0
    ingested = tj("ingest", "r1.jsonl.gz", "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert orjson.loads(ingested.stdout)["ingested"] == 200

    port = free_port()
    judge = start([str(venv / "tracejury"), "mock-judge", "--port", str(port)], env, tmp_path / "mock-judge.log")
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/v1"
        # a judge rubric alone: every scored evaluation is a verdict the mock judge returned
        judged = tj("score", "--release", "r1", "--rubric", "answer_correctness", "--json", TRACEJURY_JUDGE_BASE_URL=url)
        assert judged.returncode == 0, judged.stderr
        summary = orjson.loads(judged.stdout)
        assert summary["status"]["scored"] == 200 and summary["status"]["judge_failed"] == 0, summary
        # then everything the shipped setup holds: 4 judge rubrics and 7 checkers
        scored = tj("score", "--release", "r1", "--json", TRACEJURY_JUDGE_BASE_URL=url)
        assert scored.returncode == 0, scored.stderr
        summary = orjson.loads(scored.stdout)
    finally:
        stop(judge)
    assert len(summary["evaluators"]) == 11
    assert summary["status"]["judge_failed"] == 0 and summary["failures"] == {}, summary
    assert summary["status"]["scored"] > 200 * 4
    assert sum(summary["status"].values()) == 200 * 11


def test_a_command_without_a_setup_says_how_to_get_one(venv: Path, env: dict[str, str], tmp_path: Path) -> None:
    result = _run([str(venv / "tracejury"), "score", "--release", "r1"], cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr == ("error: no rubrics in ./rubrics (TRACEJURY_RUBRICS_DIR); run `tracejury init`"
                             " to write the shipped defaults here\n")  # fmt: skip
