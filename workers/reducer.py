"""The reducer: every gate, every segment group, one decision — stored with why.

``run_gates`` loads the gate specs, aggregates each gate's arms by SQL, decides in the pure
core, and stores the run with one audit trail per outcome. ``replay`` re-decides a stored
run from the inputs in its audit trails alone.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from tracejury.core.errors import ConfigError
from tracejury.core.gates import (
    Arm,
    GateSpec,
    Outcome,
    SegmentInputs,
    WindowArm,
    decide_family,
    plain,
    run_decision,
)
from tracejury.store import gates as store

__all__ = ["GateRunResult", "load_gates", "replay", "run_gates"]


def load_gates(path: Path, dimensions: tuple[str, ...] | None = None) -> list[GateSpec]:
    """Gate specs from a YAML file or every ``*.yaml`` in a directory (sorted by id).

    With ``dimensions`` (the segmentation's), a ``group_by`` or ``where.segment`` naming
    another dimension is an error — a typo would otherwise pool or filter away all traffic."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no gate specs in {path}")
    specs: dict[str, GateSpec] = {}
    for f in files:
        try:
            text = f.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=str(f)) from exc
        spec = GateSpec.from_yaml(text, file=str(f))
        if dimensions is not None:
            for field, names in (("group_by", spec.group_by), ("where.segment", tuple(spec.where.segment))):
                unknown = [d for d in names if d not in dimensions]
                if unknown:
                    raise ConfigError(
                        f"unknown segment dimension {unknown[0]!r} (known: {', '.join(dimensions)})",
                        file=str(f), field=field,
                    )  # fmt: skip
        if spec.id in specs:
            raise ConfigError(f"gate id {spec.id!r} defined twice", file=str(f), field="id")
        specs[spec.id] = spec
    return [specs[k] for k in sorted(specs)]


@dataclass
class GateRunResult:
    """What ``gate run`` reports."""

    run_id: str | None
    release: str
    baseline: str | None
    decision: str
    outcomes: list[Outcome]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` shape."""
        return {
            "runId": self.run_id,
            "release": self.release,
            "baseline": self.baseline,
            "decision": self.decision,
            "outcomes": [_outcome_json(o) for o in self.outcomes],
        }


def _outcome_json(o: Outcome) -> dict[str, Any]:
    d = o.as_dict()
    return {
        "gate": o.gate, "segment": o.segment, "decision": o.decision, "reason": o.reason,
        "baseline": {"failures": o.baseline.get("failures", 0), "n": o.baseline.get("n", 0),
                     "rate": o.baseline.get("rate"), "humanLabels": o.baseline.get("humanLabels", 0)},
        "current": {"failures": o.current.get("failures", 0), "n": o.current.get("n", 0),
                    "rate": o.current.get("rate"), "humanLabels": o.current.get("humanLabels", 0)},
        "estimate": o.estimate, "interval": d["interval"], "pValue": o.p_value,
        "margin": o.margin, "minSamples": o.min_samples, "streak": o.streak,
        "familySize": o.family_size, "windows": d["windows"],
    }  # fmt: skip


def config_hash(specs: list[GateSpec]) -> str:
    """sha256 of the canonical gate specs."""
    canonical = orjson.dumps([s.model_dump(mode="json") for s in specs], option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def run_gates(
    engine: Engine, specs: list[GateSpec], release: str, *, baseline: str | None = None,
    dry_run: bool = False,
) -> GateRunResult:  # fmt: skip
    """Evaluate every gate for a release; store the run unless ``dry_run``."""
    base_release = baseline or store.previous_release(engine, release)
    outcomes: list[tuple[Outcome, dict[str, Any]]] = []
    for spec in specs:
        data = store.gate_inputs(engine, spec, release, base_release)
        for outcome, inputs in zip(decide_family(spec, data.segments), data.segments, strict=True):
            audit = {
                "outcome": outcome.as_dict(), "spec": spec.model_dump(mode="json"),
                "baselineSource": data.baseline, "windows": data.windows, "currentBatches": data.current_batches,
                "inputs": plain(inputs), "release": release,
            }  # fmt: skip
            outcomes.append((outcome, audit))
    decision = run_decision([o for o, _ in outcomes])
    run_id = None
    if not dry_run:
        run_id = store.save_run(engine, release, decision, config_hash(specs), outcomes)
    return GateRunResult(run_id, release, base_release, decision, [o for o, _ in outcomes])


def _inputs(d: dict[str, Any]) -> SegmentInputs:
    def arm(a: dict[str, Any]) -> Arm:
        return Arm(**{**a, "versions": tuple(a["versions"])})

    wins = tuple(
        WindowArm(w["index"], w["start"], w["end"], arm(w["arm"]), arm(w["baseline"]) if w["baseline"] else None)
        for w in d["windows"]
    )
    return SegmentInputs(d["segment"], arm(d["baseline"]), wins)


def replay(audits: list[dict[str, Any]]) -> list[Outcome]:
    """Re-decide a stored run from its audit trails (grouped per gate: the family)."""
    by_gate: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in audits:
        by_gate[a["spec"]["id"]].append(a)
    out = []
    for gate_audits in by_gate.values():
        spec = GateSpec.model_validate(gate_audits[0]["spec"])
        out += decide_family(spec, [_inputs(a["inputs"]) for a in gate_audits])
    return out
