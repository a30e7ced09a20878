"""A real model behind a real OpenAI-compatible server, for judge tests that must not be mocked:
llama-cpp-python's server (in its own venv, ``.venv-judge``) on SmolLM2-135M-Instruct (Q4_1
GGUF). ``scripts/setup`` builds and installs both; a test that needs them and finds them missing
fails with that advice, unless ``TRACEJURY_TEST_REAL_MODEL=0`` says to skip it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.procs import free_port, start, stop

ROOT = Path(__file__).resolve().parents[2]
JUDGE_PYTHON = ROOT / ".venv-judge" / "bin" / "python"
"""The interpreter of the judge server's venv (``scripts/setup`` makes it)."""
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
"""Context of the server: the longest prompt of the shipped judge rubrics on simulated traces
is ~860 tokens (measured, the schema in the prompt included; BENCHMARKS.md); with a reply cap
of 256 that is ~1,100."""
N_THREADS = 2
"""Threads for generation and prompt evaluation: the machines here have 2 cores."""
START_TIMEOUT_S = 120.0


def model_path() -> Path:
    """Where ``scripts/setup`` puts the GGUF: the tracejury cache, outside the checkout."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tracejury" / "models" / MODEL_FILE


def require_real_model() -> Path:
    """The model's path, once the judge venv and the model are known to be there. Skips only
    when ``TRACEJURY_TEST_REAL_MODEL=0``; otherwise anything missing fails the test."""
    if os.environ.get("TRACEJURY_TEST_REAL_MODEL", "1") == "0":
        pytest.skip("TRACEJURY_TEST_REAL_MODEL=0: the real-model judge test is turned off")
    model = model_path()
    missing = [str(p) for p in (JUDGE_PYTHON, model) if not p.exists()]
    if missing:
        pytest.fail(
            f"the real-model judge test needs {' and '.join(missing)}: run ./scripts/setup"
            " (or set TRACEJURY_TEST_REAL_MODEL=0 to skip it)",
            pytrace=False,
        )
    return model


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port, started and waited for until
    ``/v1/models`` answers; ``model`` is the name it reports there (what requests send)."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model_file, self.log, self.port = model, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.model = ""
        self.start_s = 0.0
        """Seconds from spawning the process to its first answer on ``/v1/models``."""

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, up to ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Spawn the server and wait for ``/v1/models``; fail with its log's tail if it dies."""
        began = time.monotonic()
        args = [str(JUDGE_PYTHON), "-m", "llama_cpp.server", "--model", str(self.model_file),
                "--model_alias", "smollm2-135m-instruct", "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", str(N_CTX), "--n_threads", str(N_THREADS),
                "--n_threads_batch", str(N_THREADS)]  # fmt: skip
        self.proc = start(args, {**os.environ, "PYTHONUNBUFFERED": "1"}, self.log)
        deadline = began + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with {self.proc.returncode} before answering:\n" + self._log_tail()
                )
            try:
                reply = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if reply.status_code == 200:
                    self.model = reply.json()["data"][0]["id"]
                    self.start_s = time.monotonic() - began
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama_cpp.server did not answer in {START_TIMEOUT_S:g} s:\n" + self._log_tail())
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        if self.proc is not None:
            stop(self.proc)

    def alive(self) -> bool:
        """Whether the server process is still running (an illegal instruction kills it)."""
        return self.proc is not None and self.proc.poll() is None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
