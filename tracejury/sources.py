"""Reading trace lines from files, gzip files and stdin, streaming.

A reader yields ``(line number, raw bytes)`` and never raises mid-stream: if the input breaks
(a truncated gzip stream, a read error), it stops and keeps the error in ``error`` so the lines
before it are still ingested and the caller can report exactly where the input broke.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tracejury.core.errors import InputError

__all__ = ["LineReader"]

_GZIP_MAGIC = b"\x1f\x8b"


class LineReader:
    """Streams the lines of one input: a path (plain or gzip, by content) or ``-`` for stdin."""

    def __init__(self, path: str, stdin: BinaryIO | None = None) -> None:
        self.path = path
        self.error: InputError | None = None
        self._stdin = stdin
        self.lines_read = 0

    def _open(self) -> tuple[BinaryIO, BinaryIO]:
        """The raw stream and the (maybe decompressing) stream to read lines from."""
        if self.path == "-":
            raw: BinaryIO = self._stdin or sys.stdin.buffer
        else:
            try:
                raw = Path(self.path).open("rb")  # noqa: SIM115 - closed in __iter__
            except OSError as exc:
                raise InputError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        if head == _GZIP_MAGIC or (not head and self.path.endswith(".gz")):
            return raw, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        return raw, raw

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        try:
            raw, stream = self._open()
        except InputError as exc:
            self.error = exc
            return
        try:
            for self.lines_read, line in enumerate(stream, start=1):  # noqa: B007
                yield self.lines_read, line
        except (OSError, EOFError, zlib.error) as exc:
            self.error = InputError(f"{self.path}: input broke after line {self.lines_read}: {exc}")
        finally:
            if self.path != "-":
                stream.close()
                raw.close()
