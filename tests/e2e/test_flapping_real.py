"""The runbook's "Flapping" step end to end: a real Prometheus evaluates an alert rule on
an exporter the test toggles, so that the alert fires and resolves again and again; a real
Alertmanager sends each firing and resolve to the responder (on Redis, a fake cluster, a
fake health endpoint and a fake Slack). The pack says ``flapping: {fires: 2, ...}``.

The first firing opens an incident as any alert's: triage, a decision, one action applied;
its resolve closes it. The second firing within the window opens that incident again,
flapping: one notice in the thread, and from then on no new incident, no triage, decision
or action again, no reply per flap, and a resolve does not close it. Once no alert fired for
the quiet period it is steady (``incident.steady``) and resolved.

Each toggle waits until the responder has seen the previous one (counted on its timelines),
so no flap is lost in an Alertmanager group interval; QUIET_S is well above one flap's
round trip through Prometheus and Alertmanager (a few seconds), so the quiet period can
only pass once the test stops toggling.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from responder.settings import Settings
from tests.support.alertmanager import running_alertmanager, webhook_config
from tests.support.fake_notify import FakeSlack
from tests.support.mitigation import cluster, kinds, on_cluster
from tests.support.procs import free_port
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import Service, running_service
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TOKEN = f"e2e-{secrets.token_hex(12)}"
CHANNEL = "#posthog-incidents"
ALERT = "PostHogAPIUnreachable"
UP = ("posthog_api_up", {"service": "posthog-integration", "namespace": "production"})
FIRES = 2  # the pack's flapping count: the second firing within the window flaps
FIRINGS = 4  # the test's: two more flaps after the one that made it flapping
QUIET_S = 20.0
STEP_TIMEOUT_S = 30.0  # one toggle through scrape, rule, Alertmanager and the queue

ALERT_RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "posthog",
            "rules": [
                {
                    "alert": ALERT,
                    "expr": 'posthog_api_up{service="posthog-integration"} == 0',
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "PostHog API unreachable"},
                }
            ],
        }
    ]
}

PACK = """
name: flapping-e2e
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: false
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
flapping: {{fires: {fires}, window_s: 600, quiet_s: {quiet}}}
rules:
  - name: unreachable
    match: ['alertname="{alert}"']
    classify: {{severity: P2, error_type: unreachable}}
    continue: true
  - name: fallback
    match: ['alertname="{alert}"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{POSTHOG_FALLBACK: "true"}}
        revert: never
"""

# What each firing and each resolve of the alert leaves on an incident's timeline: a new
# incident, or the flapping one opened again or fired again; an alert resolved.
FIRED = ("incident.opened", "incident.flapping", "alert.refired")
RESOLVED = ("alert.resolved",)


def write_pack(tmp: Path, health_url: str) -> Path:
    path = tmp / "flapping-e2e.yaml"
    path.write_text(PACK.format(health=health_url, fires=FIRES, quiet=QUIET_S, alert=ALERT))
    return path


async def count(svc: Service, of: tuple[str, ...]) -> int:
    """Events of those kinds on all incidents (whether flaps open new ones or not)."""
    return sum(k in of for inc in await svc.incidents() for k in kinds(inc))


def _resolved(texts: list[str]) -> int:
    return sum("*Resolved*" in t for t in texts)


async def toggled(svc: Service, of: tuple[str, ...], n: int, what: str) -> None:
    async def seen() -> bool:
        return await count(svc, of) >= n

    await eventually(seen, timeout_s=STEP_TIMEOUT_S, interval_s=0.1, what=what)


async def test_a_flapping_alert_through_prometheus_and_alertmanager_is_one_quiet_incident(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str, tmp_path: Path
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
        cluster(tmp_path) as c,
        ControlledExporter() as exporter,
        running_alertmanager(am_config) as am,
        FakeSlack() as slack,
    ):
        exporter.set_gauge(*UP, 1)
        settings = make_settings(
            **on_cluster(
                c,
                rules=[write_pack(tmp_path, c.health.health_url)],
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                alertmanager_token=TOKEN,
                slack_token=slack.token,
                slack_api_url=slack.api_url,
                slack_channel=CHANNEL,
                reports_dir=tmp_path / "reports",
            )
        )
        async with (
            running_prometheus(
                [exporter], rules={"flap.yml": ALERT_RULES}, alertmanagers=[f"127.0.0.1:{am.port}"]
            ),
            running_service(settings, notify=True, port=port) as svc,
        ):
            # the first firing: an incident as any, its action applied; then it resolves
            exporter.set_gauge(*UP, 0)

            async def acted() -> list[dict[str, Any]] | None:
                found = await svc.incidents()
                return found if any("action.applied" in kinds(i) for i in found) else None

            await eventually(acted, timeout_s=STEP_TIMEOUT_S, what="the first firing acted on")
            exporter.set_gauge(*UP, 1)
            await toggled(svc, RESOLVED, 1, "the first resolve")
            [first] = await svc.incidents()
            assert first["status"] == "resolved"

            # it flaps: fires and resolves again, each seen before the next toggle
            for n in range(2, FIRINGS + 1):
                exporter.set_gauge(*UP, 0)
                await toggled(svc, FIRED, n, f"firing {n}")
                exporter.set_gauge(*UP, 1)
                await toggled(svc, RESOLVED, n, f"resolve {n}")

            # flapping, not closed by its resolves: still one incident (no new one per
            # flap), still open
            incidents = await svc.incidents()
            assert len(incidents) == 1, [(i["id"], kinds(i)) for i in incidents]
            [inc] = incidents
            assert inc["id"] == first["id"]
            assert inc["status"] != "resolved", kinds(inc)
            assert kinds(inc).count("alert.resolved") == FIRINGS

            # the quiet period passes: steady, and resolved (its alert is)
            async def steady() -> dict[str, Any] | None:
                [inc] = await svc.incidents()
                return inc if "incident.steady" in kinds(inc) else None

            await eventually(steady, timeout_s=QUIET_S + STEP_TIMEOUT_S, what="steady")
            await svc.idle()

            # the postmortem of the last resolve tells the flapping (once) and its end
            async def reported() -> dict[str, Any] | None:
                [inc] = await svc.incidents()
                return inc if kinds(inc).count("report.written") == 2 else None

            await eventually(reported, timeout_s=STEP_TIMEOUT_S, what="the last postmortem")
            await svc.idle()

            # the thread: told the flapping once, and the steady and its resolve
            async def thread() -> list[str] | None:
                roots = slack.roots(CHANNEL)
                texts = [m.text for r in roots for m in slack.replies(CHANNEL, r.ts)]
                closed = any("Steady" in t for t in texts) and _resolved(texts) >= 2
                return texts if closed else None

            replies = await eventually(thread, what="the thread told it is steady")
            assert replies is not None
            [inc] = await svc.incidents()

        timeline = kinds(inc)
        assert inc["id"] == first["id"]
        assert inc["status"] == "resolved"
        # one notice (the firing that made the count), then one quiet event per later flap
        notices = [e for e in inc["timeline"] if e["kind"] == "incident.flapping"]
        assert [e["data"].get("notice") for e in notices] == [True] + [False] * (FIRINGS - 2)
        assert notices[0]["data"]["fires"] == FIRES
        # closed once before it flapped, then steady and closed for good
        told = [k for k in timeline if k in ("incident.steady", "incident.resolved")]
        assert told == ["incident.resolved", "incident.steady", "incident.resolved"], timeline
        assert timeline.count("incident.opened") == 1
        # triaged, decided and acted on once: the flaps repeated none of it
        assert timeline.count("triage.completed") == 1, timeline
        assert timeline.count("incident.decided") == 1, timeline
        assert timeline.count("action.applied") == 1, timeline
        assert len(c.patches()) == 1
        assert c.env().get("POSTHOG_FALLBACK") == "true"

        # a postmortem per resolve (the first before it flapped); the last tells it all
        written = [e for e in inc["timeline"] if e["kind"] == "report.written"]
        draft = Path(written[-1]["data"]["postmortem"]).read_text()
        assert draft.count("Flapping:") == 1, draft
        assert "Steady again:" in draft, draft

        # one thread, quiet: one flapping notice, one steady, a resolved line per close
        assert len(slack.roots(CHANNEL)) == 1
        assert sum("*Flapping:*" in t for t in replies) == 1, replies
        assert sum("Steady" in t for t in replies) == 1, replies
        assert _resolved(replies) == 2, replies
        assert sum("*Triage findings*" in t for t in replies) == 1, replies
        assert sum("*Action:*" in t for t in replies) == 1, replies
