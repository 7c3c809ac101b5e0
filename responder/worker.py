"""Workers: consume the queue, run each signal through the pipeline, acknowledge.

Several asyncio tasks per process, each a consumer of its own in the queue's group. An
entry is acknowledged only after the pipeline handled it. An entry that raised stays
pending and is retried once the visibility timeout lets a worker claim it; after
``max_deliveries`` it goes to the dead-letter stream. While the store is unreachable the
workers back off and try again; nothing is acknowledged, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket

import structlog
from pydantic import ValidationError

from responder.domain.errors import StoreUnavailableError
from responder.domain.signal import SIGNAL_ADAPTER
from responder.metrics import Metrics
from responder.pipeline import Handled, Pipeline, QueuedSignal
from responder.ports import ActionLedger, Clock, QueueEntry, WorkQueue
from responder.yielding import Slices

log = structlog.get_logger("responder.worker")

_READ_BATCH = 200
_WAIT_STEPS = 4  # see Worker._fill
_MAX_BACKOFF_S = 5.0


def consumer_prefix() -> str:
    """Unique per process start: a restarted pod's old entries are claimed, not re-read."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Worker:
    def __init__(
        self,
        *,
        queue: WorkQueue,
        pipeline: Pipeline,
        metrics: Metrics,
        clock: Clock,
        tasks: int,
        visibility_timeout_s: float,
        max_deliveries: int,
        batch_wait_s: float = 0.0,
        block_ms: int = 1000,
        name: str | None = None,
        timers: ActionLedger | None = None,
        timer_poll_s: float = 0.5,
    ) -> None:
        self._queue = queue
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock
        self._tasks = tasks
        self._visibility_ms = int(visibility_timeout_s * 1000)
        self._max_deliveries = max_deliveries
        self._block_ms = block_ms
        self._batch_wait_s = batch_wait_s
        self._name = name or consumer_prefix()
        # check for stale entries often enough to reclaim soon after the timeout passes
        self._claim_every_s = min(max(visibility_timeout_s / 2, 0.05), 5.0)
        self._stopping = asyncio.Event()
        self._reading: set[asyncio.Task[None]] = set()
        self._read_turn = asyncio.Lock()
        self._timers = timers
        self._timer_poll_s = timer_poll_s

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        """Run all consumer tasks until ``stop()`` (or cancellation)."""
        self._stopping = asyncio.Event()
        self._read_turn = asyncio.Lock()
        async with asyncio.TaskGroup() as group:
            for i in range(self._tasks):
                group.create_task(self._consume(f"{self._name}-{i}"), name=f"worker-{i}")
            if self._timers is not None:
                group.create_task(self._release_timers(self._timers), name="timers")

    async def _release_timers(self, timers: ActionLedger) -> None:
        """Put due timers (verifications) on the queue; every replica does, each timer
        goes once (the move is atomic)."""
        while not self._stopping.is_set():
            try:
                await timers.release_due_timers(now=self._clock.now(), limit=100)
            except StoreUnavailableError as exc:
                log.warning("store unreachable; timers wait", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._timer_poll_s)

    def stop(self) -> None:
        """Ask the consumers to return, finishing the entries in hand.

        Consumers waiting in a blocking read are cancelled (nothing is in hand there);
        those handling an entry finish it first. redis-py can swallow a cancellation that
        lands during a blocking read (redis/redis-py#2028, #2551); the consumer loop checks
        for that, so a stop is seen at the latest when the read's block time is over.
        """
        self._stopping.set()
        for task in self._reading:
            task.cancel()

    async def _consume(self, consumer: str) -> None:
        next_claim = 0.0
        backoff_s = 0.1
        task = asyncio.current_task()
        while not self._stopping.is_set():
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a cancellation a library swallowed
            try:
                entries: list[QueueEntry] = []
                if self._clock.monotonic() >= next_claim:
                    next_claim = self._clock.monotonic() + self._claim_every_s
                    entries = await self._queue.claim_stale(
                        consumer=consumer, min_idle_ms=self._visibility_ms, count=_READ_BATCH
                    )
                if not entries:
                    entries = await self._read(consumer)
                await self.handle(*entries)
                backoff_s = 0.1
            except StoreUnavailableError as exc:
                log.warning(
                    "store unreachable; worker backing off", error=str(exc), backoff_s=backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
                with contextlib.suppress(StoreUnavailableError):
                    await self._queue.ensure()

    async def _read(self, consumer: str) -> list[QueueEntry]:
        """Wait for entries; once some came, wait for more while they keep coming."""
        task = asyncio.current_task()
        assert task is not None
        self._reading.add(task)  # stop() cancels a wait for entries: nothing is in hand
        try:
            # One consumer task of this process reads at a time, the others handle what
            # they read: the entries that arrive during one task's wait all join its batch
            # instead of being split between tasks, each paying a batch's round trips.
            async with self._read_turn:
                entries = await self._queue.read(
                    consumer=consumer, count=_READ_BATCH, block_ms=self._block_ms
                )
                # entries in hand: a stop now lets them be handled rather than cancelled
                self._reading.discard(task)
                if entries:
                    entries += await self._fill(consumer, len(entries))
            return entries
        finally:
            self._reading.discard(task)

    async def _fill(self, consumer: str, have: int) -> list[QueueEntry]:
        """More entries for a batch that has ``have``, while a flow of signals lasts.

        A batch costs the store about as many round trips as a single entry, so under a
        flow (an alert storm) waiting for more multiplies what the worker can handle and
        leaves more of the process to the intake. The wait goes in steps of a quarter of
        ``batch_wait_s``: a step that brings nothing ends it, so a lone signal waits one
        step and a storm fills batches for up to the whole ``batch_wait_s``.
        """
        more: list[QueueEntry] = []
        step_s = self._batch_wait_s / _WAIT_STEPS
        for _ in range(_WAIT_STEPS if step_s > 0 else 0):
            room = _READ_BATCH - have - len(more)
            if room <= 0 or self._stopping.is_set():
                break
            await asyncio.sleep(step_s)
            got = await self._queue.read(consumer=consumer, count=room, block_ms=0)
            if not got:
                break
            more += got
        return more

    async def handle(self, *entries: QueueEntry) -> None:
        """Handle a batch of entries, then acknowledge together those that were handled.

        Entries that cannot be read, or were delivered too often, are dead-lettered; one
        whose handling failed or must wait stays pending and is claimed again after the
        visibility timeout. One acknowledgement per batch: an entry handled but not yet
        acknowledged when the process dies is handled again, which changes nothing.
        """
        if entries:
            self._metrics.batch_entries.observe(len(entries))
        readable: list[tuple[QueueEntry, QueuedSignal]] = []
        slices = Slices()
        for entry in entries:
            await slices.tick()
            if entry.deliveries > self._max_deliveries:
                await self._dead_letter(
                    entry, kind="max_deliveries", reason=f"delivered {entry.deliveries} times"
                )
                continue
            try:
                readable.append((entry, SIGNAL_ADAPTER.validate_json(entry.payload)))
            except ValidationError as exc:
                await self._dead_letter(
                    entry, kind="unreadable", reason=f"unreadable entry: {exc.error_count()} errors"
                )
        if not readable:
            return
        try:
            outcomes = await self._pipeline.handle(*(signal for _, signal in readable))
        except StoreUnavailableError:
            raise  # not the entries' fault: retry them once the store is back
        except Exception as exc:
            log.exception("signal handling failed", entries=len(readable))
            outcomes = [Handled(error=exc) for _ in readable]
        done: list[str] = []
        for (entry, signal), outcome in zip(readable, outcomes, strict=True):
            if await self._settle(entry, signal, outcome):
                done.append(entry.entry_id)
        if done:
            await self._queue.ack(*done)

    async def _settle(self, entry: QueueEntry, signal: QueuedSignal, outcome: Handled) -> bool:
        """Count one entry's outcome; True when it may be acknowledged."""
        if outcome.retry_reason is not None:
            self._metrics.retries.labels(signal.source).inc()
            log.info(
                "signal retried later",
                reason=outcome.retry_reason,
                entry_id=entry.entry_id,
                deliveries=entry.deliveries,
            )
            if entry.deliveries >= self._max_deliveries:
                await self._dead_letter(entry, kind="max_deliveries", reason=outcome.retry_reason)
            return False  # left pending: claimed again after the visibility timeout
        if outcome.error is not None:
            exc = outcome.error
            self._metrics.handling_failures.labels(signal.source).inc()
            if entry.deliveries >= self._max_deliveries:
                await self._dead_letter(entry, kind="failed", reason=f"{type(exc).__name__}: {exc}")
            return False
        elapsed_s = (self._clock.now() - signal.received_at).total_seconds()
        self._metrics.processing_histogram(signal.source).observe(max(elapsed_s, 0.0))
        return True

    async def _dead_letter(self, entry: QueueEntry, *, kind: str, reason: str) -> None:
        await self._queue.dead_letter(entry, reason=reason)
        self._metrics.dead_lettered.labels(kind).inc()
        log.error("entry dead-lettered", entry_id=entry.entry_id, reason=reason)
