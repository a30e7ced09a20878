"""Gate reports as text: Markdown (a CI job summary or PR comment) and a self-contained
HTML page with interval bars per segment. Pure: outcome dicts in, a string out; every value
from a trace or a spec is escaped. Badges are ASCII words (no emoji: some browsers' fonts
lack them), and each outcome shows what it needed and had, its windows (or the parts of
the sample) and, for scan gates, the slice that moved."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["html_report", "markdown_report"]

_BADGE = {"pass": "PASS", "block": "BLOCK", "inconclusive": "INCONCLUSIVE",
          "insufficient_data": "INSUFFICIENT DATA"}  # fmt: skip
_ORDER = {"block": 0, "inconclusive": 1, "insufficient_data": 2, "pass": 3}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _sorted(outcomes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(outcomes, key=lambda o: (_ORDER[o["decision"]], o["gate"], o["segment"]))


def _md_badge(decision: str) -> str:
    return f"**{_BADGE[decision]}**" if decision == "block" else _BADGE[decision]


def _md(text: str) -> str:
    """Text safe in a Markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).replace("|", "\\|").split())


def _threshold(o: Mapping[str, Any], spec: Mapping[str, Any] | None) -> bool:
    """No baseline arm to count: a threshold gate (from the spec when known; else an empty baseline)."""
    if spec and "baseline" in spec:
        return (spec["baseline"] or {}).get("kind") == "threshold"
    return not o["baseline"].get("n")


