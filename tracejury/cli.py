"""The ``tracejury`` command line. Commands parse input, call the core and the store, print.

Errors a user can cause print one line on stderr (what and where) and exit non-zero; they
never print a traceback.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from tracejury.core.errors import TracejuryError
from tracejury.core.segments import SegmentationConfig, default_segmentation
from tracejury.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="tracejury",
    help="Grade production LLM traces and turn the results into deploy gates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
quarantine_app = typer.Typer(help="Lines that ingest set aside, and why.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
rubrics_app = typer.Typer(help="Rubrics: list, show and lint.", no_args_is_help=True)
batch_app = typer.Typer(help="Queued scoring batches.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(rubrics_app, name="rubrics")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)


def _error_line(message: str) -> None:
    """Print one unwrapped line on stderr (errors must stay one line, whatever the width)."""
    sys.stderr.write(f"error: {message}\n")


def _settings() -> Settings:
    return Settings()


def _engine(settings: Settings):  # noqa: ANN202 - sqlalchemy Engine, imported lazily
    from tracejury.store.engine import open_engine

    return open_engine(settings.database_url)


def _segmentation(settings: Settings) -> SegmentationConfig:
    if settings.segmentation_path is None:
        return default_segmentation()
    path = Path(settings.segmentation_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TracejuryError(f"{path}: cannot read segmentation config: {exc.strerror}") from exc
    return SegmentationConfig.from_yaml(text, file=str(path))


def _dims(by: str, settings: Settings) -> list[str]:
    """``--by`` as a list of known segment dimensions."""
    dims = [d.strip() for d in by.split(",") if d.strip()]
    known = _segmentation(settings).names
    for d in dims:
        if d not in known:
            raise TracejuryError(f"--by: unknown dimension {d!r} (known: {', '.join(known)})")
    return dims


def _print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="JSONL or .jsonl.gz files; - for stdin.")],
    json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Validate and store traces; bad lines go to quarantine, the rest still ingests."""
    from tracejury.core.ingest import IngestCounts
    from tracejury.sources import LineReader
    from tracejury.store.ingest import ingest_lines

    settings = _settings()
    engine = _engine(settings)
    segmentation = _segmentation(settings)
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
    release: Annotated[
        list[str], typer.Option(help="Release id; repeat to compare releases side by side.")
    ],
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
            table.add_row(
                name, *(cell(by_release[r]) if r in by_release else "-" for r in releases)
            )
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
    sample_rate: Annotated[
        float, typer.Option(help="Share of traces that keep raw text.", min=0.0, max=1.0)
    ] = 1.0,
) -> None:
    """Write realistic traces of a customer-support agent, with planted regressions."""
    import gzip

    from tracejury.core.simulate import parse_regression
    from tracejury.core.simulate import simulate as run_simulation

    regressions = [parse_regression(s) for s in regress or []]
    opener = gzip.open if output.suffix == ".gz" else open
    n = 0
    with opener(output, "wb") as fh:
        for trace in run_simulation(release, traces, seed, regressions, sample_rate=sample_rate):
            fh.write(orjson.dumps(trace) + b"\n")
            n += 1
    err.print(f"wrote {n} traces of release {release} to {output}")


def _catalog(settings: Settings):  # noqa: ANN202 - judges.catalog.Catalog, imported lazily
    from judges.catalog import load_catalog, load_plugins

    load_plugins(settings.plugin_modules)
    return load_catalog(Path(settings.rubrics_dir))


