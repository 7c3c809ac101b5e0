"""End to end with the real Alertmanager binary: alerts in through its v2 API, its webhook
notifications (bearer token, grouping, repeats, resolutions) into the responder on Redis.

Timing: group_wait and group_interval are 1s and repeat_interval 2s, so Alertmanager
notifies a group about 1s after its first alert and repeats it every 2-3s; every wait
below polls with a deadline.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from responder.settings import Settings
from tests.support.alertmanager import (
    Alertmanager,
    firing_alert,
    now_ms,
    resolved_alert,
    running_alertmanager,
    sample_sum,
    webhook_config,
)
from tests.support.service import Service, running_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

TOKEN = f"e2e-{secrets.token_hex(12)}"
DELIVERY_TIMEOUT_S = 10.0  # first notification: group_wait (1s) plus start-up slack
REPEAT_TIMEOUT_S = 15.0  # two repeats at repeat_interval 2s, flushed every group_interval
POLL_S = 0.1


@pytest.fixture
async def responder(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> AsyncIterator[Service]:
    settings = make_settings(
        redis_url=redis_url, redis_prefix=redis_prefix, alertmanager_token=TOKEN
    )
    async with running_service(settings) as svc:
        yield svc


def am_config(svc: Service, *, token: str) -> dict[str, Any]:
    url = svc.base_url.rstrip("/") + "/v1/webhooks/alertmanager"
    return webhook_config(
        url,
        token=token,
        group_by=("alertname", "service"),
        group_wait="1s",
        group_interval="1s",
        repeat_interval="2s",
    )


async def service_metrics(svc: Service) -> str:
    resp = await svc.client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def webhooks(svc: Service, outcome: str) -> float:
    return sample_sum(
        await service_metrics(svc),
        "responder_webhooks_total",
        source="alertmanager",
        outcome=outcome,
    )


async def signals(svc: Service) -> dict[str, float]:
    text = await service_metrics(svc)
    return {
        outcome: sample_sum(text, "responder_signals_total", source="alertmanager", outcome=outcome)
        for outcome in ("new", "changed", "repeat")
    }


async def repeats_seen(svc: Service, fingerprint: str) -> int:
    """How many deliveries of this alert intake counted as repeats (from its dedupe record)."""
    assert svc.runtime.store is not None
    record = await svc.runtime.store.signal_record(f"alertmanager:{fingerprint}")
    return -1 if record is None else record.repeats


async def fingerprints(am: Alertmanager) -> dict[str, str]:
    """Alertmanager's fingerprint of each of its alerts, by the alert's ``instance`` label."""
    return {a["labels"]["instance"]: a["fingerprint"] for a in await am.alerts()}


async def delivered(am: Alertmanager) -> float:
    """Webhook requests Alertmanager sent that the receiver answered with 2xx."""
    text = await am.metrics()
    total = sample_sum(text, "alertmanager_notification_requests_total", integration="webhook")
    failed = sample_sum(
        text, "alertmanager_notification_requests_failed_total", integration="webhook"
    )
    return total - failed


def kinds(incident: dict[str, Any]) -> Counter[str]:
    return Counter(e["kind"] for e in incident["timeline"])


def by_service(incidents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Incidents keyed by the ``service`` label of their alerts (one service each)."""
    out: dict[str, dict[str, Any]] = {}
    for incident in incidents:
        services = {a["labels"]["service"] for a in incident["alerts"]}
        assert len(services) == 1, incident
        out[services.pop()] = incident
    return out


def checkout_alert(instance: str, starts_at: Any) -> dict[str, Any]:
    return firing_alert(
        {
            "alertname": "E2ECheckoutErrors",
            "service": "checkout",
            "instance": instance,
            "severity": "page",
        },
        annotations={"summary": f"5xx above 5% on {instance}"},
        starts_at=starts_at,
    )


