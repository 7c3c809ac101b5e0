"""In-process mutual exclusion by key (the worker's consumers on one incident)."""

from __future__ import annotations

import asyncio

import pytest

from responder.keyed_locks import KeyedLocks
from responder.yielding import Slices


async def test_holders_of_a_key_take_turns_and_other_keys_run_alongside() -> None:
    locks = KeyedLocks()
    log: list[str] = []

    async def step(name: str, keys: list[str]) -> None:
        async with locks.hold(keys):
            log.append(f"{name}+")
            await asyncio.sleep(0.01)
            log.append(f"{name}-")

    await asyncio.gather(step("a", ["g1"]), step("b", ["g1"]), step("c", ["g2"]))
    # a and b never overlap; c ran while a held g1
    assert log.index("a-") < log.index("b+")
    assert log.index("c+") < log.index("a-")
    assert len(locks) == 0  # nothing kept once nobody holds or waits


async def test_keys_taken_in_any_order_never_deadlock() -> None:
    locks = KeyedLocks()
    done: list[int] = []

    async def step(n: int, keys: list[str]) -> None:
        async with locks.hold(keys):
            await asyncio.sleep(0)
            done.append(n)

    orders = [["x", "y", "z"], ["z", "y", "x"], ["y", "x"], ["z", "x", "x"]] * 5
    await asyncio.wait_for(
        asyncio.gather(*(step(n, keys) for n, keys in enumerate(orders))), timeout=5
    )
    assert sorted(done) == list(range(len(orders)))
    assert len(locks) == 0


async def test_a_waiter_cancelled_leaves_no_key_behind() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold(["k"]):
            await release.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await first
    assert len(locks) == 0
    async with locks.hold(["k"]):  # still usable
        pass


async def test_slices_give_the_loop_back_only_after_a_slice_of_work() -> None:
    ran: list[int] = []

    async def other() -> None:
        ran.append(1)

    slices = Slices(slice_s=0.005)
    task = asyncio.create_task(other())
    await slices.tick()  # no time spent yet: no yield
    assert (slices.yields, ran) == (0, [])
    deadline = asyncio.get_running_loop().time() + 0.006
    while asyncio.get_running_loop().time() < deadline:
        pass  # busy, as a batch being folded is
    await slices.tick()
    assert slices.yields == 1
    assert ran == [1]  # the other task got its turn
    await task
