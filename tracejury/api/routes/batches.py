"""Scoring batches: create (sample, freeze the config, enqueue chunks), list, status, results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tracejury.api.deps import EngineDep, SettingsDep, require_role

router = APIRouter(tags=["batches"], dependencies=[Depends(require_role())])


class BatchRequest(BaseModel):
    """What ``tracejury batch create`` takes."""

    model_config = ConfigDict(extra="forbid")

    release: str = Field(min_length=1, max_length=256)
    rubrics: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(default=None, max_length=200)
    sampleSize: int | None = Field(default=None, ge=1, le=100_000_000)  # noqa: N815 - the JSON field name
    budget: int | None = Field(default=None, ge=1, le=1_000_000_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    maxCost: float | None = Field(default=None, gt=0, le=1e9)
    """USD the batch may spend on judges (``--max-cost``): sizes the sample, a hard cap."""
    forGates: bool = False  # noqa: N815 - the JSON field name
    """Size the sample so the evaluator gates can decide (within ``budget`` when given)."""
    baseline: str | None = Field(default=None, min_length=1, max_length=256)
    """The release the gates compare with (default: the previous one)."""

    @model_validator(mode="after")
    def _one_size(self) -> BatchRequest:
        if self.sampleSize is not None and self.budget is not None:
            raise ValueError("use sampleSize or budget, not both")
        if self.sampleSize is not None and self.forGates:
            raise ValueError("use sampleSize or forGates, not both")
        return self


@router.post("/batches", status_code=201, summary="Sample a release and enqueue a scoring batch")
def create_batch(req: BatchRequest, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    """As ``tracejury batch create --json``."""
    from workers.service import create_batch as create

    return create(engine, settings, release=req.release, rubric_ids=req.rubrics, sample_size=req.sampleSize,
                  budget=req.budget, seed=req.seed, for_gates=req.forGates, baseline=req.baseline,
                  max_cost=req.maxCost)  # fmt: skip


@router.get("/batches", summary="Recent batches, newest first")
def list_batches(engine: EngineDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """As ``tracejury batch list --json``."""
    from workers.service import batch_list

    return batch_list(engine, limit=limit)


@router.get("/batches/{batch_id}", summary="A batch's state, counts, progress, rate and ETA")
def get_batch(batch_id: str, engine: EngineDep) -> dict[str, Any]:
    """As ``tracejury batch status --json``."""
    from workers.service import batch_status

    return batch_status(engine, batch_id)


@router.get("/batches/{batch_id}/results", summary="Fail rates per evaluator and segment group")
def batch_results(batch_id: str, engine: EngineDep, settings: SettingsDep, by: str = "") -> dict[str, Any]:
    """As ``tracejury batch results --json``: the judge's fail rate weighted by 1/inclusion
    probability and, where audit labels suffice, the calibrated one; and the batch's judge
    usage (tokens, USD spent and saved)."""
    from workers.service import batch_results as results

    data = results(engine, settings, batch_id, by, option="by")
    return {**data, "results": [r.as_dict() for r in data["results"]]}
