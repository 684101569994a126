"""Root command group, shared helpers, and the exit-code mapping for every subcommand.

Exit statuses: 0 success; 1 some inputs failed (each failure is reported in the output and the
rest was processed); 2 usage error; 3 the request was refused (bad hash, unknown bank, ...);
4 the database could not be opened; 130 interrupted.
"""

from __future__ import annotations

import getpass
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console

from dignity import __version__, audit
from dignity.errors import EXIT_REFUSED as EXIT_REFUSED
from dignity.errors import EXIT_STORAGE as EXIT_STORAGE
from dignity.errors import DignityError
from dignity.matching.banks import BankService
from dignity.matching.engine import MatchEngine
from dignity.services import CLI, Services
from dignity.settings import Settings, load_settings
from dignity.storage.db import Database
from dignity.storage.types import utc

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "some inputs failed; each failure is in the output",
    EXIT_USAGE: "usage error",
    EXIT_REFUSED: "request refused (bad input, unknown bank, ...)",
    EXIT_STORAGE: "database unavailable",
    130: "interrupted",
}

P = ParamSpec("P")
R = TypeVar("R")


class Context:
    """One CLI invocation: its settings and the composition root's services, each part built
    on first use (``dignity key list`` opens the database and nothing else)."""

    def __init__(self) -> None:
        self.settings: Settings = load_settings()
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services(self.settings, profile=CLI)
        return self._services

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def banks(self) -> BankService:
        return self.services.banks

    def engine(self) -> MatchEngine:
        """The match engine, loaded from the database (a command's one consistent read)."""
        engine = self.services.engine
        if not engine.loaded:
            engine.load()
        return engine


def fail(exc: DignityError) -> None:
    click.echo(f"dignity: error: {exc.code}: {exc.message}", err=True)
    sys.exit(exc.exit_code)


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a DignityError escaping a command into one line on stderr and its exit status."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DignityError as exc:
            fail(exc)
            raise AssertionError("unreachable") from exc

    return wrapper


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (the handlers before it are put
    back after), for long-running commands that stop their threads cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def wait_for(stop: threading.Event) -> None:
    """Block the main thread until ``stop`` is set, waking each second (a plain wait() would
    not let Python run the signal handler that sets it)."""
    while not stop.wait(1.0):
        pass


def console(*, stderr: bool = False) -> Console:
    """A rich console for people; when piped or captured (not a terminal), long lines are not
    wrapped at rich's assumed 80 columns, so a printed command can be copied or grepped whole."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out.soft_wrap = True
    return out


def _json_default(value: Any) -> Any:
    """A time as ISO 8601 with its zone (UTC; a naive one is UTC), as the API writes times;
    anything else as its text. ``str(datetime)`` would drop the ``T`` and, for a naive time,
    the zone."""
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return str(value)


def emit(obj: Any) -> None:
    """One JSON object per line on stdout, flushed so pipelines see results as they come."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=_json_default) + "\n")
    sys.stdout.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dignity")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """dignity: hash images, keep banks of known NCII hashes, and match uploads against them.

    Settings come from DIGNITY_* environment variables (DIGNITY_DATABASE_URL,
    DIGNITY_DATA_DIR, ...). Exit statuses: 0 ok, 1 some inputs failed, 2 usage,
    3 refused, 4 database unavailable.
    """
    try:
        ctx.obj = Context()
    except DignityError as exc:  # a bad DIGNITY_* setting: one line, exit 3, before any work
        fail(exc)
    # Audit records this command writes name who ran it; undone when the command ends, so an
    # in-process caller (tests' CliRunner) keeps its own actor.
    ctx.with_resource(audit.acting_as(_actor()))


def _actor() -> str:
    """Who runs this command, for the audit log: ``cli:<user>``, or ``cli`` where the system
    cannot say (no login name and no passwd entry, as in some containers)."""
    try:
        user = getpass.getuser()
    except Exception:
        return "cli"
    return f"cli:{user}" if user else "cli"


pass_ctx = click.make_pass_decorator(Context)
