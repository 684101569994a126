"""The heavy-work cap: waiting on the loop, handing over in order, timeouts and cancels."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dignity.services.slots import Slots


def test_capacity_and_release_from_a_thread() -> None:
    async def main() -> None:
        slots = Slots(2)
        assert await slots.acquire(0.1) and await slots.acquire(0.1)
        assert not await slots.acquire(0.05)  # full: times out, nothing leaks
        assert slots.waiting == 0
        threading.Thread(target=slots.release).start()
        assert await slots.acquire(2.0)  # handed over from another thread
        slots.release()
        slots.release()
        assert slots.free == 2
        with pytest.raises(ValueError):
            slots.release()

    asyncio.run(main())


def test_waiters_are_served_in_order_and_hold_no_thread() -> None:
    async def main() -> None:
        slots = Slots(1)
        assert slots.try_acquire()
        order: list[int] = []

        async def wait(n: int) -> None:
            assert await slots.acquire(5.0)
            order.append(n)
            slots.release()

        # 300 waiters on one slot: more than any thread pool, all on the loop.
        tasks = [asyncio.create_task(wait(n)) for n in range(300)]
        await asyncio.sleep(0.05)
        assert slots.waiting == 300 and threading.active_count() < 10
        slots.release()
        await asyncio.gather(*tasks)
        assert order == list(range(300))
        assert slots.free == 1

    asyncio.run(main())


def test_cancel_and_timeout_racing_a_hand_over_lose_no_slot() -> None:
    async def main() -> None:
        slots = Slots(1)
        assert slots.try_acquire()
        waiter = asyncio.create_task(slots.acquire(5.0))
        await asyncio.sleep(0.01)
        slots.release()  # hands over to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0.01)
        assert slots.free == 1  # the handed-over slot came back
        # Queue bound: beyond max_waiting, refused at once.
        small = Slots(1, max_waiting=1)
        assert small.try_acquire()
        first = asyncio.create_task(small.acquire(5.0))
        await asyncio.sleep(0.01)
        assert not await small.acquire(5.0)
        small.release()
        assert await first

    asyncio.run(main())
