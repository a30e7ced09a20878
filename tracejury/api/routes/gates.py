"""Deploy gates: run, fetch a run (JSON, markdown or HTML), a gate's history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tracejury.api.deps import EngineDep, SettingsDep, require_role

router = APIRouter(tags=["gates"], dependencies=[Depends(require_role())])


class GateRunRequest(BaseModel):
    """What ``tracejury gate run`` takes (the gate specs are the server's)."""

    model_config = ConfigDict(extra="forbid")

    release: str = Field(min_length=1, max_length=256)
    baseline: str | None = Field(default=None, min_length=1, max_length=256)
    dryRun: bool = False  # noqa: N815 - the JSON field name


@router.post("/gates/runs", summary="Evaluate every gate and segment for a release")
def run(req: GateRunRequest, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    """As ``tracejury gate run --json``: ``decision`` is pass, block, inconclusive or
    insufficient_data; each outcome carries its audit trail."""
    from workers.service import run_gate_specs

    return run_gate_specs(engine, settings, req.release, baseline=req.baseline, dry_run=req.dryRun)


@router.get("/gates/runs/{run_id}", summary="A stored gate run", response_model=None)
def show(
    run_id: str, engine: EngineDep, format: Annotated[Literal["json", "markdown", "html"], Query()] = "json"
) -> dict[str, Any] | Response:
    """As ``tracejury gate show --json``; ``format=markdown`` for a CI summary, ``format=html``
    for the self-contained report."""
    from tracejury.core.report import html_report, markdown_report
    from workers.service import stored_run

    result, audits = stored_run(engine, run_id)
    if format == "markdown":
        return PlainTextResponse(markdown_report(result), media_type="text/markdown")
    if format == "html":
        return HTMLResponse(html_report(result, audits))
    return result


@router.get("/gates/{gate_id}/history", summary="A gate's outcomes across runs, newest first")
def history(
    gate_id: str, engine: EngineDep, segment: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    """As ``tracejury gate history --json``."""
    from workers.service import gate_history

    return gate_history(engine, gate_id, segment, limit=limit)
