"""``tracejury --help`` lists the commands in the order of the work, not of registration."""

from __future__ import annotations

import click
import typer.main

from tracejury.cli import app
from tracejury.cli.app import ORDER


def test_commands_are_listed_in_the_order_of_the_work() -> None:
    group = typer.main.get_command(app)
    listed = group.list_commands(click.Context(group))
    assert sorted(listed) == sorted(group.commands)  # every command, once
    known = [name for name in listed if name in ORDER]
    assert known == [name for name in ORDER if name in group.commands]
    assert known[:3] == ["simulate", "ingest", "quarantine"] and listed[-2:] == ["mock-judge", "judge-check"]
