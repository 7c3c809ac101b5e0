"""After the first response, end to end: a real Prometheus evaluates an alert rule on an
exporter that plays the PostHog integration, a real Alertmanager sends its notifications
to the responder (on Redis, Slack and PagerDuty fakes, PostHog's status page a fake that
shows an incident). The runbook's waiting and reminding follow: the vendor is watched
until its incident is over (each change and the end told in the thread), the P1's
promised updates are reminded when nothing was told, and nobody acknowledging it within
its response time pages it, then pages it again. The alert resolving through Alertmanager
ends every chain.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.support.alertmanager import running_alertmanager, webhook_config
from tests.support.fake_http import FakeStatuspage
from tests.support.fake_notify import FakePagerDuty, FakeSlack
from tests.support.procs import free_port
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import running_service
from tests.support.waiting import eventually
from tests.test_notify_pagerduty import actions_of, pd_settings
from tests.test_watch import CHANNEL, COMMANDER, incident_with, of_kind, replies, timers_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = f"e2e-{secrets.token_hex(12)}"
UP = ("posthog_api_up", {"service": "posthog-integration", "namespace": "production"})
ALERT_RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "posthog",
            "rules": [
                {
                    "alert": "PostHogAPIUnreachable",
                    "expr": 'posthog_api_up{service="posthog-integration"} == 0',
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "PostHog API unreachable"},
                }
            ],
        }
    ]
}

PACK = """
name: watch-e2e
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: true
  probes: [{{type: vendor_status, url: "{page}", timeout_s: 2}}]
severities:
  P1: {{definition: Complete outage, response_time: "< 2 s", respond_within_s: 2}}
rules:
  - name: unreachable
    match: ['alertname="PostHogAPIUnreachable"']
    classify: {{severity: P1, error_type: unreachable}}
"""


async def test_vendor_watched_updates_reminded_and_p1_paged_through_real_alertmanager(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    am_config = webhook_config(
        f"http://127.0.0.1:{port}/v1/webhooks/alertmanager",
        token=TOKEN,
        group_wait="1s",
        group_interval="1s",
        repeat_interval="2s",
    )
    async with (
        ControlledExporter() as exporter,
        running_alertmanager(am_config) as am,
        FakeStatuspage() as page,
        FakeSlack() as slack,
        FakePagerDuty() as pd,
    ):
        exporter.set_gauge(*UP, 1)
        vendor_incident = page.open_incident("Event ingestion degraded")
        pack = tmp_path / "watch-e2e.yaml"
        pack.write_text(PACK.format(page=page.url))
        settings = make_settings(
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            alertmanager_token=TOKEN,
            rules=[pack],
            triage=True,
            visibility_timeout_s=4,
            incident_commander=COMMANDER,
            vendor_watch_interval_s=0.5,
            update_interval_p1_s=1,
            ack_repages=1,
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel=CHANNEL,
            **pd_settings(pd),
        )
        async with (
            running_prometheus(
                [exporter], rules={"watch.yml": ALERT_RULES}, alertmanagers=[f"127.0.0.1:{am.port}"]
            ),
            running_service(settings, notify=True, port=port) as svc,
        ):
            exporter.set_gauge(*UP, 0)  # PostHog's API stops answering
            await incident_with(svc, "triage.completed")

            # nobody acknowledges: paged, then paged again
            await incident_with(svc, "incident.ack_overdue", count=2)
            await eventually(
                lambda: _at_least(actions_of(pd, "trigger"), 2), what="page and re-page"
            )
            # and the promised updates are reminded
            await incident_with(svc, "incident.update_due")

            # PostHog's status page moves on, then its incident is over
            page.update_incident(vendor_incident, status="monitoring")
            await incident_with(svc, "vendor.status_changed")
            page.resolve_incident(vendor_incident)
            inc = await incident_with(svc, "vendor.resolved")
            [resolved] = of_kind(inc, "vendor.resolved")
            assert resolved["data"] | {"status": None} == {
                "vendor": "PostHog",
                "url": page.url,
                "status": None,
            }

            async def thread_tells(*parts: str) -> bool:
                texts = [m.text for m in await replies(slack)()]
                return all(any(p in t for t in texts) for p in parts)

            await eventually(
                lambda: thread_tells(
                    "*Vendor status:*", "*Vendor resolved:*", "*Not acknowledged:*", COMMANDER
                ),
                what="the thread tells each step",
            )

            # the API answers again: Alertmanager resolves the alert, every chain ends
            exporter.set_gauge(*UP, 1)
            inc = await incident_with(svc, "incident.resolved")

            async def chains_over() -> bool:
                await svc.idle()
                for kind in ("vendor_watch", "update_due", "ack_due"):
                    if await timers_of(redis_url, redis_prefix, kind):
                        return False
                return True

            await eventually(chains_over, timeout_s=20, what="every chain over")
            await eventually(lambda: _at_least(actions_of(pd, "resolve"), 2), what="pages resolved")


async def _at_least(items: list[Any], count: int) -> list[Any] | None:
    return items if len(items) >= count else None
