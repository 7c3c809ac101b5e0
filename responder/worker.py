"""Workers: consume the queue, run each signal through the pipeline, acknowledge.

Several asyncio tasks per process, each a consumer of its own in the queue's group. An
entry is acknowledged only after the pipeline handled it. An entry that cannot be handled
yet stays in this process's hands (``_Held``) and is tried again soon: one whose group has
an earlier signal not applied yet (within milliseconds, once that one is), one whose
handling failed (with backoff; after ``max_deliveries`` failures it goes to the
dead-letter stream with its error), and every entry of a batch that met an unreachable
store (that is no fault of theirs: it does not count). While the process lives, its
entries' leases are renewed, so no other worker claims them; when it dies, another
claims them after the visibility timeout. A consumer loop that meets an unexpected error
logs it, counts it and goes on after a backoff: it never stops silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from responder.domain.errors import StoreUnavailableError
from responder.domain.signal import SIGNAL_ADAPTER, QueuedSignal
from responder.metrics import Metrics
from responder.pipeline import Handled, Order, Pipeline
from responder.ports import Clock, DurableTimers, QueueEntry, WorkQueue
from responder.yielding import Slices

log = structlog.get_logger("responder.worker")

_READ_BATCH = 200
_WAIT_STEPS = 4  # see Worker._fill
_MAX_BACKOFF_S = 5.0
# A signal waiting for an earlier one of its group is tried again after this, doubling up
# to the cap; an entry applied by this process brings its group's waiting ones forward.
_WAIT_FIRST_S = 0.02
_WAIT_CAP_S = 1.0
# A signal whose incident another replica is following up is tried again after this,
# doubling up to a quarter of the visibility timeout (not counted as a failure).
_BUSY_FIRST_S = 0.05
_PRUNE_EVERY_S = 60.0


def consumer_prefix() -> str:
    """Unique per process start: a restarted pod's old entries are claimed, not re-read."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class _Held:
    """An entry in this process's hands between two tries."""

    entry: QueueEntry
    consumer: str  # the consumer that holds it in the group (its lease is renewed)
    due: float  # monotonic time of the next try
    failures: int = 0  # tries that failed or were told to retry later
    waits: int = 0  # tries that found an earlier signal of its group not applied
    waiting_since: float | None = None
    store_outages: int = 0
    busy: int = 0  # tries that found the incident's follow-up leased by another replica
    incident_id: str | None = None  # the incident its failed follow-up was for


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
        timers: DurableTimers | None = None,
        timer_poll_s: float = 0.5,
        order_wait_s: float | None = None,
        housekeeping: Callable[[], Awaitable[None]] | None = None,
        housekeeping_every_s: float = 5.0,
    ) -> None:
        self._queue = queue
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock
        self._tasks = tasks
        self._visibility_s = visibility_timeout_s
        self._visibility_ms = int(visibility_timeout_s * 1000)
        self._max_deliveries = max_deliveries
        self._block_ms = block_ms
        self._batch_wait_s = batch_wait_s
        self._name = name or consumer_prefix()
        # check for stale entries often enough to reclaim soon after the timeout passes
        self._claim_every_s = min(max(visibility_timeout_s / 2, 0.05), 5.0)
        # An earlier signal of a group is applied, dead-lettered or claimed from a dead
        # worker and applied within a few visibility timeouts; past this the waiting one
        # goes ahead of the gap rather than wait for good.
        self._order_wait_s = (
            order_wait_s
            if order_wait_s is not None
            else visibility_timeout_s * (max_deliveries + 2)
        )
        self._stopping = asyncio.Event()
        self._reading: set[asyncio.Task[None]] = set()
        self._read_turn = asyncio.Lock()
        self._timers = timers
        self._timer_poll_s = timer_poll_s
        # a look at the store between signals (a Redis that began anew: LostRecords)
        self._housekeeping = housekeeping
        self._housekeeping_every_s = housekeeping_every_s
        self._held: dict[str, _Held] = {}
        self._in_hand: dict[str, str] = {}  # entry id -> consumer, while being handled
        self._alive: set[str] = set()
        # held entries taken for another try, by id, while it runs (their history)
        self._retrying: dict[str, _Held] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def consumers_alive(self) -> int:
        """Consumer loops running now (``/readyz`` fails when none is, but some should)."""
        return len(self._alive)

    async def run(self) -> None:
        """Run all consumer tasks until ``stop()`` (or cancellation)."""
        self._stopping = asyncio.Event()
        self._read_turn = asyncio.Lock()
        async with asyncio.TaskGroup() as group:
            for i in range(self._tasks):
                group.create_task(self._consume(f"{self._name}-{i}"), name=f"worker-{i}")
            if self._tasks:
                group.create_task(self._keep_leases(), name="leases")
                group.create_task(self._prune_consumers(), name="prune")
            if self._timers is not None:
                group.create_task(self._release_timers(self._timers), name="timers")
            if self._housekeeping is not None:
                group.create_task(
                    self._supervised(
                        "housekeeping", self._housekeeping, self._housekeeping_every_s
                    ),
                    name="housekeeping",
                )
        # stopped: our consumers that hold nothing leave the group
        with contextlib.suppress(Exception):
            await self._queue.prune_consumers(
                idle_ms=0, only=[f"{self._name}-{i}" for i in range(self._tasks)]
            )

    async def _supervised(
        self, what: str, turn: Callable[[], Awaitable[None]], pause_s: float
    ) -> None:
        """Run ``turn`` until stopped, every ``pause_s``; an error is logged, not fatal."""
        while not self._stopping.is_set():
            try:
                await turn()
            except StoreUnavailableError as exc:
                log.warning(f"store unreachable; {what} waits", error=str(exc))
            except Exception:
                log.exception(f"{what} failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause_s)

    async def _release_timers(self, timers: DurableTimers) -> None:
        """Put due timers (verifications) on the queue; every replica does, each timer
        goes once (the move is atomic)."""

        async def turn() -> None:
            await timers.release_due_timers(now=self._clock.now(), limit=100)

        await self._supervised("timers", turn, self._timer_poll_s)

    async def _keep_leases(self) -> None:
        """Renew the lease of every entry this process holds, well within the visibility
        timeout: a long follow-up or a wait for an earlier signal is not taken for a dead
        worker."""

        await self._supervised("lease renewal", self._renew_leases, self._visibility_s / 3)

    async def _renew_leases(self) -> None:
        by_consumer: dict[str, list[str]] = {}
        for entry_id, consumer in self._in_hand.items():
            by_consumer.setdefault(consumer, []).append(entry_id)
        for held in self._held.values():
            by_consumer.setdefault(held.consumer, []).append(held.entry.entry_id)
        for consumer, ids in by_consumer.items():
            await self._queue.extend(consumer=consumer, entry_ids=ids)
        await self._pipeline.renew_follow_ups(
            [h.incident_id for h in self._held.values() if h.incident_id]
        )

    async def _prune_consumers(self) -> None:
        """Consumers of processes gone leave the group once they hold nothing."""
        idle_ms = max(self._visibility_ms * 4, 60_000)

        async def turn() -> None:
            await self._queue.prune_consumers(idle_ms=idle_ms)

        await self._supervised("consumer pruning", turn, _PRUNE_EVERY_S)

    def stop(self) -> None:
        """Ask the consumers to return, finishing the entries in hand.

        Consumers waiting in a blocking read are cancelled (nothing is in hand there);
        those handling an entry finish it first. redis-py can swallow a cancellation that
        lands during a blocking read (redis/redis-py#2028, #2551); the consumer loop checks
        for that, so a stop is seen at the latest when the read's block time is over.
        Entries held between tries stay pending: another worker claims them after the
        visibility timeout.
        """
        self._stopping.set()
        for task in self._reading:
            task.cancel()

    async def _consume(self, consumer: str) -> None:
        self._alive.add(consumer)
        self._metrics.consumers_alive.set(len(self._alive))
        try:
            await self._consume_until_stopped(consumer)
        finally:
            self._alive.discard(consumer)
            self._metrics.consumers_alive.set(len(self._alive))

    async def _consume_until_stopped(self, consumer: str) -> None:
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
                    # what this process holds is not stale, even after the event loop
                    # stalled past the lease renewal's turn: renewed first
                    await self._renew_leases()
                    entries = await self._queue.claim_stale(
                        consumer=consumer, min_idle_ms=self._visibility_ms, count=_READ_BATCH
                    )
                if not entries:
                    entries = await self._read(consumer)  # at once when held ones are due
                # taken with no await before the handling: a failed read or claim cannot
                # leave them out of both the held ones and the handling
                entries = self._take_due() + entries
                await self._handle(entries, consumer)
                backoff_s = 0.1
            except StoreUnavailableError as exc:
                log.warning(
                    "store unreachable; worker backing off", error=str(exc), backoff_s=backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
                with contextlib.suppress(StoreUnavailableError):
                    await self._queue.ensure()
            except Exception:
                # a bug or an unexpected answer (a READONLY replica mid-failover): this
                # turn is lost, not the consumer; its entries are held or still pending
                self._metrics.consumer_crashes.inc()
                log.exception("consumer turn failed; going on", consumer=consumer)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)

    def _take_due(self) -> list[QueueEntry]:
        """The held entries whose next try has come, in queue order."""
        now = self._clock.monotonic()
        due = [h for h in self._held.values() if h.due <= now]
        for held in due:
            del self._held[held.entry.entry_id]
            self._in_hand[held.entry.entry_id] = held.consumer
        self._retrying.update({h.entry.entry_id: h for h in due})
        return [h.entry for h in due]

    def _next_due_ms(self) -> int | None:
        if not self._held:
            return None
        wait_s = min(h.due for h in self._held.values()) - self._clock.monotonic()
        return max(int(wait_s * 1000), 0)

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
                block_ms = self._block_ms
                due_ms = self._next_due_ms()
                if due_ms is not None:
                    if due_ms == 0:
                        return []  # held entries are due: try them first
                    block_ms = min(block_ms, due_ms)
                entries = await self._queue.read(
                    consumer=consumer, count=_READ_BATCH, block_ms=block_ms
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
            await self._clock.sleep(step_s)
            got = await self._queue.read(consumer=consumer, count=room, block_ms=0)
            if not got:
                break
            more += got
        return more

    async def handle(self, *entries: QueueEntry) -> None:
        """Handle a batch of entries (as a consumer of this process would), then
        acknowledge together those that were handled; the others are held for another
        try (see the module's docstring)."""
        for entry in entries:
            self._in_hand.setdefault(entry.entry_id, f"{self._name}-0")
        await self._handle(list(entries), f"{self._name}-0")

    async def _handle(self, entries: list[QueueEntry], consumer: str) -> None:
        for entry in entries:
            self._in_hand.setdefault(entry.entry_id, consumer)
            held = self._held.pop(entry.entry_id, None)  # tried again now: its history
            if held is not None:
                self._retrying[entry.entry_id] = held
        try:
            await self._handle_batch(entries, consumer)
        except BaseException as exc:
            # Cut short (an ack or a dead-letter that failed, a cancellation): what is
            # not held yet is held, so this process tries it again rather than leave it
            # to a claim after the visibility timeout. A settled one tried again is
            # found applied and changes nothing.
            outage = isinstance(exc, StoreUnavailableError | asyncio.CancelledError)
            for entry in entries:
                if entry.entry_id not in self._held:
                    self._hold(entry, consumer, store_outage=outage, failed=not outage)
            raise
        finally:
            for entry in entries:
                self._in_hand.pop(entry.entry_id, None)
                self._retrying.pop(entry.entry_id, None)

    async def _handle_batch(self, entries: list[QueueEntry], consumer: str) -> None:
        """Entries that cannot be read, or were delivered too often (their workers died
        with them), are dead-lettered; the rest go to the pipeline together."""
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
        if readable:
            await self._run(readable, consumer)

    async def _run(self, readable: list[tuple[QueueEntry, QueuedSignal]], consumer: str) -> None:
        try:
            outcomes = await self._pipeline.handle(
                *(signal for _, signal in readable),
                orders=[await self._order(entry) for entry, _ in readable],
            )
        except StoreUnavailableError:
            # not the entries' fault: they are held (not counted) and tried once the
            # store is back; the consumer backs off
            for entry, _ in readable:
                self._hold(entry, consumer, store_outage=True)
            raise
        except Exception as exc:
            if len(readable) > 1:
                # one poisonous entry must not sink its batch: each alone, in queue order
                log.warning("batch failed; handling its entries one by one", entries=len(readable))
                for one in readable:
                    await self._run([one], consumer)
                return
            log.exception("signal handling failed", entry_id=readable[0][0].entry_id)
            outcomes = [Handled(error=exc)]
        done: list[str] = []
        moved: set[str] = set()
        for (entry, signal), outcome in zip(readable, outcomes, strict=True):
            if await self._settle(entry, signal, outcome, consumer):
                done.append(entry.entry_id)
                if entry.order_key is not None:
                    moved.add(entry.order_key)
        if done:
            await self._queue.ack(*done)
            self._bring_waiting_forward(moved)

    async def _order(self, entry: QueueEntry) -> Order | None:
        if entry.order_key is None or entry.seq is None:
            return None
        held = self._retrying.get(entry.entry_id)
        overdue = (
            held is not None
            and held.waiting_since is not None
            and self._clock.monotonic() - held.waiting_since >= self._order_wait_s
        )
        if overdue and held is not None:
            if await self._queue.holds_earlier(entry.order_key, entry.seq):
                # late, not lost (a backlog, a slow worker): going ahead would apply the
                # group's signals out of order for good; it waits another round
                held.waiting_since = self._clock.monotonic()
                log.info(
                    "signal still waits: an earlier one of its group is queued",
                    order_key=entry.order_key,
                    seq=entry.seq,
                )
                return Order(key=entry.order_key, seq=entry.seq)
            # the earlier one is in no queue and was not applied: lost (a store that
            # lost writes); the operator should know the group may apply out of order
            log.warning(
                "signal goes ahead of an earlier one it waited for",
                order_key=entry.order_key,
                seq=entry.seq,
                waited_s=self._order_wait_s,
            )
        return Order(key=entry.order_key, seq=entry.seq, skip_gap=overdue)

    def _bring_waiting_forward(self, order_keys: set[str]) -> None:
        """Held entries of these groups that wait for an earlier signal may go now (it was
        applied or dead-lettered). Only theirs: with a backlog of thousands of waiting
        entries, waking all of them at every acknowledgement made the workers spend their
        time on tries that wait again, and the earlier signals came too late."""
        if not order_keys:
            return
        now = self._clock.monotonic()
        for held in self._held.values():
            if held.waiting_since is not None and held.entry.order_key in order_keys:
                held.due = min(held.due, now)

    def _hold(
        self,
        entry: QueueEntry,
        consumer: str,
        *,
        store_outage: bool = False,
        failed: bool = False,
        waiting: bool = False,
        busy: bool = False,
    ) -> _Held:
        """Keep an entry for another try, with its history."""
        held = self._retrying.get(entry.entry_id) or _Held(entry=entry, consumer=consumer, due=0.0)
        now = self._clock.monotonic()
        if waiting:
            held.waits += 1
            if held.waiting_since is None:
                held.waiting_since = now
            delay_s = min(_WAIT_FIRST_S * 2 ** min(held.waits - 1, 10), _WAIT_CAP_S)
        elif busy:
            # not a failure: the lease's holder is alive (it renews it), or it lapses
            held.busy += 1
            delay_s = min(_BUSY_FIRST_S * 2 ** min(held.busy - 1, 10), self._visibility_s / 4)
        elif failed:
            held.failures += 1
            held.waiting_since = None
            delay_s = min(self._visibility_s / 4 * 2 ** (held.failures - 1), self._visibility_s)
        else:
            held.store_outages += 1
            # the wait for an earlier signal counts from after the outage: that signal
            # could not be applied meanwhile either (a failover must not make a group's
            # signals go ahead of ones merely delayed by it)
            held.waiting_since = None
            delay_s = min(0.1 * 2 ** min(held.store_outages - 1, 10), _MAX_BACKOFF_S)
        held.due = now + delay_s
        self._held[entry.entry_id] = held
        return held

    async def _settle(
        self, entry: QueueEntry, signal: QueuedSignal, outcome: Handled, consumer: str
    ) -> bool:
        """Count one entry's outcome; True when it may be acknowledged."""
        if outcome.waiting:
            self._metrics.order_waits.inc()
            self._hold(entry, consumer, waiting=True)
            return False
        if outcome.busy and outcome.retry_reason is None and outcome.error is None:
            held = self._hold(entry, consumer, busy=True)
            held.incident_id = outcome.incident_id  # its follow-up check waits for it
            return False
        if outcome.retry_reason is not None or outcome.error is not None:
            held = self._hold(entry, consumer, failed=True)
            held.incident_id = outcome.incident_id
            # earlier deliveries were to workers that died with it
            tries = held.failures + entry.deliveries - 1
            if outcome.retry_reason is not None:
                self._metrics.retries.labels(signal.source).inc()
                log.info(
                    "signal retried later",
                    reason=outcome.retry_reason,
                    entry_id=entry.entry_id,
                    tries=tries,
                )
                reason, kind = outcome.retry_reason, "max_deliveries"
            else:
                exc = outcome.error
                self._metrics.handling_failures.labels(signal.source).inc()
                reason, kind = f"{type(exc).__name__}: {exc}", "failed"
            if tries >= self._max_deliveries:
                del self._held[entry.entry_id]
                tried = entry.model_copy(update={"deliveries": tries})
                await self._dead_letter(tried, kind=kind, reason=reason)
                if outcome.incident_id is not None:
                    await self._pipeline.give_up_follow_up(outcome.incident_id)
            return False
        elapsed_s = (self._clock.now() - signal.received_at).total_seconds()
        self._metrics.processing_histogram(signal.source).observe(max(elapsed_s, 0.0))
        return True

    async def _dead_letter(self, entry: QueueEntry, *, kind: str, reason: str) -> None:
        await self._queue.dead_letter(entry, reason=reason)
        self._metrics.dead_lettered.labels(kind).inc()
        log.error("entry dead-lettered", entry_id=entry.entry_id, reason=reason)
        if entry.order_key is not None:  # those behind it in its group may go now
            self._bring_waiting_forward({entry.order_key})
