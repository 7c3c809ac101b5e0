"""A clock the test can move forward, for behaviour that depends on age or elapsed time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class ShiftableClock:
    """Real time plus an offset the test sets; monotonic time moves with it."""

    def __init__(self) -> None:
        self.offset_s = 0.0
        self.sleeps: list[float] = []  # every wait asked of it, in seconds

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds)
