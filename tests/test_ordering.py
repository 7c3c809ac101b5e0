"""Exactly once, in order, nothing lost: the signals of one group take effect in the order
intake queued them, whichever worker gets them and in whatever order; a follow-up that
failed is done on the next try; a poisonous entry sinks nothing but itself."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from responder.adapters.clock import SystemClock
from responder.adapters.redis_keys import CONSUMER_GROUP, RedisKeys
from responder.adapters.redis_queue import RedisQueue
from responder.app import Overrides, build_backend
from responder.domain.errors import StoreUnavailableError
from responder.domain.incident import IncidentChange
from responder.ports import QueueEntry
from tests.support.clock import ShiftableClock
from tests.support.faulty_store import FaultyStore
from tests.support.service import RecordingNotifier, Service, example, running_service
from tests.support.waiting import eventually

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"
ZERO = "0001-01-01T00:00:00Z"


def _alert(
    service: str, instance: str, status: str, starts_at: str, ends_at: str
) -> dict[str, Any]:
    alert = copy.deepcopy(example(UNREACHABLE)["alerts"][0])
    alert["labels"].update(service=service, instance=instance)
    alert.update(status=status, startsAt=starts_at, endsAt=ends_at, fingerprint="")
    return alert


def unreachable(**labels: str) -> dict[str, Any]:
    """The PostHog-unreachable example with these labels (a fingerprint of its own)."""
    payload = copy.deepcopy(example(UNREACHABLE))
    payload["alerts"][0]["labels"].update(labels)
    payload["alerts"][0]["fingerprint"] = ""
    return payload


def notifications(service: str) -> list[dict[str, Any]]:
    """One group, alerts A and B, as Alertmanager sends them: both firing; A resolved with
    B still firing; B resolved (A no longer listed)."""
    s_a, s_b = "2026-12-01T10:00:00Z", "2026-12-01T10:00:30Z"
    e_a, e_b = "2026-12-01T10:05:00Z", "2026-12-01T10:09:00Z"
    base = copy.deepcopy(example(UNREACHABLE))
    base["groupKey"] = f'{{}}:{{service="{service}"}}'

    def note(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
        return {**base, "status": status, "alerts": list(alerts)}

    return [
        note(
            "firing",
            _alert(service, "a", "firing", s_a, ZERO),
            _alert(service, "b", "firing", s_b, ZERO),
        ),
        note(
            "firing",
            _alert(service, "a", "resolved", s_a, e_a),
            _alert(service, "b", "firing", s_b, ZERO),
        ),
        note("resolved", _alert(service, "b", "resolved", s_b, e_b)),
    ]


def _kinds(incident: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in incident["timeline"]]


async def _all_incidents(svc: Service) -> list[dict[str, Any]]:
    resp = await svc.client.get("/v1/incidents?limit=1000")
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["incidents"])


async def test_any_order_of_handling_gives_the_incident_of_the_order_they_came_in(
    backend_settings,
) -> None:
    """Four signals of one group (A firing, B firing, A resolved, B resolved), handled one
    at a time in each of their 24 orders, as concurrent consumers and replicas may get
    them: every order ends in the incident of the order intake queued them in. Without
    ordering, "A resolved" before "B firing" resolved the incident while B fired and B
    opened a second one; "B resolved" before "B firing" left it open for good."""
    settings = backend_settings(workers=0)
    orders = list(itertools.permutations(range(4)))
    async with running_service(settings) as svc:
        for n in range(len(orders) + 1):
            for payload in notifications(f"svc-{n}"):
                resp = await svc.post_alertmanager(payload)
                assert resp.status == 200, await resp.text()
        queue, worker = svc.runtime.queue, svc.runtime.worker
        entries = await queue.read(consumer="test", count=1000, block_ms=0)
        by_group: dict[str, list[QueueEntry]] = defaultdict(list)
        for entry in entries:
            service = entry.payload.split('"service":"', 1)[1].split('"', 1)[0]
            by_group[service].append(entry)
        assert all(len(group) == 4 for group in by_group.values())
        # group 0 in the order queued; each other group in one of the 24 orders, tried
        # again (as a consumer loop does) until nothing waits
        for n, order in enumerate([(0, 1, 2, 3), *orders]):
            group = by_group[f"svc-{n}"]
            for _ in range(4):
                for i in order:
                    await worker.handle(group[i])
        stats = await queue.stats()
        assert (stats.pending, stats.dead_letters) == (0, 0)
        incidents = await _all_incidents(svc)
        by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for inc in incidents:
            by_service[inc["labels"]["service"]].append(inc)
        [expected] = by_service["svc-0"]
        assert expected["status"] == "resolved"
        assert Counter(_kinds(expected))["alert.joined"] == 1
        for n, order in enumerate(orders, start=1):
            found = by_service[f"svc-{n}"]
            assert len(found) == 1, f"order {order}: {len(found)} incidents"
            [inc] = found
            assert inc["status"] == "resolved", f"order {order}"
            assert _kinds(inc) == _kinds(expected), f"order {order}"
            assert (inc["alerts_total"], inc["alerts_firing"]) == (2, 0)


async def test_a_signal_waiting_for_an_earlier_one_goes_soon_after_it_not_a_timeout_later(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """Replica A holds a group's firing; replica B's consumers get its resolve first. B
    holds the resolve back and applies it as soon as the firing is in: the visibility
    timeout (10 minutes here) cannot be what lets it through."""
    base = dict(redis_url=redis_url, redis_prefix=redis_prefix, visibility_timeout_s=600.0)
    async with running_service(make_settings(workers=0, **base)) as a:
        firing = example(UNREACHABLE)
        resolve = copy.deepcopy(firing)
        resolve["status"] = resolve["alerts"][0]["status"] = "resolved"
        resolve["alerts"][0]["endsAt"] = "2026-11-29T03:41:26Z"
        await a.post_alertmanager(firing)
        await a.post_alertmanager(resolve)
        [held_by_a] = await a.runtime.queue.read(consumer="slow", count=1, block_ms=0)
        async with running_service(make_settings(workers=2, **base)) as b:
            waits = b.runtime.metrics.order_waits

            async def resolve_waiting() -> bool:
                return waits._value.get() >= 1

            await eventually(resolve_waiting, what="the resolve held back")
            assert await b.incidents() == []  # nothing applied out of turn
            await a.runtime.worker.handle(held_by_a)

            async def resolved() -> list[dict[str, Any]]:
                incidents = await b.incidents()
                return [i for i in incidents if i["status"] == "resolved"]

            [inc] = await eventually(resolved, timeout_s=60, what="incident resolved")
            assert _kinds(inc)[-2:] == ["alert.resolved", "incident.resolved"]
            await b.idle()


class FailingOnce(RecordingNotifier):
    """A notifier whose delivery fails once for an event kind (a sink's outage that the
    delivery layer did not absorb, a bug): the entry's follow-up must be tried again."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.failed = False

    async def incident_changed(self, change: IncidentChange) -> None:
        if not self.failed and any(e.kind == self.kind for e in change.events):
            self.failed = True
            raise RuntimeError(f"{self.kind}: sink down")
        await super().incident_changed(change)


