"""Incidents kept by the workers: open, join, repeat, resolve, reopen; through HTTP intake."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from responder.app import Overrides
from responder.domain.signal import AlertSignal, AlertStatus
from tests.support.service import Service, example, running_service

# a firing alert of the PostHog pack: opened, then classified by its rules
OPENED = ["incident.opened", "incident.classified"]
UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def kinds(incident: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in incident["timeline"]]


def with_labels(path: str, **labels: str) -> dict[str, Any]:
    payload = copy.deepcopy(example(path))
    alert = payload["alerts"][0]
    alert["labels"].update(labels)
    alert["fingerprint"] = ""  # derive a fingerprint from the new labels
    return payload


def resolved(payload: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["status"] = "resolved"
    for alert in out["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-29T03:41:26.007Z"
    return out


async def test_first_firing_opens_an_incident_with_its_alert(service: Service) -> None:
    await service.post_alertmanager(example(UNREACHABLE))
    await service.idle()
    [inc] = await service.incidents()
    assert inc["status"] == "open"
    assert inc["group_key"] == '{alertname="PostHogAPIUnreachable",service="posthog-integration"}'
    # the title comes from the classifying rule's template (rules/posthog.yaml)
    assert inc["title"] == "PostHog API unreachable from posthog-integration (production)"
    assert (inc["severity"], inc["error_type"], inc["rule"]) == (
        "P1",
        "unreachable",
        "api-unreachable",
    )
    [alert] = inc["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"]["namespace"] == "production"
    assert alert["ends_at"] is None
    assert kinds(inc) == OPENED
    assert inc["timeline"][0]["seq"] == 0
    assert inc["opened_at"]
    assert (inc["acked_at"], inc["resolved_at"]) == (None, None)
    assert (inc["facts"], inc["actions"]) == ({}, [])


async def test_repeats_change_nothing(service: Service) -> None:
    for _ in range(3):
        await service.post_alertmanager(example(UNREACHABLE))
    await service.idle()
    [inc] = await service.incidents()
    assert kinds(inc) == OPENED
    assert service.notifier.kinds() == OPENED


async def test_alerts_of_one_group_share_an_incident(service: Service) -> None:
    await service.post_alertmanager(with_labels(UNREACHABLE, instance="pod-a"))
    await service.idle()
    await service.post_alertmanager(with_labels(UNREACHABLE, instance="pod-b"))
    await service.post_alertmanager(example("alertmanager/posthog-rate-limited-429-firing.json"))
    await service.idle()
    incidents = await service.incidents()
    assert len(incidents) == 2
    by_group = {i["group_key"]: i for i in incidents}
    unreachable = by_group['{alertname="PostHogAPIUnreachable",service="posthog-integration"}']
    assert len(unreachable["alerts"]) == 2
    assert kinds(unreachable) == [*OPENED, "alert.joined"]


async def test_incident_resolves_when_all_its_alerts_have(service: Service) -> None:
    a = with_labels(UNREACHABLE, instance="pod-a")
    b = with_labels(UNREACHABLE, instance="pod-b")
    await service.post_alertmanager(a)
    await service.idle()
    await service.post_alertmanager(b)
    await service.idle()
    await service.post_alertmanager(resolved(a))
    await service.idle()
    [inc] = await service.incidents()
    assert inc["status"] == "open"
    assert [x["status"] for x in inc["alerts"]] == ["resolved", "firing"]
    await service.post_alertmanager(resolved(b))
    await service.idle()
    [inc] = await service.incidents()
    assert inc["status"] == "resolved"
    assert inc["resolved_at"] is not None
    assert kinds(inc) == [
        *OPENED,
        "alert.joined",
        "alert.resolved",
        "alert.resolved",
        "incident.resolved",
    ]
    assert inc["alerts"][0]["ends_at"].startswith("2026-11-29T03:41:26")


async def test_firing_after_resolution_opens_a_new_incident(service: Service) -> None:
    firing = example(UNREACHABLE)
    await service.post_alertmanager(firing)
    await service.idle()
    await service.post_alertmanager(resolved(firing))
    await service.idle()
    again = copy.deepcopy(firing)
    again["alerts"][0]["startsAt"] = "2026-11-29T05:00:00Z"
    await service.post_alertmanager(again)
    await service.idle()
    incidents = await service.incidents()
    assert [i["status"] for i in incidents] == ["open", "resolved"]  # newest first
    assert await service.incidents(status="resolved") == [incidents[1]]
    assert await service.incidents(status="open") == [incidents[0]]


async def test_resolved_alert_whose_firing_never_came_is_dropped_at_once(
    backend_settings,
) -> None:
    """Signals of a group take effect in the order intake queued them: a firing queued
    before this resolve would have been applied before it. None was, so none will come;
    the resolve does not wait (an earlier version held it for a minute)."""
    settings = backend_settings(visibility_timeout_s=30.0)
    async with running_service(settings) as svc:
        resp = await svc.post_alertmanager(
            example("alertmanager/posthog-high-latency-resolved.json")
        )
        assert (await resp.json())["accepted"] == 1
        await svc.idle()
        assert await svc.incidents() == []
        stats = await svc.runtime.queue.stats()  # type: ignore[union-attr]
        assert (stats.pending, stats.depth, stats.dead_letters) == (0, 0, 0)


async def test_a_resolve_that_overtakes_its_firing_still_resolves_the_incident(
    backend_settings,
) -> None:
    """Two workers: one holds the firing, the other handles the resolve first."""
    settings = backend_settings(workers=0, visibility_timeout_s=0.2)
    async with running_service(settings) as svc:
        firing = example(UNREACHABLE)
        await svc.post_alertmanager(firing)
        await svc.post_alertmanager(resolved(firing))
        queue, worker = svc.runtime.queue, svc.runtime.worker
        assert queue is not None
        assert worker is not None
        [first] = await queue.read(consumer="slow", count=1, block_ms=0)
        [second] = await queue.read(consumer="fast", count=1, block_ms=0)
        await worker.handle(second)  # the resolve: nothing to resolve yet, kept for later
        assert (await queue.stats()).pending == 2
        await worker.handle(first)  # the firing opens the incident
        [inc] = await svc.incidents()
        assert inc["status"] == "open"
        await asyncio.sleep(0.25)
        [again] = await queue.claim_stale(consumer="fast", min_idle_ms=200, count=10)
        assert again.entry_id == second.entry_id
        await worker.handle(again)
        [inc] = await svc.incidents()
        assert inc["status"] == "resolved"
        assert (await queue.stats()).pending == 0


async def test_a_flap_within_one_batch_opens_and_resolves(backend_settings) -> None:
    settings = backend_settings(workers=0)
    async with running_service(settings) as svc:
        firing = example(UNREACHABLE)
        await svc.post_alertmanager(firing)
        await svc.post_alertmanager(resolved(firing))
        queue, worker = svc.runtime.queue, svc.runtime.worker
        assert queue is not None
        assert worker is not None
        batch = await queue.read(consumer="w", count=10, block_ms=0)
        assert len(batch) == 2
        await worker.handle(*batch)
        [inc] = await svc.incidents()
        assert inc["status"] == "resolved"
        assert kinds(inc) == [*OPENED, "alert.resolved", "incident.resolved"]
        # handled twice (redelivered): nothing changes
        await worker.handle(*batch)
        [inc] = await svc.incidents()
        assert len(inc["timeline"]) == 4


async def test_a_batch_of_one_group_makes_one_incident_in_order(backend_settings) -> None:
    settings = backend_settings(workers=0)
    async with running_service(settings) as svc:
        pods = [with_labels(UNREACHABLE, instance=f"pod-{n}") for n in range(5)]
        for payload in pods:
            await svc.post_alertmanager(payload)
        await svc.post_alertmanager(resolved(pods[0]))
        queue, worker = svc.runtime.queue, svc.runtime.worker
        assert queue is not None
        assert worker is not None
        batch = await queue.read(consumer="w", count=10, block_ms=0)
        assert len(batch) == 6
        await worker.handle(*batch)
        [inc] = await svc.incidents()
        assert kinds(inc) == OPENED + ["alert.joined"] * 4 + ["alert.resolved"]
        assert [a["labels"]["instance"] for a in inc["alerts"]] == [f"pod-{n}" for n in range(5)]
        assert [a["number"] for a in inc["alerts"]] == [1, 2, 3, 4, 5]
        assert (inc["alerts_total"], inc["alerts_firing"]) == (5, 4)
        assert svc.notifier.kinds() == kinds(inc)


async def test_group_by_setting_groups_alerts_no_pack_claims(backend_settings) -> None:
    async with running_service(backend_settings(group_by="service", rules=[])) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        await svc.post_alertmanager(example("alertmanager/posthog-rate-limited-429-firing.json"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["group_key"] == '{service="posthog-integration"}'
        assert len(inc["alerts"]) == 2
        assert kinds(inc) == ["incident.opened", "incident.unclassified", "alert.joined"]
        assert (inc["severity"], inc["rule"]) == ("P3", None)


async def test_the_classifying_packs_group_by_wins_over_the_setting(backend_settings) -> None:
    async with running_service(backend_settings(group_by="service")) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.post_alertmanager(example("alertmanager/posthog-rate-limited-429-firing.json"))
        await svc.idle()
        groups = sorted(i["group_key"] for i in await svc.incidents())
        assert groups == [
            '{alertname="PostHogAPIUnreachable",service="posthog-integration"}',
            '{alertname="PostHogRateLimited",service="posthog-integration"}',
        ]


async def test_a_missing_group_label_groups_as_empty(service: Service) -> None:
    payload = copy.deepcopy(example(UNREACHABLE))
    del payload["alerts"][0]["labels"]["service"]
    await service.post_alertmanager(payload)
    await service.idle()
    [inc] = await service.incidents()
    assert inc["group_key"] == '{alertname="PostHogAPIUnreachable",service=""}'


async def test_a_redelivered_firing_after_its_resolve_opens_nothing(service: Service) -> None:
    """An entry redelivered late (its worker died) must not reopen what has resolved."""
    firing = example(UNREACHABLE)
    await service.post_alertmanager(firing)
    await service.idle()
    await service.post_alertmanager(resolved(firing))
    await service.idle()
    alert = firing["alerts"][0]
    stale = AlertSignal(
        fingerprint=alert["fingerprint"],
        status=AlertStatus.FIRING,
        labels=alert["labels"],
        starts_at=datetime.fromisoformat(alert["startsAt"]),
        received_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    assert service.runtime.pipeline is not None
    [handled] = await service.runtime.pipeline.handle(stale)
    assert handled.change is None
    [inc] = await service.incidents()
    assert inc["status"] == "resolved"


async def test_handling_the_same_signal_twice_changes_nothing_the_second_time(
    service: Service,
) -> None:
    await service.post_alertmanager(example(UNREACHABLE))
    await service.idle()
    alert = example(UNREACHABLE)["alerts"][0]
    again = AlertSignal(
        fingerprint=alert["fingerprint"],
        status=AlertStatus.FIRING,
        labels=alert["labels"],
        starts_at=datetime.fromisoformat(alert["startsAt"]),
        received_at=datetime.now(UTC),
    )
    assert service.runtime.pipeline is not None
    [handled] = await service.runtime.pipeline.handle(again)
    assert handled.change is None
    [inc] = await service.incidents()
    assert kinds(inc) == OPENED
    assert service.notifier.kinds() == OPENED


async def test_events_not_yet_notified_are_notified_on_the_next_handling(
    backend_settings,
) -> None:
    """A worker that wrote an event but died before notifying: the next one notifies it."""

    class FlakyNotifier:
        def __init__(self) -> None:
            self.fail = True
            self.seen: list[str] = []

        async def incident_changed(self, change) -> None:
            if self.fail:
                self.fail = False
                raise ConnectionError("sink hiccup")
            self.seen += [e.kind for e in change.events]

    notifier = FlakyNotifier()
    settings = backend_settings(visibility_timeout_s=0.2)
    async with running_service(settings, Overrides(notifier=notifier)) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        assert notifier.seen == OPENED
        [inc] = await svc.incidents()
        assert kinds(inc) == OPENED
