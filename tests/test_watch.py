"""Watching and reminding after the first response, through the real service on Redis with
the loopback fakes: the vendor's status page is watched while it shows an incident (each
change told in the Slack thread, ``vendor.resolved`` once it is over), a promised update
that falls due with nothing told gets a reminder naming the commander and the root's
"Next update" moves on, and a P1 nobody acknowledges within its response time is paged
and re-paged through the Events API. Each chain ends when its incident no longer needs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from responder.adapters.redis_keys import RedisKeys
from responder.cli import cli
from tests.support.fake_http import FakeStatuspage
from tests.support.fake_notify import FakePagerDuty, FakeSlack, SlackMessage
from tests.support.mitigation import alert
from tests.support.service import Service, running_service
from tests.support.waiting import eventually
from tests.test_notify_pagerduty import actions_of, pd_settings

pytestmark = [pytest.mark.timeout(60)]

CHANNEL = "#incidents-watch"
COMMANDER = "@posthog-oncall"

PACK = """
name: watch-test
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: true
  probes: {probes}
severities:
  P1: {{definition: Complete outage, response_time: "< 1 s", respond_within_s: 1}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: {severity}, error_type: upstream_5xx}}
"""


def write_pack(tmp: Path, *, severity: str = "P2", status_page: str | None = None) -> Path:
    probes = (
        f'[{{type: vendor_status, url: "{status_page}", timeout_s: 2}}]' if status_page else "[]"
    )
    path = tmp / "watch.yaml"
    path.write_text(PACK.format(probes=probes, severity=severity))
    return path


def settings_for(make_settings: Callable[..., Any], redis_url: str, prefix: str, **more: Any):
    return make_settings(
        redis_url=redis_url,
        redis_prefix=prefix,
        visibility_timeout_s=4,
        incident_commander=COMMANDER,
        **more,
    )


def slack(fake: FakeSlack) -> dict[str, Any]:
    return {
        "slack_token": fake.token,
        "slack_api_url": fake.api_url,
        "slack_channel": CHANNEL,
        "notify_retry_base_s": 0.2,
    }


async def timers_of(redis_url: str, prefix: str, kind: str) -> list[dict[str, Any]]:
    """The timers of ``kind`` still scheduled in the store."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        members = await client.zrange(RedisKeys(prefix).timers, 0, -1)
    finally:
        await client.aclose()
    timers = [json.loads(m) for m in members]
    return [t for t in timers if t["kind"] == kind]


async def incident_with(svc: Service, kind: str, count: int = 1) -> dict[str, Any]:
    """The one incident, once its timeline has ``count`` events of ``kind``."""

    async def found() -> dict[str, Any] | None:
        for inc in await svc.incidents():
            if sum(e["kind"] == kind for e in inc["timeline"]) >= count:
                return inc
        return None

    return await eventually(found, timeout_s=20, what=f"{count} x {kind}")


def of_kind(inc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in inc["timeline"] if e["kind"] == kind]


async def _roots(fake: FakeSlack) -> list[SlackMessage]:
    """The roots in the channel (none before its first message creates it)."""
    try:
        return fake.roots(CHANNEL)
    except KeyError:
        return []


def replies(fake: FakeSlack) -> Callable[[], Awaitable[list[SlackMessage]]]:
    async def found() -> list[SlackMessage]:
        roots = await _roots(fake)
        return [r for root in roots for r in fake.replies(CHANNEL, root.ts)]

    return found


