"""Segment keys: a canonical, stable string that says which slice of traffic a trace is in.

A key is ``dim=value`` pairs joined by ``|`` in the order of the segmentation config, e.g.
``model=acme-chat@2026-10-01|rag=on|tool=order_status@tool_v1|trunc=no|ret=high|turns=2-5|guard=allow``.
It is computed once at ingest and stored; queries group by any subset of its dimensions
with ``project_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tracejury.core.yamlconf import load_model

__all__ = [
    "BUILTIN_DIMENSIONS",
    "DimensionSpec",
    "SegmentationConfig",
    "default_segmentation",
    "key_matches",
    "parse_segment_key",
    "project_key",
    "segment_key",
]

_GUARD_ORDER = {"allow": 0, "rewrite": 1, "block": 2}


def _clean(value: object) -> str:
    """Make a value safe inside a key: no separators, no surrounding blanks."""
    text = str(value).strip()
    return text.replace("|", "_").replace("=", "_") or "unknown"


def _model(t: Mapping[str, Any]) -> str:
    m = t["config"]["model"]
    return f"{_clean(m['name'])}@{_clean(m['version'])}"


def _retrieval(t: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (t.get("evidence") or {}).get("retrieval")


def _rag(t: Mapping[str, Any]) -> str:
    return "on" if _retrieval(t) is not None else "off"


def _tool(t: Mapping[str, Any]) -> str:
    calls = (t.get("evidence") or {}).get("tool") or []
    if not calls:
        return "none"
    first = calls[0]
    return f"{_clean(first['toolName'])}@{_clean(first['schemaVersion'])}"


def _trunc(t: Mapping[str, Any]) -> str:
    return "yes" if t["runtime"]["truncated"] else "no"


def _ret(t: Mapping[str, Any]) -> str:
    r = _retrieval(t)
    if r is None:
        return "none"
    bins = r.get("topKScoreBins") or []
    if r.get("empty") or not r.get("topKDocIds") or not bins:
        return "empty"
    top = bins[0]
    return "low" if top <= 3 else "mid" if top <= 6 else "high"


def _turns(t: Mapping[str, Any]) -> str:
    turn = (t.get("req") or {}).get("sessionTurn") or 1
    return "1" if turn <= 1 else "2-5" if turn <= 5 else "6+"


def _guard(t: Mapping[str, Any]) -> str:
    decisions = [g["decision"] for g in (t.get("runtime") or {}).get("guardrails") or []]
    return max(decisions, key=_GUARD_ORDER.__getitem__, default="allow")


BUILTIN_DIMENSIONS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "model": _model,
    "rag": _rag,
    "tool": _tool,
    "trunc": _trunc,
    "ret": _ret,
    "turns": _turns,
    "guard": _guard,
}
"""The built-in dimensions, by name, each a function of a validated trace."""


class DimensionSpec(BaseModel):
    """One dimension of the segment key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    """The key's ``dim`` part; a built-in dimension when ``field`` is not set."""
    field: str | None = None
    """Dotted path of a trace field to read (``req.channel``) for a custom dimension."""
    default: str = "unknown"
    """Value of a custom dimension when the field is absent or null."""

    @model_validator(mode="after")
    def _known(self) -> DimensionSpec:
        if self.field is None and self.name not in BUILTIN_DIMENSIONS:
            known = ", ".join(BUILTIN_DIMENSIONS)
            raise ValueError(f"unknown dimension {self.name!r}: use one of {known}, or set 'field'")
        return self

    def value(self, trace: Mapping[str, Any]) -> str:
        """This dimension's value for a validated trace."""
        if self.field is None:
            return BUILTIN_DIMENSIONS[self.name](trace)
        node: Any = trace
        for part in self.field.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return self.default
        if isinstance(node, bool):
            return "yes" if node else "no"
        return _clean(node)


class SegmentationConfig(BaseModel):
    """A versioned list of dimensions; the version is stored beside every key it made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    """Bump it whenever the dimensions change."""
    dimensions: tuple[DimensionSpec, ...] = Field(min_length=1)
    """Dimensions in key order."""

    @field_validator("dimensions", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique(self) -> SegmentationConfig:
        names = [d.name for d in self.dimensions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dimension listed twice: {', '.join(dupes)}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Dimension names in key order."""
        return tuple(d.name for d in self.dimensions)

    @classmethod
    def from_yaml(cls, text: str, *, file: str = "<segmentation>") -> SegmentationConfig:
        """Parse YAML text; errors name the file, line and field."""
        return load_model(cls, text, file=file)


@cache
def default_segmentation() -> SegmentationConfig:
    """The shipped default segmentation (``defaults/segmentation.yaml`` in this package)."""
    text = resources.files("tracejury.core").joinpath("defaults/segmentation.yaml").read_text()
    return SegmentationConfig.from_yaml(text, file="tracejury/core/defaults/segmentation.yaml")


def segment_key(trace: Mapping[str, Any], config: SegmentationConfig) -> str:
    """The canonical segment key of a validated trace."""
    return "|".join(f"{d.name}={d.value(trace)}" for d in config.dimensions)


def parse_segment_key(key: str) -> dict[str, str]:
    """Split a key into ``{dim: value}`` (insertion order = key order)."""
    return dict(_parts(key))


@lru_cache(maxsize=16_384)
def _parts(key: str) -> Mapping[str, str]:
    """``parse_segment_key``, read-only and remembered: scoring matches every evaluation's
    trace against its rubric's ``applies_when``, and a release has few distinct keys."""
    if not key:
        return MappingProxyType({})
    return MappingProxyType(dict(part.split("=", 1) for part in key.split("|")))


def project_key(key: str, dims: Iterable[str]) -> str:
    """The key restricted to ``dims`` (in the order given); ``""`` for no dimensions.

    A dimension the key does not have shows as ``dim=?`` rather than vanishing, so keys
    made by different segmentation versions never merge silently.
    """
    parts = _parts(key)
    return "|".join(f"{d}={parts.get(d, '?')}" for d in dims)


def key_matches(key: str, where: Mapping[str, str | Iterable[str]]) -> bool:
    """Whether a key's dimensions match every ``dim: value`` (or ``dim: [values]``) of ``where``."""
    parts = _parts(key)
    for dim, wanted in where.items():
        allowed = {wanted} if isinstance(wanted, str) else set(wanted)
        if parts.get(dim) not in allowed:
            return False
    return True
