"""PagerDuty V3 events as signals: link, acknowledge, annotate, resolve, and repeats."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from responder.app import Overrides
from responder.ingest.pagerduty import sign
from tests.support.clock import ShiftableClock
from tests.support.service import EXAMPLES, Service, example, running_service

PD = EXAMPLES / "pagerduty"
SECRET = (PD / "webhook-secret.txt").read_text().strip()
# a firing alert of the PostHog pack: opened, then classified by its rules
OPENED = ["incident.opened", "incident.classified"]
UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def pd_event(name: str, **changes: Any) -> bytes:
    doc = json.loads((PD / f"{name}.json").read_text())
    event = doc["event"]
    for key, value in changes.items():
        if key.startswith("data_"):
            event["data"][key[5:]] = value
        else:
            event[key] = value
    return json.dumps(doc).encode()


async def post(svc: Service, body: bytes) -> dict[str, Any]:
    resp = await svc.post_pagerduty(body, {"X-PagerDuty-Signature": sign(body, SECRET)})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


def kinds(incident: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in incident["timeline"]]


async def signed_service(backend_settings):
    return running_service(backend_settings(pagerduty_webhook_secrets=SECRET))


async def test_triggered_links_to_the_incident_of_the_alertmanager_group(backend_settings) -> None:
    # the sample's incident_key is sha256 of the Alertmanager groupKey, as Alertmanager's
    # PagerDuty receiver sends it
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        await post(svc, pd_event("incident-triggered"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["pagerduty_incident_id"] == "Q2SC2ZUVOGX8H7"
        assert inc["pagerduty_url"] == "https://example.pagerduty.com/incidents/Q2SC2ZUVOGX8H7"
        # PagerDuty names who it paged: the incident commander
        assert kinds(inc) == [*OPENED, "pagerduty.linked", "pagerduty.assigned"]
        assert inc["commander"] == "Dana Oncall"


async def test_acknowledged_marks_who_and_when(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        for name in ("incident-triggered", "incident-acknowledged"):
            await post(svc, pd_event(name))
            await svc.idle()
        [inc] = await svc.incidents()
        assert inc["status"] == "acked"
        assert inc["acked_by"] == "Dana Oncall"
        assert inc["acked_at"].startswith("2026-11-29T03:09:02.53")
        assert kinds(inc)[-1] == "incident.acknowledged"
        assert await svc.incidents(status="acked") == [inc]
        assert await svc.incidents(status="open") == []


async def test_ack_alone_links_by_incident_key_and_marks_acked(backend_settings) -> None:
    # the triggered event never arrived (or arrived first elsewhere): the key still links
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        await post(svc, pd_event("incident-acknowledged"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["status"] == "acked"
        # who acknowledged it there has it: the incident commander
        assert kinds(inc) == [
            *OPENED,
            "pagerduty.linked",
            "incident.acknowledged",
            "pagerduty.assigned",
        ]


async def test_annotated_adds_the_note_to_the_timeline(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        for name in ("incident-triggered", "incident-annotated"):
            await post(svc, pd_event(name))
            await svc.idle()
        [inc] = await svc.incidents()
        note = inc["timeline"][-1]
        assert note["kind"] == "pagerduty.note"
        assert "PostHog status page confirms an API outage" in note["detail"]
        assert note["data"]["note_id"] == "P1NOTE7YZ0QWX4"
        assert note["data"]["by"] == "Dana Oncall"


async def test_resolved_in_pagerduty_resolves_the_incident(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        for name in ("incident-triggered", "incident-resolved"):
            await post(svc, pd_event(name))
            await svc.idle()
        [inc] = await svc.incidents()
        assert inc["status"] == "resolved"
        assert inc["resolved_at"].startswith("2026-11-29T03:41:30")
        assert kinds(inc)[-1] == "incident.resolved"
        # Alertmanager keeps repeating the firing alert: repeats, no new incident
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        assert len(await svc.incidents()) == 1


async def test_unmatched_triggered_opens_an_incident_of_its_own(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        await post(svc, pd_event("incident-triggered", data_incident_key="app-paged-itself-42"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["group_key"] == "pagerduty:app-paged-itself-42"
        assert inc["title"] == "[FIRING:1] PostHogAPIUnreachable posthog-integration"
        assert inc["pagerduty_incident_id"] == "Q2SC2ZUVOGX8H7"
        assert kinds(inc) == ["incident.opened", "pagerduty.assigned"]
        # and its later events find it by the PagerDuty incident id
        await post(svc, pd_event("incident-acknowledged", data_incident_key="app-paged-itself-42"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["status"] == "acked"


async def test_event_for_an_unknown_incident_is_counted_and_ignored(backend_settings) -> None:
    clock = ShiftableClock()
    settings = backend_settings(pagerduty_webhook_secrets=SECRET, visibility_timeout_s=0.2)
    async with running_service(settings, Overrides(clock=clock)) as svc:
        await post(
            svc,
            pd_event("incident-acknowledged", data_incident_key="nobody-knows", data_id="PUNKNOWN"),
        )
        await asyncio.sleep(0.1)
        clock.advance(120)  # past the grace for a late link
        await svc.idle()
        assert await svc.incidents() == []
        text = await (await svc.client.get("/metrics")).text()
        assert 'responder_pagerduty_unmatched_total{event_type="incident.acknowledged"} 1.0' in text


async def test_other_event_types_are_recorded_only(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        await post(svc, pd_event("incident-triggered"))
        await post(
            svc, pd_event("incident-triggered", id="01OTHER", event_type="incident.escalated")
        )
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["status"] == "open"
        assert inc["timeline"][-1]["kind"] == "pagerduty.event"
        assert inc["timeline"][-1]["data"]["event_type"] == "incident.escalated"
        ping = {
            "event": {
                "id": "01PING",
                "event_type": "pagey.ping",
                "resource_type": "pagey",
                "occurred_at": "2026-11-29T03:00:00Z",
                "agent": None,
                "client": None,
                "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
            }
        }
        assert (await post(svc, json.dumps(ping).encode()))["accepted"] == 1
        await svc.idle()
        assert len(await svc.incidents()) == 1


async def test_an_event_id_seen_before_is_acknowledged_and_ignored(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        await post(svc, pd_event("incident-triggered"))
        await svc.idle()
        body = pd_event("incident-annotated")
        first = await post(svc, body)
        again = await post(svc, body)
        await svc.idle()
        assert (first["accepted"], again["repeated"]) == (1, 1)
        [inc] = await svc.incidents()
        assert kinds(inc).count("pagerduty.note") == 1


async def test_label_with_pagerduty_incident_id_links_the_incident(backend_settings) -> None:
    async with await signed_service(backend_settings) as svc:
        payload = example("alertmanager/posthog-rate-limited-429-firing.json")
        payload["alerts"][0]["labels"]["pagerduty_incident_id"] = "PLABEL42"
        await svc.post_alertmanager(payload)
        await svc.idle()
        await post(
            svc,
            pd_event("incident-acknowledged", data_id="PLABEL42", data_incident_key="unrelated"),
        )
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["pagerduty_incident_id"] == "PLABEL42"
        assert inc["status"] == "acked"


async def test_a_note_handled_before_its_incident_is_linked_is_retried(backend_settings) -> None:
    settings = backend_settings(pagerduty_webhook_secrets=SECRET, visibility_timeout_s=0.2)
    async with running_service(settings) as svc:
        await svc.post_alertmanager(example(UNREACHABLE))
        await svc.idle()
        await post(svc, pd_event("incident-annotated"))  # arrives before "triggered" is handled
        await asyncio.sleep(0.1)
        await post(svc, pd_event("incident-triggered"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert kinds(inc) == [*OPENED, "pagerduty.linked", "pagerduty.assigned", "pagerduty.note"]
        text = await (await svc.client.get("/metrics")).text()
        assert 'responder_signal_retries_total{source="pagerduty"}' in text
