"""RESPONDER_INTAKE_DURABILITY=replica for the workers' writes, on real redis-servers.

What a worker writes before it tells or does something outside (the incident before its
Slack message, a claim before the call it guards) is on a replica before the worker goes
on: a failover then cannot promote a replica that forgot what Slack was told, which is how
the Sentinel storm got second roots and roots of no incident."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
import redis
import redis.asyncio as aioredis

from responder.adapters.clock import SystemClock
from responder.adapters.durability import IntakeDurability
from responder.adapters.redis_keys import RedisKeys
from responder.adapters.redis_store import RedisStore
from responder.domain.errors import StoreUnavailableError, UnconfirmedWriteError
from responder.domain.incident import Incident, IncidentStatus
from responder.domain.timeline import EventKind, TimelineEvent
from responder.ports import (
    IncidentChange,
    IncidentLookup,
    IncidentMutator,
    IncidentState,
    MutationItem,
)
from tests.support.procs import redis_replica, redis_server, wait_replica_linked
from tests.support.service import example, running_service

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def _opener(incident_id: str) -> IncidentMutator:
    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is not None:
            return None
        at = datetime.now(UTC)
        incident = Incident(
            id=incident_id,
            status=IncidentStatus.OPEN,
            group_key=f"durable:{incident_id}",
            title="durable",
            opened_at=at,
            updated_at=at,
            events_count=1,
        )
        opened = TimelineEvent(seq=0, at=at, kind=EventKind.INCIDENT_OPENED, detail="opened")
        return IncidentChange(incident=incident, events=(opened,), opened=True)

    return mutate


def _item(incident_id: str) -> MutationItem:
    return MutationItem(
        lookups=(IncidentLookup(kind="group", key=f"durable:{incident_id}"),),
        mutators=(_opener(incident_id),),
    )


def _store(
    url: str,
    keys: RedisKeys,
    mode: str,
    *,
    wait_timeout_ms: int = 100,
    replicas: int | Literal["all"] = 1,
) -> RedisStore:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    durability = IntakeDurability(
        mode,  # type: ignore[arg-type]
        wait_timeout_ms=wait_timeout_ms,
        replicas=replicas,
    )
    return RedisStore(
        client,
        keys=keys,
        clock=SystemClock(),
        signal_ttl_s=60,
        queue_maxlen=100,
        durability=durability,
    )


async def test_worker_writes_before_an_outside_effect_wait_for_a_replica(tmp_path: Path) -> None:
    keys = RedisKeys(f"worker-durability-{tmp_path.name}")
    with redis_server() as master, redis_replica(master) as replica:
        store = _store(master.url, keys, "replica")
        on_replica = redis.Redis(port=replica.port, decode_responses=True)
        try:
            # with a replica: the write returns once the replica has it (read at once)
            [[opened]] = await store.mutate_incidents([_item("inc-" + "a" * 18)])
            assert opened.incident_id == "inc-" + "a" * 18
            assert on_replica.exists(keys.incident(opened.incident_id))
            claim = await store.claim_effect(
                f"{opened.incident_id}:slack-root", owner="w1", lease_s=30
            )
            assert claim.status == "start"
            assert on_replica.hexists(keys.ledger(opened.incident_id), "slack-root")

            # without one: each such write fails as a store outage would (the step is
            # tried again), rather than let the worker post what a failover may forget
            replica.stop()
            with pytest.raises(UnconfirmedWriteError, match="incident write"):
                await store.mutate_incidents([_item("inc-" + "b" * 18)])
            for write in (
                store.claim_effect(f"{opened.incident_id}:page", owner="w1", lease_s=30),
                store.finish_effect(f"{opened.incident_id}:slack-root", data={"ts": "1.2"}),
                store.acquire_lock("restart:posthog", token="t", ttl_s=30),
            ):
                with pytest.raises(StoreUnavailableError, match="no replica confirmed"):
                    await write

            # the replica back: the same step goes through, on the replica at once
            replica.start()
            wait_replica_linked(replica, master)
            [[again]] = await store.mutate_incidents([_item("inc-" + "b" * 18)])
            assert on_replica.exists(keys.incident(again.incident_id))
        finally:
            on_replica.close()
            await store.close()


async def test_write_mode_workers_do_not_wait(tmp_path: Path) -> None:
    # the default: no replica asked for, none waited for (a master alone works)
    keys = RedisKeys(f"worker-durability-write-{tmp_path.name}")
    with redis_server() as master:
        store = _store(master.url, keys, "write")
        try:
            [[opened]] = await store.mutate_incidents([_item("inc-" + "c" * 18)])
            claim = await store.claim_effect(
                f"{opened.incident_id}:slack-root", owner="w1", lease_s=30
            )
            assert claim.status == "start"
        finally:
            await store.close()


async def test_an_incident_is_told_only_once_a_replica_has_it(make_settings) -> None:
    """The whole service: with the replica down, a queued signal (intake said 503, the
    sender will retry) is not told to the notifier until a replica has its incident; with
    the replica back, the same entry is, once."""
    with redis_server() as master, redis_replica(master) as replica:
        settings = make_settings(
            redis_url=master.url,
            redis_prefix="worker-durability-svc",
            intake_durability="replica",
            intake_wait_timeout_ms=100,
            workers=0,  # the test hands the entry to the worker
        )
        async with running_service(settings) as svc:
            replica.stop()
            resp = await svc.post_alertmanager(example(UNREACHABLE))
            assert resp.status == 503, await resp.text()  # queued, unconfirmed
            [entry] = await svc.runtime.queue.read(consumer="w1", count=10, block_ms=0)

            with pytest.raises(UnconfirmedWriteError):
                await svc.runtime.worker.handle(entry)
            assert svc.notifier.kinds() == []  # nobody told of what a failover may forget

            replica.start()
            wait_replica_linked(replica, master)
            await svc.runtime.worker.handle(entry)
            await svc.runtime.worker.handle(entry)  # redelivered: told once all the same
            assert svc.notifier.kinds().count("incident.opened") == 1
            [incident] = await svc.incidents()
            on_replica = redis.Redis(port=replica.port, decode_responses=True)
            try:
                keys = RedisKeys("worker-durability-svc")
                assert on_replica.exists(keys.incident(incident["id"]))
            finally:
                on_replica.close()


async def test_all_replicas_means_every_replica_online_then_and_now(tmp_path: Path) -> None:
    """RESPONDER_INTAKE_WAIT_REPLICAS=all: a write is confirmed by every replica the master
    has online, whichever Sentinel would promote; one gone, the next writes need the rest."""
    keys = RedisKeys(f"worker-durability-all-{tmp_path.name}")
    with (
        redis_server() as master,
        redis_replica(master) as first,
        redis_replica(master) as second,
    ):
        store = _store(master.url, keys, "replica", wait_timeout_ms=2000, replicas="all")
        on_first = redis.Redis(port=first.port, decode_responses=True)
        on_second = redis.Redis(port=second.port, decode_responses=True)
        try:
            [[opened]] = await store.mutate_incidents([_item("inc-" + "d" * 18)])
            for on_replica in (on_first, on_second):  # both, read at once
                assert on_replica.exists(keys.incident(opened.incident_id))

            # the second frozen (still online to the master, acknowledging nothing): with
            # every replica wanted, a write is not confirmed by the first alone
            assert second.proc is not None
            second.proc.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(UnconfirmedWriteError, match="1 of 2 replicas confirmed it"):
                    await store.mutate_incidents([_item("inc-" + "e" * 18)])
            finally:
                second.proc.send_signal(signal.SIGCONT)

            # the second gone for good: counted again, the next write needs the one left
            second.stop()
            for _ in range(5):  # the master may list it online for a moment after the stop
                try:
                    [[again]] = await store.mutate_incidents([_item("inc-" + "f" * 18)])
                    break
                except UnconfirmedWriteError:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("with one replica left, writes were never confirmed")
            assert on_first.exists(keys.incident(again.incident_id))
        finally:
            on_first.close()
            on_second.close()
            await store.close()
