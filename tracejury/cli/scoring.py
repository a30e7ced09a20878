"""Commands on scoring: rubrics, the mock judge, inline scoring, workers and batches."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tracejury.cli.app import (
    _catalog,
    _engine,
    _print_json,
    _settings,
    app,
    batch_app,
    err,
    out,
    rubrics_app,
)
from tracejury.cli.spend import usage_line
from tracejury.core.errors import TracejuryError
from tracejury.runtime import rare_collections


@app.command()
def score(
    release: Annotated[str, typer.Option(help="Release whose stored traces to score.")],
    rubric: Annotated[list[str] | None, typer.Option(help="Rubric id to run; repeatable (default: all).")] = None,
    limit: Annotated[int | None, typer.Option(help="Score at most this many traces.", min=1)] = None,
    json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Run checkers and judges over stored traces in this process; store the evaluations."""
    import asyncio

    from workers.pipeline import score_release

    settings = _settings()
    catalog = _catalog(settings)
    engine = _engine(settings)
    with rare_collections():  # the garbage collector was ~40% of a scoring process's CPU
        summary = asyncio.run(score_release(engine, settings, catalog, release, rubric_ids=rubric, limit=limit))
    if json:
        _print_json(summary.as_dict())
        _finalisers_failed(summary.batch_id, summary.failed_finalisers)
        return
    data = summary.as_dict()
    out.print(f"batch [bold]{summary.batch_id}[/bold]: {summary.traces} traces"
              f" x {len(summary.evaluators)} evaluators")  # fmt: skip
    from tracejury.store.evaluations import batch_evaluator_summary

    table = Table("evaluator", "scored", "fail verdicts", "judge failed", "n/a", "missing")
    for column in table.columns:  # names fold onto more lines on a narrow terminal, never cut
        column.overflow = "fold"
    for row in batch_evaluator_summary(engine, summary.batch_id):
        scored = row.get("scored", 0)
        fails = f"{row['failed_verdicts']} ({100 * row['failed_verdicts'] / scored:.1f}%)" if scored else "-"
        counts = [str(row.get(k, 0)) for k in ("judge_failed", "not_applicable", "missing_evidence")]
        table.add_row(row["evaluator"], str(scored), fails, *counts)
    out.print(table)
    status = data["status"]
    out.print("total: " + ", ".join(f"{k} {v}" for k, v in status.items()))  # type: ignore[union-attr]
    if summary.failures:
        out.print("judge failures: " + ", ".join(f"{k} {v}" for k, v in summary.failures.items()))
    if summary.escalated:
        out.print(f"escalated to human review: {summary.escalated} item(s) (tracejury review list)")
    out.print(usage_line(summary.usage))
    _finalisers_failed(summary.batch_id, summary.failed_finalisers)


def _finaliser_lines(batch_id: str, failed: dict[str, str]) -> list[str]:
    """One line per failed finaliser, with the command that reruns it."""
    rerun = {"escalation": f"tracejury review escalate {batch_id}"}
    return [f"finaliser {name} {outcome}" + (f"; rerun it: {rerun[name]}" if name in rerun else "")
            for name, outcome in failed.items()]  # fmt: skip


def _finalisers_failed(batch_id: str, failed: dict[str, str]) -> None:
    """Print the failed finalisers on stderr and exit 1: a batch whose end failed in part
    (its evaluations are stored, but e.g. nothing was escalated) is never a silent success."""
    if failed:
        for line in _finaliser_lines(batch_id, failed):
            err.print(line, markup=False)
        raise typer.Exit(1)


