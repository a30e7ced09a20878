"""The reducer: every gate, every segment group, one decision — stored with why.

``run_gates`` loads the gate specs, aggregates each gate's arms by SQL, decides in the pure
core, and stores the run with one audit trail per outcome. ``replay`` re-decides a stored
run from the inputs in its audit trails alone.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from tracejury.core.agreement import AuditAgreement, apply_judge_floors, decide_agreement
from tracejury.core.calibration import NO_AUDIT, AuditCells
from tracejury.core.errors import ConfigError
from tracejury.core.gate_scan import decide_scan
from tracejury.core.gates import (
    Arm,
    GateSpec,
    Outcome,
    SegmentInputs,
    Source,
    WindowArm,
    decide_family,
    plain,
    run_decision,
)
from tracejury.core.segments import parse_segment_key
from tracejury.core.yamlconf import parse_yaml
from tracejury.store import gates as store
from tracejury.store.agreement import audit_agreements
from tracejury.store.gate_aggregate import Plan

__all__ = ["GateRunResult", "load_gates", "replay", "run_gates", "scan_dimensions"]


def load_gates(path: Path, dimensions: tuple[str, ...] | None = None,
               evaluators: Collection[str] | None = None) -> list[GateSpec]:  # fmt: skip
    """Gate specs from a YAML file or every ``*.yaml`` in a directory (sorted by id).

    With ``dimensions`` (the segmentation's), a ``group_by``, ``where.segment`` or
    ``scan.dimensions`` naming another dimension is an error — a typo would otherwise pool or
    filter away all traffic. With ``evaluators`` (the catalog's rubric and checker ids), a
    metric naming another evaluator is an error: it would never have data, so never decide."""
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
        named = spec.evaluator_id or spec.metric.judge_agreement
        if evaluators is not None and named is not None and named not in evaluators:
            field = ("metric.evaluator" if spec.metric.evaluator else "metric.judge_failure_rate"
                     if spec.metric.judge_failure_rate else "metric.judge_agreement")  # fmt: skip
            _, lines = parse_yaml(text, file=str(f))
            line = lines.get(tuple(field.split(".")))  # type: ignore[call-overload]
            raise ConfigError(
                f"unknown evaluator {named!r} (known: {', '.join(sorted(evaluators))})",
                file=str(f), line=line, field=field,
            )  # fmt: skip
        if dimensions is not None:
            scanned = spec.scan.dimensions if spec.scan is not None else ()
            for field, names in (("group_by", spec.group_by), ("where.segment", tuple(spec.where.segment)),
                                 ("scan.dimensions", scanned)):  # fmt: skip
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

    def arm(a: dict[str, Any]) -> dict[str, Any]:
        out = {"failures": a.get("failures", 0), "n": a.get("n", 0), "rate": a.get("rate"),
               "judgeRate": a.get("judgeRate", a.get("rate")), "effectiveN": a.get("effectiveN", 0.0),
               "humanLabels": a.get("humanLabels", 0),
               "calibration": a.get("calibration", {"method": "none", "labelled": 0})}  # fmt: skip
        if o.design == "agreement":  # the judge against people on the audit labels
            out.update({k: a.get(k) for k in ("kappa", "observedAgreement", "failToPass", "passToFail")})
        return out

    return {
        "gate": o.gate, "segment": o.segment, "decision": o.decision, "reason": o.reason,
        "design": o.design, "slice": o.slice, "notes": o.notes,
        "baseline": arm(o.baseline), "current": arm(o.current),
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
    dry_run: bool = False, dimensions: tuple[str, ...] | None = None, plan: Plan = "auto",
) -> GateRunResult:  # fmt: skip
    """Evaluate every gate for a release; store the run unless ``dry_run``. ``dimensions``
    (the segmentation's) are what scan gates without ``scan.dimensions`` scan; ``plan``
    picks the evaluator aggregation (``tracejury.store.gate_aggregate``: benchmarks)."""
    base_release = baseline or store.previous_release(engine, release)
    decided: list[tuple[GateSpec, Outcome, dict[str, Any]]] = []  # each with its audit's inputs
    for spec in specs:
        if spec.metric.judge_agreement is not None:
            versions = audit_agreements(engine, spec.metric.judge_agreement, release)
            inputs = {"spec": spec.model_dump(mode="json"), "release": release,
                      "agreementInputs": [v.as_dict() for v in versions]}  # fmt: skip
            decided += [(spec, o, inputs) for o in decide_agreement(spec, versions, release)]
            continue
        data = store.gate_inputs(engine, spec, release, base_release, plan=plan)
        sources = data.sources()
        common = {
            "spec": spec.model_dump(mode="json"), "baselineSource": data.baseline, "windows": data.windows,
            "currentBatches": data.current_batches, "release": release, "sources": plain(sources),
        }  # fmt: skip
        if spec.scan is not None:
            dims = scan_dimensions(spec, data.segments, dimensions)
            by_key = {s.segment: s for s in data.segments}
            scan = {**common, "scanInputs": [plain(s) for s in data.segments], "scanDimensions": list(dims)}
            decided += [(spec, o, scan) for o in decide_scan(spec, by_key, dims, **sources)]
            continue
        family = decide_family(spec, data.segments, **sources)
        if not data.segments:  # one outcome that says why there is nothing to decide on
            decided.append((spec, family[0], {**common, "inputs": None}))
            continue
        decided += [(spec, o, {**common, "inputs": plain(s)}) for o, s in zip(family, data.segments, strict=True)]
    apply_judge_floors([(spec, o) for spec, o, _ in decided])
    outcomes = [(o, {**inputs, "outcome": o.as_dict()}) for _, o, inputs in decided]
    decision = run_decision([o for o, _ in outcomes])
    run_id = None
    if not dry_run:
        run_id = store.save_run(engine, release, decision, config_hash(specs), outcomes)
    return GateRunResult(run_id, release, base_release, decision, [o for o, _ in outcomes])


def scan_dimensions(spec: GateSpec, segments: list[SegmentInputs],
                    dimensions: tuple[str, ...] | None) -> tuple[str, ...]:  # fmt: skip
    """What a scan gate scans: its own list, else the segmentation's, else the stored keys'."""
    if spec.scan is not None and spec.scan.dimensions:
        return spec.scan.dimensions
    if dimensions:
        return dimensions
    return tuple(dict.fromkeys(d for s in segments for d in parse_segment_key(s.segment)))


def _arm(a: dict[str, Any]) -> Arm:
    """An arm from its stored inputs (stored arms are never calibrated: the decision does that)."""
    audit = a.get("audit")
    cells = AuditCells(tuple(audit["n"]), tuple(audit["w"]), tuple(audit["w2"])) if audit else NO_AUDIT
    return Arm(**{**a, "versions": tuple(a["versions"]), "audit": cells, "calibrated": None})


def _inputs(d: dict[str, Any]) -> SegmentInputs:
    wins = tuple(
        WindowArm(w["index"], w["start"], w["end"], _arm(w["arm"]), _arm(w["baseline"]) if w["baseline"] else None,
                  w.get("baseline_index"))
        for w in d["windows"]
    )
    current = _arm(d["current"]) if d.get("current") else None
    tail = _arm(d["tail"]) if d.get("tail") else None
    return SegmentInputs(d["segment"], _arm(d["baseline"]), wins, current, tail)


def _sources(d: dict[str, Any] | None) -> dict[str, Any]:
    if d is None:  # a run stored before gates recorded their sources
        return {}

    def source(s: dict[str, Any] | None) -> Source | None:
        if s is None:
            return None
        return Source(s["release"], tuple(s["batches"]), tuple(s["judges"]), tuple(s["pending"]), s.get("unscored", ""))

    return {"current": source(d["current"]), "baseline": source(d["baseline"]),
            "empty_reason": d["empty_reason"], "notes": list(d["notes"])}  # fmt: skip


def replay(audits: list[dict[str, Any]]) -> list[Outcome]:
    """Re-decide a stored run from its audit trails (grouped per gate: the family). Runs
    stored before gates recorded an evaluator metric's whole sample (``current``) and their
    sources re-decide under today's rules from the inputs they have: their evaluator gates
    come out ``insufficient_data``, not as they were decided then."""
    by_gate: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in audits:
        by_gate[a["spec"]["id"]].append(a)
    out: list[tuple[GateSpec, Outcome]] = []
    for gate_audits in by_gate.values():
        first = gate_audits[0]
        spec = GateSpec.model_validate(first["spec"])
        sources = _sources(first.get("sources"))
        if spec.scan is not None:
            by_key = {s.segment: s for s in (_inputs(d) for d in first["scanInputs"])}
            out += [(spec, o) for o in decide_scan(spec, by_key, tuple(first["scanDimensions"]), **sources)]
            continue
        if spec.metric.judge_agreement is not None:
            versions = [AuditAgreement.from_dict(v) for v in first["agreementInputs"]]
            out += [(spec, o) for o in decide_agreement(spec, versions, first.get("release", ""))]
            continue
        inputs = [_inputs(a["inputs"]) for a in gate_audits if a.get("inputs") is not None]
        out += [(spec, o) for o in decide_family(spec, inputs, **sources)]
    apply_judge_floors(out)
    return [o for _, o in out]
