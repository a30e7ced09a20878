"""``tracejury init``: write a working setup (the shipped defaults) into a directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracejury.cli.app import _settings, app, err
from tracejury.core.errors import InputError, TracejuryError
from tracejury.defaults import RUBRICS_DIR, SAMPLING_FILE, SEGMENTATION_FILE, setup_files
from tracejury.settings import Settings


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the setup (default: here).",
                                              show_default=False)] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
) -> None:
    """Write a working setup, the shipped defaults, into DIR (default: here).

    rubrics/ (judges, checks/, profiles.yaml, gates/), segmentation.yaml and sampling.yaml;
    commands run in DIR read them. Existing files are left alone unless --force."""
    files = list(setup_files())
    existing = [rel for rel, _ in files if (directory / rel).exists()]
    if existing and not force:
        raise TracejuryError(
            f"{len(existing)} of the setup's files exist in {directory} ({', '.join(existing[:3])}"
            f"{', …' if len(existing) > 3 else ''}); --force overwrites them"
        )
    for rel, source in files:
        target = directory / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        except OSError as exc:
            raise InputError(f"{target}: cannot write: {exc.strerror}") from exc
    here = directory == Path(".")
    overwritten = f" ({len(existing)} overwritten)" if existing else ""
    lines = [f"wrote {len(files)} files {'here' if here else f'in {directory}'}{overwritten}:"]
    lines += [f"  {rel}" for rel, _ in files]
    lines += ["next:"] + ([] if here else [f"  cd {directory}"])
    lines += [
        "  tracejury simulate --release r1 --traces 2000 --seed 1 -o r1.jsonl.gz   # or your traces (JSONL)",
        "  tracejury ingest r1.jsonl.gz",
        "  tracejury mock-judge --port 8100 &     # or a real judge: profiles in rubrics/profiles.yaml",
        "  tracejury score --release r1",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    for note in _overridden(_settings()):
        err.print(f"note: {note}", markup=False, soft_wrap=True)


def _overridden(settings: Settings) -> list[str]:
    """The settings that make commands read something else than what ``init`` wrote."""
    notes = []
    if settings.rubrics_dir != RUBRICS_DIR:
        notes.append(f"TRACEJURY_RUBRICS_DIR={settings.rubrics_dir}: commands read rubrics there")
    if settings.segmentation_path is not None:
        notes.append(f"TRACEJURY_SEGMENTATION_PATH={settings.segmentation_path} replaces {SEGMENTATION_FILE}")
    if settings.sampling_path is not None:
        notes.append(f"TRACEJURY_SAMPLING_PATH={settings.sampling_path} replaces {SAMPLING_FILE}")
    return notes
