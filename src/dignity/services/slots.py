"""The cap on heavy work in one process, waited for without holding a thread.

A slot is taken before heavy work (a decode, a match, an import) starts and given back by the
worker thread when the work ends, also when the request that started it has timed out and gone:
the thread runs on, and its slot stays taken until then, so abandoned work still counts. A request
that finds every slot taken waits on the event loop, not in a worker thread: with the threads
themselves as the waiting room, 200 concurrent lookups held all of the pool's 40 threads, and
the work they waited for (and ``/healthz``) had no thread left to run on. A slot given back goes
straight to the longest waiter, so nobody is overtaken. ``threading.Semaphore`` waits only by
blocking a thread and ``asyncio.Semaphore`` cannot be released from a worker thread, hence this.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class Slots:
    """At most ``capacity`` holders at once; at most ``max_waiting`` requests wait for one."""

    def __init__(self, capacity: int, *, max_waiting: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._free = capacity
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            return False

    async def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds on the running loop; False when none
        came in time or too many are waiting already."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            if len(self._waiters) >= self.max_waiting:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            # shield: a timeout or cancel stops our wait, never the hand-over (see _give_up).
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            self._give_up(loop, waiter)
            return False
        except asyncio.CancelledError:
            self._give_up(loop, waiter)
            raise

    def _give_up(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            try:
                self._waiters.remove((loop, waiter))
                return  # still queued: no slot was ours
            except ValueError:
                pass
        # A release already chose us: the slot arrives (or has arrived) through the waiter;
        # pass it on as soon as it does.
        waiter.add_done_callback(lambda _: self.release())

    def release(self) -> None:
        """Give a slot back, from any thread; it goes to the longest waiter, if any."""
        with self._lock:
            if not self._waiters:
                if self._free >= self.capacity:
                    raise ValueError("released more slots than were taken")
                self._free += 1
                return
            loop, waiter = self._waiters.popleft()
        try:
            loop.call_soon_threadsafe(_hand_over, waiter)
        except RuntimeError:  # that loop has closed: nobody is waiting there any more
            self.release()


def _hand_over(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
