"""The FastAPI application: settings and engine on ``app.state``, error handlers, a body
size limit, and the routers of ``tracejury.api.routes``."""

from __future__ import annotations

import gc
from functools import cache
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from tracejury.api.errors import install_handlers
from tracejury.api.limits import BodyLimit, CountRequests
from tracejury.api.routes import batches, gates, metrics, otlp, review, review_page, rubrics, traces
from tracejury.api.throttle import FailedAuth
from tracejury.runtime import THRESHOLDS
from tracejury.settings import Settings

__all__ = ["ROUTERS", "create_app"]

ROUTERS = (traces, batches, gates, rubrics, metrics, review, review_page, otlp)
"""Modules whose ``router`` the app includes, in this order."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (default: from the environment). The store is opened, and
    migrated if needed, on first use."""
    settings = settings or Settings()
    # a request allocates ~100 objects per OTLP span and frees them all: collecting the young
    # generation every 700 allocations cost the server ~10% (bench/otlp_ingest.py)
    gc.set_threshold(*THRESHOLDS)

    app = FastAPI(
        title="tracejury",
        version=version("tracejury"),
        description="Grade production LLM traces and turn the results into deploy gates.",
        # Swagger UI and ReDoc load their scripts from a CDN: not into the origin whose
        # sessionStorage holds reviewers' tokens (the review page). /openapi.json stays.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.failed_auth = FailedAuth()  # invalid tokens per client address (docs/security.md)

    @cache
    def engine() -> Any:
        from tracejury.store.engine import open_engine

        return open_engine(settings.database_url)

    app.state.engine = engine
    app.state.registry = CollectorRegistry()
    requests = Counter("tracejury_http_requests", "HTTP requests served by this API process",
                       ["method", "route", "status"], registry=app.state.registry)  # fmt: skip
    app.state.http_requests = requests

    install_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)

    @app.get("/healthz", tags=["meta"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(CountRequests, counter=requests)
    return app
