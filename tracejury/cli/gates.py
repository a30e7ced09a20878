"""Commands on gates: run, show, history, report, diff."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tracejury.cli.app import _engine, _print_json, _settings, app, out
from tracejury.core.errors import TracejuryError

gate_app = typer.Typer(help="Deploy gates: run, show, history.", no_args_is_help=True)
app.add_typer(gate_app, name="gate")

EXIT = {"pass": 0, "block": 1, "inconclusive": 3, "insufficient_data": 3}
"""Exit codes of ``gate run``: 0 pass, 1 block, 3 inconclusive or insufficient data (2 is a
usage error)."""


def _print_outcomes(result: dict) -> None:
    table = Table("gate", "segment", "decision", "baseline", "current", "interval", "streak", "why",
                  title=f"{result['release']} vs {result['baseline']}: {result['decision']}")  # fmt: skip
    order = {"block": 0, "inconclusive": 1, "insufficient_data": 2, "pass": 3}
    for o in sorted(result["outcomes"], key=lambda o: (order[o["decision"]], o["gate"], o["segment"])):
        b, c = o["baseline"], o["current"]
        interval = "-" if o["interval"] is None else f"[{o['interval'][0]:+.4f}, {o['interval'][1]:+.4f}]"
        table.add_row(o["gate"], o["segment"] or "(all)", o["decision"],
                      f"{b['failures']}/{b['n']}", f"{c['failures']}/{c['n']}", interval,
                      str(o["streak"]), o["reason"])  # fmt: skip
    out.print(table)


@gate_app.command("run")
def gate_run(
    release: Annotated[str, typer.Option(help="The release that wants to ship.")],
    baseline: Annotated[str | None, typer.Option(help="Baseline release (default: previous).")] = None,
    gates: Annotated[Path | None, typer.Option(help="Gate spec file or directory.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    format: Annotated[str, typer.Option(help="table or markdown.")] = "table",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide but store nothing.")] = False,
) -> None:
    """Evaluate every gate and segment; exit 0 pass, 1 block, 3 inconclusive/insufficient."""
    from tracejury.core.report import markdown_report
    from workers.service import run_gate_specs

    if format not in ("table", "markdown"):
        raise TracejuryError(f"--format: unknown format {format!r} (table, markdown)")
    settings = _settings()
    result = run_gate_specs(_engine(settings), settings, release, baseline=baseline, dry_run=dry_run, path=gates)
    if json:
        _print_json(result)
    elif format == "markdown":
        typer.echo(markdown_report(result), nl=False)
    elif format == "table":
        _print_outcomes(result)
        if result["runId"]:
            out.print(f"run {result['runId']}: tracejury gate show {result['runId']}")
    else:
        raise TracejuryError(f"--format: unknown format {format!r} (table, markdown)")
    raise typer.Exit(EXIT[result["decision"]])


@gate_app.command("plan")
def gate_plan(
    release: Annotated[str, typer.Option(help="The release that wants to ship.")],
    baseline: Annotated[str | None, typer.Option(help="Baseline release (default: previous).")] = None,
    gates: Annotated[Path | None, typer.Option(help="Gate spec file or directory.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Per gate and segment: the effective evaluations it needs to decide (from its MDE and
    power), what the latest done batch gives, and the verdict it can reach."""
    from workers.planning import gate_plan as plan
    from workers.service import gate_specs

    settings = _settings()
    rows = plan(_engine(settings), gate_specs(settings, gates), release, baseline)
    if json:
        _print_json({"release": release, "baseline": baseline, "gates": rows})
        return
    table = Table("gate", "segment", "needs (eff. n/arm)", "has: current", "baseline", "verdict",
                  "catches a rise of (power)", title=f"what {release}'s gates need to decide")  # fmt: skip
    for g in rows:
        for s in g["segments"]:
            more = f" (~{s['moreSampled']} more sampled)" if s.get("moreSampled") is not None else " (more traffic)"
            short = f"insufficient_data: short by {s['shortBy']}{more}" if s["verdict"] != "decides" else "decides"
            if "why" in s:
                short = f"insufficient_data: {s['why']}"
            rise = s.get("detectableRise")
            rise_text = "-" if rise is None else f"+{100 * rise:.1f} pts ({s['power']:.0%})"
            base = "-" if s.get("baseline") is None else f"{s['baseline']:.0f}"
            table.add_row(g["gate"], s["segment"], str(s["needed"]), f"{s['current']:.0f}", base, short, rise_text)
    out.print(table)


def _stored(run_id: str) -> tuple[dict, list[dict]]:
    from workers.service import stored_run

    return stored_run(_engine(_settings()), run_id)


@gate_app.command("show")
def gate_show(
    run_id: Annotated[str, typer.Argument(help="Gate run id.")],
    json: Annotated[bool, typer.Option("--json")] = False,
    format: Annotated[str, typer.Option(help="table or markdown.")] = "table",
) -> None:
    """A stored run: its outcomes and why."""
    from tracejury.core.report import markdown_report

    result, _ = _stored(run_id)
    if json:
        _print_json(result)
    elif format == "markdown":
        typer.echo(markdown_report(result), nl=False)
    else:
        _print_outcomes(result)


