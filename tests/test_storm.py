"""The storm: exactly once, in order, nothing lost.

Two real ``responder serve`` processes on one real redis-server (append-only file on),
Slack pointed at the fake Slack of this process, triage off. Thousands of Alertmanager
notifications, each group's back to back and in Alertmanager's order, many groups at
once, a tenth of them to both replicas; then, once it has all settled: one incident per
genuine firing episode of each group, none left open, one Slack root per incident and
each thread reply once, the queue drained and nothing dead-lettered. Four ways: a plain
storm; a replica SIGKILLed and restarted mid-storm; Redis SIGKILLed and restarted from its
append-only file; a Sentinel failover.

Scale it with STORM_GROUPS (and the other STORM_* of ``tests/support/storm.py``):
``STORM_GROUPS=2000 .venv/bin/pytest tests/test_storm.py -s`` is the full 20,000.
``-s`` shows the figures of each scenario.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import (
    redis_replica,
    redis_server,
    sentinel_server,
    wait_sentinel_sees_replicas,
)
from tests.support.storm import (
    StormSender,
    StormShape,
    current_master,
    direct_client,
    run_storm,
    sentinel_client,
    storm_world,
)

SHAPE = StormShape.from_env()
CHAOS_AT = 0.35  # share of the storm's notifications accepted before the crash
DOWN_S = 1.5  # how long the crashed process stays down

# A crash of a Redis with `appendfsync everysec` loses up to the last second of writes,
# acknowledged ones included: the accounting would then blame the responder for what the
# configuration allowed. (a) and (b) run that way, their Redis is never killed; (c) kills
# and restarts Redis, so it fsyncs every write (see there); in (d) the killed master is
# never restarted: what survives is what its replicas had (see there).
AOF_EVERYSEC = ("--appendonly", "yes", "--appendfsync", "everysec")

pytestmark = pytest.mark.timeout(SHAPE.timeout_s())


def _verdict(outcome: Any) -> None:
    assert outcome.ok, outcome.summary()


async def test_storm_back_to_back(tmp_path: Path) -> None:
    """(a) The plain storm."""
    with redis_server(*AOF_EVERYSEC) as server:
        async with storm_world({"RESPONDER_REDIS_URL": server.url}, tmp_path) as world:
            outcome = await run_storm(world, SHAPE, direct_client(server.port), name="plain")
    _verdict(outcome)


async def test_storm_with_a_replica_killed_and_restarted(tmp_path: Path) -> None:
    """(b) One replica SIGKILLed mid-storm, started again with the same settings: the
    other claims its entries after the visibility timeout, the senders' copies that got
    no answer go to the other replica and are retried."""
    with redis_server(*AOF_EVERYSEC) as server:
        async with storm_world({"RESPONDER_REDIS_URL": server.url}, tmp_path) as world:
            victim = world.replicas[0]

            async def crash(sender: StormSender) -> dict[str, Any]:
                at = await sender.wait_accepted(CHAOS_AT)
                await asyncio.to_thread(victim.kill)
                await asyncio.sleep(DOWN_S)
                await asyncio.to_thread(victim.start)
                return {"replica_killed_after": at}

            outcome = await run_storm(
                world, SHAPE, direct_client(server.port), name="replica-killed", chaos=crash
            )
    _verdict(outcome)


async def test_storm_with_redis_killed_and_restarted_from_its_aof(tmp_path: Path) -> None:
    """(c) Redis SIGKILLed mid-storm and started again from its append-only file (same
    port, same directory).

    Honest accounting: with ``appendfsync everysec`` a SIGKILL may lose up to a second of
    writes the responder was told were done (webhooks answered 200, incidents written,
    Slack messages recorded as sent), and this test would count the loss against the
    responder. So this Redis runs with ``appendfsync always`` (every write is on disk
    before Redis replies) and the replicas with ``RESPONDER_INTAKE_DURABILITY=fsync``,
    which checks exactly that at start-up: whatever was acknowledged survives the kill,
    and any loss or doubling seen here is the responder's. SIGKILL, not SHUTDOWN, because
    a crash is the case worth testing."""
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as server:
        env = {"RESPONDER_REDIS_URL": server.url, "RESPONDER_INTAKE_DURABILITY": "fsync"}
        async with storm_world(env, tmp_path) as world:

            async def crash(sender: StormSender) -> dict[str, Any]:
                at = await sender.wait_accepted(CHAOS_AT)
                before = sender.stats.statuses[503]
                await asyncio.to_thread(server.kill)
                await asyncio.sleep(DOWN_S)
                await asyncio.to_thread(server.start)  # loads the append-only file
                return {
                    "redis_killed_after": at,
                    "answers_503_while_down": sender.stats.statuses[503] - before,
                }

            outcome = await run_storm(
                world, SHAPE, direct_client(server.port), name="redis-killed", chaos=crash
            )
    _verdict(outcome)


async def test_storm_through_a_sentinel_failover(tmp_path: Path) -> None:
    """(d) The master SIGKILLed mid-storm; the sentinel promotes a replica and the
    replicas find it through ``RESPONDER_REDIS_SENTINELS``. Two Redis replicas
    (``RESPONDER_INTAKE_DURABILITY=replica``, ``RESPONDER_INTAKE_WAIT_REPLICAS=all``: a 200
    means both have the signals; after the kill the promoted master has the other).

    Replication is asynchronous: what a worker writes before it tells Slack (the incident,
    the message's claim and record) waits for the replicas too, so the promoted one
    remembers every message sent. Without that, the last moments' messages showed as roots
    of no incident or replies twice; with one replica confirming, Sentinel sometimes
    promoted the one that lacked the last accepted signals (episodes with no incident)."""
    with (
        redis_server(*AOF_EVERYSEC) as master,
        redis_replica(master),
        redis_replica(master),
        sentinel_server(master) as sentinel,
    ):
        await asyncio.to_thread(wait_sentinel_sees_replicas, sentinel, 2)
        env = {
            "RESPONDER_REDIS_SENTINELS": sentinel.address,
            "RESPONDER_REDIS_SENTINEL_MASTER": sentinel.master_name,
            "RESPONDER_INTAKE_DURABILITY": "replica",
            "RESPONDER_INTAKE_WAIT_TIMEOUT_MS": "500",
            # every replica online: Sentinel picks the one to promote by the offsets it
            # last read, which can be seconds old, so with one confirmation the promoted
            # replica may be the one that lacks the last accepted signals and messages
            "RESPONDER_INTAKE_WAIT_REPLICAS": "all",
        }
        async with storm_world(env, tmp_path) as world:

            async def failover(sender: StormSender) -> dict[str, Any]:
                at = await sender.wait_accepted(CHAOS_AT)
                await asyncio.to_thread(master.kill)
                killed = time.monotonic()
                while True:
                    _, port = await asyncio.to_thread(current_master, sentinel)
                    if port != master.port:
                        break
                    if time.monotonic() - killed > 60:
                        raise AssertionError("the sentinel promoted no replica in 60 s")
                    await asyncio.sleep(0.05)
                return {
                    "master_killed_after": at,
                    "seconds_to_promotion": round(time.monotonic() - killed, 1),
                }

            outcome = await run_storm(
                world, SHAPE, sentinel_client(sentinel), name="sentinel-failover", chaos=failover
            )
    _verdict(outcome)


def test_the_storm_notifications_are_alertmanagers() -> None:
    """The shape the storm sends, per group: A and B fire, repeats, A resolves while B
    still fires, B resolves alone (A no longer listed); a later episode re-fires with a
    later startsAt. One group under the default group_by (alertname, service)."""
    from tests.support.storm import build_groups

    shape = StormShape(groups=2, notifications=10, episodes=2)
    group = build_groups(shape)[1]
    states = [
        (n["status"], [(a["labels"]["instance"], a["status"]) for a in n["alerts"]])
        for n in group.notifications
    ]
    both = [("a", "firing"), ("b", "firing")]
    half = [("a", "resolved"), ("b", "firing")]
    end = ("resolved", [("b", "resolved")])
    episode = [("firing", both), ("firing", both), ("firing", half), ("firing", half), end]
    assert states == episode * 2
    first, second = group.notifications[0], group.notifications[5]
    assert first["alerts"][0]["startsAt"] < second["alerts"][0]["startsAt"]
    assert first["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert group.notifications[2]["alerts"][0]["endsAt"] > first["alerts"][0]["startsAt"]
    assert {a["fingerprint"] for a in first["alerts"]} == {group.fingerprint_a, group.fingerprint_b}
    assert group.fingerprint_a != group.fingerprint_b
    for n in group.notifications:
        assert n["version"] == "4"
        assert n["groupLabels"] == {"alertname": "StormAlert", "service": group.service}
        for a in n["alerts"]:
            assert {k: a["labels"][k] for k in n["groupLabels"]} == n["groupLabels"]