@pytest.mark.timeout(60)
async def test_groups_repeats_and_resolution_through_real_alertmanager(
    responder: Service,
) -> None:
    starts = now_ms()
    checkout_0 = checkout_alert("checkout-0", starts)
    checkout_1 = checkout_alert("checkout-1", starts)
    search_0 = firing_alert(
        {"alertname": "E2ESearchLatency", "service": "search", "instance": "search-0"},
        annotations={"summary": "p99 above 2s"},
        starts_at=starts,
    )
    alerts = [checkout_0, checkout_1, search_0]

    async with running_alertmanager(am_config(responder, token=TOKEN)) as am:
        await am.post_alerts(alerts)
        fps = await fingerprints(am)
        assert set(fps) == {"checkout-0", "checkout-1", "search-0"}, am.log()

        # First notification of each group: one incident per group, three alerts in all.
        async def two_incidents_with_all_alerts() -> list[dict[str, Any]] | None:
            incidents = await responder.incidents()
            if sum(len(i["alerts"]) for i in incidents) == 3:
                return incidents
            return None

        await eventually(
            two_incidents_with_all_alerts,
            timeout_s=DELIVERY_TIMEOUT_S,
            interval_s=POLL_S,
            what="both groups delivered",
        )

        # Keep firing until Alertmanager has sent every group at least twice more.
        async def every_alert_repeated_twice() -> bool:
            counts = [await repeats_seen(responder, fp) for fp in fps.values()]
            return min(counts) >= 2

        await eventually(
            every_alert_repeated_twice,
            timeout_s=REPEAT_TIMEOUT_S,
            interval_s=POLL_S,
            what="two repeats of each group",
        )
        await responder.idle()

        text = await service_metrics(responder)
        accepted = sample_sum(
            text, "responder_webhooks_total", source="alertmanager", outcome="accepted"
        )
        assert accepted >= 6  # 2 groups x (first notification + 2 repeats)
        for refused in ("unauthorized", "forbidden", "invalid", "unavailable"):
            assert sample_sum(text, "responder_webhooks_total", outcome=refused) == 0, refused
        seen = await signals(responder)
        assert seen["new"] == 3
        assert seen["changed"] == 0
        assert seen["repeat"] >= 6  # 3 alerts x 2 repeats; none of them queued

        incidents = by_service(await responder.incidents())
        assert sorted(incidents) == ["checkout", "search"]
        checkout, search = incidents["checkout"], incidents["search"]
        assert {a["fingerprint"] for a in checkout["alerts"]} == {
            fps["checkout-0"],
            fps["checkout-1"],
        }
        assert [a["fingerprint"] for a in search["alerts"]] == [fps["search-0"]]
        assert checkout["group_key"] == '{alertname="E2ECheckoutErrors",service="checkout"}'
        # no rule pack claims these test alerts: opened, then recorded as unclassified
        assert kinds(checkout) == {
            "incident.opened": 1,
            "incident.unclassified": 1,
            "alert.joined": 1,
        }
        assert kinds(search) == {"incident.opened": 1, "incident.unclassified": 1}
        assert all(i["status"] == "open" for i in incidents.values())

        # Resolve everything: Alertmanager sends each group once more, resolved.
        await am.post_alerts([resolved_alert(a) for a in alerts])

        async def both_resolved() -> bool:
            return len(await responder.incidents(status="resolved")) == 2

        await eventually(
            both_resolved,
            timeout_s=DELIVERY_TIMEOUT_S,
            interval_s=POLL_S,
            what="both incidents resolved",
        )
        await responder.idle()

    final = by_service(await responder.incidents())
    assert kinds(final["checkout"]) == {
        "incident.opened": 1,
        "incident.unclassified": 1,
        "alert.joined": 1,
        "alert.resolved": 2,
        "incident.resolved": 1,
    }
    assert kinds(final["search"]) == {
        "incident.opened": 1,
        "incident.unclassified": 1,
        "alert.resolved": 1,
        "incident.resolved": 1,
    }
    for incident in final.values():
        assert incident["status"] == "resolved"
        assert incident["resolved_at"] is not None
        assert {a["status"] for a in incident["alerts"]} == {"resolved"}
        assert incident["timeline"][-1]["kind"] == "incident.resolved"
        assert [e["seq"] for e in incident["timeline"]] == list(range(len(incident["timeline"])))
    assert (await signals(responder))["changed"] == 3  # one resolution per alert


