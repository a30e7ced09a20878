"""Settings: the only reader of the environment (``TRACEJURY_*`` variables)."""

from __future__ import annotations

import os

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Runtime settings, read from ``TRACEJURY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TRACEJURY_", extra="ignore")

    @property
    def plugin_modules(self) -> list[str]:
        """``plugins`` as a list."""
        return [m.strip() for m in self.plugins.split(",") if m.strip()]

    def api_key(self, env_name: str | None) -> str | None:
        """The value of a judge profile's API key variable (this class reads the environment)."""
        return os.environ.get(env_name) if env_name else None

    database_url: str = "sqlite:///tracejury.db"
    """SQLAlchemy URL of the store; default a SQLite file in the working directory."""
    segmentation_path: str | None = None
    """A segmentation YAML; unset: ``segmentation.yaml`` in the working directory when there is
    one (``tracejury init`` writes it), else the shipped default."""
    sampling_path: str | None = None
    """A sampling YAML for queued batches; unset: ``sampling.yaml`` in the working directory
    when there is one (``tracejury init`` writes it), else the shipped default."""
    rubrics_dir: str = "rubrics"
    """Directory of rubric YAML files, judge profiles (``profiles.yaml``) and gates; a relative
    path is relative to the working directory (``tracejury init`` writes ``./rubrics``)."""
    plugins: str = ""
    """Comma-separated modules to import at start; they register extra checkers."""
    judge_base_url: str = "http://127.0.0.1:8100/v1"
    """Base URL for judge profiles that set none (the shipped ``default``): the mock judge."""
    score_concurrency: int = 1024
    """(trace, rubric) evaluations in flight at once per chunk — inline and in each worker; 1024
    keeps a 512-trace chunk with 2 rubrics all in flight. Judge calls are further bounded by
    each profile's ``max_concurrency`` (shared by all workers with a Redis broker)."""
    broker_url: str = "sqla+sqlite:///tracejury-broker.db"
    """Celery broker: Redis (``redis://host:6379/0``) in production; by default an embedded
    SQLite broker (kombu's SQLAlchemy transport), so one machine runs with no server."""
    chunk_size: int = 512
    """Traces per queued chunk: one task, all its judge calls concurrent with asyncio. A worker
    runs one chunk at a time, so a chunk's CPU work and its judge waits add up: 512 rather than
    256 took 2 workers at 200 ms from 957 to 1,060 judge calls/s (BENCHMARKS.md)."""
    chunk_lease_s: float = 30.0
    """A running chunk's lease; renewed every third of it. A dead worker's chunk is redone
    after the lease expires plus one sweep."""
    sweep_interval_s: float = 5.0
    """How often each worker looks for expired leases to re-enqueue."""
    stale_pending_s: float = 300.0
    """A chunk pending this long without a worker is enqueued again (its message may be lost)."""
    api_max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body the HTTP API accepts (bytes); larger ones get 413."""
    otlp_trace_idle_s: float = 5.0
    """An OTLP trace is assembled once its root span has arrived and no span of it for this
    long. 5 s covers spans that end after their root (fire-and-forget children) exported by the
    next ``BatchSpanProcessor`` tick (its default schedule delay is 5 s) or a collector's batch."""
    otlp_trace_max_wait_s: float = 600.0
    """A staged trace whose root span has not arrived this long after its first span goes to
    quarantine with every span it had. Longer than the longest trace you run (agents)."""
    otlp_max_staged_spans: int = 500_000
    """Spans and log records the OTLP staging holds at most; past it requests get 503 (OTLP/HTTP)
    or UNAVAILABLE (gRPC), which exporters retry."""
    otlp_assembled_keep_s: float = 3600.0
    """How long a finished OTLP trace is remembered, so a span of it that arrives later is
    counted as late (or as a re-sent duplicate) rather than staged as a new trace."""
    otlp_sweepers: int = 2
    """Sweeper processes ``tracejury serve`` runs beside its server (they share the staged traces
    by claiming them): assembly is most of OTLP ingest's CPU, ~0.26 ms a trace against the
    server's ~0.12 (bench/otlp_ingest.py), so two keep up with one server process on 2 cores."""
    otlp_sweep_interval_s: float = 0.5
    """How often the OTLP sweeper (in ``serve`` and in every worker) looks for whole traces."""
    metrics_cache_s: float = 10.0
    """``GET /metrics`` reads the store at most once per this many seconds (each read scans the
    evaluation table); scrapes in between get the same counts."""
    ingest_batch_size: int = 2000
    """Lines per batch (one transaction) during ingest; bounds memory per ingest process."""
    retention_days: int | None = None
    """Workers prune traces whose timestamp is older than this many days (their text goes, their
    facts stay: ``docs/retention.md``), at most once an hour per worker process; unset: never."""
    ingest_workers: int = 2
    """Processes that prepare and write large inputs in parallel; 0 = all in this one."""
    redaction_path: str | None = None
    """A redaction policy YAML applied to every trace at ingest (files, ``POST /traces``, OTLP,
    quarantine); unset: the shipped default (``tracejury/core/defaults/redaction.yaml``)."""
    redaction_hmac_key: str | None = None
    """Key of the redaction policy's ``hash`` field rules (HMAC-SHA256); required when it has any."""
    review_max_items_per_batch: int | None = Field(default=100, ge=0)
    """Review budget over all rubrics: review items one batch may enqueue when it ends, filled
    in order of value, the audit first (each rubric's ``escalation.max_items_per_batch`` caps
    its own share); ``none``: no overall cap. What the budget leaves out is counted
    (``batch status``, ``/metrics``). 100 is a queue one person works through in a sitting."""
    review_max_items_per_day: int | None = Field(default=500, ge=0)
    """Review budget over all rubrics: review items all batches may enqueue per UTC day;
    ``none``: no cap."""

    @field_validator("review_max_items_per_batch", "review_max_items_per_day", mode="before")
    @classmethod
    def _no_cap(cls, value: object) -> object:
        """``none`` (or empty) in the environment means no cap."""
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value
