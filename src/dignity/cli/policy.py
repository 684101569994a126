"""``dignity policy check|default`` and ``dignity signals``: policies and plug-ins from the shell.

``policy check FILE`` validates a policy against the facts that the core and the installed
signal plug-ins provide, printing every problem as ``file:line: rule 'id': message`` and
exiting 3, so that a policy is checked before it is deployed rather than when it first fails.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import click

from dignity.cli.app import EXIT_REFUSED, Context, cli, emit, handles_errors, pass_ctx
from dignity.policy import PolicyError
from dignity.scanning import read_policy
from dignity.signals.runner import SignalSuite


@cli.group("policy")
def policy_group() -> None:
    """Check and print scan policies (rules as TOML)."""


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@handles_errors
def check(ctx: Context, file: Path) -> None:
    """Validate a policy FILE: TOML syntax, rule keys, actions, facts and conditions."""
    try:
        policy = read_policy(file, SignalSuite.from_settings(ctx.settings))
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"dignity: {file}: {len(exc.problems)} problem(s); not usable", err=True)
        sys.exit(EXIT_REFUSED)
    emit(
        {
            "path": str(file),
            "ok": True,
            "name": policy.name,
            "version": policy.version,
            "rules": [
                {"id": r.id, "action": r.action, "priority": r.priority, "line": r.line}
                for r in policy.rules
            ],
        }
    )


@policy_group.command("default")
def default() -> None:
    """Print the shipped policy, to copy and edit (then point DIGNITY_POLICY_FILE at it)."""
    text = resources.files("dignity.policy").joinpath("default.toml").read_text("utf-8")
    click.echo(text, nl=False)


@cli.command("signals")
@pass_ctx
@handles_errors
def signals(ctx: Context) -> None:
    """List the signal plug-ins a scan runs, with their versions (one JSON object each)."""
    for info in SignalSuite.from_settings(ctx.settings).describe():
        emit(info)
