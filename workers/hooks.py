"""Finalisation hooks: what runs once when a batch ends (escalation and gates register here).

A hook gets the engine, the batch id and its final state. Exactly one worker ends a batch
(``try_finish_batch`` is a compare-and-set), so each hook runs once per batch. A failing hook
is logged with the batch id and does not stop the others, and it is never silent: every
hook's outcome (``ok`` or ``failed: <one line>``) is stored with the batch, under the hook's
name (``batch status`` shows it), and returned to the caller (``tracejury score`` exits
non-zero on a failure).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Engine

from judges.llm.types import one_line
from tracejury.store.batches import record_finalisers, try_finish_batch

__all__ = ["FINALISERS", "failed_finalisers", "finaliser_name", "finish", "register_finaliser", "run_finalisers"]

log = logging.getLogger(__name__)

Finaliser = Callable[[Engine, str, str], object]
FINALISERS: list[Finaliser] = []
"""Registered hooks, run in registration order."""


def register_finaliser(name: str) -> Callable[[Finaliser], Finaliser]:
    """Register a hook under ``name`` (a decorator); the name is how ``batch status`` shows
    the hook's outcome (``finalisers: {name: ...}``)."""

    def register(hook: Finaliser) -> Finaliser:
        hook.finaliser_name = name  # type: ignore[attr-defined]
        FINALISERS.append(hook)
        return hook

    return register


def finaliser_name(hook: Finaliser) -> str:
    """The name a hook registered under (its function name if it was not registered)."""
    return getattr(hook, "finaliser_name", None) or getattr(hook, "__name__", "finaliser")


def failed_finalisers(outcomes: dict[str, str]) -> dict[str, str]:
    """The outcomes that are failures."""
    return {name: o for name, o in outcomes.items() if o != "ok"}


def run_finalisers(engine: Engine, batch_id: str, state: str) -> dict[str, str]:
    """Run every hook and store their outcomes with the batch; returns them, name → ``ok``
    or ``failed: <one line>``."""
    outcomes: dict[str, str] = {}
    for hook in FINALISERS:
        name = finaliser_name(hook)
        try:
            hook(engine, batch_id, state)
            outcomes[name] = "ok"
        except Exception as exc:  # a hook's failure is reported, and the others still run
            log.exception("finaliser %s failed for batch %s", name, batch_id)
            outcomes[name] = one_line(f"failed: {type(exc).__name__}: {exc}")
    try:
        record_finalisers(engine, batch_id, outcomes)
    except Exception:  # the store is down: the log and the caller still have the outcomes
        log.exception("could not store the finaliser outcomes of batch %s: %s", batch_id, outcomes)
    return outcomes


def finish(engine: Engine, batch_id: str) -> dict[str, str] | None:
    """End the batch if nothing is left, and run its finalisers (once: the end is a CAS);
    returns their outcomes, or None if this call did not end the batch."""
    state = try_finish_batch(engine, batch_id)
    if state is None:
        return None
    return run_finalisers(engine, batch_id, state)
