"""What the CLI and the HTTP API share: configuration loaded from settings, and the JSON views
of batches and gate runs. Both front ends call these, so a batch or a gate run reads the same
from ``tracejury batch status --json`` and from ``GET /batches/{id}``."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine

from judges.catalog import Catalog
from tracejury.core.errors import ConfigError, NotFound, TracejuryError
from tracejury.core.sampling import SamplingConfig, default_sampling
from tracejury.core.segments import SegmentationConfig, default_segmentation
from tracejury.defaults import RUBRICS_DIR, SAMPLING_FILE, SEGMENTATION_FILE
from tracejury.settings import Settings

_Config = TypeVar("_Config", SegmentationConfig, SamplingConfig)

__all__ = [
    "batch_list",
    "batch_status",
    "catalog",
    "create_batch",
    "dims",
    "gate_history",
    "rubric_list",
    "rubrics_dir",
    "sampling",
    "segmentation",
    "stored_run",
]


def segmentation(settings: Settings) -> SegmentationConfig:
    """The segmentation config: ``TRACEJURY_SEGMENTATION_PATH``, else ``segmentation.yaml`` in
    the working directory (``tracejury init`` writes it), else the shipped default. A file is
    parsed once per version of it (an API process ingests many requests)."""
    path = _setup_file(settings.segmentation_path, SEGMENTATION_FILE)
    return default_segmentation() if path is None else _parsed(SegmentationConfig, path, "segmentation")


def sampling(settings: Settings) -> SamplingConfig:
    """The sampling config of queued batches: ``TRACEJURY_SAMPLING_PATH``, else ``sampling.yaml``
    in the working directory (``tracejury init`` writes it), else the shipped default."""
    path = _setup_file(settings.sampling_path, SAMPLING_FILE)
    return default_sampling() if path is None else _parsed(SamplingConfig, path, "sampling")


def _setup_file(configured: str | None, name: str) -> Path | None:
    """The configured file, else ``name`` in the working directory if there is one."""
    if configured is not None:
        return Path(configured)
    return Path(name) if Path(name).is_file() else None


def _parsed(model: type[_Config], path: Path, what: str) -> _Config:
    try:
        return _config_file(model, str(path), path.stat().st_mtime_ns)
    except OSError as exc:
        raise TracejuryError(f"{path}: cannot read {what} config: {exc.strerror}") from exc


@lru_cache(maxsize=8)
def _config_file(model: type[_Config], path: str, _mtime_ns: int) -> _Config:
    return model.from_yaml(Path(path).read_text(), file=path)


def dims(by: str, settings: Settings, *, option: str = "--by") -> list[str]:
    """A comma-separated list of segment dimensions, each checked against the config."""
    names = [d.strip() for d in by.split(",") if d.strip()]
    known = segmentation(settings).names
    for d in names:
        if d not in known:
            raise TracejuryError(f"{option}: unknown dimension {d!r} (known: {', '.join(known)})")
    return names


def catalog(settings: Settings) -> Catalog:
    """The rubrics and judge profiles of ``TRACEJURY_RUBRICS_DIR`` (plugins imported first); a
    missing directory is one line saying how to get one."""
    from judges.catalog import load_catalog, load_plugins

    load_plugins(settings.plugin_modules)
    return load_catalog(rubrics_dir(settings))


def rubrics_dir(settings: Settings) -> Path:
    """``TRACEJURY_RUBRICS_DIR`` (relative to the working directory); when it does not exist,
    a one-line error that says how to get one."""
    path = Path(settings.rubrics_dir)
    if path.is_dir():
        return path
    shown = path.as_posix() if path.is_absolute() or path.parts[0] == ".." else f"./{path.as_posix()}"
    if path.name != RUBRICS_DIR:
        hint = f"`tracejury init DIR` writes the shipped defaults to DIR/{RUBRICS_DIR}"
    elif path.parent == Path():
        hint = "run `tracejury init` to write the shipped defaults here"
    else:
        hint = f"run `tracejury init {path.parent.as_posix()}` to write the shipped defaults there"
    raise ConfigError(f"no rubrics in {shown} (TRACEJURY_RUBRICS_DIR); {hint}")


def gate_specs(settings: Settings, path: Path | None = None) -> list[Any]:
    """The gate specs of ``path`` (default: the rubrics directory's ``gates/``), checked
    against the segmentation's dimensions and the catalog's evaluators."""
    from workers.reducer import load_gates

    known = set(catalog(settings).rubrics)
    return load_gates(path or rubrics_dir(settings) / "gates", segmentation(settings).names, known)


def run_gate_specs(engine: Engine, settings: Settings, release: str, *, baseline: str | None = None,
                   dry_run: bool = False, path: Path | None = None) -> dict[str, Any]:
    """``gate run`` (CLI and ``POST /gates/runs``): the gates of ``path`` (default: the
    rubrics directory's), scans over the segmentation's dimensions; the run as JSON."""
    from workers.reducer import run_gates

    specs = gate_specs(settings, path)
    dims = segmentation(settings).names
    return run_gates(engine, specs, release, baseline=baseline, dry_run=dry_run, dimensions=dims).as_dict()


def batch_status(engine: Engine, batch_id: str) -> dict[str, Any]:
    """A batch's state, counts by status and failure kind, progress, rate and ETA, and what
    its finalisers did (``finalisers``: name → ``ok`` or ``failed: …``; {} while running) and what
    its escalation enqueued and the review budget left out (``escalation``; null until then)."""
    from tracejury.core.evaluation import EVALUATION_STATUSES
    from tracejury.store.batches import batch_progress
    from tracejury.store.judge_concurrency import live
    from tracejury.store.spend import usage

    progress = batch_progress(engine, batch_id)
    if progress is None:
        raise NotFound(f"no batch {batch_id!r}")
    b = progress["batch"]
    config = orjson.loads(b.config)
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
        "usage": usage(engine, batch_id),
        "costCap": config.get("costCap"),
        "finalisers": config.get("finalisers", {}),
        "judgeConcurrency": [c.as_json() for c in live(engine) if c.profile in config.get("judgeProfiles", {})],
        "escalation": config.get("escalation"),
    }  # fmt: skip


def batch_list(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Recent batches, newest first."""
    from tracejury.store.batches import list_batches

    return [{"batchId": b.id, "release": b.release_id, "kind": b.kind, "state": b.state,
             "sampled": b.sampled, "createdAt": b.created_at.isoformat()}
            for b in list_batches(engine, limit=limit)]  # fmt: skip


def batch_results(engine: Engine, settings: Settings, batch_id: str, by: str = "", *,
                  option: str = "--by") -> dict[str, Any]:  # fmt: skip
    """A batch's ``SegmentResult``s per evaluator and segment group of ``by``: the judge's
    weighted fail rate, the audit labels, and the calibrated rate where they suffice (JSON:
    ``as_dict``; ``tracejury batch results`` and ``GET /batches/{id}/results``), and the
    batch's judge usage: ``{"batchId", "results": [SegmentResult], "usage": {...}}``."""
    from tracejury.core.results import summarise, with_calibration
    from tracejury.store.batches import batch_release
    from tracejury.store.batches import batch_results as query
    from tracejury.store.queries import evaluator_rates

    groups = dims(by, settings, option=option)
    release = batch_release(engine, batch_id)
    if release is None:
        raise NotFound(f"no batch {batch_id!r}")
    from tracejury.store.spend import usage

    results = summarise(query(engine, batch_id), groups)
    calibrated = with_calibration(results, evaluator_rates(engine, release, batch=batch_id), groups)
    return {"batchId": batch_id, "results": calibrated, "usage": usage(engine, batch_id)}


def stored_run(engine: Engine, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A stored gate run as ``gate run --json`` printed it, and its outcomes' audit trails."""
    from tracejury.core.gates import Outcome, WindowResult
    from tracejury.store.gates import load_run
    from workers.reducer import _outcome_json

    loaded = load_run(engine, run_id)
    if loaded is None:
        raise NotFound(f"no gate run {run_id!r}")
    run, audits = loaded
    outcomes = []
    for a in audits:
        d = dict(a["outcome"])
        d["windows"] = [WindowResult(**{**w, "interval": tuple(w["interval"])}) for w in d["windows"]]
        d["interval"] = tuple(d["interval"]) if d["interval"] else None
        outcomes.append(_outcome_json(Outcome(**d)))
    baseline = next((a["baselineSource"].get("release") for a in audits), None)
    result = {"runId": run.id, "release": run.release_id, "baseline": baseline,
              "decision": run.decision, "outcomes": outcomes}  # fmt: skip
    return result, audits


def rubric_list(settings: Settings) -> list[dict[str, Any]]:
    """The rubrics of the rubrics directory: id, version, kind, fingerprint, description, file."""
    cat = catalog(settings)
    return [{"id": r.id, "version": r.version, "kind": r.kind, "fingerprint": r.fingerprint,
             "description": r.description, "file": cat.files[r.id]} for r in cat.select(None)]  # fmt: skip


def create_batch(
    engine: Engine, settings: Settings, *, release: str, rubric_ids: list[str] | None, sample_size: int | None,
    budget: int | None, seed: int, for_gates: bool = False, baseline: str | None = None,
    max_cost: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Sample a release, freeze the config and enqueue its chunks on the configured broker
    (``tracejury batch create`` and ``POST /batches``). ``warnings`` name the gates the
    sample is too small for; ``for_gates`` sizes it so they can decide."""
    from workers.batches import create_queued_batch
    from workers.celery_app import create_app
    from workers.tasks import enqueue_chunk

    warnings: list[str] = []
    gates: list[Any] = []
    if for_gates or (Path(settings.rubrics_dir) / "gates").is_dir():
        try:
            gates = gate_specs(settings)
        except TracejuryError as exc:
            if for_gates:
                raise
            warnings.append(f"gates not checked against this sample: {exc}")
    with create_app(settings).connection_for_write():
        created = create_queued_batch(
            engine, settings, catalog(settings), sampling(settings),
            release=release, rubric_ids=rubric_ids, sample_size=sample_size, budget=budget,
            seed=seed, enqueue=enqueue_chunk, gates=gates, for_gates=for_gates, baseline=baseline,
            max_cost=max_cost,
        )  # fmt: skip
    return {"batchId": created.batch_id, "population": created.population, "sampled": created.sampled,
            "chunks": created.chunks, "baseRate": created.base_rate, "costCap": created.cost_cap,
            "warnings": warnings + created.warnings}  # fmt: skip


def gate_history(engine: Engine, gate_id: str, segment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """A gate's outcomes across runs, newest first (``gate history --json``)."""
    from tracejury.store.gates import gate_history as query

    return [{"runId": r.id, "release": r.release_id, "at": r.created_at.isoformat(), "segment": r.segment,
             "decision": r.decision, "reason": r.reason}
            for r in query(engine, gate_id, segment, limit=limit)]  # fmt: skip
