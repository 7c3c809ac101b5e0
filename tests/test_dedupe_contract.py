"""The dedupe contract of ``Store.observe``, held on both stores (memory and Redis).

A first firing or a status change is queued; a repeat of the same status only updates
last-seen and the repeat counter; stale copies never undo a newer state; and however many
identical copies arrive at once, exactly one is queued.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from responder.domain.signal import (
    AlertSignal,
    AlertStatus,
    Observation,
    ObserveOutcome,
    PagerDutySignal,
    dedupe_outcome,
)
from responder.ports import WorkQueue
from tests.support.service import example, running_service

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
NEW, CHANGED, REPEAT = ObserveOutcome.NEW, ObserveOutcome.CHANGED, ObserveOutcome.REPEAT


def alert(
    fp: str = "a1b2c3d4e5f60718", status: str = "firing", starts: datetime = T0
) -> AlertSignal:
    return AlertSignal(
        fingerprint=fp,
        status=AlertStatus(status),
        labels={"alertname": "PostHogRateLimited", "service": "posthog-integration"},
        starts_at=starts,
        received_at=datetime.now(UTC),
    )


def observed(signals: list[AlertSignal] | list[PagerDutySignal]) -> list[Observation]:
    """The signals as intake hands them to the store."""
    return [Observation.of(s) for s in signals]


async def depth(queue: WorkQueue) -> int:
    return (await queue.stats()).depth


async def test_first_firing_is_new_and_queued(backend) -> None:
    store, queue = backend
    assert await store.observe(observed([alert()])) == [NEW]
    assert await depth(queue) == 1
    entries = await queue.read(consumer="c", count=10, block_ms=0)
    assert [AlertSignal.model_validate_json(e.payload).fingerprint for e in entries] == [
        "a1b2c3d4e5f60718"
    ]


async def test_repeat_only_counts(backend) -> None:
    store, queue = backend
    await store.observe(observed([alert()]))
    first = await store.signal_record("alertmanager:a1b2c3d4e5f60718")
    await asyncio.sleep(0.01)
    assert await store.observe(observed([alert()])) == [REPEAT]
    assert await store.observe(observed([alert()])) == [REPEAT]
    assert await depth(queue) == 1
    record = await store.signal_record("alertmanager:a1b2c3d4e5f60718")
    assert record is not None
    assert first is not None
    assert record.repeats == 2
    assert record.last_seen_ms > first.last_seen_ms
    assert record.first_seen_ms == first.first_seen_ms


async def test_status_changes_are_queued_both_ways(backend) -> None:
    store, queue = backend
    assert await store.observe(observed([alert()])) == [NEW]
    assert await store.observe(observed([alert(status="resolved")])) == [CHANGED]
    assert await store.observe(observed([alert(status="resolved")])) == [REPEAT]
    refire = T0 + timedelta(minutes=30)
    assert await store.observe(observed([alert(status="firing", starts=refire)])) == [CHANGED]
    assert await depth(queue) == 3
    record = await store.signal_record("alertmanager:a1b2c3d4e5f60718")
    assert record is not None
    assert (record.status, record.repeats) == ("firing", 0)


async def test_a_new_firing_without_a_resolve_in_between_is_a_change(backend) -> None:
    # send_resolved=false, or a resolve that was lost: a later startsAt is a new occurrence
    store, _ = backend
    await store.observe(observed([alert()]))
    assert await store.observe(observed([alert(starts=T0 + timedelta(hours=1))])) == [CHANGED]


async def test_late_copy_of_a_resolved_firing_does_not_reopen(backend) -> None:
    store, queue = backend
    await store.observe(observed([alert()]))
    await store.observe(observed([alert(status="resolved")]))
    # a retry of the old firing notification (same startsAt) arrives after the resolve
    assert await store.observe(observed([alert(status="firing")])) == [REPEAT]
    # and a resolve of an occurrence older than the current one is stale too
    await store.observe(observed([alert(starts=T0 + timedelta(hours=1))]))
    assert await store.observe(observed([alert(status="resolved", starts=T0)])) == [REPEAT]
    assert await depth(queue) == 3


async def test_resolved_for_an_unknown_alert_is_queued_once(backend) -> None:
    # the store may have forgotten the firing (TTL, restart): the worker decides
    store, queue = backend
    assert await store.observe(observed([alert(status="resolved")])) == [NEW]
    assert await store.observe(observed([alert(status="resolved")])) == [REPEAT]
    assert await depth(queue) == 1


async def test_one_webhook_with_a_duplicate_alert_queues_it_once(backend) -> None:
    store, queue = backend
    outcomes = await store.observe(observed([alert(), alert(), alert(fp="ffffffffffffffff")]))
    assert outcomes == [NEW, REPEAT, NEW]
    assert await depth(queue) == 2


async def test_sources_do_not_collide(backend) -> None:
    store, _ = backend
    pd = PagerDutySignal(
        event_id="a1b2c3d4e5f60718", event_type="incident.triggered", occurred_at=T0, received_at=T0
    )
    assert await store.observe(observed([alert()])) == [NEW]
    assert await store.observe(observed([pd])) == [NEW]
    assert await store.observe(observed([pd])) == [REPEAT]


async def test_fifty_concurrent_identical_sends_queue_one_signal(backend_settings) -> None:
    async with running_service(backend_settings(workers=0)) as svc:
        payload = example("alertmanager/posthog-api-unreachable-firing.json")
        responses = await asyncio.gather(*(svc.post_alertmanager(payload) for _ in range(50)))
        bodies = [await r.json() for r in responses]
        assert all(r.status == 200 for r in responses)
        assert sum(b["accepted"] for b in bodies) == 1
        assert sum(b["repeated"] for b in bodies) == 49
        assert (await svc.runtime.queue.stats()).depth == 1  # type: ignore[union-attr]


async def test_ha_pair_posting_to_two_replicas_queues_one_signal(
    make_settings, redis_url, redis_prefix
) -> None:
    # two service replicas on one Redis, each receiving the same group from one
    # Alertmanager of an HA pair at the same moment
    settings = make_settings(workers=0, redis_url=redis_url, redis_prefix=redis_prefix)
    payload = example("alertmanager/posthog-api-unreachable-firing.json")
    async with running_service(settings) as a, running_service(settings) as b:
        responses = await asyncio.gather(
            *(svc.post_alertmanager(payload) for _ in range(25) for svc in (a, b))
        )
        accepted = sum([(await r.json())["accepted"] for r in responses])
        assert accepted == 1
        assert (await a.runtime.queue.stats()).depth == 1  # type: ignore[union-attr]


DECISIONS = [
    (None, "firing", 5, NEW),
    (None, "resolved", 5, NEW),
    (("firing", 5), "firing", 5, REPEAT),
    (("firing", 5), "firing", 4, REPEAT),
    (("firing", 5), "firing", 6, CHANGED),
    (("firing", 5), "resolved", 5, CHANGED),
    (("firing", 5), "resolved", 4, REPEAT),
    (("resolved", 5), "resolved", 9, REPEAT),
    (("resolved", 5), "firing", 5, REPEAT),
    (("resolved", 5), "firing", 6, CHANGED),
]


@pytest.mark.parametrize(("previous", "status", "order", "expected"), DECISIONS)
def test_dedupe_decision_table(previous, status, order, expected) -> None:
    assert dedupe_outcome(previous=previous, status=status, order_ms=order) is expected


@pytest.mark.parametrize(("previous", "status", "order", "expected"), DECISIONS)
async def test_store_follows_the_decision_table(backend, previous, status, order, expected) -> None:
    """The Redis script and the memory store make the same decisions as the table."""
    store, _ = backend

    def at(minute: int) -> datetime:
        return T0 + timedelta(minutes=minute)

    if previous is not None:
        prev_status, prev_order = previous
        await store.observe(observed([alert(status="firing", starts=at(prev_order))]))
        if prev_status == "resolved":
            await store.observe(observed([alert(status="resolved", starts=at(prev_order))]))
    assert await store.observe(observed([alert(status=status, starts=at(order))])) == [expected]


def test_pagerduty_event_repeats_by_event_type() -> None:
    previous = ("incident.acknowledged", 5)
    assert dedupe_outcome(previous=previous, status="incident.acknowledged", order_ms=9) is REPEAT
