"""Every path into a JSON document (for fuzz tests that change one value anywhere)."""

from __future__ import annotations

from typing import Any


def json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths (tuples of keys and indexes) of every value below ``node``, parents first."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += json_paths(v, (*prefix, i))
    return out
