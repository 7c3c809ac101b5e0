"""Giving the event loop back during long stretches of work.

The worker shares its process with the webhook intake. A batch of signals folded,
classified or parsed in one go holds the loop for tens of milliseconds, and every webhook
arriving meanwhile waits that long for its answer. Loops over a batch call
``Slices.tick()`` per item: past half a millisecond of work it yields once, so intake is
never held up by more than a slice. Short slices spread a batch's work thinly between the
webhooks instead of in bursts: bench/intake.py's p99 went from 20-26 ms (2 ms slices) to
15-22 ms, at the same throughput (a yield costs a few µs).
"""

from __future__ import annotations

import asyncio
import time

SLICE_S = 0.0005  # seconds


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
