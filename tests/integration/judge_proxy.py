"""A proxy in front of the real mock judge that records what reaches the judge: every request
body, and the chat completions counted. Tests use it to check what a judge is sent (no
redacted value) and how often (one call per distinct question)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

__all__ = ["JudgeProxy", "judge_proxy"]

_HOP = ("content-length", "transfer-encoding", "connection", "content-encoding")


class JudgeProxy(http.server.ThreadingHTTPServer):
    """Forwards every POST to ``upstream`` (the mock's base URL) and keeps its body."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.bodies: list[bytes] = []
        self.calls = 0
        """Chat completions forwarded."""
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=256))
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with proxy.lock:
                    proxy.bodies.append(body)
                    proxy.calls += self.path.endswith("/chat/completions")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = proxy.client.post(proxy.upstream + self.path, content=body, headers=headers)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        """The proxy's base URL (``…/v1``), for ``TRACEJURY_JUDGE_BASE_URL``."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def judge_proxy(upstream: str) -> Iterator[JudgeProxy]:
    """A running ``JudgeProxy``; stopped, its socket and client closed, on exit."""
    proxy = JudgeProxy(upstream)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        proxy.client.close()
