"""When triage runs, and what it leaves on the incident (fakes on loopback, no Prometheus)."""

from __future__ import annotations

import copy

from responder.app import Overrides
from tests.support.clock import ShiftableClock
from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage
from tests.support.packs import posthog_pack
from tests.support.service import example, running_service

RATE_LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"


def pod(n: int) -> dict:
    payload = copy.deepcopy(example(RATE_LIMITED))
    payload["alerts"][0]["labels"]["instance"] = f"pod-{n}"
    payload["alerts"][0]["fingerprint"] = ""
    return payload


def kinds(inc: dict) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


async def test_triage_runs_on_classification_and_reuses_fresh_facts(
    backend_settings, tmp_path
) -> None:
    clock = ShiftableClock()
    async with FakeStatuspage() as page, FakeHealthEndpoint() as health:
        pack = posthog_pack(tmp_path, status_page_url=page.url, health_url=health.health_url)
        settings = backend_settings(rules=[pack], triage=True, triage_cache_ttl_s=60)
        async with running_service(settings, Overrides(clock=clock)) as svc:
            await svc.post_alertmanager(pod(1))
            await svc.idle()
            assert len(page.requests) == 1
            assert len(health.requests) == 1
            [inc] = await svc.incidents()
            assert kinds(inc)[:4] == [
                "incident.opened",
                "incident.classified",
                "triage.completed",
                "incident.undecided",
            ]
            # no Prometheus here: the error-rate fact is missing, and says why
            assert inc["facts"]["prometheus"] == {"error": "RESPONDER_PROMETHEUS_URL is not set"}
            assert inc["facts"]["vendor"]["incident"] is False
            assert inc["facts"]["health"]["ok"] is True
            assert "prometheus" in inc["timeline"][3]["detail"]

            # a second alert of the group within the TTL: the facts are fresh, no probe runs
            await svc.post_alertmanager(pod(2))
            await svc.idle()
            assert len(page.requests) == 1
            # past the TTL, the next joining alert triggers a new triage
            clock.advance(61)
            await svc.post_alertmanager(pod(3))
            await svc.idle()
            assert len(page.requests) == 2
            [inc] = await svc.incidents()
            assert kinds(inc).count("triage.completed") == 2


async def test_no_triage_when_turned_off_or_when_no_probe_is_planned(
    backend_settings, tmp_path
) -> None:
    async with FakeStatuspage() as page, FakeHealthEndpoint() as health:
        pack = posthog_pack(tmp_path, status_page_url=page.url, health_url=health.health_url)
        async with running_service(backend_settings(rules=[pack], triage=False)) as svc:
            await svc.post_alertmanager(pod(1))
            await svc.idle()
            [inc] = await svc.incidents()
            assert "triage.completed" not in kinds(inc)
        async with running_service(backend_settings(rules=[], triage=True)) as svc:
            await svc.post_alertmanager(pod(1))  # no pack claims it: nothing to probe
            await svc.idle()
        assert page.requests == []


async def test_metrics_count_probe_outcomes(backend_settings, tmp_path) -> None:
    async with FakeStatuspage() as page, FakeHealthEndpoint() as health:
        page.fail_with(500)
        pack = posthog_pack(tmp_path, status_page_url=page.url, health_url=health.health_url)
        async with running_service(backend_settings(rules=[pack], triage=True)) as svc:
            await svc.post_alertmanager(pod(1))
            await svc.idle()
            text = await (await svc.client.get("/metrics")).text()
            assert (
                'responder_probe_results_total{outcome="failed",probe="vendor_status"} 1.0' in text
            )
            assert 'responder_probe_results_total{outcome="ok",probe="health"} 1.0' in text
            assert "responder_triage_seconds_count 1.0" in text
