"""The runbook's 429 step "Check rate limit headers", end to end.

A 429 alert goes in through the HTTP intake; triage runs the shipped pack's probes against
a real Prometheus (20% of the integration's calls fail with 429), a fake PostHog status
page (no incident), a fake health endpoint, a fake Kubernetes API, and a fake PostHog API
whose answer carries the rate limit headers. The headers' figures must become facts, pick
the spent-quota branch, and reach the postmortem's "request a limit increase".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_triage_decision_tree import SVC, decided
from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage, FakeVendorApi
from tests.support.fake_kube import running_fake_kube
from tests.support.packs import posthog_pack
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import running_service
from tests.test_probe_pod_logs import kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_rate_limit_headers_are_facts_the_429_branch_and_the_postmortem_use(
    tmp_path: Path, make_settings
) -> None:
    async with ControlledExporter() as exporter:
        exporter.set_counter("posthog_requests_total", SVC, 0)
        exporter.grow("posthog_requests_total", SVC, per_second=20)
        errors = {**SVC, "status_code": "429"}
        exporter.set_counter("posthog_errors_total", errors, 0)
        exporter.grow("posthog_errors_total", errors, per_second=4)
        async with (
            running_prometheus([exporter]) as prom,
            FakeStatuspage() as page,
            FakeHealthEndpoint() as health,
            FakeVendorApi() as api,
            running_fake_kube() as kube,
        ):
            api.rate_limited(limit=1000, remaining=0, reset=1733500000, retry_after_s=30)
            await prom.wait_for_samples(
                'sum(rate(posthog_errors_total{service="posthog-integration"}[5m]))'
                ' / sum(rate(posthog_requests_total{service="posthog-integration"}[5m]))',
                0.18,
            )
            settings = make_settings(
                rules=[
                    posthog_pack(
                        tmp_path,
                        status_page_url=page.url,
                        health_url=health.health_url,
                        api_url=api.url,
                    )
                ],
                triage=True,
                prometheus_url=prom.url,
                kubeconfig=kubeconfig(tmp_path / "kubeconfig", kube.url),
                action_allowlist=["production/posthog-integration/*"],
                visibility_timeout_s=30,
                triage_budget_s=6.0,
            )
            async with running_service(settings) as svc:
                inc = await decided(svc, "alertmanager/posthog-rate-limited-429-firing.json")
                assert [r.path for r in api.requests] == ["/"]
                assert inc["facts"]["http"] == {
                    "status_code": 429,
                    # only the headers the probe names: not the cookie
                    "headers": {
                        "x-ratelimit-limit": "1000",
                        "x-ratelimit-remaining": "0",
                        "x-ratelimit-reset": "1733500000",
                        "retry-after": "30",
                    },
                    "rate_limit": {
                        "limit": 1000,
                        "remaining": 0,
                        "reset": 1733500000,
                        "retry_after_s": 30,
                    },
                }
                assert inc["branch"] == "our-integration-rate-limit-spent"
                decided_event = next(e for e in inc["timeline"] if e["kind"] == "incident.decided")
                assert decided_event["data"]["facts"]["http.rate_limit.remaining <= 0"] == 0

                resp = await svc.client.get(f"/v1/incidents/{inc['id']}/postmortem?format=json")
                assert resp.status == 200, await resp.text()
                items = (await resp.json())["action_items"]
                assert (
                    "Request a limit increase from the vendor: limit 1000, remaining 0, "
                    "reset 1733500000, Retry-After 30 s (at triage)"
                ) in items
