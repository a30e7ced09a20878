"""How the processes that allocate per trace or per judge call set Python's garbage collector.

A judge call, an OTLP span or a sampled trace allocates a few hundred short-lived objects that
reference counting frees. With the default thresholds the collector still runs a young
collection every 700 allocations and, every hundred of those, a full one over every object the
process's imports made (~160k: SQLAlchemy, pydantic, Celery, aiohttp). Measured:

* a scoring process spent ~40% of its CPU there (``bench/scoring.py``, 200 ms judge, 20,000
  traces: 0.77-0.94 ms per call before, 0.45-0.49 after);
* the API server ~10% of an OTLP request, the OTLP sweeper ~20% (``bench/otlp_ingest.py``);
* ``batch create`` ~0.3 s of ~2.5 s on 20,000 traces.

With :data:`THRESHOLDS` the young generation is collected every 100,000 allocations instead
of 700, the middle one every 50 of those, the oldest every 100 of the middle's (and only when a
quarter of it is new). Reference cycles are still collected: those of a judge call (alive for
its round trip) die in the young or middle generation, seconds apart at a thousand calls a
second; only what outlives the middle generation waits for the rare full collection. A scoring
process's peak RSS with 20,000 traces was 195–215 MiB after, 211–213 before; over a
100,000-trace batch it rose from 231 to 251 MiB (``bench/scoring.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THRESHOLDS", "collect_rarely", "rare_collections"]

THRESHOLDS = (100_000, 50, 100)
"""Young-generation allocations between collections, then the older generations' counts."""


def collect_rarely() -> None:
    """For the rest of this process: what is alive now (imports, settings) is set aside for
    good — full collections no longer walk it — and collections run at :data:`THRESHOLDS`.
    Call it in a long-running process once it has started (after a fork, in the child)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def rare_collections() -> Iterator[None]:
    """:data:`THRESHOLDS` for the block only (a command that allocates per trace, then returns)."""
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
