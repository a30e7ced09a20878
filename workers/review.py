"""Escalation when a batch ends: the finaliser that turns a batch's uncertain, disagreeing,
failed and audited judgments into review items.

Registered with ``workers.hooks`` on import (``workers.pipeline`` imports this module, and
every path that ends a batch — inline ``tracejury score``, a worker's last chunk, the
sweeper — goes through it). It escalates with the rubrics frozen in the batch's config
snapshot, so the policy is the one the batch was scored under, and it runs whether the
batch ended ``done`` or ``failed`` (the evaluations stored before a failure are real).

The overall review budget comes from the settings (``TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH``,
``TRACEJURY_REVIEW_MAX_ITEMS_PER_DAY``) when the batch is first escalated; the batch records
the caps it ran under, and a rerun keeps them, so it decides as the first run did.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from judges.rubric import Rubric
from tracejury.core.errors import NotFound
from tracejury.core.escalation import Caps
from tracejury.settings import Settings
from tracejury.store.batches import batch_config, record_finalisers
from tracejury.store.escalation import escalate_batch, recorded_caps
from workers.hooks import register_finaliser

__all__ = ["escalate_again", "escalate_finished_batch"]

log = logging.getLogger(__name__)


@register_finaliser("escalation")
def escalate_finished_batch(engine: Engine, batch_id: str, state: str) -> int:
    """Escalate a batch that just ended (any end state) under its frozen rubrics; returns the
    items enqueued. Idempotent: ``tracejury review escalate BATCH`` reruns it, e.g. after the
    finaliser failed (the store was unreachable when the batch ended)."""
    config = batch_config(engine, batch_id)
    if config is None:
        raise NotFound(f"no batch {batch_id!r}")
    rubrics = [Rubric.model_validate(d) for d in config.get("rubrics", [])]
    overall = recorded_caps(config)
    if overall is None:
        settings = Settings()
        overall = Caps(settings.review_max_items_per_batch, settings.review_max_items_per_day)
    n = escalate_batch(engine, batch_id, rubrics, overall=overall)
    log.info("batch %s (%s): %d review item(s) enqueued", batch_id, state, n)
    return n


def escalate_again(engine: Engine, batch_id: str, state: str) -> int:
    """``tracejury review escalate BATCH``: rerun the escalation and, once it succeeded, record
    the ``escalation`` finaliser as ``ok`` (``batch status`` stops showing its failure)."""
    n = escalate_finished_batch(engine, batch_id, state)
    record_finalisers(engine, batch_id, {"escalation": "ok"})
    return n