@gate_app.command("history")
def gate_history(
    gate: Annotated[str, typer.Argument(help="Gate id.")],
    segment: Annotated[str | None, typer.Option(help="Only this segment group.")] = None,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A gate's outcomes across runs, newest first."""
    from workers.service import gate_history as query

    rows = query(_engine(_settings()), gate, segment)
    if json:
        _print_json(rows)
        return
    table = Table("run", "release", "at", "segment", "decision", "why", title=f"gate {gate}")
    for r in rows:
        table.add_row(r["runId"], r["release"], r["at"], r["segment"] or "(all)", r["decision"], r["reason"])
    out.print(table)


@app.command()
def report(
    run: Annotated[str, typer.Option(help="Gate run id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")],
) -> None:
    """Write a self-contained HTML report of a gate run."""
    from tracejury.core.report import html_report

    result, audits = _stored(run)
    try:
        output.write_text(html_report(result, audits))
    except OSError as exc:
        raise TracejuryError(f"{output}: cannot write: {exc.strerror}") from exc
    out.print(f"wrote {output}")


@app.command()
def diff(
    release: Annotated[str, typer.Option(help="The release under suspicion.")],
    baseline: Annotated[str, typer.Option(help="The release it is compared with.")],
    by: Annotated[str, typer.Option(help="Segment dimensions to break rates down by.")] = "rag,tool,trunc,ret",
    top: Annotated[int, typer.Option(help="How many moves to show.")] = 15,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What changed: config fields that differ, and the rates that moved most.

    Weak signals and evaluator fail rates, overall and per segment, ranked by evidence. An
    evaluator's rates are calibrated by audit labels where both releases have enough (marked ᶜ)."""
    from tracejury.cli.app import _dims
    from tracejury.core.diff import calibrate_pair, config_changes, rank_moves, unweighted
    from tracejury.core.results import group_arms, pooled_labels
    from tracejury.store.queries import evaluator_rates, sample_bodies
    from tracejury.store.signals import release_signals

    settings = _settings()
    engine = _engine(settings)
    changes = config_changes(sample_bodies(engine, baseline), sample_bodies(engine, release))
    rates: list[tuple[str, str, Any, Any]] = []
    arms = {rel: evaluator_rates(engine, rel) for rel in (baseline, release)}
    pooled = {rel: pooled_labels(arms[rel]) for rel in (baseline, release)}
    for dims in [[]] + [[d] for d in _dims(by, settings)]:
        base = {r.group: r for r in release_signals(engine, baseline, dims)}
        for r in release_signals(engine, release, dims):
            if r.group in base:
                for name, rate in r.rates.items():
                    b = base[r.group].rates[name]
                    rates.append((name, r.group, unweighted(b.count, b.n), unweighted(rate.count, rate.n)))
        evals = {rel: group_arms(arms[rel], dims) for rel in (baseline, release)}
        for key, cur in evals[release].items():
            if key in evals[baseline]:
                pair = calibrate_pair(evals[baseline][key], cur, pooled[baseline][key[0]], pooled[release][key[0]])
                rates.append((f"{key[0]} fail rate", key[1], *pair))
    moves = rank_moves(rates, top=top)
    if json:
        _print_json({
            "release": release, "baseline": baseline,
            "configChanges": [{"field": c.field, "baseline": c.baseline, "current": c.current} for c in changes],
            "moves": [{"what": m.what, "segment": m.segment, "baseline": list(m.baseline), "current": list(m.current),
                       "baselineRate": m.baseline_rate, "currentRate": m.current_rate,
                       "delta": m.delta, "direction": m.direction, "pValue": m.p_value, "interval": list(m.interval),
                       "calibrated": m.calibrated,
                       **({"judgeBaselineRate": m.judge_baseline_rate, "judgeCurrentRate": m.judge_current_rate}
                          if m.calibrated else {})}
                      for m in moves],
        })  # fmt: skip
        return
    table = _folding_table("config field", baseline, release, title="config changes (from up to 2,000 traces each)")
    for c in changes:
        fmt = lambda d: ", ".join(f"{k} {v:.0%}" for k, v in d.items())  # noqa: E731
        table.add_row(c.field, fmt(c.baseline), fmt(c.current))
    out.print(table if changes else "no config field changed")
    out.print(moves_table(moves, baseline, release))


def _folding_table(*headers: str, **kwargs: Any) -> Table:
    """A table whose cells fold onto more lines when the terminal is narrow, never cut with
    "…": names that share a prefix (``tool_grounding``, ``tool_grounded_correctness``; segment
    keys ``tool=x@v1``, ``tool=x@v2``) must stay whole to be told apart."""
    table = Table(*headers, **kwargs)
    for column in table.columns:
        column.overflow = "fold"
    return table


def moves_table(moves: list[Any], baseline: str, release: str) -> Table:
    """``tracejury diff``'s table of ``core.diff.Move``s: what moved, where, from, to, by how much."""
    table = _folding_table("what moved", "segment", baseline, release, "delta", "p (one-sided)",
                           title="what moved most",
                           caption="ᶜ calibrated by audit labels, the judge's own rate in parentheses")  # fmt: skip
    for column in table.columns[4:]:  # short numbers: the names and counts give way first
        column.no_wrap = True
    for m in moves:
        mark = "ᶜ" if m.calibrated else ""
        judge = ((f" (judge {m.judge_baseline_rate:.2%})", f" (judge {m.judge_current_rate:.2%})")
                 if m.calibrated else ("", ""))  # fmt: skip
        counts = (  # weighted rates: sampled verdicts
            f"{m.baseline[0]}/{m.baseline[1]} ({m.baseline_rate:.2%}{mark}){judge[0]}",
            f"{m.current[0]}/{m.current[1]} ({m.current_rate:.2%}{mark}){judge[1]}",
        )
        table.add_row(m.what, m.segment or "(all)", *counts, f"{100 * m.delta:+.2f} pts", f"{m.p_value:.2g}")
    return table
