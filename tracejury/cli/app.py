"""The Typer app, its sub-apps and the helpers every command shares."""

from __future__ import annotations

import sys

import click
import orjson
import typer
import typer.core
from rich.console import Console

from tracejury.core.errors import TracejuryError
from tracejury.core.segments import SegmentationConfig
from tracejury.settings import Settings

__all__ = ["app", "err", "main", "out"]

ORDER = ("simulate", "ingest", "quarantine", "signals", "rubrics", "score", "batch", "worker", "gate", "report",
         "diff", "cost", "review", "serve", "token", "db", "prune", "init", "mock-judge",
         "judge-check")
"""Commands in the order of the work, as ``tracejury --help`` lists them (others after, by name)."""


class _InOrderOfWork(typer.core.TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: (rank.get(name, len(ORDER)), name))


app = typer.Typer(
    name="tracejury",
    cls=_InOrderOfWork,
    help="Grade production LLM traces and turn the results into deploy gates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
quarantine_app = typer.Typer(help="Lines that ingest set aside, and why.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
rubrics_app = typer.Typer(help="Rubrics: list, show and lint.", no_args_is_help=True)
batch_app = typer.Typer(help="Queued scoring batches.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(rubrics_app, name="rubrics")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)


def _error_line(message: str) -> None:
    """Print one unwrapped line on stderr (errors must stay one line, whatever the width)."""
    sys.stderr.write(f"error: {message}\n")


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "TRACEJURY_" + str(first["loc"][0]).upper() if first["loc"] else "TRACEJURY_*"
        raise TracejuryError(f"{name}: {first['msg']} (got {first.get('input')!r})") from exc


def _engine(settings: Settings):  # noqa: ANN202 - sqlalchemy Engine, imported lazily
    from tracejury.store.engine import open_engine

    return open_engine(settings.database_url)


def _segmentation(settings: Settings) -> SegmentationConfig:
    from workers.service import segmentation

    return segmentation(settings)


def _dims(by: str, settings: Settings) -> list[str]:
    """``--by`` as a list of known segment dimensions."""
    from workers.service import dims

    return dims(by, settings)


def _print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _catalog(settings: Settings):  # noqa: ANN202 - judges.catalog.Catalog, imported lazily
    from workers.service import catalog

    return catalog(settings)


def main() -> None:
    """Entry point: run the app, turning tracejury errors into one line on stderr."""
    from sqlalchemy.exc import OperationalError

    try:
        app()
    except TracejuryError as exc:
        _error_line(str(exc))
        sys.exit(2)
    except OperationalError as exc:  # the store is unreachable or locked: say so, in one line
        _error_line(f"database error: {str(exc.orig).splitlines()[0] if exc.orig else exc}")
        sys.exit(1)
