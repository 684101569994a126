"""The ``dignity`` command line (click + rich): hashing, banks, matching, directory scans, demo.

Output meant for programs goes to stdout as JSON lines; people-facing tables and progress go to
stderr, so ``dignity ... | jq`` always works. Every :class:`~dignity.errors.DignityError` becomes
one clear line on stderr and a documented exit status (see ``EXIT_CODES``), mapped here and
nowhere else.
"""

from __future__ import annotations

import errno
import os
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
    """Console-script entry point. Click's standalone mode answers Ctrl-C with "Aborted!" and
    exit status 1, the status of a partial failure; the documented status for an interrupt is
    130, so this does what standalone mode does but for that."""
    try:
        code = cli.main(prog_name="dignity", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("dignity: interrupted", err=True)
            sys.exit(130)
        click.echo("Aborted!", err=True)  # end of input at a prompt, as click says it
        sys.exit(1)
    except KeyboardInterrupt:  # outside click's own handling (while it starts or ends)
        click.echo("dignity: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # The reader went away (`dignity ... | head`): leave quietly, as click does; output
        # still buffered goes to /dev/null rather than failing again at exit (Python's docs'
        # recipe for SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["EXIT_CODES", "cli", "main"]
