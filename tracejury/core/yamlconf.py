"""Load YAML config text into a pydantic model, with errors that name file, line and field.

Every YAML document tracejury reads (segmentation, and later rubrics and gates) goes through
``load_model``: YAML syntax errors and model validation errors both become one ``ConfigError``
whose message points at the offending line and dotted field path.
"""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tracejury.core.errors import ConfigError

__all__ = ["line_index", "load_model", "parse_yaml"]

M = TypeVar("M", bound=BaseModel)
Path = tuple[str | int, ...]


def parse_yaml(text: str, *, file: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML text; return the data and a map from field path to 1-based line number."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from exc
    return data, line_index(node)


def line_index(node: yaml.Node | None) -> dict[Path, int]:
    """Map every path in a composed YAML node tree to the line where its value starts."""
    lines: dict[Path, int] = {}

    def walk(n: yaml.Node, path: Path) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return lines


def _nearest_line(lines: dict[Path, int], loc: Path) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _dotted(loc: Path) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_model(model: type[M], text: str, *, file: str, context: dict[str, Any] | None = None) -> M:
    """Parse ``text`` as YAML and validate it as ``model``; raise ``ConfigError`` on any error."""
    data, lines = parse_yaml(text, file=file)
    if not isinstance(data, dict):
        raise ConfigError("expected a YAML mapping at the top level", file=file, line=1)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc: Path = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        raise ConfigError(msg, file=file, line=_nearest_line(lines, loc), field=_dotted(loc) or None) from exc