async def test_follow_up_of_a_resolve_is_done_on_the_next_try_after_it_failed(
    backend_settings,
) -> None:
    """The resolve freed the group; its redelivered entry still finds its incident."""
    notifier = FailingOnce("incident.resolved")
    settings = backend_settings(workers=0)
    async with running_service(settings, Overrides(notifier=notifier)) as svc:
        firing = example(UNREACHABLE)
        resolve = copy.deepcopy(firing)
        resolve["status"] = resolve["alerts"][0]["status"] = "resolved"
        resolve["alerts"][0]["endsAt"] = "2026-11-29T03:41:26Z"
        queue, worker = svc.runtime.queue, svc.runtime.worker
        await svc.post_alertmanager(firing)
        await worker.handle(*await queue.read(consumer="w", count=10, block_ms=0))
        await svc.post_alertmanager(resolve)
        [entry] = await queue.read(consumer="w", count=10, block_ms=0)
        await worker.handle(entry)
        assert notifier.failed
        assert "incident.resolved" not in notifier.kinds()
        assert (await queue.stats()).pending == 1  # kept for another try
        await worker.handle(entry)  # the next try (a redelivery does the same)
        assert notifier.kinds().count("incident.resolved") == 1
        [inc] = await svc.incidents()
        assert inc["status"] == "resolved"
        assert notifier.kinds() == _kinds(inc)  # every event followed up, once
        assert (await queue.stats()).pending == 0


