"""Coalescing concurrent calls into one: many webhooks, one Redis round trip.

Under load, many webhooks wait on the store at once. Each Redis call costs the client far
more CPU than the script costs the server, so ``Coalescer`` sends the signals of every
webhook that arrived while the previous call was in flight as one batch, then answers
each caller with its own slice. At low load a call goes out at once (batch of one): it
adds no latency, and at most one round trip under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, run: Callable[[list[T]], Awaitable[list[R]]], *, max_batch: int = 512
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._waiting: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
                size = 0
                while self._waiting and (
                    not batch or size + len(self._waiting[0][0]) <= self._max_batch
                ):
                    entry = self._waiting.pop(0)
                    batch.append(entry)
                    size += len(entry[0])
                flat = [item for items, _ in batch for item in items]
                try:
                    results = await self._run(flat)
                except Exception as exc:  # noqa: BLE001 - each caller gets the failure as its own
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for items, future in batch:
                    if not future.done():
                        future.set_result(results[start : start + len(items)])
                    start += len(items)
        finally:
            self._flusher = None
