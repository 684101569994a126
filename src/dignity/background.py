"""One owner of a process's background work: named loops and one-shot tasks, started and stopped
with the services, each with its last success and last error on record for /metrics and /readyz.

Work is declared as data (:class:`Periodic`: a name, an interval and one tick; :class:`Worker`: a
name and a body that waits on its own, such as outbox delivery woken by new events), so the same
ticks can later run on a task engine instead of a thread here. One-shot tasks (an index snapshot
write, a segment merge) go through :meth:`Supervisor.spawn`, which the core receives as a plain
callable and never imports. A tick that raises is logged and recorded; the loop goes on, because
a database blip must not end background work for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("dignity.background")


@dataclass
class TaskState:
    """What a task has done so far; wall-clock times (``time.time()``), None until it happens."""

    name: str
    kind: str  # "periodic", "worker" or "oneshot"
    running: bool = False
    runs: int = 0
    failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            # Answers show times as aware ISO 8601, as every other reply does.
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
        }


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


class Beat:
    """What a :class:`Worker` body reports: each unit of work that went well or failed."""

    def __init__(self, state: TaskState, lock: threading.Lock) -> None:
        self._state = state
        self._lock = lock

    def ok(self) -> None:
        with self._lock:
            self._state.runs += 1
            self._state.last_success = time.time()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._state.runs += 1
            self._state.failures += 1
            self._state.last_error = describe(exc)
            self._state.last_error_at = time.time()


def describe(exc: BaseException) -> str:
    """What /readyz may say about a failure: its type and stable code, never its message.
    /readyz answers without a key, and a message can carry SQL, addresses or hashes; the full
    traceback is in the log."""
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}: {code}" if isinstance(code, str) else type(exc).__name__


# How the core starts one-shot background work without knowing who runs it: a name and a
# function in, the started thread out. A Supervisor's spawn records it; spawn_thread only logs.
Spawn = Callable[[str, Callable[[], object]], threading.Thread]


def spawn_thread(name: str, fn: Callable[[], object]) -> threading.Thread:
    """A daemon thread running ``fn`` once, its failure logged (the default where no
    supervisor is given: libraries used on their own, tests, benchmarks)."""

    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("background task %s failed", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _run_recorded(
    name: str, fn: Callable[[], object], beat: Beat, *, count_ok: bool = True
) -> None:
    """Run ``fn`` once: a failure is logged and recorded, never raised (the loop goes on, and
    /readyz shows it); a success is recorded unless the body reports its own."""
    try:
        fn()
    except Exception as exc:
        log.exception("background task %s failed", name)
        beat.failed(exc)
    else:
        if count_ok:
            beat.ok()


@dataclass(frozen=True)
class Periodic:
    """``tick()`` every ``interval_s`` seconds, the first after ``first_after_s`` (default: one
    interval)."""

    name: str
    interval_s: float
    tick: Callable[[], object]
    first_after_s: float | None = None
    # Shared work (the takedown clock, the purge): with several processes on one database, the
    # tick runs in a period only where the supervisor's ``claim`` grants it (once per period in
    # all); per-process work (an index refresh) leaves this False.
    shared: bool = False


@dataclass(frozen=True)
class Worker:
    """``body(stop, beat)`` runs until ``stop`` is set, waiting on its own terms; ``on_stop`` is
    called first at shutdown, to wake it (e.g. set its wake-up event)."""

    name: str
    body: Callable[[threading.Event, Beat], None]
    on_stop: Callable[[], None] | None = None
    on_start: Callable[[], None] | None = None


@dataclass
class _Running:
    state: TaskState
    thread: threading.Thread | None = None
    spec: Periodic | Worker | None = None


@dataclass
class Supervisor:
    """Starts declared tasks as daemon threads, reports them, stops them within a timeout."""

    _tasks: dict[str, _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    # Grants a shared task its tick for the current period (a database claim, installed by the
    # composition root); None: every tick runs.
    claim: Callable[[Periodic], bool] | None = None

    # -- declaring -------------------------------------------------------------------------
    def add(self, spec: Periodic | Worker) -> None:
        """Declare a loop; one declared after :meth:`start` starts at once."""
        with self._lock:
            if spec.name in self._tasks:
                raise ValueError(f"a background task named {spec.name!r} exists already")
            kind = "periodic" if isinstance(spec, Periodic) else "worker"
            running = _Running(TaskState(spec.name, kind), spec=spec)
            self._tasks[spec.name] = running
            started = self.started
        if started:
            self._launch(running)

    def spawn(self, name: str, fn: Callable[[], object]) -> threading.Thread:
        """Run ``fn()`` once on a daemon thread, recorded under ``name`` (the latest run of that
        name is what is reported). Works before :meth:`start` too: the core spawns snapshot
        writes while the services load."""
        with self._lock:
            running = self._tasks.get(name)
            if running is None:
                running = _Running(TaskState(name, "oneshot"))
                self._tasks[name] = running
            running.state.running = True
        beat = Beat(running.state, self._lock)

        def run() -> None:
            with self._marked_running(running):
                _run_recorded(name, fn, beat)

        thread = threading.Thread(target=run, name=name, daemon=True)
        running.thread = thread
        thread.start()
        return thread

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self.started:
                return
            self.started = True
            self._stop.clear()
            todo = [r for r in self._tasks.values() if r.spec is not None]
        for running in todo:
            self._launch(running)

    def _launch(self, running: _Running) -> None:
        spec = running.spec
        assert spec is not None
        if isinstance(spec, Worker) and spec.on_start is not None:
            spec.on_start()
        target = self._periodic if isinstance(spec, Periodic) else self._worker
        thread = threading.Thread(target=target, args=(running,), name=spec.name, daemon=True)
        running.thread = thread
        with self._lock:
            running.state.running = True
        thread.start()

    def _periodic(self, running: _Running) -> None:
        spec = running.spec
        assert isinstance(spec, Periodic)
        beat = Beat(running.state, self._lock)
        wait = spec.interval_s if spec.first_after_s is None else spec.first_after_s
        with self._marked_running(running):
            while not self._stop.wait(wait):
                wait = spec.interval_s
                if spec.shared and not self._claimed(spec, beat):
                    continue
                _run_recorded(spec.name, spec.tick, beat)

    def _claimed(self, spec: Periodic, beat: Beat) -> bool:
        """Whether this process runs this period's tick; a claim that fails (the database is
        away) is recorded like a failed tick and the tick is skipped: running it unclaimed
        could run it twice."""
        if self.claim is None:
            return True
        try:
            return self.claim(spec)
        except Exception as exc:
            log.exception("claiming a period of %s failed", spec.name)
            beat.failed(exc)
            return False

    def _worker(self, running: _Running) -> None:
        spec = running.spec
        assert isinstance(spec, Worker)
        beat = Beat(running.state, self._lock)
        with self._marked_running(running):
            _run_recorded(spec.name, lambda: spec.body(self._stop, beat), beat, count_ok=False)

    @contextmanager
    def _marked_running(self, running: _Running) -> Iterator[None]:
        try:
            yield
        finally:
            with self._lock:
                running.state.running = False

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask every task to stop and wait up to ``timeout_s`` in all; True when all ended.
        A task still busy after that (a slow webhook, a large merge) is left to finish on its
        daemon thread: what it does is idempotent or leased, so nothing is lost."""
        with self._lock:
            self.started = False
            tasks = list(self._tasks.values())
        self._stop.set()
        for running in tasks:
            spec = running.spec
            if isinstance(spec, Worker) and spec.on_stop is not None:
                try:
                    spec.on_stop()
                except Exception:
                    log.exception("stopping %s failed", spec.name)
        deadline = time.monotonic() + timeout_s
        done = True
        for running in tasks:
            thread = running.thread
            if thread is None or thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            done = done and not thread.is_alive()
        return done

    # -- reporting -------------------------------------------------------------------------
    def status(self) -> dict[str, TaskState]:
        """A copy of every task's state, by name."""
        with self._lock:
            return {name: TaskState(**vars(r.state)) for name, r in sorted(self._tasks.items())}

    def stalled(self) -> list[str]:
        """Loops that should be running and are not, or whose last tick failed with no success
        since: what makes /readyz say something is wrong."""
        out = []
        for name, state in self.status().items():
            dead = state.kind != "oneshot" and self.started and not state.running
            failing = state.last_error_at is not None and (
                state.last_success is None or state.last_success < state.last_error_at
            )
            if dead or (failing and state.kind != "oneshot"):
                out.append(name)
        return out
