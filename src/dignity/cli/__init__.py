"""The ``dignity`` command line (click + rich): hashing, banks, matching, directory scans, demo.

Output meant for programs goes to stdout as JSON lines; people-facing tables and progress go to
stderr, so ``dignity ... | jq`` always works. Every :class:`~dignity.errors.DignityError` becomes
one clear line on stderr and a documented exit status (see ``EXIT_CODES``), mapped here and
nowhere else.
"""

from __future__ import annotations

import sys

import click

# Each subcommand module registers its commands on ``cli`` when imported.
from dignity.cli import (  # noqa: F401
    audit,
    backfill,
    bank,
    case,
    demo,
    events,
    exchange,
    hashing,
    job,
    policy,
    report,
    scan,
    service,
    source,
    statement,
    takedown,
    worker,
)
from dignity.cli.app import EXIT_CODES, cli


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="dignity", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("dignity: interrupted", err=True)
        sys.exit(130)


__all__ = ["EXIT_CODES", "cli", "main"]
