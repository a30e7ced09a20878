"""Commands on traces: simulate, ingest, quarantine, signals, the store's schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from tracejury.cli.app import (
    _dims,
    _engine,
    _error_line,
    _print_json,
    _segmentation,
    _settings,
    app,
    db_app,
    err,
    out,
    quarantine_app,
)
from tracejury.core.errors import TracejuryError


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="JSONL or .jsonl.gz files; - for stdin.")],
    json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Validate and store traces; bad lines go to quarantine, the rest still ingests."""
    from tracejury.core.ingest import IngestCounts
    from tracejury.core.redaction import load_policy
    from tracejury.sources import LineReader
    from tracejury.store.ingest import ingest_lines

    settings = _settings()
    engine = _engine(settings)
    segmentation = _segmentation(settings)
    redaction = load_policy(settings.redaction_path, hmac_key=settings.redaction_hmac_key)
    total = IngestCounts()
    unreadable: list[str] = []
    for path in paths:
        reader = LineReader(path)
        counts = ingest_lines(
            engine,
            path,
            reader,
            segmentation=segmentation,
            batch_size=settings.ingest_batch_size,
            workers=settings.ingest_workers,
            redaction=redaction,
        )
        total.add(counts)
        if reader.error is not None:
            unreadable.append(str(reader.error))
            _error_line(str(reader.error))
    if json:
        _print_json(total.as_dict())
    else:
        out.print(
            f"ingested [bold]{total.ingested}[/bold], duplicates {total.duplicates}, "
            f"conflicts {total.conflicts}, quarantined {total.quarantined}"
        )
        if total.quarantined:
            out.print("see why: [cyan]tracejury quarantine list[/cyan]")
    if unreadable:
        raise typer.Exit(1)


@quarantine_app.command("list")
def quarantine_list(
    json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 100,
) -> None:
    """Show quarantined lines: source, line, trace id, JSON path and reason."""
    from tracejury.store.queries import list_quarantine

    rows = list_quarantine(_engine(_settings()), limit=limit)
    if json:
        _print_json(rows)
        return
    table = Table("source", "line", "trace id", "path", "reason", title="Quarantine")
    for r in rows:
        table.add_row(r["source"], str(r["line"]), r["traceId"] or "", r["path"], r["message"])
    out.print(table)


@app.command()
def signals(
    release: Annotated[list[str], typer.Option(help="Release id; repeat to compare releases side by side.")],
    by: Annotated[str, typer.Option(help="Segment dimensions to group by, comma-separated.")] = "",
    json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Weak signals (counts, latency percentiles, rates) per release and segment group."""
    from tracejury.store.signals import release_signals

    settings = _settings()
    dims = _dims(by, settings)
    engine = _engine(settings)
    rows = [row for r in release for row in release_signals(engine, r, dims)]
    if json:
        _print_json([r.as_dict() for r in rows])
        return
    if not rows:
        err.print(f"no traces for release {', '.join(release)}")
        raise typer.Exit(1)
    releases = list(dict.fromkeys(r.release for r in rows))
    for group in sorted({r.group for r in rows}):
        by_release = {r.release: r for r in rows if r.group == group}
        table = Table("signal", *releases, title=group or "all traffic", title_justify="left")
        for name, cell in _signal_cells(releases):
            table.add_row(name, *(cell(by_release[r]) if r in by_release else "-" for r in releases))
        out.print(table)


def _signal_cells(releases: list[str]):  # noqa: ANN202 - list of (label, row -> str)
    """The rows of the signals table: a label and how to render one release's value."""
    from tracejury.core.signals import RATE_SIGNALS

    def pct(name: str):  # noqa: ANN202
        def render(row) -> str:  # noqa: ANN001
            rate = row.rates[name]
            return "-" if rate.rate is None else f"{100 * rate.rate:.2f}% ({rate.count}/{rate.n})"

        return render

    cells = [
        ("traces", lambda r: str(r.count)),
        ("latency p50 ms", lambda r: str(r.latency_ms.get("p50"))),
        ("latency p99 ms", lambda r: str(r.latency_ms.get("p99"))),
    ]
    for stage in ("retrieval", "tool", "generation", "postprocess"):
        cells.append(
            (
                f"  {stage} p99 ms",
                lambda r, s=stage: str(r.stage_latency_ms.get(s, {}).get("p99", "-")),
            )
        )
    cells.append(("completion tokens (mean)", lambda r: f"{r.tokens['completionMean'] or 0:.0f}"))
    cells += [(s.name.removesuffix("_rate").replace("_", " "), pct(s.name)) for s in RATE_SIGNALS]
    return cells


@app.command()
def simulate(
    release: Annotated[str, typer.Option(help="Release id of the traces.")],
    traces: Annotated[int, typer.Option(help="How many traces.", min=0)],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL file to write (.gz ok).")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same traces.")] = 0,
    regress: Annotated[
        list[str] | None,
        typer.Option(help="Plant a regression: KIND:RATE[:DIM=VALUE,...]; repeatable."),
    ] = None,
    sample_rate: Annotated[float, typer.Option(help="Share of traces that keep raw text.", min=0.0, max=1.0)] = 1.0,
    start: Annotated[
        str | None, typer.Option(help="Timestamp of the first trace (RFC 3339); traffic spans 24 h.")
    ] = None,
) -> None:
    """Write realistic traces of a customer-support agent, with planted regressions."""
    import gzip

    from tracejury.core.simulate import parse_regression
    from tracejury.core.simulate import simulate as run_simulation

    regressions = [parse_regression(s) for s in regress or []]
    try:
        first = datetime.fromisoformat(start).astimezone(UTC) if start else None
    except ValueError as exc:
        raise TracejuryError(f"--start: {start!r} is not an RFC 3339 timestamp") from exc
    opener = gzip.open if output.suffix == ".gz" else open
    n = 0
    try:
        with opener(output, "wb") as fh:
            for trace in run_simulation(release, traces, seed, regressions, sample_rate=sample_rate, start=first):
                fh.write(orjson.dumps(trace) + b"\n")
                n += 1
    except OSError as exc:
        raise TracejuryError(f"{output}: cannot write: {exc.strerror}") from exc
    err.print(f"wrote {n} traces of release {release} to {output}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations up to the newest schema."""
    settings = _settings()
    _engine(settings)
    out.print(f"schema up to date at {settings.database_url}")
