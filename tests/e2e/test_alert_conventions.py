"""Alert rules written the ways teams already write them, through the real stack, into the
shipped PostHog pack.

A new user does not rename their alerts for us: they point their Alertmanager at the
responder and expect their existing rules to be understood. So a real Prometheus evaluates
alert rules in several common conventions (the integration named in ``app``, ``job``,
``deployment``, ``container``, ``app_kubernetes_io_name`` or only the alert's name rather than
``service``; the error in a ``status_code``, ``code``, ``http_status`` or ``response_code``
label, in the alert's name or only in its summary or description; alert names the pack never
lists), all in one Prometheus rule group of one run, next to an old alert the
pack names exactly and another service's alert. A real Alertmanager routes them all to the
responder's webhook. The responder runs ``rules/posthog.yaml`` as shipped (dry-run), its
quick-triage probes aimed at a fake PostHog status page (no incident), a fake health
endpoint (healthy), the real Prometheus (an exporter playing the integration: 20% of its
calls fail) and a fake Kubernetes API (the integration's pod and its error log).

Each alert of the integration must become an incident with the runbook's severity and
error type (and the reasons, through the HTTP API), be triaged by all four probes and end
on the decision tree's branch for its error type, with its planned (dry-run) action; the
other service's alert must not be the pack's.

Timing: Prometheus scrapes and evaluates every second, the alerts have no ``for:``,
Alertmanager notifies a group 1s after its first alert. Alertmanager is told the
responder's port before the responder listens (Prometheus must exist first: the responder
asks it during triage), so its first notifications fail and are sent again; and the
responder only starts once Prometheus has the error ratio, so triage reads the true one.
Every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from responder.settings import Settings
from tests.e2e.test_triage_decision_tree import planned
from tests.support.alertmanager import running_alertmanager, webhook_config
from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage, FakeVendorApi
from tests.support.fake_kube import running_fake_kube
from tests.support.packs import posthog_pack
from tests.support.procs import free_port
from tests.support.prometheus import ControlledExporter, Prometheus, running_prometheus
from tests.support.service import Service, running_service
from tests.support.waiting import eventually
from tests.test_probe_pod_logs import kubeconfig

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

TOKEN = f"e2e-{secrets.token_hex(12)}"
NS = "production"
INTEGRATION = "posthog-integration"
POD = "posthog-integration-5c8d"
REQUESTS_PER_S = 20.0
ERROR_RATIO = 0.2  # above the tree's 5%, below the 50% that would escalate to P1
DECIDED_TIMEOUT_S = 45.0  # Alertmanager's retries after the responder starts, and triage
POLL_S = 0.2

# The alert rules, as a user might already have them (Prometheus's rule file format).
ALERT_RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "conventions",
            "interval": "1s",
            "rules": [
                # Kubernetes style: the integration in `app`, the status code in a label, a
                # name of the team's own that the pack never lists; on the real error ratio.
                {
                    "alert": "IntegrationCallsThrottled",
                    "expr": 'sum(rate(posthog_errors_total{status_code="429"}[30s]))'
                    " / sum(rate(posthog_requests_total[30s])) > 0.05",
                    "labels": {
                        "app": INTEGRATION,
                        "namespace": NS,
                        "status_code": "429",
                        "severity": "warning",  # the runbook's P2 is not lowered to P3
                    },
                    "annotations": {"summary": "More than 5% of analytics calls refused"},
                },
                # The Prometheus job names the integration; the error is only in the text.
                {
                    "alert": "AnalyticsCallsFailing",
                    "expr": "vector(1)",
                    "labels": {"job": INTEGRATION, "namespace": NS},
                    "annotations": {
                        "summary": "PostHog answers 503 Service Unavailable",
                        "description": "Event capture is failing for some requests.",
                    },
                },
                # The deployment names the integration; the error is in the alert's name.
                {
                    "alert": "PostHogUnauthorized",
                    "expr": "vector(1)",
                    "labels": {"deployment": INTEGRATION, "namespace": NS},
                    "annotations": {"summary": "Analytics calls are rejected"},
                },
                # The runbook's own alert, named exactly by the pack's rule `rate-limited`;
                # its `service` and `status_code` labels come from the exporter's series.
                {
                    "alert": "PostHogRateLimited",
                    "expr": "sum by (service, status_code) (rate(posthog_errors_total"
                    '{service="posthog-integration",status_code="429"}[30s])) > 0',
                    "labels": {"namespace": NS, "severity": "info"},
                    "annotations": {"summary": "PostHog rate-limits us (HTTP 429)"},
                },
                # The integration in `container`, the status in a `code` label.
                {
                    "alert": "EventIngestDegraded",
                    "expr": "vector(1)",
                    "labels": {"container": INTEGRATION, "namespace": NS, "code": "503"},
                    "annotations": {"summary": "Event ingestion is degraded"},
                },
                # Helm's `app.kubernetes.io/name` (as Prometheus writes it), `http_status`.
                {
                    "alert": "AnalyticsKeyRejected",
                    "expr": "vector(1)",
                    "labels": {
                        "app_kubernetes_io_name": INTEGRATION,
                        "namespace": NS,
                        "http_status": "401",
                    },
                    "annotations": {"summary": "Analytics calls are refused"},
                },
                # `service` names the integration, the status is in `response_code`.
                {
                    "alert": "AnalyticsQuotaExceeded",
                    "expr": "vector(1)",
                    "labels": {"service": INTEGRATION, "namespace": NS, "response_code": "429"},
                    "annotations": {"summary": "Analytics calls over quota"},
                },
                # No label names the integration (the alert's name does) and only the
                # description says what the error is.
                {
                    "alert": "PostHogCaptureFailing",
                    "expr": "vector(1)",
                    "labels": {"namespace": NS},
                    "annotations": {
                        "summary": "Event capture is failing",
                        "description": "Capture calls are answered with Too Many Requests.",
                    },
                },
                # Another service's alert, however loud: not the pack's.
                {
                    "alert": "CheckoutSlow",
                    "expr": "vector(1)",
                    "labels": {"service": "checkout", "namespace": NS, "severity": "critical"},
                    "annotations": {"summary": "checkout p99 latency above 2s"},
                },
                # A label that merely contains the integration's name: not the pack's either.
                {
                    "alert": "CanaryCallsFailing",
                    "expr": "vector(1)",
                    "labels": {
                        "app": "posthog-integration-canary-tests",
                        "namespace": NS,
                        "status_code": "429",
                    },
                    "annotations": {"summary": "canary calls failing"},
                },
            ],
        }
    ]
}

ERROR_RATIO_QUERY = (
    'sum(rate(posthog_errors_total{service="posthog-integration"}[5m]))'
    ' / sum(rate(posthog_requests_total{service="posthog-integration"}[5m]))'
)


@dataclass
class World:
    prom: Prometheus
    responder: Service


@contextlib.contextmanager
def clean_environment() -> Iterator[None]:
    """Settings come from this module, never from the developer's shell (the autouse
    fixture that does this for each test runs after a module's fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("RESPONDER_"):
                mp.delenv(name)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("conventions")
    port = free_port()  # the responder's, for Alertmanager's webhook
    webhook = f"http://127.0.0.1:{port}/v1/webhooks/alertmanager"
    am_config = webhook_config(
        webhook,
        token=TOKEN,
        group_by=("alertname", "service"),
        group_wait="1s",
        group_interval="1s",
        repeat_interval="2s",
    )
    svc = {"service": INTEGRATION}
    with clean_environment():
        async with (
            ControlledExporter() as exporter,
            running_alertmanager(am_config) as am,
            FakeStatuspage() as page,
            FakeHealthEndpoint() as health,
            FakeVendorApi() as api,
            running_fake_kube() as kube,
        ):
            # the integration: 20 calls a second, 20% of them refused with 429
            exporter.grow("posthog_requests_total", svc, per_second=REQUESTS_PER_S)
            exporter.grow(
                "posthog_errors_total",
                {**svc, "status_code": "429"},
                per_second=REQUESTS_PER_S * ERROR_RATIO,
            )
            kube.add_pod(
                NS,
                POD,
                {"app": INTEGRATION},
                logs=[
                    (
                        datetime.now(UTC) - timedelta(seconds=20),
                        "ERROR PostHog capture failed: HTTP 429 Too Many Requests",
                    )
                ],
            )
            async with running_prometheus(
                [exporter],
                rules={"conventions.yml": ALERT_RULES},
                alertmanagers=[f"127.0.0.1:{am.port}"],
            ) as prom:
                # a ratio of two rates over one window: right as soon as it has two samples
                await prom.wait_for_samples(ERROR_RATIO_QUERY, ERROR_RATIO * 0.8)
                settings = Settings(
                    rules=[
                        posthog_pack(
                            tmp,
                            status_page_url=page.url,
                            health_url=health.health_url,
                            api_url=api.url,
                        )
                    ],
                    alertmanager_token=TOKEN,
                    triage=True,
                    triage_budget_s=6.0,
                    visibility_timeout_s=30.0,
                    batch_wait_s=0.2,
                    prometheus_url=prom.url,
                    kubeconfig=kubeconfig(tmp / "kubeconfig", kube.url),
                    # pod logs are read only in namespaces the allowlist names
                    action_allowlist=["production/posthog-integration/*"],
                )
                async with running_service(settings, port=port) as responder:
                    try:
                        yield World(prom, responder)
                    except BaseException:
                        print("--- alertmanager log ---\n" + am.log()[-4000:])
                        print("--- prometheus log ---\n" + prom.log()[-4000:])
                        raise


