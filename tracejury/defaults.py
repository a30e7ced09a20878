"""Where the shipped defaults are, and how a setup lays them out.

The defaults ship inside the package, at ``tracejury/core/defaults/``: ``segmentation.yaml``,
``sampling.yaml`` and ``rubrics/`` — the repository's top-level ``rubrics/`` directory (the
source of truth) through a symbolic link, which the wheel build copies as files (package data
in ``pyproject.toml``), so an editable install and an installed wheel read the same tree.

A *setup* is what ``tracejury init`` writes into a directory and what commands run there read
(``workers.service``): ``rubrics/`` (rubrics, ``checks/``, ``profiles.yaml``, ``gates/``),
``segmentation.yaml`` and ``sampling.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable

from tracejury.core.errors import ConfigError

__all__ = ["RUBRICS_DIR", "SAMPLING_FILE", "SEGMENTATION_FILE", "setup_files", "shipped_defaults"]

RUBRICS_DIR = "rubrics"
"""A setup's directory of rubrics, judge profiles and gates (``TRACEJURY_RUBRICS_DIR``'s default)."""
SEGMENTATION_FILE = "segmentation.yaml"
"""A setup's segmentation config, read from the working directory when present."""
SAMPLING_FILE = "sampling.yaml"
"""A setup's sampling config, read from the working directory when present."""


def shipped_defaults() -> Traversable:
    """The directory of the shipped defaults inside the installed package."""
    return resources.files("tracejury.core") / "defaults"


def setup_files() -> Iterator[tuple[str, Traversable]]:
    """Each file of a setup: its path relative to the setup's directory (``/``-separated) and
    the shipped file it is copied from; sorted by path."""
    root = shipped_defaults()
    if not (root / RUBRICS_DIR / "profiles.yaml").is_file():  # built with rubrics/ absent: the link dangled
        raise ConfigError(f"this installation lacks its shipped rubrics ({root / RUBRICS_DIR}); reinstall"
                          " from a wheel built from a tree that holds rubrics/")  # fmt: skip
    files = [(name, root / name) for name in (SEGMENTATION_FILE, SAMPLING_FILE)]
    files += list(_yaml_files(root / RUBRICS_DIR, RUBRICS_DIR))
    yield from sorted(files, key=lambda f: f[0])


def _yaml_files(directory: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for entry in directory.iterdir():
        if entry.is_dir():
            yield from _yaml_files(entry, f"{prefix}/{entry.name}")
        elif entry.name.endswith(".yaml"):
            yield f"{prefix}/{entry.name}", entry