@app.command()
def score(
    release: Annotated[str, typer.Option(help="Release whose stored traces to score.")],
    rubric: Annotated[
        list[str] | None, typer.Option(help="Rubric id to run; repeatable (default: all).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Score at most this many traces.", min=1)
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Run checkers and judges over stored traces in this process; store the evaluations."""
    import asyncio

    from workers.pipeline import score_release

    settings = _settings()
    catalog = _catalog(settings)
    engine = _engine(settings)
    summary = asyncio.run(
        score_release(engine, settings, catalog, release, rubric_ids=rubric, limit=limit)
    )
    if json:
        _print_json(summary.as_dict())
        return
    data = summary.as_dict()
    out.print(f"batch [bold]{summary.batch_id}[/bold]: {summary.traces} traces"
              f" x {len(summary.evaluators)} evaluators")  # fmt: skip
    from tracejury.store.evaluations import batch_evaluator_summary

    table = Table("evaluator", "scored", "fail verdicts", "judge failed", "n/a", "missing")
    for row in batch_evaluator_summary(engine, summary.batch_id):
        scored = row.get("scored", 0)
        fails = (
            f"{row['failed_verdicts']} ({100 * row['failed_verdicts'] / scored:.1f}%)"
            if scored
            else "-"
        )
        counts = [
            str(row.get(k, 0)) for k in ("judge_failed", "not_applicable", "missing_evidence")
        ]
        table.add_row(row["evaluator"], str(scored), fails, *counts)
    out.print(table)
    status = data["status"]
    out.print("total: " + ", ".join(f"{k} {v}" for k, v in status.items()))  # type: ignore[union-attr]
    if summary.failures:
        out.print("judge failures: " + ", ".join(f"{k} {v}" for k, v in summary.failures.items()))


@rubrics_app.command("list")
def rubrics_list(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The rubrics in the rubrics directory."""
    catalog = _catalog(_settings())
    rows = [
        {"id": r.id, "version": r.version, "kind": r.kind, "fingerprint": r.fingerprint,
         "description": r.description, "file": catalog.files[r.id]}
        for r in catalog.select(None)
    ]  # fmt: skip
    if json:
        _print_json(rows)
        return
    table = Table("id", "version", "kind", "fingerprint", "description")
    for r in rows:
        table.add_row(r["id"], r["version"], r["kind"], r["fingerprint"][7:19], r["description"])
    out.print(table)


@rubrics_app.command("show")
def rubrics_show(rubric_id: Annotated[str, typer.Argument(help="Rubric id.")]) -> None:
    """One rubric as validated, with its fingerprint and reply schema."""
    (r,) = _catalog(_settings()).select([rubric_id])
    data = r.model_dump(mode="json", exclude_defaults=True)
    data["fingerprint"] = r.fingerprint
    if r.judge is not None:
        data["replySchema"] = r.output.reply_schema()
    _print_json(data)


@rubrics_app.command("lint")
def rubrics_lint(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Rubric files (default: the rubrics directory).")
    ] = None,
) -> None:
    """Validate rubrics: schema, checkers, template variables, and versions whose content
    changed since the store saw them. Exit 1 on any problem."""
    from judges.rubric import Rubric
    from tracejury.core.errors import ConfigError
    from tracejury.store.evaluations import seen_fingerprints

    settings = _settings()
    files = paths or sorted(
        p for p in Path(settings.rubrics_dir).rglob("*.yaml")
        if p.name != "profiles.yaml" and "gates" not in p.relative_to(settings.rubrics_dir).parts
    )  # fmt: skip
    seen = seen_fingerprints(_engine(settings))
    problems = 0
    for path in files:
        try:
            rubric = Rubric.from_yaml(path.read_text(), file=str(path))
        except ConfigError as exc:
            problems += 1
            sys.stdout.write(f"{exc}\n")
            continue
        except OSError as exc:
            problems += 1
            sys.stdout.write(f"{path}: cannot read: {exc.strerror}\n")
            continue
        known = seen.get((rubric.id, rubric.version))
        if known is not None and known != rubric.fingerprint:
            problems += 1
            sys.stdout.write(
                f"{path}: version: rubric {rubric.id} changed but its version is still"
                f" {rubric.version!r}; bump the version\n"
            )
    if problems:
        sys.stdout.write(f"{problems} problem(s) in {len(files)} file(s)\n")
        raise typer.Exit(1)
    sys.stdout.write(f"{len(files)} rubric file(s) OK\n")


@app.command("mock-judge")
def mock_judge(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option(help="Reply latency (median), ms.")] = 0.0,
    latency_sigma: Annotated[float, typer.Option(help="Lognormal sigma; 0 = fixed.")] = 0.0,
    faults: Annotated[
        str, typer.Option(help="Fault rates, e.g. http500=0.2,http429=0.1,hang=0.05.")
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of the fault draws.")] = 0,
) -> None:
    """Serve an OpenAI-compatible mock judge whose verdicts follow the evidence."""
    from judges.mock.server import serve

    serve(host, port, latency_ms=latency_ms, latency_sigma=latency_sigma, faults=faults, seed=seed)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes (Celery prefork).")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Start a Celery worker on the configured broker."""
    from workers.celery_app import QUEUE, create_app

    celery = create_app(_settings())
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--pool=prefork"]
    celery.worker_main([*argv, "-Q", QUEUE, "--without-gossip", "--without-mingle"])


@batch_app.command("create")
def batch_create(
    release: Annotated[str, typer.Option(help="Release to sample and score.")],
    rubric: Annotated[
        list[str] | None, typer.Option(help="Rubric id; repeatable (default: all).")
    ] = None,
    sample_size: Annotated[
        int | None, typer.Option(help="Expected number of sampled traces.", min=1)
    ] = None,
    budget: Annotated[
        int | None, typer.Option(help="Judge calls to spend (sets the sample size).", min=1)
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed; same seed, same sample.")] = 0,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sample a release (failure-aware), freeze the config and enqueue chunks for workers."""
    from tracejury.core.sampling import default_sampling
    from workers.batches import create_queued_batch
    from workers.celery_app import create_app
    from workers.tasks import enqueue_chunk

    if sample_size is not None and budget is not None:
        raise TracejuryError("use --sample-size or --budget, not both")
    settings = _settings()
    with create_app(settings).connection_for_write():
        created = create_queued_batch(
            _engine(settings), settings, _catalog(settings), default_sampling(),
            release=release, rubric_ids=rubric, sample_size=sample_size, budget=budget,
            seed=seed, enqueue=enqueue_chunk,
        )  # fmt: skip
    data = {
        "batchId": created.batch_id,
        "population": created.population,
        "sampled": created.sampled,
        "chunks": created.chunks,
        "baseRate": created.base_rate,
    }
    if json:
        _print_json(data)
    else:
        out.print(f"batch [bold]{created.batch_id}[/bold]: sampled {created.sampled} of"
                  f" {created.population} traces into {created.chunks} chunk(s)")  # fmt: skip


def _batch_status(batch_id: str) -> dict:
    from tracejury.core.evaluation import EVALUATION_STATUSES
    from tracejury.store.batches import batch_progress

    progress = batch_progress(_engine(_settings()), batch_id)
    if progress is None:
        raise TracejuryError(f"no batch {batch_id!r}")
    b = progress["batch"]
    done = sum(progress["status"].values())
    elapsed = ((b.finished_at or datetime.now(UTC)) - b.created_at).total_seconds()
    rate = progress["doneTraces"] / elapsed if elapsed > 0 else 0.0
    left = b.sampled - progress["doneTraces"]
    return {
        "batchId": b.id, "release": b.release_id, "state": b.state, "reason": b.reason,
        "sampled": b.sampled, "tracesDone": progress["doneTraces"], "evaluations": done,
        "chunks": progress["chunks"],
        "status": {s: progress["status"].get(s, 0) for s in EVALUATION_STATUSES},
        "failures": dict(sorted(progress["failures"].items())),
        "tracesPerSecond": round(rate, 1),
        "etaSeconds": round(left / rate, 1) if rate > 0 and b.state == "running" else None,
    }  # fmt: skip


@batch_app.command("status")
def batch_status(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts by status and failure kind, progress, rate and ETA."""
    data = _batch_status(batch_id)
    if json:
        _print_json(data)
        return
    out.print(f"batch {data['batchId']} ({data['release']}): [bold]{data['state']}[/bold]"
              + (f" — {data['reason']}" if data["reason"] else ""))  # fmt: skip
    eta = "-" if data["etaSeconds"] is None else f"{data['etaSeconds']} s"
    out.print(
        f"traces {data['tracesDone']}/{data['sampled']}, {data['tracesPerSecond']}/s, ETA {eta}"
    )
    out.print("evaluations: " + ", ".join(f"{k} {v}" for k, v in data["status"].items()))
    if data["failures"]:
        out.print("judge failures: " + ", ".join(f"{k} {v}" for k, v in data["failures"].items()))


@batch_app.command("wait")
def batch_wait(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
) -> None:
    """Show a progress bar until the batch ends; exit 0 if done, 1 if failed or timed out."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    data = _batch_status(batch_id)
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} traces"), TimeRemainingColumn(),
                  console=err) as bar:  # fmt: skip
        task = bar.add_task(batch_id, total=data["sampled"] or 1)
        while data["state"] == "running" and time.monotonic() < deadline:
            bar.update(task, completed=data["tracesDone"])
            time.sleep(0.5)
            data = _batch_status(batch_id)
        bar.update(task, completed=data["tracesDone"])
    out.print(f"batch {batch_id}: [bold]{data['state']}[/bold]"
              + (f" — {data['reason']}" if data["reason"] else ""))  # fmt: skip
    out.print("evaluations: " + ", ".join(f"{k} {v}" for k, v in data["status"].items()))
    if data["state"] != "done":
        raise typer.Exit(1)


@batch_app.command("results")
def batch_results(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    by: Annotated[str, typer.Option(help="Segment dimensions to group by, comma-separated.")] = "",
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fail rates per evaluator and segment group, weighted by 1/inclusion probability."""
    from tracejury.core.results import summarise
    from tracejury.store.batches import batch_results as query

    settings = _settings()
    dims = _dims(by, settings)
    results = summarise(query(_engine(settings), batch_id), dims)
    if json:
        _print_json([r.as_dict() for r in results])
        return
    table = Table("evaluator", "segment", "scored", "fails", "fail % (1/p)", "judge failed",
                  "n/a", "missing", title=f"batch {batch_id}")  # fmt: skip
    for r in results:
        rate = "-" if r.weighted_fail_rate is None else f"{100 * r.weighted_fail_rate:.2f}%"
        counts = [r.scored, r.failed, rate, r.judge_failed, r.not_applicable, r.missing_evidence]
        table.add_row(r.evaluator, r.segment or "(all)", *map(str, counts))
    out.print(table)


@batch_app.command("list")
def batch_list(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recent batches, newest first."""
    from tracejury.store.batches import list_batches

    rows = [{"batchId": b.id, "release": b.release_id, "kind": b.kind, "state": b.state,
             "sampled": b.sampled, "createdAt": b.created_at.isoformat()}
            for b in list_batches(_engine(_settings()))]  # fmt: skip
    if json:
        _print_json(rows)
        return
    table = Table("batch", "release", "kind", "state", "sampled", "created")
    for r in rows:
        table.add_row(
            r["batchId"], r["release"], r["kind"], r["state"], str(r["sampled"]), r["createdAt"]
        )
    out.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations up to the newest schema."""
    settings = _settings()
    _engine(settings)
    out.print(f"schema up to date at {settings.database_url}")


def main() -> None:
    """Entry point: run the app, turning tracejury errors into one line on stderr."""
    try:
        app()
    except TracejuryError as exc:
        _error_line(str(exc))
        sys.exit(2)