# ------------------------------------------------------------------------------- helpers


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


def event(inc: dict[str, Any], kind: str) -> dict[str, Any]:
    [found] = [e for e in inc["timeline"] if e["kind"] == kind]
    return found


async def incident(svc: Service, alertname: str, until: str) -> dict[str, Any]:
    """The incident of the alert called ``alertname``, through ``GET /v1/incidents/{id}``,
    once its timeline has an ``until`` event."""

    async def found() -> dict[str, Any] | None:
        for inc in await svc.incidents():
            names = {a["labels"].get("alertname") for a in inc["alerts"]}
            if alertname in names and until in kinds(inc):
                return inc
        return None

    listed = await eventually(
        found, timeout_s=DECIDED_TIMEOUT_S, interval_s=POLL_S, what=f"{alertname}: {until}"
    )
    resp = await svc.client.get(f"/v1/incidents/{listed['id']}")
    assert resp.status == 200, await resp.text()
    one: dict[str, Any] = await resp.json()
    assert one["id"] == listed["id"]
    return one


def assert_triaged(inc: dict[str, Any]) -> None:
    """All four quick-triage probes ran and answered: the status page (no incident), our
    health endpoint (healthy), Prometheus (the exporter's 20% of errors), the pod's log;
    and, for a 429, the PostHog API's rate limit headers."""
    triage = event(inc, "triage.completed")
    probes = {p["probe"]: p for p in triage["data"]["probes"]}
    quick = ["health", "pod_logs", "prometheus", "vendor_status"]
    assert sorted(probes) in (quick, sorted([*quick, "http"]))
    failed = {name: p["error"] for name, p in probes.items() if not p["ok"]}
    assert failed == {}
    facts = inc["facts"]
    assert facts["vendor"]["incident"] is False
    assert facts["health"]["ok"] is True
    assert facts["prometheus"]["error_ratio"] == pytest.approx(ERROR_RATIO, abs=0.08)
    assert list(probes["pod_logs"]["evidence"]["lines"]) == [POD]