def _need(o: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """("needs N / has C cur, B base", "short by …" or "") for an outcome."""
    need = int(o.get("minSamples") or 0)
    if o.get("design") == "agreement":  # audit labels, not evaluations
        has = int(o["current"].get("n") or 0)
        return f"needs {need} / has {has} audit labels", f"short by {need - has}" if has < need else ""
    arms = [("cur", round(o["current"].get("effectiveN") or 0))]
    if not _threshold(o, spec):
        arms.append(("base", round(o["baseline"].get("effectiveN") or 0)))
    has = "has " + ", ".join(f"{v} {name}" for name, v in arms)
    if not need:
        return has, ""
    short = [f"{need - v} {name}" for name, v in arms if v < need]
    return f"needs {need} / {has}", ("short by " + ", ".join(short)) if short else ""


def _arm_text(o: Mapping[str, Any], a: Mapping[str, Any]) -> str:
    """An arm's cell: failures/n = rate, and the judge's rate beside a calibrated one; a
    judge_agreement outcome's kappa and agreement on its audit labels."""
    if o.get("design") == "agreement":
        if not a.get("n"):
            return "–"
        kappa = "–" if a.get("kappa") is None else f"{a['kappa']:.2f}"
        return f"kappa {kappa}, agreement {_pct(a.get('observedAgreement'))} on {a['n']} audit labels"
    if not a:
        return "–"
    text = f"{a.get('failures', 0)}/{a.get('n', 0)} = {_pct(a.get('rate'))}"
    cal = a.get("calibration") or {}
    if cal.get("method") == "ppi":
        text += f" calibrated (judge {_pct(a.get('judgeRate'))}; {cal.get('labelled')} audit labels)"
    return text


def _parts_label(o: Mapping[str, Any]) -> str:
    # evaluator gates (and scan gates, which are evaluator gates) decide on parts of one sample
    return "parts of the sample" if o.get("design") in ("sample", "scan") else "windows"


def _window_text(w: Mapping[str, Any]) -> str:
    mark = " up" if w.get("regression") else ""
    return f"{w['index']}: {_pct(w['rate'])} (n {w['n']}){mark}{'' if w.get('evaluated', True) else ' n/a'}"


def _family(o: Mapping[str, Any], correction: str | None = None) -> str:
    """A scan's multiplicity family: "Holm over 12 cells" (the correction when known)."""
    size = o.get("familySize") or 0
    if not size:
        return ""
    if correction == "none":
        return f"{size} cells, uncorrected"
    name = {"holm": "Holm", "bonferroni": "Bonferroni"}.get(correction or "", "family of")
    return f"{name} {'' if name == 'family of' else 'over '}{size} cells"


def markdown_report(run: dict[str, Any]) -> str:
    """A Markdown summary of a ``gate run --json`` document; blocked outcomes first. Per
    outcome: the effective n per arm needed and had, the windows (or parts of the sample)
    with their rates (``up``: regressed, ``n/a``: not evaluated), the slice of a scan gate
    and the notes the decision rests on. Badges are plain ASCII words."""
    lines = [
        f"## tracejury gates: {_md_badge(run['decision'])}",
        "",
        f"Release `{_md(run['release'])}` vs baseline `{_md(str(run['baseline']))}`"
        + (f" — run `{run['runId']}`" if run.get("runId") else " (dry run)"),
        "",
        "| gate | segment | decision | baseline | current | diff (interval) | needed vs had "
        "| windows / parts | streak | why |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in _sorted(run["outcomes"]):
        b, c = o["baseline"], o["current"]
        interval = o["interval"]
        diff = "–" if o["estimate"] is None or not interval else (
            f"{_pct(o['estimate'])} ({_pct(interval[0])}, {_pct(interval[1])})")  # fmt: skip
        if o.get("design") == "scan":
            where = f"**slice** `{_md(o['slice'])}`" if o.get("slice") else f"`{_md(o['segment'] or 'all')}`"
            where += f" ({_family(o)})" if _family(o) else ""
        else:
            where = f"`{_md(o['segment'] or 'all')}`"
        has, short = _need(o)
        windows = o.get("windows") or []
        parts = f"{_parts_label(o)}: " + ", ".join(_window_text(w) for w in windows) if windows else "–"
        why = "; ".join([o["reason"], *o.get("notes", [])])
        cells = [
            f"`{_md(o['gate'])}`", where, _md_badge(o["decision"]),
            _md(_arm_text(o, b)), _md(_arm_text(o, c)), diff, has + (f"; **{short}**" if short else ""),
            _md(parts), str(o["streak"]), _md(why),
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


def _html_badge(decision: str) -> str:
    return f"<span class='badge {html.escape(decision)}'>{html.escape(_BADGE[decision])}</span>"


def _html_details(o: Mapping[str, Any]) -> str:
    """The outcome's windows (or parts of the sample) as a nested table, and its notes."""
    e = html.escape
    windows, notes = o.get("windows") or [], o.get("notes") or []
    if not windows and not notes:
        return ""
    out = [f"<details><summary>{e(_parts_label(o))} ({len(windows)}), notes ({len(notes)})</summary>"]
    if windows:
        out.append("<table class='windows'><tr><th>#</th><th>n</th><th>eff. n</th><th>rate</th><th>baseline</th>"
                   "<th>difference (interval)</th><th>p</th><th>family</th><th>status</th></tr>")  # fmt: skip
        for w in windows:
            lo, hi = w["interval"]
            status = ("n/a" if not w.get("evaluated", True) else "up" if w.get("regression") else "ok") + (
                ", critical" if w.get("critical") else "")  # fmt: skip
            out.append(
                f"<tr><td>{w['index']}</td><td>{w['n']}</td><td>{round(w['effective_n'])}</td>"
                f"<td>{_pct(w['rate'])}</td><td>{_pct(w.get('baseline_rate'))}</td>"
                f"<td>{_pct(w['estimate'])} ({_pct(lo)}, {_pct(hi)})</td><td>{w['p_value']:.3g}</td>"
                f"<td>{w.get('family', 0)}</td><td>{e(status)}</td></tr>"
            )
        out.append("</table>")
    if notes:
        out.append("<ul>" + "".join(f"<li>{e(str(n))}</li>" for n in notes) + "</ul>")
    return "".join(out) + "</details>"


def html_report(run: dict[str, Any], audits: Sequence[dict[str, Any]]) -> str:
    """A self-contained HTML page: per gate, outcomes by segment (blocked first) with
    baseline and current rates, an interval bar of the difference, the effective n needed
    and had, streaks, the slice of a scan gate, and per outcome its windows (or parts of
    the sample) and notes; then the gate spec from the audit. ASCII badges, no scripts."""
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
        ".badge{display:inline-block;padding:1px 6px;border-radius:3px;color:#fff;font-weight:bold;"
        "font-size:12px;letter-spacing:.03em}.badge.block{background:#b00020}.badge.pass{background:#0a7d2c}",
        ".badge.inconclusive,.badge.insufficient_data{background:#8a6d00}.short{color:#b00020;font-weight:bold}",
        ".windows{font-size:12px;margin:.3em 0}.windows td,.windows th{padding:2px 6px}",
        ".zero{stroke:#999}.margin{stroke:#e0a000;stroke-dasharray:3 2}.ci{stroke:#1f5fbf;stroke-width:3}",
        ".est{fill:#1f5fbf}details{margin:.2em 0}pre{font-size:12px;background:#f6f6f6;padding:.5em}",
        "</style></head><body>",
        f"<h1>Release {e(run['release'])} vs {e(str(run['baseline']))}: {_html_badge(run['decision'])}</h1>",
        f"<p>Run {e(str(run.get('runId') or 'dry run'))}. Bars show the one-sided interval of the "
        "difference (current − baseline, bad direction); grey line: no change; dashed: the margin.</p>",
    ]
    for gate, outcomes in by_gate.items():
        spec = specs.get(gate, {})
        scale = max([0.005] + [abs(v) for o in outcomes if o["interval"] for v in o["interval"]] +
                    [o["margin"] for o in outcomes]) * 1.1  # fmt: skip
        parts.append(f"<h2>{e(gate)}</h2><p>{e(spec.get('description', ''))}</p>")
        parts.append("<table><tr><th>segment</th><th>decision</th><th>baseline</th><th>current</th>"
                     "<th>difference</th><th>needed vs had</th><th>streak</th><th>why</th></tr>")  # fmt: skip
        for o in outcomes:
            b, c = o["baseline"], o["current"]
            bar = _bar(*o["interval"], o["estimate"], o["margin"], scale) if o["interval"] else "–"
            where = f"<code>{e(o['segment'] or 'all')}</code>"
            if o.get("design") == "scan":
                if o.get("slice"):
                    where = f"<strong>slice: <code>{e(o['slice'])}</code></strong>"
                family = _family(o, spec.get("correction"))
                where += f"<br><small>{e(family)}</small>" if family else ""
            has, short = _need(o, spec or None)
            parts.append(
                f"<tr><td>{where}</td><td>{_html_badge(o['decision'])}</td>"
                f"<td>{e(_arm_text(o, b))}</td><td>{e(_arm_text(o, c))}</td><td>{bar}</td>"
                f"<td>{e(has)}" + (f"<br><span class='short'>{e(short)}</span>" if short else "") + "</td>"
                f"<td>{o['streak']}</td><td>{e(o['reason'])}{_html_details(o)}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<details><summary>gate spec</summary><pre>{e(_json(spec))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
