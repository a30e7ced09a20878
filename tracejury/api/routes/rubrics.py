"""Rubrics: what the server would score with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from tracejury.api.deps import SettingsDep, require_role

router = APIRouter(tags=["rubrics"], dependencies=[Depends(require_role())])


@router.get("/rubrics", summary="The rubrics in the server's rubrics directory")
def list_rubrics(settings: SettingsDep) -> list[dict[str, Any]]:
    """As ``tracejury rubrics list --json``."""
    from workers.service import rubric_list

    return rubric_list(settings)