def assert_decided(inc: dict[str, Any], branch: str, error_type: str) -> None:
    assert inc["branch"] == branch
    decided = event(inc, "incident.decided")
    assert decided["data"]["branch"] == branch
    assert decided["detail"].startswith(f"Decision tree: {branch}; planned: ")
    assert "(dry-run)" in decided["detail"]
    # the facts that chose the branch, with their values
    used = decided["data"]["facts"]
    assert used == {
        "prometheus.error_ratio > 0.05": pytest.approx(ERROR_RATIO, abs=0.08),
        "vendor.incident == false": False,
        f"incident.error_type == {error_type}": error_type,
    }
    # dry-run, as shipped: nothing was changed in the cluster
    assert "action.applied" not in kinds(inc)
    # the order of the runbook: classified, triaged, decided
    order = kinds(inc)
    assert (
        order.index("incident.classified")
        < order.index("triage.completed")
        < order.index("incident.decided")
    ), order


# --------------------------------------------------------------------------------- tests


async def test_app_label_and_status_code_label(world: World) -> None:
    """``app="posthog-integration"``, ``status_code="429"``, a name the pack never lists."""
    inc = await incident(world.responder, "IntegrationCallsThrottled", "incident.decided")
    assert (inc["pack"], inc["rule"]) == ("posthog", None)
    assert (inc["severity"], inc["error_type"]) == ("P2", "rate_limit")
    classified = event(inc, "incident.classified")
    assert classified["data"]["reasons"] == {
        "scope": 'pack posthog: app="posthog-integration"',
        "severity": "runbook table: rate_limit is P2",  # severity="warning" does not lower it
        "error_type": 'label status_code="429"',
    }
    assert classified["detail"].startswith("P2 ")
    assert 'by pack posthog (error type from label status_code="429")' in classified["detail"]
    assert_triaged(inc)
    assert_decided(inc, "our-integration-rate-limit", "rate_limit")
    assert planned(inc) == [("set_env", {"RATE_LIMIT_MODE": "queue"}, True)]