async def test_vendor_incident_is_watched_until_the_vendor_resolves(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with FakeStatuspage() as page, FakeSlack() as fake:
        vendor_incident = page.open_incident("Elevated API error rates")
        settings = settings_for(
            make_settings,
            redis_url,
            redis_prefix,
            rules=[write_pack(tmp_path, status_page=page.url)],
            triage=True,
            vendor_watch_interval_s=0.2,
            **slack(fake),
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(alert("PostHogErrors"))
            await incident_with(svc, "triage.completed")

            page.update_incident(vendor_incident, status="identified")
            inc = await incident_with(svc, "vendor.status_changed")
            [changed] = of_kind(inc, "vendor.status_changed")
            assert changed["data"]["status"]["incidents"] == [
                {"name": "Elevated API error rates", "status": "identified"}
            ]

            page.resolve_incident(vendor_incident)
            inc = await incident_with(svc, "vendor.resolved")
            await svc.idle()
            [resolved] = of_kind(inc, "vendor.resolved")
            assert resolved["data"]["vendor"] == "PostHog"
            assert resolved["data"]["url"] == page.url
            # each change told once, however many rounds read the page
            assert len(of_kind(inc, "vendor.status_changed")) == 1
            # the watch is over: no round left
            assert await timers_of(redis_url, redis_prefix, "vendor_watch") == []

            thread = await eventually(
                lambda: _having(replies(fake), "Vendor resolved"), what="resolved told"
            )
            texts = [m.text for m in thread]
            assert any("*Vendor status:*" in t and "identified" in t for t in texts)
            assert any("*Vendor resolved:*" in t for t in texts)
            # our incident is still open: the vendor resolving does not resolve it
            [still] = await svc.incidents()
            assert still["status"] == "open"


async def test_the_vendor_watch_survives_a_restart_and_runs_once_across_replicas(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with FakeStatuspage() as page, FakeSlack() as fake:
        vendor_incident = page.open_incident("Elevated API error rates")
        settings = settings_for(
            make_settings,
            redis_url,
            redis_prefix,
            rules=[write_pack(tmp_path, status_page=page.url)],
            triage=True,
            vendor_watch_interval_s=0.2,
            **slack(fake),
        )
        async with running_service(settings, notify=True) as first:
            await first.post_alertmanager(alert("PostHogErrors"))
            await incident_with(first, "triage.completed")
            await first.idle()
        # the only replica stopped: its next round waits in Redis
        assert await timers_of(redis_url, redis_prefix, "vendor_watch")

        page.update_incident(vendor_incident, status="monitoring")
        async with (
            running_service(settings, notify=True) as one,
            running_service(settings, notify=True) as other,
        ):
            await incident_with(one, "vendor.status_changed")
            page.resolve_incident(vendor_incident)
            await incident_with(one, "vendor.resolved")
            for svc in (one, other):
                await svc.idle()
            # no round is left, and nothing was told twice
            assert await timers_of(redis_url, redis_prefix, "vendor_watch") == []
            [inc] = await other.incidents()
            assert len(of_kind(inc, "vendor.status_changed")) == 1
            assert len(of_kind(inc, "vendor.resolved")) == 1
            thread = await eventually(
                lambda: _having(replies(fake), "Vendor resolved"), what="resolved told"
            )
            assert sum("*Vendor resolved:*" in m.text for m in thread) == 1
            assert sum("*Vendor status:*" in m.text for m in thread) == 1


async def test_vendor_watch_ends_when_our_incident_resolves_with_nothing_to_revert(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with FakeStatuspage() as page:
        page.open_incident("Ingestion delays")
        settings = settings_for(
            make_settings,
            redis_url,
            redis_prefix,
            rules=[write_pack(tmp_path, status_page=page.url)],
            triage=True,
            vendor_watch_interval_s=0.2,
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(alert("PostHogErrors"))
            await incident_with(svc, "triage.completed")
            assert await timers_of(redis_url, redis_prefix, "vendor_watch")

            await svc.post_alertmanager(alert("PostHogErrors", status="resolved"))
            await incident_with(svc, "incident.resolved")

            async def watch_over() -> bool:
                await svc.idle()
                return not await timers_of(redis_url, redis_prefix, "vendor_watch")

            await eventually(watch_over, what="no vendor round left")
            [inc] = await svc.incidents()
            assert not of_kind(inc, "vendor.resolved")


async def test_an_update_due_with_nothing_told_is_reminded_and_the_root_moves_on(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with FakeSlack() as fake:
        settings = settings_for(
            make_settings,
            redis_url,
            redis_prefix,
            rules=[write_pack(tmp_path, severity="P2")],
            update_interval_p2_s=1,
            **slack(fake),
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(alert("PostHogErrors"))
            [root] = await eventually(lambda: _roots(fake), what="root")
            assert "*Next update:* by " in root.text

            inc = await incident_with(svc, "incident.update_due")
            [due] = of_kind(inc, "incident.update_due")[:1]
            assert due["data"]["next_update_at"]
            thread = await eventually(
                lambda: _having(replies(fake), "Update due"), what="reminder told"
            )
            [reminder, *_] = [m for m in thread if "Update due" in m.text]
            assert COMMANDER in reminder.text

            # the root was edited to show the next update the reminder names
            hhmm = due["data"]["next_update_at"][11:16]

            async def moved_on() -> bool:
                message = fake.message(fake.channel_id(CHANNEL), root.ts)
                return bool(message.edits) and f"*Next update:* by {hhmm} UTC" in message.text

            await eventually(moved_on, what="root's next update edited")

            # resolved: the reminders stop
            await svc.post_alertmanager(alert("PostHogErrors", status="resolved"))
            await incident_with(svc, "incident.resolved")

            async def stopped() -> bool:
                await svc.idle()
                return not await timers_of(redis_url, redis_prefix, "update_due")

            await eventually(stopped, what="no reminder round left")
            [inc] = await svc.incidents()
            resolved_seq = of_kind(inc, "incident.resolved")[0]["seq"]
            assert all(e["seq"] < resolved_seq for e in of_kind(inc, "incident.update_due"))


ESCALATING = """
name: watch-escalation
version: "1"
defaults:
  group_by: [alertname, service]
rules:
  - name: worse
    match: ['instance="pod-2"']
    classify: {severity: P1, error_type: unreachable}
  - name: classify
    match: ['service="posthog-integration"']
    classify: {severity: P3, error_type: upstream_5xx}
"""


async def test_an_escalated_incident_is_reminded_at_its_new_severitys_cadence(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    pack = tmp_path / "escalating.yaml"
    pack.write_text(ESCALATING)
    settings = settings_for(
        make_settings,
        redis_url,
        redis_prefix,
        rules=[pack],
        update_interval_p3_s=3600,
        update_interval_p1_s=1,
    )
    async with running_service(settings, notify=True) as svc:
        await svc.post_alertmanager(alert("PostHogErrors", instance="pod-1"))
        await incident_with(svc, "incident.classified")
        await svc.post_alertmanager(alert("PostHogErrors", instance="pod-2"))
        inc = await incident_with(svc, "incident.update_due")
        assert inc["severity"] == "P1"
        assert of_kind(inc, "incident.update_due")[0]["data"]["every_s"] == 1
        # the reminder comes at P1's cadence, not at the P3 round's hour (that round, when
        # it comes, finds its generation outdated and ends its chain)


async def test_a_p1_not_acknowledged_in_time_is_paged_and_paged_again(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as fake:
        settings = settings_for(
            make_settings,
            redis_url,
            redis_prefix,
            rules=[write_pack(tmp_path, severity="P1")],
            ack_repages=1,
            **(pd_settings(pd) | slack(fake)),
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(alert("PostHogDown"))
            inc = await incident_with(svc, "incident.ack_overdue", count=2)

            async def two_pages() -> list[dict[str, Any]] | None:
                sent = actions_of(pd, "trigger")
                return sent if len(sent) >= 2 else None

            page, repage = await eventually(two_pages, what="page and re-page")
            assert repage["dedup_key"] != page["dedup_key"]
            assert repage["dedup_key"].startswith(page["dedup_key"])
            thread = await eventually(
                lambda: _having(replies(fake), "Not acknowledged"), what="page told"
            )
            assert any("*Not acknowledged:*" in m.text for m in thread)

            # no more than ack_repages re-pages
            await eventually(
                lambda: _none_left(svc, redis_url, redis_prefix, "ack_due"), what="rounds over"
            )
            [inc] = await svc.incidents()
            assert len(of_kind(inc, "incident.ack_overdue")) == 2

            # the pages resolve with the incident
            await svc.post_alertmanager(alert("PostHogDown", status="resolved"))

            async def both_resolved() -> set[str] | None:
                keys = {e["dedup_key"] for e in actions_of(pd, "resolve")}
                return keys if {page["dedup_key"], repage["dedup_key"]} <= keys else None

            await eventually(both_resolved, what="page and re-page resolved")


async def test_a_p1_acknowledged_in_time_is_not_paged(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with FakePagerDuty() as pd:
        settings = settings_for(
            make_settings,
            redis_url,
            redis_prefix,
            rules=[write_pack(tmp_path, severity="P1")],
            admin_token="admin-token",
            **pd_settings(pd),
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(alert("PostHogDown"))
            await svc.idle()
            [inc] = await svc.incidents()
            assert await timers_of(redis_url, redis_prefix, "ack_due")
            ack = await svc.client.post(
                f"/v1/incidents/{inc['id']}/ack",
                json={"by": "Jane Doe"},
                headers={"Authorization": "Bearer admin-token"},
            )
            assert ack.status == 200, await ack.text()
            await eventually(
                lambda: _none_left(svc, redis_url, redis_prefix, "ack_due"), what="round ran"
            )
            [inc] = await svc.incidents()
            assert not of_kind(inc, "incident.ack_overdue")
            assert actions_of(pd, "trigger") == []


async def _none_left(svc: Service, redis_url: str, prefix: str, kind: str) -> bool:
    await svc.idle()
    return not await timers_of(redis_url, prefix, kind)


async def _having(
    found: Callable[[], Awaitable[list[SlackMessage]]], text: str
) -> list[SlackMessage] | None:
    messages = await found()
    return messages if any(text in m.text for m in messages) else None


def test_the_demo_shows_posthog_watched_until_it_resolves(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "-s", "unreachable"])
    assert result.exit_code == 0, result.output
    watched = result.output.split("▶ watching   PostHog's status page", 1)[1]
    assert "▶ vendor.resolved" in watched
    assert "PostHog's incident is over" in watched
    # told before our own alert resolves
    assert watched.index("▶ vendor.resolved") < watched.index("webhook, resolved")
