"""Loading rubrics and judge profiles from a directory (``rubrics/`` by default).

Layout: ``*.yaml`` rubric files anywhere below the directory, except ``profiles.yaml`` (judge
profiles) and the ``gates/`` folder (gate specs). Every error names the file and line.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from judges.llm.profiles import JudgeProfile
from judges.rubric import Rubric
from tracejury.core.errors import ConfigError
from tracejury.core.yamlconf import load_model

__all__ = ["Catalog", "load_catalog", "load_plugins"]

PROFILES_FILE = "profiles.yaml"


class _Profiles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profiles: list[JudgeProfile]


class Catalog(BaseModel):
    """The rubrics and judge profiles of one directory."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    rubrics: dict[str, Rubric]
    """By id."""
    profiles: dict[str, JudgeProfile]
    """By name."""
    files: dict[str, str]
    """Rubric id → the file it came from."""

    def select(self, ids: list[str] | None) -> list[Rubric]:
        """The rubrics named (all, sorted by id, when None); an unknown id is an error."""
        if not ids:
            return [self.rubrics[k] for k in sorted(self.rubrics)]
        unknown = [i for i in ids if i not in self.rubrics]
        if unknown:
            raise ConfigError(
                f"unknown rubric {unknown[0]!r} (known: {', '.join(sorted(self.rubrics))})"
            )
        return [self.rubrics[i] for i in dict.fromkeys(ids)]


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules (they register extra checkers with ``@checker``)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import plugin {name!r}: {exc}") from exc


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc


def load_catalog(directory: Path) -> Catalog:
    """Load every rubric and profile under ``directory``."""
    if not directory.is_dir():
        raise ConfigError(f"rubrics directory {directory} does not exist")
    rubrics: dict[str, Rubric] = {}
    files: dict[str, str] = {}
    for path in sorted(directory.rglob("*.yaml")):
        rel = path.relative_to(directory)
        if rel.parts[0] == "gates" or rel.name == PROFILES_FILE:
            continue
        rubric = Rubric.from_yaml(_read(path), file=str(path))
        if rubric.id in rubrics:
            raise ConfigError(f"rubric id {rubric.id!r} also defined in {files[rubric.id]}",
                              file=str(path), field="id")  # fmt: skip
        rubrics[rubric.id] = rubric
        files[rubric.id] = str(path)
    profiles_path = directory / PROFILES_FILE
    profiles = (
        load_model(_Profiles, _read(profiles_path), file=str(profiles_path)).profiles
        if profiles_path.exists()
        else []
    )
    return Catalog(rubrics=rubrics, profiles={p.name: p for p in profiles}, files=files)
