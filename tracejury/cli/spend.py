"""``tracejury cost``: what judges cost, by rubric, profile or release; and the one-line usage
summary ``score``, ``batch status`` and ``batch results`` print."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from tracejury.cli.app import _engine, _print_json, _settings, app, out
from tracejury.core.errors import InputError

__all__ = ["cost", "usage_line"]


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def usage_line(usage: dict[str, Any], cap: dict[str, Any] | None = None) -> str:
    """``judge usage: 1,234 prompt + 56 completion tokens, $0.0012 (saved $0.0003 on 12
    cached); cap $5: …`` for the human-readable outputs."""
    line = (f"judge usage: {usage['promptTokens']:,} prompt + {usage['completionTokens']:,} completion tokens,"
            f" {_usd(usage['costUsd'])}")  # fmt: skip
    if usage["cachedEvaluations"]:
        line += f" (saved {_usd(usage['savedUsd'])} on {usage['cachedEvaluations']} cached)"
    if usage["unpricedEvaluations"] and usage["costUsd"] is not None:
        line += f"; {usage['unpricedEvaluations']} evaluation(s) of unknown cost"
    if cap:
        line += f"; cost cap ${cap['maxCostUsd']:g}"
        if cap.get("stopped"):
            line += f", stopped after {cap['chunksRun']} of {cap['chunks']} chunks"
    return line


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    if text.endswith(("d", "h")) and text[:-1].isdigit():
        delta = timedelta(days=int(text[:-1])) if text.endswith("d") else timedelta(hours=int(text[:-1]))
        return datetime.now(UTC) - delta
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"--since {text!r}: not a date (2026-12-01), a time, or a span like 7d or 12h") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@app.command()
def cost(
    since: Annotated[str | None, typer.Option(help="Only evaluations since: a date, an ISO time, or 7d / 12h.")] = None,
    by: Annotated[str, typer.Option(help="Group by rubric, profile or release.")] = "rubric",
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Judge spend: tokens and USD spent, and saved by the cache, per rubric, profile or release."""
    from tracejury.store.spend import GROUPS, spend_report

    if by not in GROUPS:
        raise InputError(f"--by {by!r}: one of {', '.join(GROUPS)}")
    rows = spend_report(_engine(_settings()), since=_since(since), by=by)
    if json:
        _print_json(rows)
        return
    table = Table(by, "evaluations", "cached", "prompt tokens", "completion tokens", "spent", "saved",
                  title="judge spend" + (f" since {since}" if since else ""))  # fmt: skip
    for column in table.columns:  # names fold onto more lines on a narrow terminal, never cut
        column.overflow = "fold"
    for r in rows:
        table.add_row(str(r[by]), f"{r['judgeEvaluations']:,}", f"{r['cachedEvaluations']:,}", f"{r['promptTokens']:,}",
                      f"{r['completionTokens']:,}", _usd(r["costUsd"]), _usd(r["savedUsd"]))  # fmt: skip
    out.print(table)
    if not rows:
        out.print("no judge evaluations" + (f" since {since}" if since else ""))
