"""Gate reports as text: Markdown (a CI job summary or PR comment) and a self-contained
HTML page with interval bars per segment. Pure: outcome dicts in, a string out; every value
from a trace or a spec is escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["html_report", "markdown_report"]

_ICON = {"pass": "✅ pass", "block": "⛔ block", "inconclusive": "❔ inconclusive",
         "insufficient_data": "… insufficient data"}  # fmt: skip
_ORDER = {"block": 0, "inconclusive": 1, "insufficient_data": 2, "pass": 3}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _sorted(outcomes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(outcomes, key=lambda o: (_ORDER[o["decision"]], o["gate"], o["segment"]))


def markdown_report(run: dict[str, Any]) -> str:
    """A Markdown summary of a ``gate run --json`` document; blocked outcomes first."""
    lines = [
        f"## tracejury gates: {_ICON[run['decision']]}",
        "",
        f"Release `{run['release']}` vs baseline `{run['baseline']}`"
        + (f" — run `{run['runId']}`" if run.get("runId") else " (dry run)"),
        "",
        "| gate | segment | decision | baseline | current | diff (interval) | streak | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in _sorted(run["outcomes"]):
        b, c = o["baseline"], o["current"]
        interval = o["interval"]
        diff = "–" if o["estimate"] is None else (
            f"{_pct(o['estimate'])} ({_pct(interval[0])}, {_pct(interval[1])})")  # fmt: skip
        cells = [
            f"`{o['gate']}`", f"`{o['segment'] or 'all'}`", _ICON[o["decision"]],
            f"{b['failures']}/{b['n']} = {_pct(b['rate'])}", f"{c['failures']}/{c['n']} = {_pct(c['rate'])}",
            diff, str(o["streak"]), o["reason"].replace("|", "\\|"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _bar(lo: float, hi: float, est: float, margin: float, scale: float) -> str:
    """An SVG interval bar of the difference, with zero and the margin marked."""
    width, pad = 360, 10

    def x(v: float) -> float:
        return pad + (v + scale) / (2 * scale) * (width - 2 * pad)

    return (
        f'<svg width="{width}" height="24" role="img" aria-label="interval">'
        f'<line x1="{x(0):.1f}" y1="2" x2="{x(0):.1f}" y2="22" class="zero"/>'
        f'<line x1="{x(margin):.1f}" y1="2" x2="{x(margin):.1f}" y2="22" class="margin"/>'
        f'<line x1="{x(lo):.1f}" y1="12" x2="{x(hi):.1f}" y2="12" class="ci"/>'
        f'<circle cx="{x(est):.1f}" cy="12" r="4" class="est"/></svg>'
    )


def html_report(run: dict[str, Any], audits: Sequence[dict[str, Any]]) -> str:
    """A self-contained HTML page: per gate, outcomes by segment (blocked first) with
    baseline and current rates, an interval bar of the difference, streaks and the audit."""
    e = html.escape
    by_gate: dict[str, list[dict[str, Any]]] = {}
    for o in _sorted(run["outcomes"]):
        by_gate.setdefault(o["gate"], []).append(o)
    specs = {a["spec"]["id"]: a["spec"] for a in audits}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>tracejury gates — {e(run['release'])}</title><style>",
        "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}",
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}",
        ".block{color:#b00020;font-weight:bold}.pass{color:#0a7d2c}.inconclusive,.insufficient_data{color:#8a6d00}",
        ".zero{stroke:#999}.margin{stroke:#e0a000;stroke-dasharray:3 2}.ci{stroke:#1f5fbf;stroke-width:3}",
        ".est{fill:#1f5fbf}details{margin:.2em 0}pre{font-size:12px;background:#f6f6f6;padding:.5em}",
        "</style></head><body>",
        f"<h1>Release {e(run['release'])} vs {e(str(run['baseline']))}: "
        f"<span class='{e(run['decision'])}'>{e(_ICON[run['decision']])}</span></h1>",
        f"<p>Run {e(str(run.get('runId') or 'dry run'))}. Bars show the one-sided interval of the "
        "difference (current − baseline, bad direction); grey line: no change; dashed: the margin.</p>",
    ]
    for gate, outcomes in by_gate.items():
        spec = specs.get(gate, {})
        scale = max([0.005] + [abs(v) for o in outcomes if o["interval"] for v in o["interval"]] +
                    [o["margin"] for o in outcomes]) * 1.1  # fmt: skip
        parts.append(f"<h2>{e(gate)}</h2><p>{e(spec.get('description', ''))}</p>")
        parts.append("<table><tr><th>segment</th><th>decision</th><th>baseline</th><th>current</th>"
                     "<th>difference</th><th>streak</th><th>why</th></tr>")  # fmt: skip
        for o in outcomes:
            b, c = o["baseline"], o["current"]
            bar = _bar(*o["interval"], o["estimate"], o["margin"], scale) if o["interval"] else "–"
            parts.append(
                f"<tr><td><code>{e(o['segment'] or 'all')}</code></td>"
                f"<td class='{e(o['decision'])}'>{e(_ICON[o['decision']])}</td>"
                f"<td>{b['failures']}/{b['n']} = {_pct(b['rate'])}</td>"
                f"<td>{c['failures']}/{c['n']} = {_pct(c['rate'])}</td>"
                f"<td>{bar}</td><td>{o['streak']}</td><td>{e(o['reason'])}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<details><summary>gate spec</summary><pre>{e(_json(spec))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True)