async def test_a_poisonous_entry_is_dead_lettered_alone_and_its_batch_goes_through(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """An entry written by a faulty producer (a timestamp without a time zone) makes its
    handling raise: the other entries of its batch are applied, it is tried again and
    then set aside with its error."""
    settings = make_settings(
        workers=0, redis_url=redis_url, redis_prefix=redis_prefix, max_deliveries=3
    )
    async with running_service(settings) as svc:
        for n in range(3):
            await svc.post_alertmanager(unreachable(service=f"good-{n}"))
        poison = {
            "source": "alertmanager",
            "fingerprint": "poison",
            "status": "resolved",
            "labels": {"alertname": "Poison", "service": "x"},
            "received_at": "2026-12-01T10:00:00",  # no time zone
        }
        client = aioredis.from_url(redis_url)
        try:
            await client.xadd(RedisKeys(redis_prefix).queue, {"signal": json.dumps(poison)})
        finally:
            await client.aclose()
        queue, worker = svc.runtime.queue, svc.runtime.worker
        batch = await queue.read(consumer="w", count=10, block_ms=0)
        assert len(batch) == 4
        await worker.handle(*batch)
        incidents = await svc.incidents()
        assert sorted(i["labels"]["service"] for i in incidents) == ["good-0", "good-1", "good-2"]
        [left] = [e for e in batch if "poison" in e.payload]
        assert (await queue.stats()).pending == 1
        await worker.handle(left)
        await worker.handle(left)
        stats = await queue.stats()
        assert (stats.pending, stats.dead_letters) == (0, 1)
        [dead] = await queue.dead_letters()
        assert dead.entry_id == left.entry_id
        assert dead.reason.startswith("TypeError")


async def test_a_consumer_that_meets_an_unexpected_error_goes_on(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """The queue's key holds a string for a while (a wrong answer of any kind: READONLY
    mid-failover, a bug): the consumers log and count it, stay alive (and ready), and
    take up the work once the queue is back."""
    settings = make_settings(workers=2, redis_url=redis_url, redis_prefix=redis_prefix)
    queue_key = RedisKeys(redis_prefix).queue
    client = aioredis.from_url(redis_url)
    try:
        async with running_service(settings) as svc:
            await client.delete(queue_key)
            await client.set(queue_key, "not a stream")
            crashes = svc.runtime.metrics.consumer_crashes

            async def crashed() -> bool:
                return crashes._value.get() >= 2

            await eventually(crashed, what="consumer errors counted")
            assert svc.runtime.worker.consumers_alive == 2
            ready = await svc.client.get("/readyz")
            assert ready.status == 503  # and it says why: the queue, not the consumers
            body = await ready.json()
            assert body["failed"] == ["queue"]
            assert body["checks"]["consumers"].startswith("2 of 2")
            await client.delete(queue_key)  # the workers recreate stream and group

            async def accepted() -> bool:
                resp = await svc.post_alertmanager(example(UNREACHABLE))
                return resp.status == 200

            await eventually(accepted, what="intake back")
            [inc] = await eventually(svc.incidents, what="the signal handled")
            assert inc["status"] == "open"
    finally:
        await client.aclose()


async def test_a_full_queue_refuses_with_503_and_drops_nothing(backend_settings) -> None:
    """Beyond RESPONDER_QUEUE_MAXLEN unhandled signals intake answers 503 (Alertmanager
    retries); every signal answered 200 is handled; handled ones leave the queue."""
    settings = backend_settings(workers=0, queue_maxlen=1000)
    async with running_service(settings) as svc:
        accepted = 0
        for n in range(20):
            payload = unreachable()
            payload["alerts"] = [
                unreachable(instance=f"pod-{n}-{i}")["alerts"][0] for i in range(50)
            ]
            resp = await svc.post_alertmanager(payload)
            assert resp.status == 200, await resp.text()
            accepted += (await resp.json())["accepted"]
        assert accepted == 1000
        extra = unreachable(instance="one-too-many")
        refused = await svc.post_alertmanager(extra)
        assert refused.status == 503
        assert refused.headers["Retry-After"]
        assert (await refused.json())["error"] == "queue full"
        assert svc.runtime.metrics.queue_full._value.get() == 1
        queue, worker = svc.runtime.queue, svc.runtime.worker
        while batch := await queue.read(consumer="w", count=200, block_ms=0):
            await worker.handle(*batch)
        [inc] = await svc.incidents()
        assert inc["alerts_total"] == 1000
        stats = await queue.stats()
        assert (stats.depth, stats.pending, stats.dead_letters) == (0, 0, 0)
        again = await svc.post_alertmanager(extra)  # the sender's retry
        assert again.status == 200


async def test_handled_entries_leave_the_stream(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(workers=2, redis_url=redis_url, redis_prefix=redis_prefix)
    client = aioredis.from_url(redis_url)
    try:
        async with running_service(settings) as svc:
            for n in range(5):
                await svc.post_alertmanager(unreachable(instance=f"pod-{n}"))
            await svc.idle()
            assert await client.xlen(RedisKeys(redis_prefix).queue) == 0
    finally:
        await client.aclose()


async def test_consumers_of_stopped_processes_do_not_pile_up_in_the_group(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(workers=3, redis_url=redis_url, redis_prefix=redis_prefix)
    client = aioredis.from_url(redis_url)
    try:
        for _ in range(3):
            async with running_service(settings) as svc:
                await svc.post_alertmanager(example(UNREACHABLE))
                await svc.idle()
            consumers = await client.xinfo_consumers(RedisKeys(redis_prefix).queue, CONSUMER_GROUP)
            assert len(consumers) == 0, consumers
    finally:
        await client.aclose()


async def test_a_long_follow_up_is_not_taken_for_a_dead_worker(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """A follow-up that runs past the visibility timeout keeps its entry: the worker
    renews its lease, so another replica does not claim it and do it all again."""
    release = asyncio.Event()
    started = asyncio.Event()

    class Slow(RecordingNotifier):
        async def incident_changed(self, change: IncidentChange) -> None:
            started.set()
            await release.wait()
            await super().incident_changed(change)

    slow = Slow()
    base = dict(redis_url=redis_url, redis_prefix=redis_prefix, visibility_timeout_s=0.5)
    async with running_service(make_settings(workers=1, **base), Overrides(notifier=slow)) as a:
        await a.post_alertmanager(example(UNREACHABLE))
        await asyncio.wait_for(started.wait(), 30)
        async with running_service(make_settings(workers=1, **base)) as b:
            # eight visibility timeouts: b's claim loop runs every quarter second
            await asyncio.sleep(4.0)
            release.set()
            await a.idle()
            assert b.notifier.changes == []  # b never took the entry
        assert "incident.opened" in slow.kinds()


async def test_timeline_times_never_go_back(backend_settings) -> None:
    """A worker's "now" is its batch's start and replicas' clocks differ: an event is
    never dated before the one it follows."""
    clock = ShiftableClock()
    async with running_service(backend_settings(), Overrides(clock=clock)) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        clock.advance(-120)
        await svc.post_alertmanager(unreachable(instance="another"))
        await svc.idle()
        [inc] = await svc.incidents()
        times = [e["at"] for e in inc["timeline"]]
        assert _kinds(inc)[-1] == "alert.joined"
        assert times == sorted(times)


async def test_readyz_says_which_check_failed(backend_settings) -> None:
    clock = ShiftableClock()
    settings = backend_settings(workers=0, ready_max_queue_age_s=60)
    async with running_service(settings, Overrides(clock=clock)) as svc:
        ready = await svc.client.get("/readyz")
        assert ready.status == 200
        await svc.post_alertmanager(example(UNREACHABLE))
        clock.advance(120)  # nobody handles it: intake only
        resp = await svc.client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["failed"] == ["queue"]
        assert "more than 60 s" in body["checks"]["queue"]


def _open_without_follow_up(svc: Service, group: str = "{lost}") -> Any:
    """What a worker that died right after writing leaves: an incident whose events no
    follow-up has seen, and no queue entry that leads to it any more (its signal was
    acknowledged elsewhere, or moved on to its next firing)."""
    from responder.domain.incident import IncidentLookup, new_incident_id, open_incident
    from responder.domain.signal import AlertSignal
    from responder.ports import MutationItem

    now = svc.runtime.clock.now()
    alert = example(UNREACHABLE)["alerts"][0]
    signal = AlertSignal(
        fingerprint="died-before-follow-up",
        status="firing",
        labels=alert["labels"],
        received_at=now,
    )
    item = MutationItem(
        lookups=(IncidentLookup(kind="group", key=group),),
        mutators=(
            lambda state: open_incident(
                incident_id=new_incident_id(now), group_key=group, signal=signal, now=now
            ),
        ),
    )
    return svc.runtime.store.mutate_incidents([item])


async def test_events_whose_worker_died_before_following_them_up_are_followed_up(
    backend_settings,
) -> None:
    """The store checks, a grace after a write (two visibility timeouts), that its events
    were followed up; those that were not get a follow-up of their own, once."""
    clock = ShiftableClock()
    settings = backend_settings(workers=1, visibility_timeout_s=5.0)
    async with running_service(settings, Overrides(clock=clock)) as svc:
        [[result]] = await _open_without_follow_up(svc)
        incident_id = result.incident_id
        await asyncio.sleep(1.0)  # the timers loop runs twice: not yet due
        assert svc.notifier.kinds() == []
        clock.advance(11)  # past the grace

        async def followed_up() -> bool:
            return "incident.opened" in svc.notifier.kinds()

        await eventually(followed_up, what="the lost follow-up done")
        await svc.idle()
        assert [c.incident.id for c in svc.notifier.changes] == [incident_id]
        clock.advance(60)  # followed up: no second follow-up
        await asyncio.sleep(1.0)
        assert svc.notifier.kinds() == ["incident.opened"]


async def test_the_follow_up_check_leaves_alone_what_a_live_worker_follows_up(
    backend_settings,
) -> None:
    """A live worker's follow-up defers the check (as its lease renewal does for its
    entries), and a follow-up given up (dead-lettered) is not checked again."""
    clock = ShiftableClock()
    async with running_service(backend_settings(workers=0), Overrides(clock=clock)) as svc:
        store = svc.runtime.store
        [[result]] = await _open_without_follow_up(svc)
        incident_id = result.incident_id
        now = clock.now()
        clock.advance(5)
        await store.defer_follow_up_checks([incident_id])  # grace: 2 x 2 s from now
        assert await store.release_due_timers(now=clock.now(), limit=10) == 0
        clock.advance(5)
        assert await store.release_due_timers(now=clock.now(), limit=10) == 1
        [entry] = await svc.runtime.queue.read(consumer="w", count=10, block_ms=0)
        assert json.loads(entry.payload)["incident_id"] == incident_id
        assert await store.release_due_timers(now=now + timedelta(hours=1), limit=10) == 0
        # a new write checks anew; a give-up drops it
        [[again]] = await _open_without_follow_up(svc, "{lost-again}")
        await store.drop_follow_up_checks([again.incident_id])
        assert await store.release_due_timers(now=now + timedelta(hours=2), limit=10) == 0


def _firing_and_resolve(service: str) -> list[dict[str, Any]]:
    """One alert of group ``service``: its firing, then its resolve (seq 1 and 2)."""
    firing = unreachable(service=service)
    resolve = copy.deepcopy(firing)
    resolve["status"] = resolve["alerts"][0]["status"] = "resolved"
    resolve["alerts"][0]["endsAt"] = "2026-11-29T03:41:26Z"
    return [firing, resolve]


def _service_of(entry: QueueEntry) -> str:
    return entry.payload.split('"service":"', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("earlier", ["applied", "dead-lettered"])
async def test_an_earlier_signal_done_brings_forward_only_its_own_groups_waiting_ones(
    backend_settings, earlier: str
) -> None:
    """Groups X and Y each have a resolve held, waiting for its firing. X's firing is
    applied (or dead-lettered): X's resolve may go at once, Y's keeps its own next try.
    Waking every waiting entry at each acknowledgement swamped the workers under a
    backlog of thousands of them (after a failover), and earlier signals came so late
    that later ones went ahead of them."""
    clock = ShiftableClock()
    settings = backend_settings(workers=0)
    async with running_service(settings, Overrides(clock=clock)) as svc:
        for service in ("x", "y"):
            for payload in _firing_and_resolve(service):
                resp = await svc.post_alertmanager(payload)
                assert resp.status == 200, await resp.text()
        queue, worker = svc.runtime.queue, svc.runtime.worker
        x_firing, x_resolve, y_firing, y_resolve = await queue.read(
            consumer="w", count=10, block_ms=0
        )
        assert [_service_of(e) for e in (x_firing, x_resolve, y_firing, y_resolve)] == [
            "x",
            "x",
            "y",
            "y",
        ]
        waits = svc.runtime.metrics.order_waits
        # held with their next tries a minute off, whatever real time the handling
        # below takes: "brought forward" is then a next try of now, not a minute away
        clock.advance(60)
        await worker.handle(x_resolve)
        await worker.handle(y_resolve)
        clock.advance(-60)
        assert waits._value.get() == 2
        assert set(worker._held) == {x_resolve.entry_id, y_resolve.entry_id}
        if earlier == "applied":
            await worker.handle(x_firing)
        else:  # delivered to workers that died with it, too often
            tried = x_firing.model_copy(update={"deliveries": settings.max_deliveries + 1})
            await worker.handle(tried)
            assert (await queue.stats()).dead_letters == 1
        now = clock.monotonic()
        due = {entry_id for entry_id, held in worker._held.items() if held.due <= now}
        assert due == {x_resolve.entry_id}
        # the next turn tries it: its group's gap is closed, it is applied
        await worker.handle(worker._held[x_resolve.entry_id].entry)
        assert waits._value.get() == 2
        assert set(worker._held) == {y_resolve.entry_id}
        incidents = {i["labels"]["service"]: i for i in await svc.incidents()}
        assert "y" not in incidents  # nothing of Y applied out of turn
        if earlier == "applied":
            assert incidents["x"]["status"] == "resolved"


async def test_the_wait_for_an_earlier_signal_counts_from_after_a_store_outage(
    backend_settings,
) -> None:
    """A resolve waits for its firing nearly the order wait, then the store is out for a
    while: the firing could not be applied meanwhile either, so the resolve does not go
    ahead of it as soon as the total passes the order wait. After a whole order wait past
    the outage it asks the queue: the firing is still queued (late, not lost), so it waits
    another round; once the firing is gone unapplied, it goes ahead of the gap."""
    clock = ShiftableClock()
    settings = backend_settings(workers=0)
    order_wait_s = settings.visibility_timeout_s * (settings.max_deliveries + 2)
    store, queue = build_backend(settings, clock)
    faulty = FaultyStore(store)
    overrides = Overrides(clock=clock, store=faulty, queue=queue)
    async with running_service(settings, overrides) as svc:
        for payload in _firing_and_resolve("gap"):
            resp = await svc.post_alertmanager(payload)
            assert resp.status == 200, await resp.text()
        worker, waits = svc.runtime.worker, svc.runtime.metrics.order_waits
        _firing, resolve = await queue.read(consumer="w", count=10, block_ms=0)
        await worker.handle(resolve)  # the firing is in another worker's hands
        assert waits._value.get() == 1
        clock.advance(order_wait_s - 1)
        faulty.fail("mutate_incidents")
        with pytest.raises(StoreUnavailableError):
            await worker.handle(resolve)
        assert faulty.failures == ["mutate_incidents"]
        clock.advance(2)  # past the order wait since the first wait, not since the outage
        await worker.handle(resolve)
        assert waits._value.get() == 2  # still waits: not gone ahead of its firing
        assert (await queue.stats()).pending == 2
        assert await svc.incidents() == []
        clock.advance(order_wait_s)  # the whole order wait since the outage
        await worker.handle(resolve)
        # the firing is still queued (late, not lost): the resolve waits another round
        assert waits._value.get() == 3
        assert await svc.incidents() == []
        # the firing gone unapplied (a store that lost it): after another order wait
        # nothing earlier is queued, and the resolve goes ahead of the gap
        await queue.ack(_firing.entry_id)
        clock.advance(order_wait_s)
        await worker.handle(resolve)
        assert waits._value.get() == 3  # gone ahead of the gap, and acknowledged
        assert (await queue.stats()).pending == 0
        assert resolve.entry_id not in worker._held


async def test_the_queue_says_whether_an_earlier_signal_of_a_group_is_queued(
    redis_url: str, redis_prefix: str
) -> None:
    """``holds_earlier`` on a real stream: another group's entries, the key's own entry at
    or above the number, and entries past the first chunks the script reads (500 each)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = RedisKeys(redis_prefix)
    queue = RedisQueue(client, keys=keys, clock=SystemClock())
    try:
        await queue.ensure()
        async with client.pipeline(transaction=False) as pipe:
            for n in range(1200):  # other groups first: the one looked for comes late
                pipe.xadd(keys.queue, {"signal": "{}", "order": f"other-{n % 7}", "seq": n})
            pipe.xadd(keys.queue, {"signal": "{}"})  # a signal of no ordering key
            pipe.xadd(keys.queue, {"signal": "{}", "order": "g", "seq": 3})
            await pipe.execute()
        assert await queue.holds_earlier("g", 4)
        assert not await queue.holds_earlier("g", 3)  # only below the number
        assert not await queue.holds_earlier("h", 10)
        [entry] = [
            e for e in await queue.read(consumer="c", count=2000, block_ms=0) if e.order_key == "g"
        ]
        assert await queue.holds_earlier("g", 4)  # read and held: still not handled
        await queue.ack(entry.entry_id)
        assert not await queue.holds_earlier("g", 4)  # handled entries leave the stream
    finally:
        await client.aclose()
