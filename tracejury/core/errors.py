"""The one exception hierarchy of tracejury.

    TracejuryError                 every error a user may see; str() is one line
    ├── InvalidTrace               a trace line that is not JSON or breaks the schema
    ├── ConfigError                a YAML config (segmentation, rubric, gate…) that is wrong
    ├── InputError                 an input that cannot be read at all (missing file, bad gzip)
    ├── InvalidInput               a value given by a user that is not allowed (a review label)
    ├── Conflict                   a change the stored state refuses (an item someone else holds)
    └── NotFound                   an id the store does not know

Context travels in keyword-only attributes, so callers can store it (quarantine rows) and the
CLI can print the one-line ``str(error)`` without a traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "Conflict", "InputError", "InvalidInput", "InvalidTrace", "NotFound", "TracejuryError"]


class TracejuryError(Exception):
    """Base class: an error with a one-line message that says what was wrong and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidTrace(TracejuryError):
    """A trace that cannot be accepted.

    ``path`` is the JSON path of the first error (``$`` for the whole document), ``trace_id``
    the trace id when the line had a readable one.
    """

    def __init__(self, message: str, *, path: str = "$", trace_id: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.trace_id = trace_id

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(TracejuryError):
    """A configuration file or value that is wrong; names the file, line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        if self.field:
            where = f"{where} {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class InputError(TracejuryError):
    """An input that cannot be read at all (missing file, unreadable gzip stream)."""


class InvalidInput(TracejuryError):
    """A value a user gave (an option, a request field) that is not allowed; the message names
    the field and the allowed values."""


class Conflict(TracejuryError):
    """A change the stored state refuses: labelling a review item another reviewer holds,
    skipping one that is not yours."""


class NotFound(TracejuryError):
    """A thing named by id (batch, gate run, trace, review item) that the store does not have."""
