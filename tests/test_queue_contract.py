"""The work-queue contract on both queues (memory and Redis Stream), and the worker's use of it.

Entries stay pending until acknowledged; a pending entry is claimed by another consumer
only after the visibility timeout, with its delivery count raised; dead-lettering moves it
aside atomically.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from responder.app import Overrides
from responder.domain.incident import IncidentChange
from responder.domain.signal import AlertSignal, AlertStatus, Observation
from tests.support.service import example, running_service
from tests.support.waiting import eventually


def signal(fp: str) -> AlertSignal:
    now = datetime.now(UTC)
    return AlertSignal(
        fingerprint=fp,
        status=AlertStatus.FIRING,
        labels={"alertname": "X", "service": fp},
        starts_at=now,
        received_at=now,
    )


def observed(signals: list[AlertSignal]) -> list[Observation]:
    """The signals as intake hands them to the store."""
    return [Observation.of(s) for s in signals]


async def test_read_hands_each_entry_to_one_consumer(backend) -> None:
    store, queue = backend
    await store.observe(observed([signal(f"{i:016x}") for i in range(5)]))
    a = await queue.read(consumer="a", count=3, block_ms=0)
    b = await queue.read(consumer="b", count=10, block_ms=0)
    assert (len(a), len(b)) == (3, 2)
    assert not {e.entry_id for e in a} & {e.entry_id for e in b}
    assert all(e.deliveries == 1 for e in a + b)
    stats = await queue.stats()
    assert (stats.depth, stats.pending) == (0, 5)


async def test_ack_removes_from_pending(backend) -> None:
    store, queue = backend
    await store.observe(observed([signal("0000000000000001")]))
    [entry] = await queue.read(consumer="a", count=1, block_ms=0)
    await queue.ack(entry.entry_id)
    assert (await queue.stats()).pending == 0
    assert await queue.claim_stale(consumer="b", min_idle_ms=0, count=10) == []


async def test_blocking_read_wakes_up_for_a_new_entry(backend) -> None:
    store, queue = backend
    reader = asyncio.create_task(queue.read(consumer="a", count=1, block_ms=3000))
    await asyncio.sleep(0.1)
    await store.observe(observed([signal("0000000000000002")]))
    entries = await asyncio.wait_for(reader, 5)
    assert len(entries) == 1


async def test_blocking_read_returns_empty_after_the_block_time(backend) -> None:
    _, queue = backend
    assert await queue.read(consumer="a", count=1, block_ms=50) == []


async def test_pending_entry_is_claimed_only_after_the_visibility_timeout(backend) -> None:
    store, queue = backend
    await store.observe(observed([signal("0000000000000003")]))
    [entry] = await queue.read(consumer="dead", count=1, block_ms=0)
    assert await queue.claim_stale(consumer="alive", min_idle_ms=500, count=10) == []
    await asyncio.sleep(0.6)
    [claimed] = await queue.claim_stale(consumer="alive", min_idle_ms=500, count=10)
    assert claimed.entry_id == entry.entry_id
    assert claimed.payload == entry.payload
    assert claimed.deliveries == 2
    # claimed again later: the count keeps rising
    await asyncio.sleep(0.6)
    [again] = await queue.claim_stale(consumer="other", min_idle_ms=500, count=10)
    assert again.deliveries == 3


async def test_dead_letter_moves_the_entry_aside(backend) -> None:
    store, queue = backend
    await store.observe(observed([signal("0000000000000004")]))
    [entry] = await queue.read(consumer="a", count=1, block_ms=0)
    await queue.dead_letter(entry, reason="boom")
    stats = await queue.stats()
    assert (stats.pending, stats.dead_letters) == (0, 1)
    [dead] = await queue.dead_letters()
    assert (dead.entry_id, dead.reason, dead.payload) == (entry.entry_id, "boom", entry.payload)


class FailingNotifier:
    """A notifier adapter whose sink is down: every call raises."""

    def __init__(self) -> None:
        self.calls = 0

    async def incident_changed(self, change: IncidentChange) -> None:
        self.calls += 1
        raise RuntimeError("sink down")


async def test_entry_that_keeps_failing_is_dead_lettered_after_max_deliveries(
    backend_settings,
) -> None:
    notifier = FailingNotifier()
    # failed tries come a quarter of the visibility timeout apart, doubling
    settings = backend_settings(workers=1, visibility_timeout_s=1.0, max_deliveries=3)
    async with running_service(settings, Overrides(notifier=notifier)) as svc:
        await svc.post_alertmanager(example("alertmanager/posthog-rate-limited-429-firing.json"))
        queue = svc.runtime.queue
        assert queue is not None

        async def dead() -> int:
            return (await queue.stats()).dead_letters

        await eventually(dead, timeout_s=10, what="dead-lettered")

        async def settled() -> bool:
            return (await queue.stats()).pending == 0

        # nothing stays pending. On a loaded machine the store's check for incidents left
        # unfollowed-up may have queued a follow-up timer of the incident before the
        # dead-letter dropped the check: that one fails in turn and is dead-lettered too
        await eventually(settled, timeout_s=20, what="nothing pending")
        letters = await queue.dead_letters()
        [letter] = [x for x in letters if '"alertmanager"' in x.payload]
        assert "RuntimeError: sink down" in letter.reason
        assert letter.deliveries == 3
        others = [x for x in letters if x is not letter]
        assert all('"kind":"follow_up"' in x.payload for x in others), others
        text = await (await svc.client.get("/metrics")).text()
        dead_total = f'responder_dead_lettered_total{{reason="failed"}} {float(len(letters))}'
        assert dead_total in text
        assert "responder_queue_dead_letters 1.0" in text
        assert 'responder_signal_failures_total{source="alertmanager"} 3.0' in text


async def test_unreadable_entry_is_dead_lettered_at_once(backend_settings) -> None:
    settings = backend_settings(workers=1)
    async with running_service(settings) as svc:
        worker = svc.runtime.worker
        assert worker is not None
        from responder.ports import QueueEntry

        queue = svc.runtime.queue
        assert queue is not None
        await worker.handle(QueueEntry(entry_id="0-1", payload='{"source": "carrier-pigeon"}'))
        [letter] = await queue.dead_letters()
        assert letter.reason.startswith("unreadable entry")
