"""Giving the event loop back during long stretches of work.

The worker shares its process with the webhook intake. A batch of signals folded,
classified or parsed in one go holds the loop for tens of milliseconds, and every webhook
arriving meanwhile waits that long for its answer. Loops over a batch call
``Slices.tick()`` per item: past a few milliseconds of work it yields once, so intake is
never held up by more than a slice.
"""

from __future__ import annotations

import asyncio
import time

SLICE_S = 0.002


class Slices:
    def __init__(self, slice_s: float = SLICE_S) -> None:
        self._slice_s = slice_s
        self._since = time.perf_counter()
        self.yields = 0  # how often it gave the loop back (for tests)

    async def tick(self) -> None:
        if time.perf_counter() - self._since >= self._slice_s:
            await asyncio.sleep(0)
            self.yields += 1
            self._since = time.perf_counter()