async def test_job_label_and_error_only_in_the_summary(world: World) -> None:
    """``job="posthog-integration"``; only the summary says 503 Service Unavailable."""
    inc = await incident(world.responder, "AnalyticsCallsFailing", "incident.decided")
    assert (inc["pack"], inc["rule"]) == ("posthog", None)
    assert (inc["severity"], inc["error_type"]) == ("P2", "upstream_5xx")
    reasons = event(inc, "incident.classified")["data"]["reasons"]
    assert reasons["scope"] == 'pack posthog: job="posthog-integration"'
    assert reasons["severity"] == "runbook table: upstream_5xx is P2"
    assert reasons["error_type"] == 'annotation summary: "503"'
    assert_triaged(inc)
    assert_decided(inc, "our-integration-upstream-5xx", "upstream_5xx")
    assert planned(inc) == [("set_env", {"POSTHOG_FALLBACK": "true"}, True)]


async def test_deployment_label_and_error_in_the_alert_name(world: World) -> None:
    """``deployment="posthog-integration"``, alert ``PostHogUnauthorized``."""
    inc = await incident(world.responder, "PostHogUnauthorized", "incident.decided")
    assert (inc["pack"], inc["rule"]) == ("posthog", None)
    assert (inc["severity"], inc["error_type"]) == ("P1", "auth")
    reasons = event(inc, "incident.classified")["data"]["reasons"]
    assert reasons["scope"] == 'pack posthog: deployment="posthog-integration"'
    assert reasons["severity"] == "runbook table: auth is P1"
    assert reasons["error_type"] == 'alert name PostHogUnauthorized: "Unauthorized"'
    assert_triaged(inc)
    assert_decided(inc, "our-integration-auth", "auth")
    assert planned(inc) == [("restart_if_secret_rotated", "posthog-secrets", True)]


