"""The supervisor that owns a process's background work: loops tick, failures are recorded and
do not end a loop, stop ends everything within its timeout, one-shot tasks are reported."""

from __future__ import annotations

import threading
import time

import pytest

from dignity.background import Beat, Periodic, Supervisor, Worker


def _until(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def test_periodic_ticks_records_failures_and_keeps_going() -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database blip")

    sup = Supervisor()
    sup.add(Periodic("refresh", 0.01, tick))
    sup.start()
    _until(lambda: len(calls) >= 4)
    state = sup.status()["refresh"]
    assert state.running and state.kind == "periodic"
    assert state.failures == 1 and state.last_error == "RuntimeError"  # no message: see describe
    assert state.last_success is not None and state.last_error_at is not None
    assert state.last_success > state.last_error_at  # it recovered
    assert sup.stalled() == []
    assert sup.stop(timeout_s=2.0)
    assert not sup.status()["refresh"].running


def test_a_loop_whose_last_tick_failed_is_stalled() -> None:
    failing = threading.Event()
    failing.set()

    def tick() -> None:
        if failing.is_set():
            raise OSError("down")

    sup = Supervisor()
    sup.add(Periodic("clock", 0.01, tick))
    sup.start()
    _until(lambda: sup.status()["clock"].failures >= 1)
    assert sup.stalled() == ["clock"]
    failing.clear()
    _until(lambda: sup.status()["clock"].last_success is not None)
    _until(lambda: sup.stalled() == [])
    sup.stop()


def test_first_tick_after_first_after_s() -> None:
    ticked = threading.Event()
    sup = Supervisor()
    sup.add(Periodic("purge", 3600.0, ticked.set, first_after_s=0.01))
    sup.start()
    assert ticked.wait(2.0)
    sup.stop()


def test_worker_is_woken_and_stopped() -> None:
    wake = threading.Event()
    loops: list[int] = []

    def body(stop: threading.Event, beat: Beat) -> None:
        while not stop.is_set():
            loops.append(1)
            beat.ok()
            wake.wait(60)  # only on_stop's wake-up ends this wait in time
            wake.clear()

    sup = Supervisor()
    sup.add(Worker("delivery", body, on_stop=wake.set))
    sup.start()
    _until(lambda: len(loops) >= 1)
    started = time.monotonic()
    assert sup.stop(timeout_s=5.0)
    assert time.monotonic() - started < 2.0
    assert sup.status()["delivery"].runs >= 1


def test_stop_reports_a_task_that_outlives_the_timeout() -> None:
    release = threading.Event()

    def tick() -> None:
        release.wait(10)

    sup = Supervisor()
    sup.add(Periodic("slow", 0.001, tick))
    sup.start()
    time.sleep(0.05)
    assert sup.stop(timeout_s=0.05) is False  # left to finish; nothing waits forever
    release.set()


def test_spawn_records_one_shot_tasks() -> None:
    sup = Supervisor()
    sup.spawn("snapshot", lambda: None).join(2)
    assert sup.status()["snapshot"].runs == 1

    def boom() -> None:
        raise ValueError("disk full")

    sup.spawn("snapshot", boom).join(2)
    state = sup.status()["snapshot"]
    assert state.kind == "oneshot" and state.failures == 1 and state.last_error == "ValueError"
    assert not state.running
    assert sup.stalled() == []  # a failed one-shot is reported, not a stalled loop


def test_a_failure_is_described_by_type_and_code_never_message() -> None:
    from dignity.background import describe
    from dignity.errors import StorageError

    secret = "postgresql://app:hunter2@db/prod"
    assert describe(RuntimeError(secret)) == "RuntimeError"
    error = StorageError(f"cannot open {secret}", code="storage.unavailable")
    assert describe(error) == "StorageError: storage.unavailable"


def test_names_are_unique() -> None:
    sup = Supervisor()
    sup.add(Periodic("a", 1.0, lambda: None))
    with pytest.raises(ValueError, match="exists already"):
        sup.add(Periodic("a", 1.0, lambda: None))
