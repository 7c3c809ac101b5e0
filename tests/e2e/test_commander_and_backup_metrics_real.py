"""Two runbook steps end to end, on a real Prometheus and a real Alertmanager.

An exporter plays the PostHog integration (20 calls a second, a share of them answered
503); a real Prometheus scrapes it as the shipped scrape config labels it, evaluates the
shipped alert rules (``deploy/prometheus/posthog-alerts.yml``, windows and ``for:``
shortened as in test_full_flow) and sends PostHogUpstreamErrors to a real Alertmanager,
which notifies the responder (bearer token, short group and repeat intervals). The
responder runs the shipped pack (tests/support/packs.py: probes aimed at loopback fakes),
triage on.

- "Metrics unavailable → check backup metrics": ``RESPONDER_PROMETHEUS_URL`` names a
  primary nobody listens on, then the real Prometheus. Triage reads the real error ratio
  from the backup, says so (facts and the triage message), and the tree decides on those
  figures. With both down, the runbook's row: ``prometheus.reachable`` false, undecided.
- The incident commander: the incident pages PagerDuty (Events API, fake); PagerDuty's
  signed V3 ``incident.assigned`` for the PagerDuty incident of that page names the
  assignee, whom the Slack root's "Incident commander:" line then shows; a reassignment,
  then an acknowledgement by someone else, move it on.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from responder.ingest.pagerduty import sign
from tests.e2e.test_full_flow import alert_rules
from tests.support.alertmanager import running_alertmanager, webhook_config
from tests.support.fake_http import FakeHealthEndpoint
from tests.support.fake_http import FakeStatuspage as VendorStatusPage
from tests.support.fake_kube import running_fake_kube
from tests.support.fake_notify import FakePagerDuty, FakeSlack
from tests.support.packs import posthog_pack
from tests.support.procs import free_port
from tests.support.prometheus import ControlledExporter, Prometheus, running_prometheus
from tests.support.service import EXAMPLES, Service, running_service
from tests.support.waiting import eventually
from tests.test_notify_pagerduty import pd_settings
from tests.test_probe_pod_logs import kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TOKEN = f"am-{secrets.token_hex(12)}"
PD_SECRET = (EXAMPLES / "pagerduty" / "webhook-secret.txt").read_text().strip()
PD_INCIDENT = "Q7CMDR0REALE2E"  # the PagerDuty incident the page opened
NS, SERVICE = "production", "posthog-integration"
CHANNEL = "#posthog-incidents"  # the pack's Slack channel
REQUESTS_PER_S = 20.0
FAILING = 0.6  # of the calls answered 503: most of them, so P1 and a page
RATIO = (
    f'sum(rate(posthog_errors_total{{service="{SERVICE}"}}[5m]))'
    f' / sum(rate(posthog_requests_total{{service="{SERVICE}"}}[5m]))'
)
ALERT = "PostHogUpstreamErrors"


@dataclass
class World:
    prom: Prometheus
    slack: FakeSlack
    pd: FakePagerDuty
    responder: Service


@asynccontextmanager
async def world(
    tmp: Path,
    make_settings,
    redis_url: str,
    redis_prefix: str,
    *,
    prometheus_urls: Callable[[Prometheus], str],
) -> AsyncIterator[World]:
    """The integration failing FAILING of its calls with 503 (PostHog's status page quiet,
    our health endpoint fine), the real Prometheus and Alertmanager in front of a responder
    whose RESPONDER_PROMETHEUS_URL is ``prometheus_urls(prom)``."""
    async with AsyncExitStack() as stack:
        exporter = await stack.enter_async_context(ControlledExporter())
        vendor = await stack.enter_async_context(VendorStatusPage())
        health = await stack.enter_async_context(FakeHealthEndpoint())
        kube = await stack.enter_async_context(running_fake_kube())
        slack = await stack.enter_async_context(FakeSlack())
        pd = await stack.enter_async_context(FakePagerDuty())
        pd.add_incident(PD_INCIDENT, title=f"[FIRING:1] {ALERT}")  # takes our notes

        # the scrape config labels the series with service and namespace
        exporter.set_counter("posthog_requests_total", None, 0)
        exporter.grow("posthog_requests_total", None, per_second=REQUESTS_PER_S)
        errors = {"status_code": "503"}
        exporter.set_counter("posthog_errors_total", errors, 0)
        exporter.grow("posthog_errors_total", errors, per_second=REQUESTS_PER_S * FAILING)

        port = free_port()  # the responder's, known to Alertmanager before it starts
        am = await stack.enter_async_context(
            running_alertmanager(
                webhook_config(
                    f"http://127.0.0.1:{port}/v1/webhooks/alertmanager",
                    token=TOKEN,
                    group_wait="1s",
                    group_interval="1s",
                    repeat_interval="2s",
                )
            )
        )
        prom = await stack.enter_async_context(
            running_prometheus(
                [exporter],
                job=SERVICE,
                labels={"service": SERVICE, "namespace": NS},
                rules={"posthog-alerts.yml": alert_rules()},
                alertmanagers=[f"127.0.0.1:{am.port}"],
            )
        )
        # triage reads the true ratio once the alert fires (its `for` is longer than this)
        await prom.wait_for_samples(RATIO, FAILING * 0.9)
        settings = make_settings(
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            alertmanager_token=TOKEN,
            rules=[posthog_pack(tmp, status_page_url=vendor.url, health_url=health.health_url)],
            triage=True,
            triage_budget_s=6.0,
            prometheus_url=prometheus_urls(prom),
            kubeconfig=kubeconfig(tmp / "kubeconfig", kube.url),
            action_allowlist=[f"{NS}/{SERVICE}/*"],
            visibility_timeout_s=30,
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel=CHANNEL,
            **pd_settings(pd, pagerduty_webhook_secrets=PD_SECRET),
        )
        svc = await stack.enter_async_context(running_service(settings, notify=True, port=port))
        yield World(prom, slack, pd, svc)


async def triaged(svc: Service) -> dict[str, Any]:
    """The one incident Alertmanager's notifications opened, once its tree was walked."""

    async def done() -> dict[str, Any] | None:
        for listed in await svc.incidents():
            kinds = [e["kind"] for e in listed["timeline"]]
            if "incident.decided" in kinds or "incident.undecided" in kinds:
                resp = await svc.client.get(f"/v1/incidents/{listed['id']}")
                return dict(await resp.json())
        return None

    found = await eventually(done, timeout_s=60, interval_s=0.2, what=f"{ALERT} triaged")
    assert found is not None
    [only] = await svc.incidents()  # Alertmanager's repeats join it
    assert only["id"] == found["id"]
    assert only["labels"]["alertname"] == ALERT
    return found


