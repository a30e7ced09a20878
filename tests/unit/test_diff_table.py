"""``tracejury diff``'s table keeps every name whole at any terminal width: evaluators and
segment keys that share a prefix (``tool_grounding``, ``tool_grounded_correctness``) were cut
to the same ``tool_groun…`` on a narrow terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tracejury.cli.gates import moves_table
from tracejury.core.diff import Move

MOVES = [
    Move("tool_grounded_correctness fail rate", "tool=order_status@tool_v1", (16, 703), (40, 700), "up", 1e-5,
         (0.01, 0.05), 0.0228, 0.0571, True, 0.02, 0.05),
    Move("tool_grounding fail rate", "tool=order_status@tool_v2", (16, 703), (30, 700), "up", 1e-3,
         (0.0, 0.04), 0.0228, 0.0429),
    Move("format_invalid_rate", "", (46, 20000), (399, 20000), "up", 1e-50, (0.01, 0.02), 0.0023, 0.0199),
]


def _rows(width: int) -> list[list[str]]:
    """The rendered table's rows, each a list of its cells' text (a cell's lines joined)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(moves_table(MOVES, "r41", "r42"))
    body = buffer.getvalue().split("╇")[-1]  # below the header rule
    rows: list[list[str]] = []
    for line in body.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[4]:  # the delta column never wraps: a value there starts a row
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}" if b else a for a, b in zip(rows[-1], cells, strict=True)]
    return rows


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_names_and_segments_stay_whole_and_distinct(width: int) -> None:
    rows = _rows(width)
    squeeze = lambda s: "".join(s.split())  # noqa: E731 - folding may break a name anywhere
    assert [squeeze(r[0]) for r in rows] == [squeeze(m.what) for m in MOVES]
    assert [squeeze(r[1]) for r in rows] == [squeeze(m.segment or "(all)") for m in MOVES]
    assert all("…" not in cell for row in rows for cell in row)
    assert rows[0][0] != rows[1][0]
