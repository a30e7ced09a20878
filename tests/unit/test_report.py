"""The pure report renderer: ASCII badges, needed vs had, windows and parts, scan slices, escaping."""

from __future__ import annotations

from typing import Any

from tracejury.core.report import _BADGE, html_report, markdown_report


def _arm(failures: int, n: int, eff: float) -> dict[str, Any]:
    return {"failures": failures, "n": n, "rate": failures / n if n else None, "effectiveN": eff, "humanLabels": 0}


def _window(i: int, n: int, rate: float, *, regression: bool = False, evaluated: bool = True) -> dict[str, Any]:
    return {"index": i, "n": n, "effective_n": n * 0.9, "rate": rate, "estimate": rate - 0.02,
            "interval": [rate - 0.03, 1.0], "p_value": 0.01 if regression else 0.4, "regression": regression,
            "critical": False, "evaluated": evaluated, "family": 2, "baseline_rate": 0.02}  # fmt: skip


def _outcome(**kw: Any) -> dict[str, Any]:
    base = {"gate": "g", "segment": "rag=on", "decision": "pass", "reason": "ok", "design": "windows",
            "slice": None, "notes": [], "baseline": _arm(10, 600, 590.4), "current": _arm(12, 620, 612.2),
            "estimate": 0.001, "interval": [-0.01, 0.012], "pValue": 0.3, "margin": 0.01, "minSamples": 423,
            "streak": 0, "familySize": 2, "windows": []}  # fmt: skip
    return {**base, **kw}


def _run() -> dict[str, Any]:
    return {
        "runId": "gr_1", "release": "r42", "baseline": "r41", "decision": "block",
        "outcomes": [
            _outcome(gate="format_validity", segment="rag=off|tool=none", windows=[
                _window(0, 350, 0.021), _window(1, 340, 0.034, regression=True), _window(2, 12, 0.05, evaluated=False)],
                notes=["baseline reused from r40"]),
            _outcome(gate="answer_correctness", segment="all", design="sample", decision="insufficient_data",
                     reason="needs 423 effective evaluations per arm", current=_arm(20, 320, 312.4),
                     estimate=None, interval=None, windows=[_window(0, 160, 0.0625), _window(1, 160, 0.0688)],
                     notes=["batch b_1 | judge j_2"]),
            _outcome(gate="groundedness", segment="trunc=yes|rag=on", slice="trunc=yes|rag=on", design="scan",
                     decision="block", reason="rose 4.00%; holm over the 12 cells tested", familySize=12,
                     estimate=0.04, interval=[0.02, 1.0]),
        ],
    }  # fmt: skip


def test_markdown_badges_are_ascii_words() -> None:
    md = markdown_report(_run())
    assert all(ord(c) < 128 for badge in _BADGE.values() for c in badge)
    assert md.startswith("## tracejury gates: **BLOCK**\n")
    for emoji in ("✅", "⛔", "❔", "…"):
        assert emoji not in md
    assert "| **BLOCK** |" in md and "| PASS |" in md and "| INSUFFICIENT DATA |" in md


def test_markdown_needed_vs_had_and_shortfall() -> None:
    lines = markdown_report(_run()).splitlines()
    (windows,) = [line for line in lines if line.startswith("| `format_validity`")]
    assert "| needs 423 / has 612 cur, 590 base |" in windows  # enough in both arms: no shortfall
    (sample,) = [line for line in lines if line.startswith("| `answer_correctness`")]
    assert "| needs 423 / has 312 cur, 590 base; **short by 111 cur** |" in sample


def test_markdown_windows_and_parts_with_rates() -> None:
    lines = markdown_report(_run()).splitlines()
    (windows,) = [line for line in lines if line.startswith("| `format_validity`")]
    assert "| windows: 0: 2.10% (n 350), 1: 3.40% (n 340) up, 2: 5.00% (n 12) n/a |" in windows
    (sample,) = [line for line in lines if line.startswith("| `answer_correctness`")]
    assert "| parts of the sample: 0: 6.25% (n 160), 1: 6.88% (n 160) |" in sample


def test_markdown_scan_slice_notes_and_escaped_pipes() -> None:
    md = markdown_report(_run())
    assert "| **slice** `trunc=yes\\|rag=on` (family of 12 cells) |" in md
    assert "| `rag=off\\|tool=none` |" in md  # a segment's pipe does not split the row
    assert "needs 423 effective evaluations per arm; batch b_1 \\| judge j_2 |" in md
    assert "| ok; baseline reused from r40 |" in md
    for line in md.splitlines()[6:]:  # every outcome row has its 10 cells, no more
        assert line.replace("\\|", "").count("|") == 11, line


def test_markdown_blocked_first() -> None:
    md = markdown_report(_run())
    assert md.index("`groundedness`") < md.index("`answer_correctness`") < md.index("`format_validity`")


def test_html_badges_slice_needed_windows_and_notes() -> None:
    audits = [{"spec": {"id": "groundedness", "correction": "holm", "baseline": {"kind": "previous_release"}}}]
    page = html_report(_run(), audits)
    assert "<span class='badge block'>BLOCK</span>" in page and "<span class='badge pass'>PASS</span>" in page
    assert "<span class='badge insufficient_data'>INSUFFICIENT DATA</span>" in page
    assert not any(emoji in page for emoji in ("✅", "⛔", "❔"))
    assert "<strong>slice: <code>trunc=yes|rag=on</code></strong><br><small>Holm over 12 cells</small>" in page
    assert "needs 423 / has 312 cur, 590 base<br><span class='short'>short by 111 cur</span>" in page
    assert "<summary>parts of the sample (2), notes (1)</summary>" in page
    assert "<summary>windows (3), notes (1)</summary>" in page
    assert "<td>3.40%</td><td>2.00%</td>" in page and "<td>up</td>" in page and "<td>n/a</td>" in page
    assert "<li>baseline reused from r40</li>" in page
    assert "Content-Security-Policy" in page and "<svg" in page


def test_html_threshold_gate_counts_no_baseline_arm() -> None:
    run = {**_run(), "outcomes": [_outcome(gate="t", baseline=_arm(0, 0, 0.0), current=_arm(1, 100, 100.0))]}
    page = html_report(run, [{"spec": {"id": "t", "baseline": {"kind": "threshold", "value": 0.05}}}])
    assert "needs 423 / has 100 cur<br><span class='short'>short by 323 cur</span>" in page


def test_html_escapes_trace_and_spec_values() -> None:
    evil = "<script>alert(1)</script>"
    run = {**_run(), "release": evil, "outcomes": [
        _outcome(segment=evil, reason=evil, notes=[evil]),
        _outcome(gate="s", segment=evil, slice=evil, design="scan", decision="block", familySize=3)]}  # fmt: skip
    page = html_report(run, [{"spec": {"id": "g", "description": evil}}])
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"slice: <code>{'&lt;script&gt;alert(1)&lt;/script&gt;'}</code>" in page