@rubrics_app.command("list")
def rubrics_list(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The rubrics in the rubrics directory."""
    from workers.service import rubric_list

    rows = rubric_list(_settings())
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
    paths: Annotated[list[Path] | None, typer.Argument(help="Rubric files (default: the rubrics directory).")] = None,
) -> None:
    """Validate rubrics: schema, checkers, template variables, and versions whose content
    changed since the store saw them. Exit 1 on any problem."""
    from judges.rubric import Rubric
    from tracejury.core.errors import ConfigError
    from tracejury.store.evaluations import seen_fingerprints
    from workers.service import rubrics_dir

    settings = _settings()
    root = rubrics_dir(settings) if not paths else Path(settings.rubrics_dir)
    files = paths or sorted(
        p for p in root.rglob("*.yaml") if p.name != "profiles.yaml" and "gates" not in p.relative_to(root).parts
    )
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
    faults: Annotated[str, typer.Option(help="Fault rates, e.g. http500=0.2,http429=0.1,hang=0.05.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the fault draws and bias flips.")] = 0,
    bias: Annotated[str, typer.Option(help="Flip verdicts silently, e.g. fail_to_pass=0.3,pass_to_fail=0.1.")] = "",
    dialect: Annotated[str, typer.Option(help="Server to imitate: openai, vllm-old, llamacpp, ollama or azure"
                                         " (its request checks and error bodies).")] = "openai",  # fmt: skip
    max_inflight: Annotated[int | None, typer.Option(help="Answer 429 to a request that arrives while this many"
                                                     " are in flight (a server with N slots).")] = None,  # fmt: skip
) -> None:
    """Serve an OpenAI-compatible mock judge whose verdicts follow the evidence (its counts: GET /stats)."""
    from judges.mock.server import serve

    serve(host, port, latency_ms=latency_ms, latency_sigma=latency_sigma, faults=faults, seed=seed, bias=bias,
          dialect=dialect, max_inflight=max_inflight)  # fmt: skip


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Scoring processes (Celery prefork children); default: one per CPU.", min=1)
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Start a Celery worker on the configured broker."""
    import os

    from workers.celery_app import QUEUE, create_app

    concurrency = concurrency or os.cpu_count() or 1  # a child scores on one core: use them all
    celery = create_app(_settings())
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--pool=prefork"]
    celery.worker_main([*argv, "-Q", QUEUE, "--without-gossip", "--without-mingle"])


@batch_app.command("create")
def batch_create(
    release: Annotated[str, typer.Option(help="Release to sample and score.")],
    rubric: Annotated[list[str] | None, typer.Option(help="Rubric id; repeatable (default: all).")] = None,
    sample_size: Annotated[int | None, typer.Option(help="Expected number of sampled traces.", min=1)] = None,
    budget: Annotated[int | None, typer.Option(help="Judge calls to spend (sets the sample size).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed; same seed, same sample.")] = 0,
    for_gates: Annotated[bool, typer.Option("--for-gates", help="Size the sample so the evaluator gates can decide"
                                            " (within --budget when given).")] = False,  # fmt: skip
    baseline: Annotated[str | None, typer.Option(help="Release the gates compare with (default: previous).")] = None,
    max_cost: Annotated[float | None, typer.Option(
        help="USD the batch may spend on judges: sizes the sample and stops it there (a hard cap).", min=1e-6)] = None,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sample a release (failure-aware), freeze the config and enqueue chunks for workers."""
    if sample_size is not None and budget is not None:
        raise TracejuryError("use --sample-size or --budget, not both")
    if sample_size is not None and for_gates:
        raise TracejuryError("use --sample-size or --for-gates, not both")
    with rare_collections():
        from workers.service import create_batch

        settings = _settings()
        data = create_batch(_engine(settings), settings, release=release, rubric_ids=rubric,
                            sample_size=sample_size, budget=budget, seed=seed, for_gates=for_gates,
                            baseline=baseline, max_cost=max_cost)  # fmt: skip
    if json:
        _print_json(data)
    else:
        out.print(f"batch [bold]{data['batchId']}[/bold]: sampled {data['sampled']} of"
                  f" {data['population']} traces into {data['chunks']} chunk(s)")  # fmt: skip
        if data["costCap"]:
            cap = data["costCap"]
            out.print(f"cost cap ${cap['maxCostUsd']:g}: expected ${cap['expectedCostUsd']:.4f}"
                      f" (${cap['estimatePerTraceUsd']:.6f} a trace, {cap['estimateFrom']})")  # fmt: skip
    for warning in data["warnings"]:
        err.print(f"warning: {warning}", soft_wrap=True)


def _batch_status(batch_id: str) -> dict:
    from workers.service import batch_status

    return batch_status(_engine(_settings()), batch_id)


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
    out.print(f"traces {data['tracesDone']}/{data['sampled']}, {data['tracesPerSecond']}/s, ETA {eta}")
    out.print("evaluations: " + ", ".join(f"{k} {v}" for k, v in data["status"].items()))
    if data["failures"]:
        out.print("judge failures: " + ", ".join(f"{k} {v}" for k, v in data["failures"].items()))
    for c in data["judgeConcurrency"]:
        scope = "shared" if c["shared"] else f"{c['processes']} process(es)"
        out.print(f"judge {c['profile']}: concurrency limit {c['limit']} ({scope}), {c['inFlight']} in flight"
                  f" — {c['endpoint']}", markup=False)  # fmt: skip
    out.print(usage_line(data["usage"], data["costCap"]))
    if data.get("escalation"):
        out.print(_escalation_line(data["escalation"]), markup=False)
    failed = {k: v for k, v in data["finalisers"].items() if v != "ok"}
    for line in _finaliser_lines(data["batchId"], failed):
        out.print(line, markup=False)


def _escalation_line(esc: dict) -> str:
    """What the batch's escalation enqueued and what the review budget left out, one line."""
    left = "; ".join(f"{rubric} " + ", ".join(f"{reason} {n}" for reason, n in reasons.items())
                     for rubric, reasons in esc["leftOut"].items())  # fmt: skip
    caps = esc["caps"]["overall"]
    line = (f"review items: {esc['enqueued']} enqueued, {esc['leftOutTotal']} left out by the review budget"
            f" (overall caps: {caps['maxItemsPerBatch']} a batch, {caps['maxItemsPerDay']} a day)")  # fmt: skip
    return line + (f": {left}" if left else "")


FINALISER_GRACE_S = 30.0
"""How long ``batch wait`` waits, after the batch ended, for its finalisers' outcomes."""


@batch_app.command("wait")
def batch_wait(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
) -> None:
    """Show a progress bar until the batch ends and its finalisers report; exit 0 if done, 1 if
    failed, timed out, or a finaliser (escalation) failed."""
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
        # the finalisers (escalation) run just after the batch ends: wait for their outcomes
        grace = min(deadline, time.monotonic() + FINALISER_GRACE_S)
        while data["state"] != "running" and not data["finalisers"] and time.monotonic() < grace:
            time.sleep(0.5)
            data = _batch_status(batch_id)
    out.print(f"batch {batch_id}: [bold]{data['state']}[/bold]"
              + (f" — {data['reason']}" if data["reason"] else ""))  # fmt: skip
    out.print("evaluations: " + ", ".join(f"{k} {v}" for k, v in data["status"].items()))
    if data["state"] != "done":
        raise typer.Exit(1)
    if not data["finalisers"]:
        err.print(f"batch {batch_id}: its finalisers (escalation) have not reported within "
                  f"{FINALISER_GRACE_S:g} s; see `tracejury batch status {batch_id}`", markup=False)  # fmt: skip
    _finalisers_failed(batch_id, {k: v for k, v in data["finalisers"].items() if v != "ok"})


@batch_app.command("results")
def batch_results(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    by: Annotated[str, typer.Option(help="Segment dimensions to group by, comma-separated.")] = "",
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fail rates per evaluator and segment group, weighted by 1/inclusion probability, and
    calibrated by audit labels where the group (or its evaluator's pool) has enough."""
    from workers.service import batch_results as results

    settings = _settings()
    data = results(_engine(settings), settings, batch_id, by)
    rows = data["results"]
    if json:
        _print_json({**data, "results": [r.as_dict() for r in rows]})
        return
    table = Table("evaluator", "segment", "scored", "fails", "fail % (1/p)", "calibrated %", "labels",
                  "judge failed", "n/a", "missing", title=f"batch {batch_id}",
                  caption="calibrated %: 95% interval; ᵖ labels pooled over the evaluator's groups")  # fmt: skip
    for column in table.columns:  # names fold onto more lines on a narrow terminal, never cut
        column.overflow = "fold"
    for r in rows:
        rate = "-" if r.weighted_fail_rate is None else f"{100 * r.weighted_fail_rate:.2f}%"
        calibrated = "-"
        if r.calibrated is not None:
            lo, hi = r.calibrated.wilson()
            pooled = "ᵖ" if r.strata == "pooled" else ""
            calibrated = f"{100 * r.calibrated.rate:.2f}%{pooled} [{100 * lo:.1f}, {100 * hi:.1f}]"
        counts = [r.scored, r.failed, rate, calibrated, r.labelled, r.judge_failed, r.not_applicable,
                  r.missing_evidence]  # fmt: skip
        table.add_row(r.evaluator, r.segment or "(all)", *map(str, counts))
    out.print(table)
    out.print(usage_line(data["usage"]))


@batch_app.command("list")
def batch_list(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recent batches, newest first."""
    from workers.service import batch_list

    rows = batch_list(_engine(_settings()))
    if json:
        _print_json(rows)
        return
    table = Table("batch", "release", "kind", "state", "sampled", "created")
    for r in rows:
        table.add_row(r["batchId"], r["release"], r["kind"], r["state"], str(r["sampled"]), r["createdAt"])
    out.print(table)