async def test_the_runbooks_own_alert_is_classified_by_its_rule(world: World) -> None:
    """``PostHogRateLimited`` with the ``service`` label, as before: rule ``rate-limited``."""
    inc = await incident(world.responder, "PostHogRateLimited", "incident.decided")
    [alert] = inc["alerts"]
    assert alert["labels"]["service"] == INTEGRATION  # from the exporter's series
    assert alert["labels"]["status_code"] == "429"
    assert (inc["pack"], inc["rule"]) == ("posthog", "rate-limited")
    assert (inc["severity"], inc["error_type"]) == ("P2", "rate_limit")
    classified = event(inc, "incident.classified")
    assert "by rule rate-limited" in classified["detail"]
    reasons = classified["data"]["reasons"]
    assert reasons["scope"] == 'pack posthog: service="posthog-integration"'
    assert reasons["severity"] == "rule rate-limited"  # severity="info" does not lower it
    assert reasons["error_type"] == "rule rate-limited: label status_code='429' matches '429'"
    assert "rate-limited" in classified["data"]["matched"]
    assert_triaged(inc)
    assert_decided(inc, "our-integration-rate-limit", "rate_limit")
    assert planned(inc) == [("set_env", {"RATE_LIMIT_MODE": "queue"}, True)]


@pytest.mark.parametrize(
    ("alertname", "scope", "severity", "error_type", "error_type_from", "branch", "action"),
    [
        (
            "EventIngestDegraded",
            'container="posthog-integration"',
            "P2",
            "upstream_5xx",
            'label code="503"',
            "our-integration-upstream-5xx",
            ("set_env", {"POSTHOG_FALLBACK": "true"}, True),
        ),
        (
            "AnalyticsKeyRejected",
            'app_kubernetes_io_name="posthog-integration"',
            "P1",
            "auth",
            'label http_status="401"',
            "our-integration-auth",
            ("restart_if_secret_rotated", "posthog-secrets", True),
        ),
        (
            "AnalyticsQuotaExceeded",
            'service="posthog-integration"',
            "P2",
            "rate_limit",
            'label response_code="429"',
            "our-integration-rate-limit",
            ("set_env", {"RATE_LIMIT_MODE": "queue"}, True),
        ),
        (
            "PostHogCaptureFailing",
            'alertname=~"(?is).*posthog.*"',
            "P2",
            "rate_limit",
            'annotation description: "Too Many Requests"',
            "our-integration-rate-limit",
            ("set_env", {"RATE_LIMIT_MODE": "queue"}, True),
        ),
    ],
)
async def test_more_conventions(
    world: World,
    alertname: str,
    scope: str,
    severity: str,
    error_type: str,
    error_type_from: str,
    branch: str,
    action: tuple[str, Any, bool],
) -> None:
    """The integration in ``container``, ``app_kubernetes_io_name``, ``service`` or only in
    the alert's name; the error in a ``code``, ``http_status`` or ``response_code`` label, or
    only in the description. No rule names these alerts: the runbook's table decides."""
    inc = await incident(world.responder, alertname, "incident.decided")
    assert (inc["pack"], inc["rule"]) == ("posthog", None)
    assert (inc["severity"], inc["error_type"]) == (severity, error_type)
    assert event(inc, "incident.classified")["data"]["reasons"] == {
        "scope": f"pack posthog: {scope}",
        "severity": f"runbook table: {error_type} is {severity}",
        "error_type": error_type_from,
    }
    assert_triaged(inc)
    assert_decided(inc, branch, error_type)
    assert planned(inc) == [action]


@pytest.mark.parametrize(
    "alertname",
    [
        "CheckoutSlow",  # service="checkout", severity="critical"
        "CanaryCallsFailing",  # app="posthog-integration-canary-tests", status_code="429"
    ],
)
async def test_other_alerts_are_not_the_packs(world: World, alertname: str) -> None:
    inc = await incident(world.responder, alertname, "incident.unclassified")
    # the pack's alerts were decided meanwhile: this one had every chance to be triaged
    await incident(world.responder, "IntegrationCallsThrottled", "incident.decided")
    assert (inc["pack"], inc["rule"], inc["branch"]) == (None, None, None)
    assert (inc["severity"], inc["error_type"]) == ("P3", "unknown")
    assert kinds(inc) == ["incident.opened", "incident.unclassified"]
    assert inc["planned_actions"] == []
    assert inc["facts"] == {}
