"""The pure core imports no I/O libraries, and imports point one way (import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency"
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_core_imports_without_io_modules() -> None:
    code = (
        "import sys, tracejury.core.ingest, tracejury.core.segments, tracejury.core.signals,"
        " tracejury.core.simulate, tracejury.core.trace;"
        " bad = {'sqlalchemy', 'sqlmodel', 'celery', 'httpx', 'redis', 'alembic'} & set(sys.modules);"
        " print(sorted(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
