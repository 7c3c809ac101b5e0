"""Fan-out: a pack's alerts open at most RESPONDER_MAX_NEW_INCIDENTS_PER_MINUTE incidents a
minute; beyond it, their groups go to the pack's one alert storm incident, and a human is
told. Resolved incidents are forgotten after RESPONDER_INCIDENT_RETENTION_S.

The real service, on the memory store and on real Redis (``backend_settings``); the time
of the window and of the retention is a clock the test moves (``ShiftableClock``).
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from responder.adapters.redis_keys import RedisKeys
from responder.app import Overrides
from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.settings import Settings
from tests.support.clock import ShiftableClock
from tests.support.service import Service, example, running_service

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def _alert(name: str, *, service: str = "posthog-integration", status: str = "firing") -> Any:
    """An alert of its own group (alertname, service): in the posthog pack while its
    service is posthog-integration, in no pack otherwise."""
    alert = copy.deepcopy(example(UNREACHABLE)["alerts"][0])
    alert["labels"].update(alertname=name, service=service, job=service)
    alert.update(status=status, fingerprint="")
    if status == "resolved":
        alert["endsAt"] = "2026-11-29T03:41:26Z"
    return alert


def webhook(*alerts: Any) -> dict[str, Any]:
    """One Alertmanager notification carrying ``alerts`` (each of its own group)."""
    payload = copy.deepcopy(example(UNREACHABLE))
    payload["alerts"] = list(alerts)
    payload["status"] = alerts[0]["status"]
    return payload


def names(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{n}" for n in range(start, start + count)]


async def send(svc: Service, *alerts: Any) -> None:
    resp = await svc.post_alertmanager(webhook(*alerts))
    assert resp.status == 200, await resp.text()


def storms(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in incidents if i["storm"]]


def ordinary(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in incidents if not i["storm"]]


def capped(svc: Service, pack: str) -> float:
    return float(svc.runtime.metrics.incidents_capped.labels(pack)._value.get())


async def test_fifty_groups_in_one_webhook_open_ten_incidents_and_one_storm(
    backend_settings: Callable[..., Settings],
) -> None:
    settings = backend_settings(max_new_incidents_per_minute=10)
    async with running_service(settings) as svc:
        groups = names("CapAlert", 50)
        await send(svc, *(_alert(n) for n in groups))
        await svc.idle(timeout_s=30)
        incidents = await svc.incidents()
        assert len(incidents) == 11
        [storm] = storms(incidents)
        assert len(ordinary(incidents)) == 10
        # no alert lost, none twice: every group is in exactly one incident
        held = Counter(a["labels"]["alertname"] for i in incidents for a in i["alerts"])
        assert held == Counter(groups)
        assert (storm["alerts_total"], storm["alerts_firing"]) == (40, 40)
        assert len(storm["groups"]) == 40
        assert storm["group_key"] == "storm:posthog"
        assert storm["title"] == (
            "Alert storm: more than 10 new incident groups in pack posthog in a minute"
        )
        # a human is told; the automation does nothing for it
        assert storm["severity"] in ("P1", "P2")
        assert "alert storm" in (storm["needs_human"] or "")
        kinds = Counter(e["kind"] for e in storm["timeline"])
        assert kinds["incident.storm"] == 1
        assert kinds["incident.needs_human"] == 1
        assert kinds["storm.collected"] == 39
        assert not {"incident.classified", "incident.decided", "triage.completed"} & set(kinds)
        assert (storm["planned_probes"], storm["planned_actions"]) == ([], [])
        assert capped(svc, "posthog") == 40

        # the same notification again (Alertmanager repeats it): nothing new
        await send(svc, *(_alert(n) for n in groups))
        await svc.idle(timeout_s=30)
        assert len(await svc.incidents()) == 11

        # a new alert of a collected group lands on the storm too, not a new incident
        overflowed = storm["alerts"][0]["labels"]["alertname"]
        another = _alert(overflowed)
        another["labels"]["instance"] = "another-pod"
        await send(svc, another)
        await svc.idle(timeout_s=30)
        incidents = await svc.incidents()
        assert len(incidents) == 11
        assert storms(incidents)[0]["alerts_total"] == 41

        # everything resolves: the storm when the last of its alerts does
        resolved = [_alert(n, status="resolved") for n in groups]
        another_resolved = copy.deepcopy(another)
        another_resolved.update(status="resolved", endsAt="2026-11-29T03:41:26Z")
        await send(svc, *resolved[:45])
        await svc.idle(timeout_s=30)
        storm = storms(await svc.incidents())[0]
        assert storm["status"] == "open"
        await send(svc, *resolved[45:], another_resolved)
        await svc.idle(timeout_s=30)
        incidents = await svc.incidents()
        assert len(incidents) == 11
        assert {i["status"] for i in incidents} == {"resolved"}

        # a collected group is free once its storm resolved: firing again it does not
        # join the resolved storm; the window is still full, so it opens the next storm
        await send(svc, _alert(overflowed) | {"startsAt": _now()})
        await svc.idle(timeout_s=30)
        opened = [i for i in await svc.incidents() if i["status"] == "open"]
        assert [(i["storm"], i["alerts_total"]) for i in opened] == [(True, 1)]
        assert opened[0]["id"] != storm["id"]


def _at() -> datetime:
    return datetime.now(UTC)


def _now() -> str:
    return _at().isoformat().replace("+00:00", "Z")


async def test_the_cap_is_per_pack_and_per_minute(
    backend_settings: Callable[..., Settings],
) -> None:
    clock = ShiftableClock()
    settings = backend_settings(max_new_incidents_per_minute=3)
    async with running_service(settings, Overrides(clock=clock)) as svc:
        await send(svc, *(_alert(n) for n in names("First", 5)))
        await svc.idle()
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (3, 1)

        # another pack (here: alerts no pack claims) has a window of its own
        await send(svc, *(_alert(n, service=f"other-{n}") for n in names("Other", 3)))
        await svc.idle()
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (6, 1)

        # within the minute the posthog pack's groups still go to its storm
        clock.advance(30)
        await send(svc, _alert("Late"))
        await svc.idle()
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (6, 1)
        assert storms(incidents)[0]["alerts_total"] == 3

        # a minute after the first ones, the window has room again
        clock.advance(31)
        await send(svc, *(_alert(n) for n in names("Next", 4)))
        await svc.idle()
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (9, 1)
        assert storms(incidents)[0]["alerts_total"] == 4


async def test_no_cap_when_it_is_zero(backend_settings: Callable[..., Settings]) -> None:
    async with running_service(backend_settings(max_new_incidents_per_minute=0)) as svc:
        await send(svc, *(_alert(n) for n in names("Free", 40)))
        await svc.idle(timeout_s=30)
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (40, 0)


async def test_a_redelivered_batch_changes_nothing(
    backend_settings: Callable[..., Settings],
) -> None:
    """Entries handled twice (a worker died before acknowledging them): still ten
    incidents and one storm, each alert once."""
    settings = backend_settings(workers=0, max_new_incidents_per_minute=10)
    async with running_service(settings) as svc:
        await send(svc, *(_alert(n) for n in names("Again", 30)))
        queue, worker = svc.runtime.queue, svc.runtime.worker
        batch = await queue.read(consumer="w", count=200, block_ms=0)
        assert len(batch) == 30
        await worker.handle(*batch)
        await worker.handle(*batch)
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (10, 1)
        assert storms(incidents)[0]["alerts_total"] == 20
        assert sum(i["alerts_total"] for i in incidents) == 30
        assert capped(svc, "posthog") == 20


async def test_hundreds_of_groups_in_one_batch_join_the_storm_in_one_go(
    backend_settings: Callable[..., Settings],
) -> None:
    """The items of one batch that all go to the storm incident are written one after
    the other in the same round trip, not one per round (a round per group would give up
    after 100 and fail the batch)."""
    settings = backend_settings(workers=0, max_new_incidents_per_minute=10)
    async with running_service(settings) as svc:
        payload = webhook(*(_alert(n) for n in names("Wide", 250)))
        signals = AlertmanagerWebhook.model_validate(payload).signals(received_at=_at())
        handled = await svc.runtime.pipeline.handle(*signals)
        assert all(h.error is None and h.retry_reason is None for h in handled)
        incidents = await svc.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (10, 1)
        [storm] = storms(incidents)
        assert (storm["alerts_total"], len(storm["groups"])) == (240, 240)
        assert [e["seq"] for e in storm["timeline"]] == list(range(len(storm["timeline"])))


async def test_two_replicas_share_one_cap_and_one_storm(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(
        workers=4, redis_url=redis_url, redis_prefix=redis_prefix, max_new_incidents_per_minute=10
    )
    async with running_service(settings) as a, running_service(settings) as b:
        sends = [
            svc.post_alertmanager(webhook(_alert(name)))
            for n, name in enumerate(names("Shared", 40))
            for svc in ((a, b)[n % 2],)
        ]
        assert all(r.status == 200 for r in await asyncio.gather(*sends))
        await a.idle(timeout_s=30)
        incidents = await a.incidents()
        assert (len(ordinary(incidents)), len(storms(incidents))) == (10, 1)
        assert storms(incidents)[0]["alerts_total"] == 30
        assert sum(i["alerts_total"] for i in incidents) == 40


async def test_a_resolved_incident_is_forgotten_after_the_retention(
    backend_settings: Callable[..., Settings],
) -> None:
    clock = ShiftableClock()
    settings = backend_settings(incident_retention_s=120)
    async with running_service(settings, Overrides(clock=clock)) as svc:
        await send(svc, _alert("Kept"), _alert("Gone"))
        await svc.idle()
        await send(svc, _alert("Gone", status="resolved"))
        await svc.idle()
        incidents = await svc.incidents()
        [gone] = [i for i in incidents if i["status"] == "resolved"]
        [kept] = [i for i in incidents if i["status"] == "open"]
        clock.advance(60)
        assert (await svc.client.get(f"/v1/incidents/{gone['id']}")).status == 200
        if settings.uses_redis:
            # Redis expires the keys on its own clock: their TTL is the retention
            keys = RedisKeys(settings.redis_prefix)
            assert settings.redis_url is not None
            url = settings.redis_url.get_secret_value()
            r = aioredis.Redis.from_url(url, decode_responses=True)
            try:
                for key in (
                    keys.incident(gone["id"]),
                    keys.timeline(gone["id"]),
                    keys.alerts(gone["id"]),
                ):
                    ttl_ms = int(await r.pttl(key))
                    assert 100_000 < ttl_ms <= 120_000, key
                assert int(await r.pttl(keys.incident(kept["id"]))) == -1  # open: kept
            finally:
                await r.aclose()
            return
        clock.advance(61)
        assert (await svc.client.get(f"/v1/incidents/{gone['id']}")).status == 404
        assert [i["id"] for i in await svc.incidents()] == [kept["id"]]
        assert await svc.runtime.store.delivery_state(gone["id"], "console") is None


async def test_an_incident_open_longer_than_the_retention_stays_listed_once_resolved(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    """The listing's sets drop a resolved incident whose keys expired, not one that was
    opened before the retention's horizon and resolved just now."""
    clock = ShiftableClock()
    settings = make_settings(
        redis_url=redis_url, redis_prefix=redis_prefix, incident_retention_s=120
    )
    keys = RedisKeys(redis_prefix)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with running_service(settings, Overrides(clock=clock)) as svc:
            await send(svc, _alert("Short"), _alert("Long"))
            await svc.idle()
            await send(svc, _alert("Short", status="resolved"))
            await svc.idle()
            [short] = [i for i in await svc.incidents() if i["status"] == "resolved"]
            clock.advance(200)
            # the short one's keys expired (as Redis would have by now)
            await r.delete(
                keys.incident(short["id"]), keys.timeline(short["id"]), keys.alerts(short["id"])
            )
            await send(svc, _alert("Long", status="resolved"))
            await svc.idle()
            [long] = await svc.incidents()
            assert long["status"] == "resolved"
            assert await r.zrange(keys.incidents, 0, -1) == [long["id"]]
    finally:
        await r.aclose()
