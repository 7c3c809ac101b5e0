"""Slack through slack-sdk's AsyncWebClient against a fake Slack Web API on loopback: one
root message per incident, edited in place as the status changes, ordered thread replies,
and no message twice, whatever fails or is redelivered."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.notify.planners import SLACK_REPLY_KINDS
from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.mitigation import alert, cluster, responder, settled
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually

CHANNEL = "#posthog-incidents"  # the shipped pack's and the test pack's channel
LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"


def slack_settings(fake: FakeSlack, **more: Any) -> dict[str, Any]:
    return {
        "slack_token": fake.token,
        "slack_api_url": fake.api_url,
        "slack_channel": CHANNEL,
        "notify_retry_base_s": 0.2,
        **more,
    }


def told(inc: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline events a Slack thread tells, in order."""
    return [
        e
        for e in inc["timeline"]
        if e["kind"] in SLACK_REPLY_KINDS or e["kind"].startswith("action.")
    ]


def versions(message: SlackMessage) -> list[str]:
    """Every text the message showed, first to current (the fake keeps each edit's before)."""
    return [e.text for e in message.edits] + [message.text]


def status_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("*Status:*"))


async def thread_of(fake: FakeSlack, inc: dict[str, Any], replies: int) -> list[SlackMessage]:
    async def complete() -> list[SlackMessage] | None:
        roots = fake.roots(CHANNEL)
        if len(roots) != 1:
            return None
        found = fake.replies(CHANNEL, roots[0].ts)
        return found if len(found) >= replies else None

    return await eventually(complete, timeout_s=10, what=f"{replies} replies in the thread")


async def test_one_root_message_follows_the_incident_with_ordered_replies_and_edits(
    backend_settings, tmp_path: Path
) -> None:
    async with (
        FakeSlack() as slack,
        cluster(tmp_path) as c,
        responder(c, backend_settings, notify=True, **slack_settings(slack)) as svc,
    ):
        await svc.post_alertmanager(alert("SetEnv"))
        opened = await settled(svc, "SetEnv", "action.applied")
        [root] = slack.roots(CHANNEL)
        first = versions(root)[0]
        # the runbook's internal template, posted before triage ran
        assert first.startswith("🟠 *P2 INCIDENT: ")
        assert status_line(first) == "*Status:* INVESTIGATING"
        for line in ("*Impact:*", "*Current action:*", "*Next update:*", "*Incident commander:*"):
            assert line in first
        assert root.blocks
        assert root.blocks[0]["type"] == "section"
        assert opened["deliveries"]["slack"]["ts"] == root.ts
        # the action put the incident in MITIGATING: the root was edited, not reposted
        await eventually(
            lambda: _async(status_line(root.text) == "*Status:* MITIGATING"),
            what="root edited to MITIGATING",
        )

        await svc.post_alertmanager(alert("SetEnv", status="resolved"))
        inc = await settled(svc, "SetEnv", "action.reverted")
        expected = told(inc)
        replies = await thread_of(slack, inc, len(expected))
        assert len(slack.roots(CHANNEL)) == 1
        # one reply per event told, in the timeline's order
        assert len(replies) == len(expected)
        assert [r.metadata["event_payload"]["key"].rsplit(":", 1)[1] for r in replies] == [
            f"e{e['seq']}" for e in expected
        ]
        texts = [r.text for r in replies]
        assert texts[0].startswith(":mag: *Triage findings*")
        assert any("*Decision:*" in t and "queue-requests" in t for t in texts)
        assert any(t.startswith(":hammer_and_wrench: *Action:*") for t in texts)
        assert any(t.startswith(":large_green_circle: *Resolved*") for t in texts)
        assert texts[-1].startswith(":leftwards_arrow_with_hook: *Reverted:*")
        # edits in place: INVESTIGATING → MITIGATING → RESOLVED, never a second root
        statuses = [status_line(t).split()[-1] for t in versions(root)]
        assert statuses == ["INVESTIGATING", "MITIGATING", "RESOLVED"]
        assert root.text.startswith("✅")
        assert [r.path for r in slack.requests].count("/api/chat.update") == len(root.edits)


async def _async(value: Any) -> Any:
    return value


async def test_escalation_edits_the_root_and_a_human_ack_names_the_commander(
    make_settings,
) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(admin_token="admin-token", **slack_settings(slack))
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(example(LIMITED))
            await svc.idle()
            [inc] = await svc.incidents()
            [root] = await eventually(lambda: _async(slack.roots(CHANNEL)), what="root")
            assert "P2 INCIDENT" in root.text
            assert "unassigned" in root.text

            ack = await svc.client.post(
                f"/v1/incidents/{inc['id']}/ack",
                json={"by": "Jane Doe"},
                headers={"Authorization": "Bearer admin-token"},
            )
            assert ack.status == 200, await ack.text()

            async def taken_over() -> list[SlackMessage]:
                return [m for m in slack.replies(CHANNEL, root.ts) if "took over" in m.text]

            [reply] = await eventually(taken_over, what="ack told in the thread")
            assert reply.text.startswith(":raising_hand: *Jane Doe took over.*")
            await eventually(
                lambda: _async("*Incident commander:* Jane Doe" in root.text), what="root edit"
            )
            assert len(slack.roots(CHANNEL)) == 1


async def test_replicas_and_redeliveries_never_post_twice(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """Two replicas on one Redis get the same alerts (an Alertmanager HA pair sends to
    both), and every entry is then handled again: one root, no reply twice."""
    async with FakeSlack() as slack:
        settings = make_settings(
            workers=4, redis_url=redis_url, redis_prefix=redis_prefix, **slack_settings(slack)
        )
        async with (
            running_service(settings, notify=True) as a,
            running_service(settings, notify=True) as b,
        ):
            firing = example(LIMITED)
            resolved = copy.deepcopy(firing)
            resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
            resolved["alerts"][0]["endsAt"] = "2026-11-29T03:50:00Z"
            for payload in (firing, resolved):
                sent = await asyncio.gather(
                    a.post_alertmanager(payload), b.post_alertmanager(payload)
                )
                assert all(r.status == 200 for r in sent)
                await a.idle()
                await b.idle()
            [inc] = await a.incidents()
            expected = told(inc)
            replies = await thread_of(slack, inc, len(expected))

            # a redelivery of every signal: the pipeline handles them again
            await _redeliver(a, firing, resolved)
            await _redeliver(b, firing, resolved)
            await a.idle()
            await asyncio.sleep(0.3)  # anything sent twice would be on its way by now
            assert len(slack.roots(CHANNEL)) == 1
            again = slack.replies(CHANNEL, slack.roots(CHANNEL)[0].ts)
            assert [m.ts for m in again] == [m.ts for m in replies]
            keys = [m.metadata["event_payload"]["key"] for m in again]
            assert len(keys) == len(set(keys))
            posts = [r for r in slack.requests if r.path == "/api/chat.postMessage"]
            assert len(posts) == 1 + len(expected)


async def _redeliver(svc: Service, *payloads: dict[str, Any]) -> None:
    for payload in payloads:
        webhook = AlertmanagerWebhook.model_validate(payload)
        for signal in webhook.signals(received_at=svc.runtime.clock.now()):
            await svc.runtime.pipeline.handle(signal)
