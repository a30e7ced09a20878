"""Finalisation hooks: what runs once when a batch ends (escalation and gates register here).

A hook gets the engine, the batch id and its final state. Exactly one worker ends a batch
(``try_finish_batch`` is a compare-and-set), so each hook runs once per batch. A failing hook
is logged with the batch id and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Engine

from tracejury.store.batches import try_finish_batch

__all__ = ["FINALISERS", "finish", "register_finaliser", "run_finalisers"]

log = logging.getLogger(__name__)

Finaliser = Callable[[Engine, str, str], None]
FINALISERS: list[Finaliser] = []
"""Registered hooks, run in registration order."""


def register_finaliser(hook: Finaliser) -> Finaliser:
    """Register a hook (usable as a decorator)."""
    FINALISERS.append(hook)
    return hook


def run_finalisers(engine: Engine, batch_id: str, state: str) -> list[str]:
    """Run every hook; returns one-line errors of the hooks that failed."""
    errors = []
    for hook in FINALISERS:
        try:
            hook(engine, batch_id, state)
        except Exception as exc:  # a hook's failure is reported, and the others still run
            log.exception("finaliser %s failed for batch %s", hook.__name__, batch_id)
            errors.append(f"{hook.__name__}: {type(exc).__name__}: {exc}")
    return errors


def finish(engine: Engine, batch_id: str) -> None:
    """End the batch if nothing is left, and run its finalisers (once: the end is a CAS)."""
    state = try_finish_batch(engine, batch_id)
    if state is not None:
        run_finalisers(engine, batch_id, state)