def event(inc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in inc["timeline"] if e["kind"] == kind)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_triage_reads_the_real_error_ratio_from_the_backup_prometheus(
    tmp_path: Path, make_settings, redis_url: str, redis_prefix: str
) -> None:
    primary = closed_port_url()  # the primary Prometheus is down
    async with world(
        tmp_path,
        make_settings,
        redis_url,
        redis_prefix,
        prometheus_urls=lambda prom: f"{primary},{prom.url}",
    ) as w:
        inc = await triaged(w.responder)
        backup = w.prom.url

        facts = inc["facts"]["prometheus"]
        assert facts["answered_by"] == backup
        assert facts["backup"] is True
        assert "reachable" not in facts  # metrics were available: from the backup
        # the real figures, as the real Prometheus computed them
        assert facts["error_ratio"] == pytest.approx(FAILING, abs=0.06)
        # (a 5m rate over the seconds Prometheus has: small, but errors, all of them 503s)
        assert facts["errors_per_second"] > 0
        assert facts["errors_by_status_code"] > 0
        # the triage message says where the numbers came from
        detail = event(inc, "triage.completed")["detail"]
        assert f"(from the backup {backup})" in detail

        # the branch those figures imply: errors (60% > 5%), no PostHog incident, 503s:
        # degrade gracefully; most calls failing made it P1
        assert inc["branch"] == "our-integration-upstream-5xx"
        assert [a["spec"].get("env") for a in inc["planned_actions"]] == [
            {"POSTHOG_FALLBACK": "true"}
        ]
        assert inc["severity"] == "P1"
        assert event(inc, "incident.escalated")["data"]["rule"] == "most-calls-failing"
        decided = event(inc, "incident.decided")["data"]["facts"]
        assert decided["prometheus.error_ratio > 0.05"] == pytest.approx(FAILING, abs=0.06)

        # and the Slack thread's triage reply carries the same line
        async def thread_tells() -> bool:
            return any(
                f"from the backup {backup}" in m.text
                for root in w.slack.roots(CHANNEL)
                for m in w.slack.replies(CHANNEL, root.ts)
            )

        await eventually(thread_tells, timeout_s=20, what="the triage reply names the backup")


async def test_no_prometheus_answering_is_the_metrics_unavailable_row(
    tmp_path: Path, make_settings, redis_url: str, redis_prefix: str
) -> None:
    down = f"{closed_port_url()},{closed_port_url()}"  # the primary and its backup
    async with world(
        tmp_path, make_settings, redis_url, redis_prefix, prometheus_urls=lambda _: down
    ) as w:
        inc = await triaged(w.responder)
        row = "runbook: Metrics unavailable (prometheus down): backup metrics tried"

        async def thread_tells() -> bool:
            return any(
                row in m.text
                for root in w.slack.roots(CHANNEL)
                for m in w.slack.replies(CHANNEL, root.ts)
            )

        await eventually(thread_tells, timeout_s=20, what="the triage reply tells the row")

        # the human is called by the stage after the one that wrote the undecided tree:
        # read the incident once that round is written, not as triage left it
        async def handed_over() -> dict[str, Any] | None:
            resp = await w.responder.client.get(f"/v1/incidents/{inc['id']}")
            doc = dict(await resp.json())
            return doc if doc["needs_human"] is not None else None

        inc = await eventually(handed_over, timeout_s=20, what="a human called")

    facts = inc["facts"]["prometheus"]
    assert facts["reachable"] is False
    assert "no Prometheus answered" in facts["error"]
    assert "error_ratio" not in facts
    assert "answered_by" not in facts
    # no figures, no branch of "PostHog API returning errors?"
    assert inc["branch"] is None
    assert "incident.decided" not in [e["kind"] for e in inc["timeline"]]
    assert "prometheus" in event(inc, "incident.undecided")["detail"]
    assert row in event(inc, "triage.completed")["detail"]
    # an incident no branch decided calls a human, for want of the metrics
    assert "no facts from: prometheus" in inc["needs_human"]


