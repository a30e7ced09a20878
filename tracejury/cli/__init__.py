"""The ``tracejury`` command line. Commands parse input, call the core, the store and the
workers, and print. Errors a user can cause print one line on stderr (what and where) and
exit non-zero; they never print a traceback."""

from tracejury.cli import api, gates, judgecheck, prune, review, scoring, setup, spend, traces  # noqa: F401 - registers the commands
from tracejury.cli.app import app, main

__all__ = ["app", "main"]