@pytest.mark.timeout(60)
async def test_wrong_bearer_token_is_refused_and_opens_nothing(responder: Service) -> None:
    config = am_config(responder, token=f"not-{TOKEN}")
    async with running_alertmanager(config) as am:
        await am.post_alerts(
            [
                firing_alert(
                    {"alertname": "E2EWrongToken", "service": "billing", "instance": "billing-0"},
                    starts_at=now_ms(),
                )
            ]
        )

        # Alertmanager gets 403, gives up on that notification, tries again next interval.
        async def refused_twice() -> bool:
            return await webhooks(responder, "forbidden") >= 2

        await eventually(
            refused_twice,
            timeout_s=DELIVERY_TIMEOUT_S,
            interval_s=POLL_S,
            what="forbidden deliveries",
        )
        text = await am.metrics()
        assert (
            sample_sum(
                text, "alertmanager_notification_requests_failed_total", integration="webhook"
            )
            >= 2
        ), am.log()
        assert await delivered(am) == 0

    assert await webhooks(responder, "accepted") == 0
    assert await webhooks(responder, "unauthorized") == 0  # a token was sent, a wrong one
    assert await signals(responder) == {"new": 0, "changed": 0, "repeat": 0}
    assert await responder.incidents() == []
    assert responder.runtime.queue is not None
    stats = await responder.runtime.queue.stats()
    assert (stats.depth, stats.pending) == (0, 0)
    assert responder.notifier.changes == []


@pytest.mark.timeout(60)
async def test_ha_pair_deliveries_collapse_into_one_incident(responder: Service) -> None:
    config = am_config(responder, token=TOKEN)
    alert = firing_alert(
        {"alertname": "E2EQueueBacklog", "service": "orders", "instance": "orders-0"},
        annotations={"summary": "backlog above 10k"},
        starts_at=now_ms(),
    )
    async with (
        running_alertmanager(config) as am_a,
        running_alertmanager(config) as am_b,
    ):
        await asyncio.gather(am_a.post_alerts([alert]), am_b.post_alerts([alert]))
        fp_a, fp_b = (await fingerprints(am_a))["orders-0"], (await fingerprints(am_b))["orders-0"]
        assert fp_a == fp_b

        async def both_delivered() -> bool:
            return await delivered(am_a) >= 1 and await delivered(am_b) >= 1

        await eventually(
            both_delivered,
            timeout_s=DELIVERY_TIMEOUT_S,
            interval_s=POLL_S,
            what="a notification from each Alertmanager",
        )
        await responder.idle()

        seen = await signals(responder)
        assert seen["new"] == 1  # accepted once...
        assert seen["changed"] == 0
        assert seen["repeat"] >= 1  # ...the other Alertmanager's copy was a repeat
        assert await repeats_seen(responder, fp_a) >= 1
        assert await webhooks(responder, "accepted") >= 2

        incidents = await responder.incidents()
        assert len(incidents) == 1
        (incident,) = incidents
        assert [a["fingerprint"] for a in incident["alerts"]] == [fp_a]
        assert kinds(incident) == {"incident.opened": 1, "incident.unclassified": 1}

        # Both resolve it too; the second resolution is a repeat as well.
        await asyncio.gather(
            am_a.post_alerts([resolved_alert(alert)]), am_b.post_alerts([resolved_alert(alert)])
        )

        async def resolved() -> bool:
            return len(await responder.incidents(status="resolved")) == 1

        await eventually(
            resolved, timeout_s=DELIVERY_TIMEOUT_S, interval_s=POLL_S, what="incident resolved"
        )
        await responder.idle()

    (incident,) = await responder.incidents()
    assert kinds(incident) == {
        "incident.opened": 1,
        "incident.unclassified": 1,
        "alert.resolved": 1,
        "incident.resolved": 1,
    }
    seen = await signals(responder)
    assert (seen["new"], seen["changed"]) == (1, 1)