def pd_webhook(
    name: str,
    event_type: str,
    *,
    incident_id: str,
    assignees: list[tuple[str, str]] | None = None,
    agent: tuple[str, str] | None = None,
) -> bytes:
    """PagerDuty's V3 webhook about the PagerDuty incident our page opened: its
    ``incident_key`` is the page's dedup key."""
    doc = json.loads((EXAMPLES / "pagerduty" / f"{name}.json").read_text())
    ev = doc["event"]
    ev.update(id=f"01E2E{secrets.token_hex(10).upper()}", event_type=event_type)
    ev["data"].update(
        id=PD_INCIDENT,
        incident_key=f"responder-{incident_id}",
        title=f"[FIRING:1] {ALERT}",
        status="acknowledged" if event_type == "incident.acknowledged" else "triggered",
    )
    if assignees is not None:
        ev["data"]["assignees"] = [
            {"id": uid, "summary": who, "type": "user_reference"} for who, uid in assignees
        ]
    if agent is not None:
        who, uid = agent
        ev["agent"] = {"id": uid, "summary": who, "type": "user_reference"}
    return json.dumps(doc).encode()


async def test_the_pagerduty_assignee_of_a_real_alerts_page_commands_in_slack(
    tmp_path: Path, make_settings, redis_url: str, redis_prefix: str
) -> None:
    async with world(
        tmp_path, make_settings, redis_url, redis_prefix, prometheus_urls=lambda p: p.url
    ) as w:
        svc = w.responder
        inc = await triaged(svc)
        assert inc["severity"] == "P1"  # most calls failing
        key = f"responder-{inc['id']}"

        async def paged() -> list[dict[str, Any]]:
            return [e for e in w.pd.events if e["dedup_key"] == key]

        [page] = await eventually(paged, timeout_s=20, what="responder pages PagerDuty")
        assert page["event_action"] == "trigger"

        def root_text() -> str:
            roots = w.slack.roots(CHANNEL)
            assert len(roots) == 1, [r.text for r in roots]
            return roots[0].text

        def commander_line() -> str:
            return next(
                ln for ln in root_text().splitlines() if ln.startswith("*Incident commander:*")
            )

        async def root_says(line: str) -> bool:
            return bool(w.slack.roots(CHANNEL)) and commander_line() == line

        await eventually(
            lambda: root_says(
                "*Incident commander:* unassigned: whoever acknowledges the page takes it"
            ),
            timeout_s=20,
            what="the root before PagerDuty names anyone",
        )

        async def deliver(body: bytes) -> None:
            resp = await svc.post_pagerduty(body, {"X-PagerDuty-Signature": sign(body, PD_SECRET)})
            assert resp.status == 200, await resp.text()

        # PagerDuty assigns its incident (the one our page opened) to the on-call
        await deliver(
            pd_webhook(
                "incident-triggered",
                "incident.assigned",
                incident_id=inc["id"],
                assignees=[("Dana Oncall", "PUSR001")],
            )
        )
        await eventually(
            lambda: root_says("*Incident commander:* Dana Oncall"),
            timeout_s=20,
            what="the root names the assignee",
        )
        # reassigned in PagerDuty: the new assignee has it
        await deliver(
            pd_webhook(
                "incident-triggered",
                "incident.reassigned",
                incident_id=inc["id"],
                assignees=[("Sam Lead", "PUSR002")],
            )
        )
        await eventually(
            lambda: root_says("*Incident commander:* Sam Lead"),
            timeout_s=20,
            what="the root names the new assignee",
        )
        # someone else acknowledges it: they took it
        await deliver(
            pd_webhook(
                "incident-acknowledged",
                "incident.acknowledged",
                incident_id=inc["id"],
                agent=("Lee Backup", "PUSR003"),
            )
        )
        await eventually(
            lambda: root_says("*Incident commander:* Lee Backup"),
            timeout_s=20,
            what="the root names who acknowledged",
        )

        await svc.idle(timeout_s=20)
        resp = await svc.client.get(f"/v1/incidents/{inc['id']}")
        now = await resp.json()
        assert now["pagerduty_incident_id"] == PD_INCIDENT
        assert now["commander"] == "Lee Backup"
        assigned = [e for e in now["timeline"] if e["kind"] == "pagerduty.assigned"]
        assert [e["data"]["commander"] for e in assigned] == [
            "Dana Oncall",
            "Sam Lead",
            "Lee Backup",
        ]
        # still the one incident and the one page: PagerDuty's events joined it
        assert [i["id"] for i in await svc.incidents()] == [inc["id"]]
        assert [e["event_action"] for e in await paged()] == ["trigger"]
