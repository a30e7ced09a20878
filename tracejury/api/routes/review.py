"""The human-review queue over HTTP (reviewer role; admin always passes): list and read items,
claim the next one, label it, skip it; the judge–human agreement. The review page (``review_page``) calls these routes.

**Who is reviewing.** A request acts as the reviewer its token names: the token's ``name``
(unique), or ``token:<id>`` when the token has none (``GET /api/review/me`` says which); a
name of that reserved form (possible only before migration 0013) is ignored, so no token can
act as another's default identity. A body may name a ``reviewer`` explicitly; a reviewer
token may only name itself (else 403), an admin token may name anyone (a tool working for
several people). Claims, labels and skips are checked against that name by the store: you
label and skip what you claimed. Claims and labels also record the acting token's id (an
admin acting for ``ana`` is recorded as the admin's token id and the name ``ana``).

Shapes are the store's (``tracejury.store.review``), the ones the CLI prints with ``--json``;
``POST /api/review/next`` answers as ``tracejury review next --json`` does, and 404 with code
``queue_empty`` where the CLI exits 4.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from tracejury.api.deps import EngineDep, SettingsDep, require_role
from tracejury.api.errors import ApiError
from tracejury.core.escalation import REASONS
from tracejury.core.review import ITEM_STATES
from tracejury.store.tokens import DEFAULT_IDENTITY_PREFIX, Principal

__all__ = ["parse_cursor", "reviewer_name", "router"]

router = APIRouter(prefix="/api/review", tags=["review"])

ReviewerDep = Annotated[Principal, Depends(require_role("reviewer"))]

_NAME = r"^[^\x00-\x1f\x7f-\x9f]+$"  # printable: no C0/C1 control characters (PostgreSQL refuses NUL)
_TEXT = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=_NAME)]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The review item's id.")]
_Filter = Annotated[str | None, Query(min_length=1, max_length=256, pattern=_NAME)]


def reviewer_name(principal: Principal, asked: str | None = None) -> str:
    """The reviewer a request acts as: ``asked`` if given and allowed (itself, or anyone for
    an admin), else the token's name, else ``token:<id>``."""
    named = principal.name and not principal.name.lower().startswith(DEFAULT_IDENTITY_PREFIX)
    own = principal.name if named else f"{DEFAULT_IDENTITY_PREFIX}{principal.token_id}"
    if asked is None or asked == own:
        if len(own) > 128:
            raise ApiError(400, "bad_input", f"reviewer: the token's name is longer than 128 characters: {own[:40]}…")
        return own
    if principal.role != "admin":
        raise ApiError(403, "forbidden", f"reviewer: this token reviews as {own!r}; only an admin may act as {asked!r}")
    return asked


class ClaimRequest(BaseModel):
    """What ``tracejury review next`` takes."""

    model_config = ConfigDict(extra="forbid")

    reviewer: Name | None = None
    """Who claims (default: the token's reviewer, see the module docstring)."""
    leaseSeconds: float = Field(default=600.0, gt=0, le=86_400)  # noqa: N815 - the JSON field name
    """How long the claim holds before the item returns to the queue."""
    rubric: Annotated[str, Field(min_length=1, max_length=128, pattern=_NAME)] | None = None
    """Only items of this rubric."""
    reason: Annotated[str, Field(min_length=1, max_length=64, pattern=_NAME)] | None = None
    """Only items escalated for this reason."""
    segment: Annotated[str, Field(min_length=1, max_length=512, pattern=_NAME)] | None = None
    """Only items whose segment key holds every ``dim=value`` of this ``|``-joined list."""
    detail: bool = False
    """Answer with the claimed item's detail (as ``GET /api/review/items/{id}``), saving the
    review page a round trip."""


class LabelRequest(BaseModel):
    """What ``tracejury review label`` takes."""

    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, Field(min_length=1, max_length=64, pattern=_NAME)]
    """One of the rubric version's labels (``scale.labels`` of the item)."""
    rationale: Annotated[str, Field(max_length=10_000, pattern=_TEXT)] | None = None
    """Why, in the reviewer's words (optional)."""
    reviewer: Name | None = None
    """Who labels (default: the token's reviewer)."""


class SkipRequest(BaseModel):
    """What ``tracejury review skip`` takes."""

    model_config = ConfigDict(extra="forbid")

    reviewer: Name | None = None
    """Who skips (default: the token's reviewer)."""


@router.get("/me", summary="Who this token reviews as, and the queue's vocabulary")
def me(principal: ReviewerDep) -> dict[str, Any]:
    """The reviewer name requests with this token act as, its role, and the known item states
    and escalation reasons (for filters)."""
    return {"reviewer": reviewer_name(principal), "role": principal.role, "tokenId": principal.token_id,
            "states": list(ITEM_STATES), "reasons": list(REASONS)}  # fmt: skip


