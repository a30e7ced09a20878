"""The HTTP API (FastAPI): every operation of the CLI behind bearer tokens with roles.
Handlers are thin: they parse, call the same store/worker functions as the CLI, and return
the same JSON. Errors are ``{"code", "message"}`` with a one-line message, never a traceback."""

from tracejury.api.app import create_app

__all__ = ["create_app"]
