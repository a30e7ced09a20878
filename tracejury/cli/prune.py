"""``tracejury prune``: remove the text of a release's traces, or of traces older than a date,
keeping the facts gates and signals read (``docs/retention.md``)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tracejury.cli.app import _engine, _print_json, _settings, app, out
from tracejury.core.retention import DEFAULT_BATCH_SIZE, selection_from_args

__all__ = ["prune"]

_BEFORE = (
    "Prune traces with a timestamp before this ISO date or date-time (UTC), and quarantined lines set aside before it."
)


@app.command()
def prune(
    release: Annotated[str | None, typer.Option(help="Prune every trace of this release.")] = None,
    before: Annotated[str | None, typer.Option(help=_BEFORE)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; change nothing.")] = False,
    batch_size: Annotated[int, typer.Option(help="Traces per transaction.", min=1)] = DEFAULT_BATCH_SIZE,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remove trace text (bodies, rationales, conflicting bodies); keep the facts gates, signals
    and stored gate runs read. Open review items of pruned traces close as ``pruned``."""
    from tracejury.store.prune import count_prunable
    from tracejury.store.prune import prune as prune_store

    selection = selection_from_args(release, before)
    engine = _engine(_settings())
    started = time.perf_counter()
    counts = count_prunable(engine, selection) if dry_run else prune_store(engine, selection, batch_size=batch_size)
    seconds = time.perf_counter() - started
    if json:
        _print_json({"selection": selection.describe(), "dryRun": dry_run, **counts.as_dict(),
                     "seconds": round(seconds, 3)})  # fmt: skip
        return
    verb = "would prune" if dry_run else "pruned"
    what = ", ".join(f"{k}={v:,}" for k, v in counts.as_dict().items() if k != "traces")
    where = " ".join(f"{k} {v}" for k, v in selection.describe().items())
    out.print(f"{verb} {counts.traces:,} trace(s) ({where}) in {seconds:.1f}s; {what}", highlight=False, soft_wrap=True)