@router.get("/items", summary="Review items in queue order, filtered")
def list_items(
    engine: EngineDep,
    _: ReviewerDep,
    response: Response,
    state: _Filter = None,
    rubric: _Filter = None,
    reason: _Filter = None,
    segment: _Filter = None,
    release: _Filter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    after: Annotated[str | None, Query(max_length=40, description="A page's X-Next-Cursor.")] = None,
) -> list[dict[str, Any]]:
    """As ``tracejury review list --json``: priority high to low, then oldest first. ``state``
    reads as of now (an expired claim is ``pending``); ``segment`` is ``dim=value`` joined
    by ``|``.

    Paging: when more items follow, the ``X-Next-Cursor`` header holds a cursor; pass it as
    ``after`` for the next page (keyset: any page costs what the first does, and an item
    claimed meanwhile shifts nothing). ``offset`` still works, not together with ``after``."""
    from tracejury.store.review import list_items as query

    if after is not None and offset:
        raise ApiError(400, "invalid_input", "after: page with a cursor or with offset, not both")
    rows = query(engine, state=state, rubric=rubric, reason=reason, segment=segment, release=release,
                 limit=limit + 1, offset=offset, after=None if after is None else parse_cursor(after))  # fmt: skip
    if len(rows) > limit:
        rows = rows[:limit]
        response.headers["X-Next-Cursor"] = f"{rows[-1]['priority']}.{rows[-1]['itemId']}"
    return rows


def parse_cursor(cursor: str) -> tuple[int, int]:
    """``X-Next-Cursor``'s ``<priority>.<item id>`` as a pair; anything else is a one-line 400."""
    priority, dot, item_id = cursor.partition(".")
    try:
        if not dot:
            raise ValueError
        return int(priority), int(item_id)
    except ValueError:
        why = f"after: {cursor[:40]!r} is not a cursor (an X-Next-Cursor value such as 5.1234)"
        raise ApiError(400, "invalid_input", why) from None


@router.get("/items/{item_id}", summary="One review item with its trace, evaluations and labels")
def get_item(item_id: ItemId, engine: EngineDep, _: ReviewerDep) -> dict[str, Any]:
    """Everything a reviewer needs: the item, the stored trace and its reviewer ``view``
    (input, answer, chunks, tool snapshots, flags), the judge's evaluation, the disagreeing
    checkers' evaluations, the label ``scale`` and the label history (oldest first). Trace
    text is returned as stored: untrusted."""
    from tracejury.store.review import get_item as read

    return read(engine, item_id)


@router.post("/next", summary="Claim the next review item (with a lease)")
def claim_next(
    engine: EngineDep, principal: ReviewerDep, req: Annotated[ClaimRequest | None, Body()] = None
) -> dict[str, Any]:
    """As ``tracejury review next --json``: ``{"itemId", "traceId", "rubric", "reasons",
    "leaseExpiresAt"}``; with ``detail``, the item's detail instead (a superset). Nothing
    claimable is 404 with code ``queue_empty``."""
    from tracejury.store.review import claim_next as claim
    from tracejury.store.review import get_item as read

    req = req or ClaimRequest()
    reviewer = reviewer_name(principal, req.reviewer)
    item = claim(engine, reviewer, lease_s=req.leaseSeconds, rubric=req.rubric, reason=req.reason,
                 segment=req.segment, token_id=principal.token_id)  # fmt: skip
    if item is None:
        raise ApiError(404, "queue_empty", "no pending review item matches (the queue is empty for these filters)")
    if req.detail:
        return read(engine, item["itemId"])
    return {k: item[k] for k in ("itemId", "traceId", "rubric", "reasons", "leaseExpiresAt")}


@router.post("/items/{item_id}/label", summary="Label a review item (a relabel appends)")
def label_item(item_id: ItemId, req: LabelRequest, engine: EngineDep, principal: ReviewerDep) -> dict[str, Any]:
    """As ``tracejury review label --json``: the stored label. Needs your claim on the item,
    or an item already labelled or skipped (a relabel); else 409 ``conflict``. A label not on
    the rubric's scale is 400 ``invalid_input``."""
    from tracejury.store.review import label_item as label

    reviewer = reviewer_name(principal, req.reviewer)
    return label(engine, item_id, reviewer, req.label, req.rationale, token_id=principal.token_id)


@router.post("/items/{item_id}/skip", summary="Set aside a review item you hold")
def skip_item(
    item_id: ItemId, engine: EngineDep, principal: ReviewerDep, req: Annotated[SkipRequest | None, Body()] = None
) -> dict[str, Any]:
    """As ``tracejury review skip --json``: the item, now ``skipped``. 409 ``conflict`` if you
    do not hold its claim."""
    from tracejury.store.review import skip_item as skip

    return skip(engine, item_id, reviewer_name(principal, (req or SkipRequest()).reviewer))


@router.get("/agreement", summary="Judge–human agreement per rubric version, and judge errors by segment")
def agreement(
    engine: EngineDep,
    settings: SettingsDep,
    _: ReviewerDep,
    rubric: _Filter = None,
    by: Annotated[str, Query(max_length=512, pattern=_TEXT)] = "",
) -> list[dict[str, Any]]:
    """As ``tracejury review agreement --json``: per rubric version the confusion matrix
    (judge rows, human columns), observed agreement, Cohen's kappa, verdict flips, judge
    failures, and per segment group (``by``: comma-separated dimensions) the judge's error
    rate, with the audit-only items' rate beside it."""
    from tracejury.core.agreement import agreement as fold
    from tracejury.store.review import labelled_pairs
    from workers.service import dims

    return fold(labelled_pairs(engine, rubric=rubric), dims(by, settings, option="by"))
