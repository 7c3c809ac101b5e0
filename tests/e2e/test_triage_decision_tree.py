"""The PostHog pack's whole decision tree, driven by real probe results, end to end.

Alerts go in through the HTTP intake; triage runs the pack's own quick-triage probes
against a real Prometheus scraping an exporter that plays the PostHog integration, a fake
PostHog status page, a fake health endpoint and a fake Kubernetes API; the incident must
end on the runbook's branch with the runbook's planned action.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage
from tests.support.fake_kube import FakeKube, running_fake_kube
from tests.support.packs import posthog_pack
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually
from tests.test_probe_pod_logs import kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SVC = {"service": "posthog-integration"}


@dataclass
class World:
    page: FakeStatuspage
    health: FakeHealthEndpoint
    kube: FakeKube
    responder: Service


@asynccontextmanager
async def world(
    tmp_path: Path, make_settings, *, error_ratio: float, budget_s: float = 6.0
) -> AsyncIterator[World]:
    async with ControlledExporter() as exporter:
        exporter.set_counter("posthog_requests_total", SVC, 0)
        exporter.grow("posthog_requests_total", SVC, per_second=20)
        for code in ("429", "500"):
            exporter.set_counter("posthog_errors_total", {**SVC, "status_code": code}, 0)
            if error_ratio:
                exporter.grow(
                    "posthog_errors_total",
                    {**SVC, "status_code": code},
                    per_second=20 * error_ratio / 2,
                )
        async with (
            running_prometheus([exporter]) as prom,
            FakeStatuspage() as page,
            FakeHealthEndpoint() as health,
            running_fake_kube() as kube,
        ):
            ratio_query = (
                'sum(rate(posthog_errors_total{service="posthog-integration"}[5m]))'
                ' / sum(rate(posthog_requests_total{service="posthog-integration"}[5m]))'
            )
            await prom.wait_for_samples(ratio_query, error_ratio * 0.9)
            now = datetime.now(UTC)
            kube.add_pod(
                "production",
                "posthog-integration-7d9f",
                {"app": "posthog-integration"},
                logs=[
                    (
                        now - timedelta(seconds=20),
                        "ERROR PostHog capture failed: HTTP 429 (api_key=phc_abcdefghijklmnop1234)",
                    )
                ],
            )
            settings = make_settings(
                rules=[
                    posthog_pack(tmp_path, status_page_url=page.url, health_url=health.health_url)
                ],
                triage=True,
                prometheus_url=prom.url,
                kubeconfig=kubeconfig(tmp_path / "kubeconfig", kube.url),
                # pod logs are read only in namespaces the allowlist names
                action_allowlist=["production/posthog-integration/*"],
                visibility_timeout_s=30,
                triage_budget_s=budget_s,
            )
            async with running_service(settings) as svc:
                yield World(page, health, kube, svc)


async def decided(
    svc: Service, alert_file: str | dict[str, Any], timeout_s: float = 20
) -> dict[str, Any]:
    payload = example(alert_file) if isinstance(alert_file, str) else alert_file
    before = {i["id"] for i in await svc.incidents()}
    assert (await svc.post_alertmanager(payload)).status == 200
    name = payload["alerts"][0]["labels"]["alertname"]

    async def done() -> dict[str, Any] | None:
        for inc in await svc.incidents():
            kinds = [e["kind"] for e in inc["timeline"]]
            if (
                inc["id"] not in before
                and name in json.dumps(inc["timeline"][0])
                and ("incident.decided" in kinds or "incident.undecided" in kinds)
            ):
                return inc
        return None

    found = await eventually(done, timeout_s=timeout_s, interval_s=0.1, what=f"{name} decided")
    assert found is not None
    return found


def resolved(payload_file: str) -> dict[str, Any]:
    payload = copy.deepcopy(example(payload_file))
    payload["status"] = payload["alerts"][0]["status"] = "resolved"
    return payload


def renamed(payload_file: str, alertname: str) -> dict[str, Any]:
    payload = copy.deepcopy(example(payload_file))
    payload["alerts"][0]["labels"]["alertname"] = alertname
    payload["alerts"][0]["fingerprint"] = ""
    return payload


def planned(inc: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    return [
        (
            a["spec"]["type"],
            a["spec"].get("env") or a["spec"].get("secret") or a["spec"].get("reason"),
            a["dry_run"],
        )
        for a in inc["planned_actions"]
    ]


def event(inc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in inc["timeline"] if e["kind"] == kind)


async def test_api_returning_errors_branches(tmp_path, make_settings) -> None:
    async with world(tmp_path, make_settings, error_ratio=0.6) as w:
        svc = w.responder

        # YES, and status.posthog.com shows an incident → wait for PostHog, enable fallback
        incident = w.page.open_incident(
            "Elevated error rates on the capture API", components=["API"], impact="major"
        )
        inc = await decided(svc, "alertmanager/posthog-upstream-503-firing.json")
        assert inc["branch"] == "vendor-incident"
        assert planned(inc) == [("set_env", {"POSTHOG_FALLBACK": "true"}, True)]
        assert "statuspage" in inc["notify"]
        assert inc["facts"]["vendor"]["incident"] is True
        assert inc["facts"]["vendor"]["incidents"][0]["name"].startswith("Elevated error")
        assert inc["facts"]["prometheus"]["error_ratio"] == pytest.approx(0.6, abs=0.06)
        # more than half the calls failing: P2 → P1
        assert inc["severity"] == "P1"
        assert event(inc, "incident.escalated")["data"]["rule"] == "most-calls-failing"
        decision = event(inc, "incident.decided")
        assert decision["data"]["facts"]["vendor.incident == true"] is True
        triage = event(inc, "triage.completed")
        logs = next(p for p in triage["data"]["probes"] if p["probe"] == "pod_logs")
        [line] = logs["evidence"]["lines"]["posthog-integration-7d9f"]
        assert "phc_abcdefghijklmnop1234" not in line
        assert "[REDACTED]" in line
        w.page.resolve_incident(incident)
        await svc.post_alertmanager(resolved("alertmanager/posthog-upstream-503-firing.json"))

        # YES, no vendor incident: our integration, by error type
        inc = await decided(svc, "alertmanager/posthog-auth-failure-401-firing.json")
        assert inc["branch"] == "our-integration-auth"
        assert planned(inc) == [("restart_if_secret_rotated", "posthog-secrets", True)]

        inc = await decided(svc, "alertmanager/posthog-rate-limited-429-firing.json")
        assert inc["branch"] == "our-integration-rate-limit"
        assert planned(inc) == [("set_env", {"RATE_LIMIT_MODE": "queue"}, True)]

        async def resolved_5xx() -> bool:
            return all(
                i["status"] == "resolved"
                for i in await svc.incidents()
                if i["rule"] == "upstream-errors"
            )

        await eventually(resolved_5xx, what="the 503 incident resolved")
        inc = await decided(svc, "alertmanager/posthog-upstream-500-firing.json")
        assert inc["branch"] == "our-integration-upstream-5xx"
        assert planned(inc) == [("set_env", {"POSTHOG_FALLBACK": "true"}, True)]
        assert inc["facts"]["vendor"]["incident"] is False

        inc = await decided(svc, "alertmanager/posthog-api-unreachable-firing.json")
        assert inc["branch"] == "our-integration"
        [(kind, reason, _)] = planned(inc)
        assert kind == "page_human"
        assert "credentials and configuration" in reason

        # the same, read through GET /v1/incidents/{id}
        one = await (await svc.client.get(f"/v1/incidents/{inc['id']}")).json()
        assert (one["branch"], one["planned_actions"]) == (inc["branch"], inc["planned_actions"])
        assert one["facts"]["health"]["ok"] is True


async def test_api_fine_branches(tmp_path, make_settings) -> None:
    async with world(tmp_path, make_settings, error_ratio=0.0) as w:
        svc = w.responder
        # NO errors, our service unhealthy → our infrastructure
        w.health.set_posthog("down")
        inc = await decided(svc, "alertmanager/posthog-high-latency-firing.json")
        assert inc["branch"] == "our-infrastructure"
        [(kind, reason, _)] = planned(inc)
        assert (kind, reason) == (
            "page_human",
            "Our infrastructure issue: check pods, memory, network.",
        )
        assert inc["facts"]["health"]["status"] == "down"
        assert inc["severity"] == "P2"  # no escalation: the API is fine

        # NO errors, healthy → likely intermittent: monitor, no action
        w.health.set_posthog("ok")
        inc = await decided(
            svc, renamed("alertmanager/posthog-high-latency-firing.json", "PostHogWebhookDelay")
        )
        assert inc["branch"] == "intermittent"
        assert inc["planned_actions"] == []
        assert inc["severity"] == "P3"


async def test_a_hanging_status_page_costs_the_budget_not_the_incident(
    tmp_path, make_settings
) -> None:
    async with world(tmp_path, make_settings, error_ratio=0.6, budget_s=2.0) as w:
        w.page.hang()
        started = time.monotonic()
        inc = await decided(w.responder, "alertmanager/posthog-rate-limited-429-firing.json")
        took = time.monotonic() - started
        assert took < 2.0 + 2.5  # the budget, plus the pipeline around it
        triage = event(inc, "triage.completed")
        outcomes = {p["probe"]: (p["ok"], p["error"]) for p in triage["data"]["probes"]}
        assert outcomes["vendor_status"] == (False, "cut off by the triage budget (2s)")
        assert [outcomes[p][0] for p in ("prometheus", "health", "pod_logs")] == [True] * 3
        # without the vendor's answer no branch of "API returning errors" can be chosen
        assert inc["branch"] is None
        undecided = event(inc, "incident.undecided")
        assert "vendor" in undecided["detail"]
        assert inc["severity"] == "P1"  # the escalation needs no vendor facts
