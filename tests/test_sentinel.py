"""Redis behind Sentinel: the service follows a failover on its own and loses no alert it
accepted (a master, two replicas and one sentinel, all real, on loopback)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
import redis
from pydantic import ValidationError

from responder.adapters.redis_client import SentinelMaster, connect_sentinel
from responder.adapters.redis_keys import RedisKeys
from responder.settings import Settings
from tests.support.procs import (
    RedisServer,
    SentinelServer,
    redis_replica,
    redis_server,
    sentinel_server,
    wait_sentinel_sees_replicas,
)
from tests.support.service import running_service
from tests.support.waiting import eventually

ALERTS = 40
POSTERS = 4
KILL_AFTER = 12  # accepted alerts before the master dies
MAX_ATTEMPTS = 300  # per alert: bounded, far above what a failover of a few seconds takes


def drill_alert(i: int) -> dict[str, Any]:
    """An Alertmanager webhook of one alert of its own group: one incident per alert."""
    labels = {"alertname": f"SentinelDrill{i:03d}", "service": "drill", "severity": "warning"}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "responder",
        "groupKey": f'{{}}:{{alertname="SentinelDrill{i:03d}"}}',
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"drill {i}"},
                "startsAt": "2026-11-29T03:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"drill{i:011d}",
            }
        ],
    }


async def test_a_failover_loses_no_accepted_alert_and_the_service_recovers_alone(
    make_settings,
) -> None:
    with (
        redis_server() as master,
        redis_replica(master),
        redis_replica(master),
        sentinel_server(master) as sentinel,
    ):
        wait_sentinel_sees_replicas(sentinel, 2)
        settings: Settings = make_settings(
            redis_sentinels=sentinel.address,
            redis_sentinel_master=sentinel.master_name,
            redis_prefix="sentinel-drill",
            redis_timeout_s=0.5,
            # a 200 means a replica has the signals: the one promoted keeps them (with
            # `write`, an alert accepted just before the kill could die with the master)
            intake_durability="replica",
            intake_wait_timeout_ms=300,
            workers=2,
            # each drill alert must open its own incident, found again after the failover
            max_new_incidents_per_minute=0,
        )
        async with running_service(settings) as svc:
            accepted: list[int] = []
            statuses: Counter[int] = Counter()
            killed = asyncio.Event()

            async def post_until_accepted(i: int) -> None:
                # as Alertmanager does: a 503 (or no answer) is tried again, after a pause
                for _ in range(MAX_ATTEMPTS):
                    try:
                        resp = await svc.post_alertmanager(drill_alert(i))
                        status = resp.status
                        if status not in (200, 503):
                            raise AssertionError(f"{status}: {await resp.text()}")
                    except aiohttp.ClientError:
                        status = 0
                    statuses[status] += 1
                    if status == 200:
                        accepted.append(i)
                        if len(accepted) == KILL_AFTER:
                            master.kill()  # SIGKILL: as a crash, nothing flushed
                            killed.set()
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"alert {i} not accepted in {MAX_ATTEMPTS} attempts")

            async def poster(indexes: range) -> None:
                for i in indexes:
                    await post_until_accepted(i)

            await asyncio.gather(*(poster(range(k, ALERTS, POSTERS)) for k in range(POSTERS)))
            assert killed.is_set()
            assert sorted(accepted) == list(range(ALERTS))
            assert statuses[503] > 0, statuses  # the failover was felt, and outlived
            print(f"answers while posting {ALERTS} alerts: {dict(statuses)}")

            # the service found the new master by itself: ready, intake and workers going
            async def ready() -> bool:
                return (await svc.client.get("/readyz")).status == 200

            await eventually(ready, timeout_s=20, interval_s=0.1, what="ready again")
            await svc.idle(timeout_s=30)

            incidents = await svc.incidents()
            names = Counter(inc["title"] for inc in incidents)
            opened = sum(
                e["kind"] == "incident.opened" for inc in incidents for e in inc["timeline"]
            )
            fingerprints = Counter(a["fingerprint"] for inc in incidents for a in inc["alerts"])
            # every accepted alert is in its incident, once; no incident twice
            assert len(incidents) == ALERTS, names
            assert fingerprints == Counter(f"drill{i:011d}" for i in range(ALERTS))
            assert opened == ALERTS


def planned_failover(
    sentinel: SentinelServer, old: RedisServer, *replicas: RedisServer
) -> RedisServer:
    """``SENTINEL FAILOVER``; the replica promoted, once the sentinel names it master."""
    client = sentinel.client()
    deadline = time.monotonic() + 20
    try:
        assert client.sentinel_failover(sentinel.master_name)
        while (port := client.sentinel_master(sentinel.master_name)["port"]) == old.port:
            if time.monotonic() > deadline:
                raise TimeoutError("no switch-master within 20 s")
            time.sleep(0.05)
    finally:
        client.close()
    return next(r for r in replicas if r.port == port)


async def test_a_planned_failover_loses_no_accepted_alert(make_settings) -> None:
    # SENTINEL FAILOVER demotes a master that stays up, and writable until the sentinel
    # makes it a replica, seconds later: what it took meanwhile is lost then. It has no
    # replica left, so in replica mode it confirms nothing: 503, until the service finds
    # the new master (it asks the sentinels every second, and on every reconnection).
    with (
        redis_server() as master,
        redis_replica(master) as first,
        redis_replica(master) as second,
        sentinel_server(master) as sentinel,
    ):
        wait_sentinel_sees_replicas(sentinel, 2)
        settings: Settings = make_settings(
            redis_sentinels=sentinel.address,
            redis_sentinel_master=sentinel.master_name,
            redis_prefix="sentinel-planned",
            redis_timeout_s=0.5,
            intake_durability="replica",
            intake_wait_timeout_ms=300,
            workers=0,  # the queue keeps what intake wrote, for the test to count
        )
        async with running_service(settings) as svc:
            resp = await svc.post_alertmanager(drill_alert(0))
            assert resp.status == 200, await resp.text()
            promoted = planned_failover(sentinel, master, first, second)
            statuses: Counter[int] = Counter()
            for i in range(1, 6):
                for _ in range(MAX_ATTEMPTS):
                    resp = await svc.post_alertmanager(drill_alert(i))
                    statuses[resp.status] += 1
                    if resp.status == 200:
                        break
                    assert resp.status == 503, await resp.text()
                    await asyncio.sleep(0.05)
            assert statuses[200] == 5, statuses
        on_new = redis.Redis(port=promoted.port, decode_responses=True)
        try:
            assert on_new.info("replication")["role"] == "master"
            # every alert answered 200 is on the new master, once
            assert on_new.xlen(RedisKeys("sentinel-planned").queue) == 6
        finally:
            on_new.close()


async def test_the_client_leaves_a_demoted_master_without_waiting_for_an_error() -> None:
    with (
        redis_server() as master,
        redis_replica(master) as replica,
        sentinel_server(master) as sentinel,
    ):
        wait_sentinel_sees_replicas(sentinel, 1)
        client = connect_sentinel([("127.0.0.1", sentinel.port)], sentinel.master_name, timeout_s=1)
        assert isinstance(client, SentinelMaster)
        try:
            await client.set("{sentinel-follow}:before", 1)  # a pooled connection to master
            await client.follow_master(every_s=0.1)
            promoted = planned_failover(sentinel, master, replica)
            pool = client.connection_pool

            # no command in between: only the watch can have noticed
            async def moved() -> bool:
                return bool(pool.master_address == ("127.0.0.1", promoted.port))  # type: ignore[attr-defined]

            await eventually(moved, what="the client names the new master")
            await client.set("{sentinel-follow}:after", 1)
        finally:
            await client.aclose()
        on_new = redis.Redis(port=promoted.port, decode_responses=True)
        try:
            assert on_new.get("{sentinel-follow}:after") == "1"
        finally:
            on_new.close()


def test_sentinel_settings_go_together_and_exclude_a_url() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(redis_sentinels="127.0.0.1:26379")
    with pytest.raises(ValidationError, match="go together"):
        Settings(redis_sentinel_master="responder")
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(
            redis_url="redis://127.0.0.1:6379/0",
            redis_sentinels="127.0.0.1:26379",
            redis_sentinel_master="responder",
        )
    with pytest.raises(ValidationError, match="write host:port"):
        Settings(redis_sentinels="sentinel-0", redis_sentinel_master="responder")
    with pytest.raises(ValidationError, match="URL carries the password"):
        Settings(redis_url="redis://127.0.0.1:6379/0", redis_password="pw")
    s = Settings(
        redis_sentinels="sentinel-0:26379, [::1]:26380",
        redis_sentinel_master="responder",
        redis_password="redis-pw",
        redis_sentinel_password="sentinel-pw",
    )
    assert s.uses_redis
    assert s.sentinel_addresses() == [("sentinel-0", 26379), ("::1", 26380)]
    assert {"redis-pw", "sentinel-pw"} <= set(s.secret_values())
    assert "redis-pw" not in repr(s)
