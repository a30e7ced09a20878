"""OTLP/gRPC receiver (``tracejury serve --otlp-grpc-port 4317``): the collector's
``TraceService`` and ``LogsService`` on grpcio, with the same tokens (the ``authorization``
metadata, ``Bearer <token>``), staging and assembly as OTLP/HTTP (``tracejury.api.otlp``).

HTTP statuses map to the gRPC codes the OTLP exporters understand: 503 (staging full) and a
store that is down or busy → ``UNAVAILABLE``, which they retry; 401 → ``UNAUTHENTICATED``;
403 → ``PERMISSION_DENIED``; 400 → ``INVALID_ARGUMENT``; anything else ``INTERNAL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from tracejury.api.errors import ApiError
from tracejury.api.otlp import Accepted, accept_logs, accept_spans, logs_response, trace_response
from tracejury.api.throttle import FailedAuth
from tracejury.settings import Settings
from tracejury.store.tokens import Principal, authenticate

__all__ = ["start_grpc_server"]

log = logging.getLogger("tracejury.api.otlp")

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
          429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}  # fmt: skip


def _source(peer: str) -> str:
    """The client address of a grpc peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``)."""
    kind, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer


class _Receiver:
    def __init__(self, engine: Callable[[], Engine], settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.failed_auth = FailedAuth()  # invalid tokens per client address, as over HTTP

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        header = dict(context.invocation_metadata()).get("authorization", "")
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "missing bearer token (authorization metadata: Bearer <token>)")
        source = _source(context.peer())
        wait = self.failed_auth.retry_after(source)
        if wait is not None:
            raise ApiError(429, "too_many_failures", f"too many invalid tokens from {source}: retry in {wait} s")
        principal = authenticate(self.engine(), token.strip())
        if principal is None:
            self.failed_auth.failed(source)
            raise ApiError(401, "unauthorized", "invalid or revoked token")
        if principal.role not in ("ingest", "admin"):
            raise ApiError(403, "forbidden", f"role {principal.role!r} may not do this (needs admin or ingest)")
        return principal

    def handle(self, accept: Callable[..., Accepted], request: Any, context: grpc.ServicerContext) -> Accepted:
        try:
            principal = self._principal(context)
            return accept(self.engine(), self.settings, f"otlp:{principal.token_id}", request)
        except ApiError as exc:
            context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        except (OperationalError, InterfaceError) as exc:  # the store is down or busy: exporters retry UNAVAILABLE
            log.warning("OTLP/gRPC: store unavailable: %s", " ".join(str(exc).split())[:300])
            context.abort(grpc.StatusCode.UNAVAILABLE, "store unavailable; retry later")
        except Exception:  # a defect: said once in the log, one line to the client
            log.exception("OTLP/gRPC export failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
        raise AssertionError("context.abort raises")  # pragma: no cover


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: _Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the service's name
        return trace_response(self.receiver.handle(accept_spans, request, context))


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: _Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return logs_response(self.receiver.handle(accept_logs, request, context))


def start_grpc_server(engine: Callable[[], Engine], settings: Settings, host: str, port: int,
                      threads: int = 8) -> grpc.Server:  # fmt: skip
    """Start serving OTLP/gRPC on ``host:port`` (plaintext; put TLS in front, as for HTTP) and
    return the server (``stop(grace)`` it). Messages past ``TRACEJURY_API_MAX_BODY_BYTES`` are
    refused by grpcio with ``RESOURCE_EXHAUSTED``."""
    limit = settings.api_max_body_bytes
    server = grpc.server(ThreadPoolExecutor(threads, thread_name_prefix="tracejury-otlp-grpc"),
                         options=[("grpc.max_receive_message_length", limit)])  # fmt: skip
    receiver = _Receiver(engine, settings)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(receiver), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(receiver), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    server.start()
    log.info("OTLP/gRPC listening on %s", address)
    return server
