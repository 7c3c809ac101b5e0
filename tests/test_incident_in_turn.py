"""Every signal of one incident, whatever its source, is handled in turn: its follow-up
(triage, mitigation, notifications) never runs twice at once, in one process or across
replicas, however the signal found the incident (alert group, PagerDuty id or key)."""

from __future__ import annotations

from typing import Any

from responder.ingest.pagerduty import sign
from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage
from tests.support.packs import posthog_pack
from tests.support.service import EXAMPLES, Service, example, running_service
from tests.support.waiting import eventually

PD = EXAMPLES / "pagerduty"
SECRET = (PD / "webhook-secret.txt").read_text().strip()
# PagerDuty's sample events carry the incident key Alertmanager gives this alert's group
UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def pd_event(name: str) -> bytes:
    return (PD / f"{name}.json").read_bytes()


async def post_pagerduty(svc: Service, body: bytes) -> None:
    resp = await svc.post_pagerduty(body, {"X-PagerDuty-Signature": sign(body, SECRET)})
    assert resp.status == 200, await resp.text()


def kinds(incident: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in incident["timeline"]]


async def test_pagerduty_webhook_during_triage_does_not_triage_again(
    backend_settings, tmp_path
) -> None:
    async with FakeStatuspage() as page, FakeHealthEndpoint() as health:
        # the vendor's status page answers slowly: triage is still running when
        # PagerDuty tells us of the page Alertmanager sent for the same alert
        page.slow(1.0)
        pack = posthog_pack(tmp_path, status_page_url=page.url, health_url=health.health_url)
        settings = backend_settings(
            rules=[pack],
            triage=True,
            visibility_timeout_s=8.0,
            pagerduty_webhook_secrets=SECRET,
        )
        async with running_service(settings) as svc:
            await svc.post_alertmanager(example(UNREACHABLE))

            async def probing() -> bool:
                return len(page.requests) >= 1

            await eventually(probing, what="triage probing the status page")
            await post_pagerduty(svc, pd_event("incident-triggered"))
            await post_pagerduty(svc, pd_event("incident-annotated"))
            await svc.idle(timeout_s=20)
            [inc] = await svc.incidents()
            assert kinds(inc).count("triage.completed") == 1, kinds(inc)
            assert len(page.requests) == 1
            assert "pagerduty.linked" in kinds(inc)
            assert "pagerduty.note" in kinds(inc)
            # and nothing the PagerDuty events wrote was skipped by the follow-up: the
            # notifier saw every event once, in order
            seen = svc.notifier.kinds()
            assert seen == kinds(inc), (seen, kinds(inc))


async def test_another_replica_leaves_an_incident_in_follow_up_to_the_one_holding_it(
    make_settings, redis_url, redis_prefix, tmp_path
) -> None:
    async with FakeStatuspage() as page, FakeHealthEndpoint() as health:
        page.slow(1.5)
        pack = posthog_pack(tmp_path, status_page_url=page.url, health_url=health.health_url)

        def settings(workers: int):
            return make_settings(
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                rules=[pack],
                triage=True,
                visibility_timeout_s=8.0,
                pagerduty_webhook_secrets=SECRET,
                workers=workers,
            )

        # replica A's one worker takes the alert and is in triage when replica B starts:
        # B's workers take PagerDuty's events of the same incident
        async with running_service(settings(1)) as a:
            await a.post_alertmanager(example(UNREACHABLE))

            async def probing() -> bool:
                return len(page.requests) >= 1

            await eventually(probing, what="triage probing the status page")
            async with running_service(settings(2)) as b:
                await post_pagerduty(b, pd_event("incident-triggered"))
                await post_pagerduty(b, pd_event("incident-annotated"))
                await b.idle(timeout_s=30)
                [inc] = await b.incidents()
                assert kinds(inc).count("triage.completed") == 1, kinds(inc)
                assert len(page.requests) == 1
                assert "pagerduty.linked" in kinds(inc)
                assert "pagerduty.note" in kinds(inc)
                # the replicas' notifiers together saw every event once, in order
                seen = sorted(
                    (e.seq, e.kind)
                    for svc in (a, b)
                    for c in svc.notifier.changes
                    for e in c.events
                )
                assert [k for _, k in seen] == kinds(inc), seen
