"""Notification delivery when a sink misbehaves, through the real service and the real
slack-sdk / aiohttp clients against loopback fakes: Slack down for a while, rate limited,
refusing a message, hanging; the circuit breaker; a worker that died between posting and
recording. Every message arrives once and in order, and no sink holds up another sink or
the incident pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.web.async_client import AsyncWebClient

from responder.adapters.slack import METADATA_EVENT
from responder.notify.planners import SLACK_REPLY_KINDS
from tests.support.fake_notify import FakeSlack, FakeStatuspage, RecordedRequest, SlackMessage
from tests.support.mitigation import alert, cluster, kinds, responder, settled
from tests.support.service import Service
from tests.support.waiting import eventually

CHANNEL = "#posthog-incidents"


def slack_settings(fake: FakeSlack, **more: Any) -> dict[str, Any]:
    return {
        "slack_token": fake.token,
        "slack_api_url": fake.api_url,
        "slack_channel": CHANNEL,
        "notify_retry_base_s": 0.05,
        "notify_retry_cap_s": 0.3,
        # most tests keep the breaker out of the way; its own test sets it
        "notify_circuit_failures": 1000,
        **more,
    }


def statuspage_settings(fake: FakeStatuspage) -> dict[str, Any]:
    return {
        "statuspage_api_key": fake.api_key,
        "statuspage_page_id": fake.page_id,
        "statuspage_api_url": fake.api_url,
        "statuspage_components": ["cmp1"],
    }


def told(inc: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline events the Slack thread tells, in order."""
    return [
        e
        for e in inc["timeline"]
        if e["kind"] in SLACK_REPLY_KINDS or e["kind"].startswith("action.")
    ]


def key_of(message: SlackMessage) -> str:
    assert message.metadata is not None
    assert message.metadata["event_type"] == METADATA_EVENT
    return str(message.metadata["event_payload"]["key"])


def posted(fake: FakeSlack) -> list[SlackMessage]:
    """Every message in the channel, in posting order (none if it was never created)."""
    try:
        return fake.messages(CHANNEL)
    except KeyError:
        return []


def posts(fake: FakeSlack | list[RecordedRequest], key: str | None = None) -> list[RecordedRequest]:
    """The chat.postMessage requests, answered or not; ``key``: only those of that message."""
    requests = fake.requests if isinstance(fake, FakeSlack) else fake
    found = [r for r in requests if r.api == "chat.postMessage"]
    if key is None:
        return found
    return [
        r
        for r in found
        if ((r.args.get("metadata") or {}).get("event_payload") or {}).get("key") == key
    ]


def events(inc: dict[str, Any], kind: str, sink: str | None = "slack") -> list[dict[str, Any]]:
    """Events ``kind`` of ``sink`` (``None``: of any sink, or none)."""
    return [
        e
        for e in inc["timeline"]
        if e["kind"] == kind and (sink is None or e["data"].get("sink") == sink)
    ]


async def incident(svc: Service, name: str) -> dict[str, Any]:
    """The incident of alert ``name``, fresh from the API."""
    for inc in await svc.incidents():
        if inc["labels"].get("alertname") == name:
            resp = await svc.client.get(f"/v1/incidents/{inc['id']}")
            assert resp.status == 200
            return dict(await resp.json())
    raise AssertionError(f"no incident for {name}")


async def when(svc: Service, name: str, kind: str, sink: str | None = "slack") -> dict[str, Any]:
    """The incident of ``name`` once a ``kind`` event of ``sink`` is on its timeline."""

    async def found() -> dict[str, Any] | None:
        incs = [i for i in await svc.incidents() if i["labels"].get("alertname") == name]
        if not incs:
            return None
        inc = await incident(svc, name)
        return inc if events(inc, kind, sink) else None

    return await eventually(found, what=f"{name}: {kind} ({sink})")


async def metric(svc: Service, name: str, **labels: str) -> float | None:
    """A sample's value on GET /metrics (None when absent)."""
    resp = await svc.client.get("/metrics")
    assert resp.status == 200
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def thread(fake: FakeSlack, replies: int) -> tuple[SlackMessage, list[SlackMessage]]:
    """The one root message and its thread, once it has ``replies`` replies."""

    async def complete() -> tuple[SlackMessage, list[SlackMessage]] | None:
        roots = [m for m in posted(fake) if not m.is_reply]
        if len(roots) != 1:
            return None
        found = fake.replies(CHANNEL, roots[0].ts)
        return (roots[0], found) if len(found) >= replies else None

    return await eventually(complete, what=f"a root and {replies} replies")


async def post_as_dead_worker(slack: FakeSlack, key: str, text: str, chatter: int = 0) -> str:
    """What a worker that died after posting left in Slack: a message marked with its
    key, as SlackWebSink marks it (then ``chatter`` other messages); its ts."""
    web = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
    try:
        sent = await web.chat_postMessage(
            channel=CHANNEL,
            text=text,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": key}},
        )
        for n in range(chatter):
            await web.chat_postMessage(channel=CHANNEL, text=f"chatter {n}")
    finally:
        if web.session is not None:
            await web.session.close()
    return str(sent["ts"])


async def test_slack_down_for_a_while_then_everything_arrives_once_and_in_order(
    backend_settings, tmp_path: Path
) -> None:
    async with FakeSlack() as slack, cluster(tmp_path) as c:
        slack.fail_with(503)  # down until told otherwise
        async with responder(c, backend_settings, notify=True, **slack_settings(slack)) as svc:
            # the incident lives its whole life while Slack is down: nothing waits for it
            # (`when`, not `settled`: Slack's retries may keep the queue from ever idling)
            await svc.post_alertmanager(alert("SetEnv"))
            await when(svc, "SetEnv", "action.applied", sink=None)
            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            down = await when(svc, "SetEnv", "action.reverted", sink=None)
            assert events(down, "notification.delayed")
            assert not events(down, "notification.recovered")
            assert posted(slack) == []
            await eventually(lambda: _true(len(posts(slack)) >= 3), what="Slack tried again")

            slack.respond_normally()
            inc = await when(svc, "SetEnv", "notification.recovered")
            expected = told(inc)
            assert len(expected) >= 4  # triage, decision, action, resolved, revert...
            root, replies = await thread(slack, len(expected))
            await svc.idle()

            # the root first, then one reply per event told, in timeline order
            assert key_of(root) == f"{inc['id']}:notify:slack:root"
            assert [key_of(r) for r in replies] == [
                f"{inc['id']}:notify:slack:e{e['seq']}" for e in expected
            ]
            everything = posted(slack)
            assert everything[0] is root
            assert all(float(r.ts) > float(root.ts) for r in replies)
            # nothing twice: exactly the root and the replies reached the channel
            assert len(everything) == 1 + len(expected)
            assert len({key_of(m) for m in everything}) == len(everything)
            # the root was posted as the incident is now (not as it was when Slack failed)
            assert "*Status:* RESOLVED" in root.text

            inc = await incident(svc, "SetEnv")
            order = [e["kind"] for e in inc["timeline"] if e["data"].get("sink") == "slack"]
            assert order.index("notification.delayed") < order.index("notification.recovered")
            [recovered] = events(inc, "notification.recovered")
            assert int(recovered["data"]["attempts"]) >= 3
            assert inc["deliveries"]["slack"]["ts"] == root.ts
            assert (
                await metric(svc, "responder_notifications_total", sink="slack", outcome="retry")
                or 0
            ) >= 3


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    backend_settings, tmp_path: Path
) -> None:
    async with FakeSlack() as slack, cluster(tmp_path) as c:
        slack.rate_limit(retry_after=2, times=1, method="chat.postMessage")
        async with responder(c, backend_settings, notify=True, **slack_settings(slack)) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await when(svc, "SetEnv", "notification.recovered")
            limited, retried = posts(slack)[:2]
            # the backoff alone (base 0.05 s) would have tried again well within a second
            assert retried.at - limited.at >= 2.0
            [delayed] = events(inc, "notification.delayed")
            assert "rate limited" in delayed["detail"]
            assert float(delayed["data"]["retry_in_s"]) >= 2.0
            # the retry was the root itself, which then went out once
            root = await eventually(
                lambda: _true([m for m in posted(slack) if not m.is_reply]), what="root"
            )
            assert len(root) == 1
            assert key_of(root[0]).endswith(":notify:slack:root")
            # the same message: its key (what it shows may have moved on meanwhile)
            payloads = [r.args["metadata"]["event_payload"] for r in (limited, retried)]
            assert payloads[0]["key"] == payloads[1]["key"] == key_of(root[0])


async def test_a_message_slack_refuses_is_recorded_and_holds_up_nothing(
    backend_settings, tmp_path: Path
) -> None:
    async with (
        FakeSlack() as slack,
        FakeStatuspage() as sp,
        cluster(tmp_path) as c,
    ):
        slack.error("invalid_blocks", method="chat.postMessage")  # every post, for good
        settings = {**slack_settings(slack), **statuspage_settings(sp)}
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            # the pipeline went on: triage ran and the action was applied
            inc = await settled(svc, "SetEnv", "action.applied")
            assert "triage.completed" in kinds(inc)
            inc = await when(svc, "SetEnv", "notification.failed")
            [refused, *_] = events(inc, "notification.failed")
            assert "invalid_blocks" in refused["detail"]
            assert refused["data"]["step"] == "root"
            # the status page got its incident all the same
            [public] = await eventually(lambda: _true(list(sp.incidents.values())), what="sp")
            assert public["status"] in ("investigating", "identified")
            await when(svc, "SetEnv", "notification.posted", sink="statuspage")
            # given up for good (not retried), and counted
            state = await svc.runtime.store.delivery_state(inc["id"], "slack")
            assert state is not None
            assert state.refs["root"] == "failed"
            assert state.retry_at is None
            failed = await metric(
                svc, "responder_notifications_total", sink="slack", outcome="failed"
            )
            assert failed is not None
            assert failed >= 1
            assert len(posts(slack, f"{inc['id']}:notify:slack:root")) == 1
            assert posted(slack) == []


async def test_a_hanging_slack_holds_up_neither_the_status_page_nor_the_pipeline(
    backend_settings, tmp_path: Path
) -> None:
    async with (
        FakeSlack() as slack,
        FakeStatuspage() as sp,
        cluster(tmp_path) as c,
    ):
        slack.hang()  # no answer at all
        settings = {**slack_settings(slack, notify_timeout_s=0.3), **statuspage_settings(sp)}
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            # The pipeline goes on while Slack hangs. (Not `settled`: it waits for an idle
            # queue, which Slack's retries, back every few tenths of a second, may never
            # leave on a busy machine.)
            inc = await when(svc, "SetEnv", "action.applied", sink=None)
            assert "triage.completed" in kinds(inc)
            # the status page follows the incident, up to the mitigation it now shows
            public = await eventually(
                lambda: _true([i for i in sp.incidents.values() if i["status"] == "identified"]),
                what="status page incident identified",
            )
            assert len(public) == 1
            assert len(sp.incidents) == 1
            assert posted(slack) == []
            inc = await when(svc, "SetEnv", "notification.delayed")
            [delayed] = events(inc, "notification.delayed")
            assert "no answer within 0.3s" in delayed["detail"]

            # Slack answers again: what it missed arrives, the root once
            slack.respond_normally()
            await when(svc, "SetEnv", "notification.recovered")
            inc = await incident(svc, "SetEnv")
            root, replies = await thread(slack, len(told(inc)))
            assert key_of(root).endswith(":notify:slack:root")
            assert [key_of(r).rsplit(":", 1)[1] for r in replies] == [
                f"e{e['seq']}" for e in told(inc)
            ]


async def test_the_circuit_breaker_leaves_a_failing_slack_alone_then_resumes(
    backend_settings, tmp_path: Path
) -> None:
    open_s = 0.6
    async with FakeSlack() as slack, cluster(tmp_path) as c:
        # two failures open the circuit; the one try let through after open_s fails too
        slack.fail_with(503, times=3, method="chat.postMessage")
        settings = slack_settings(slack, notify_circuit_failures=2, notify_circuit_open_s=open_s)
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            await eventually(
                lambda: _is(metric(svc, "responder_notification_circuit_open", sink="slack"), 1),
                what="circuit open on /metrics",
            )
            inc = await when(svc, "SetEnv", "notification.recovered")
            _, second, trial, fine = posts(slack)[:4]
            # open: nothing tried for open_s; the failed trial opens it again, for twice that
            assert trial.at - second.at >= open_s
            assert fine.at - trial.at >= 2 * open_s
            opened = [
                e for e in events(inc, "notification.delayed") if "circuit open" in e["detail"]
            ]
            assert len(opened) == 2
            assert "after 2 failures in a row" in opened[0]["detail"]
            kinds_ = [e["kind"] for e in inc["timeline"] if e["data"].get("sink") == "slack"]
            assert kinds_.index("notification.delayed") < kinds_.index("notification.recovered")
            # closed again and delivering
            assert await metric(svc, "responder_notification_circuit_open", sink="slack") == 0
            await settled(svc, "SetEnv", "action.applied")
            inc = await incident(svc, "SetEnv")
            root, _ = await thread(slack, len(told(inc)))
            assert key_of(root).endswith(":notify:slack:root")
            assert [key_of(m) for m in posted(slack)].count(key_of(root)) == 1


@pytest.mark.parametrize("channel_by", ["id", "name"])
async def test_a_root_posted_by_a_worker_that_died_is_found_not_posted_again(
    backend_settings, tmp_path: Path, channel_by: str
) -> None:
    async with FakeSlack() as slack, cluster(tmp_path) as c:
        slack.fail_with(503, method="chat.postMessage")
        # conversations.history, where the root is looked for, takes ids only: a channel
        # configured by name is looked up with conversations.list first
        channel = slack.channel_id(CHANNEL) if channel_by == "id" else CHANNEL
        settings = slack_settings(slack, slack_channel=channel)
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await when(svc, "SetEnv", "notification.delayed")
            key = f"{inc['id']}:notify:slack:root"
            store = svc.runtime.store

            # Another worker claims the root message and posts it, marked with its key as
            # SlackWebSink marks it, then dies before recording it (its claim runs out).
            async def claimed() -> bool:
                claim = await store.claim_effect(key, owner="dead-worker", lease_s=1.5)
                return claim.status == "start"

            await eventually(claimed, what="the root's effect claimed")
            before = len(slack.requests)
            slack.respond_normally()
            ts = await post_as_dead_worker(slack, key, "the dead worker's root message")

            await settled(svc, "SetEnv", "action.applied")
            inc = await when(svc, "SetEnv", "notification.recovered")
            root, replies = await thread(slack, len(told(inc)))
            # the responder found the message and kept it as the root: no second root
            assert root.ts == ts
            first = root.edits[0].text if root.edits else root.text
            assert first == "the dead worker's root message"
            assert [key_of(m) for m in posted(slack)].count(key) == 1
            assert all(r.thread_ts == ts for r in replies)
            inc = await when(svc, "SetEnv", "notification.posted")
            assert inc["deliveries"]["slack"]["ts"] == ts

            async def state_saved() -> Any:
                # the sink's state is saved once the pass that posted ends, after the event
                state = await store.delivery_state(inc["id"], "slack")
                return state if state is not None and "ts" in state.refs else None

            state = await eventually(state_saved, what="the Slack delivery state saved")
            assert state.refs["ts"] == ts
            assert state.refs["root"] is True
            found = await metric(
                svc, "responder_notifications_total", sink="slack", outcome="found"
            )
            assert found == 1
            # the responder's tries while Slack was down failed; since it is back, the only
            # post of the root was the dead worker's: the responder looked for it instead
            assert len(posts(slack.requests[:before], key)) >= 1
            assert len(posts(slack.requests[before:], key)) == 1
            assert any(r.api == "conversations.history" for r in slack.requests[before:])
            listed = any(r.api == "conversations.list" for r in slack.requests[before:])
            assert listed == (channel_by == "name")


async def test_a_root_posted_before_a_crash_is_found_behind_150_newer_messages(
    backend_settings, tmp_path: Path
) -> None:
    """The lookup reads the channel from the dead worker's claim on, page after page: not
    only the newest 100 messages."""
    async with FakeSlack() as slack, cluster(tmp_path) as c:
        slack.fail_with(503, method="chat.postMessage")
        channel = slack.channel_id(CHANNEL)
        settings = slack_settings(slack, slack_channel=channel)
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await when(svc, "SetEnv", "notification.delayed")
            key = f"{inc['id']}:notify:slack:root"
            store = svc.runtime.store
            claims: list[Any] = []

            async def claimed() -> bool:
                claim = await store.claim_effect(key, owner="dead-worker", lease_s=4)
                claims.append(claim)
                return claim.status == "start"

            await eventually(claimed, what="the root's effect claimed")
            claimed_at = claims[-1].claimed_at.timestamp()
            before = len(slack.requests)
            slack.respond_normally()
            # the dead worker's post, then people talk in the channel before it is found
            ts = await post_as_dead_worker(
                slack, key, "the dead worker's root message", chatter=150
            )

            await when(svc, "SetEnv", "notification.recovered")
            # the delivery record is written with "posted", an event after "recovered"
            inc = await when(svc, "SetEnv", "notification.posted")
            assert inc["deliveries"]["slack"]["ts"] == ts
            await svc.idle()
            ours = [m for m in posted(slack) if m.metadata and key_of(m) == key]
            assert [m.ts for m in ours] == [ts]  # found, not posted again
            assert len(posts(slack.requests[before:], key)) == 1  # the dead worker's only
            replies = [m for m in posted(slack) if m.is_reply]
            assert replies
            assert all(r.thread_ts == ts for r in replies)
            # from the claim (less the allowance for clock skew) on, two pages of 100
            lookups = [r for r in slack.requests[before:] if r.api == "conversations.history"]
            assert len(lookups) == 2
            oldest = [float(r.args["oldest"]) for r in lookups]
            assert all(claimed_at - 600 < o < claimed_at for o in oldest)
            assert "cursor" not in lookups[0].args
            assert lookups[1].args["cursor"]
            found = await metric(
                svc, "responder_notifications_total", sink="slack", outcome="found"
            )
            assert found == 1


async def _true(value: Any) -> Any:
    return value


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_root_found_after_a_crash_is_edited_to_what_the_incident_is_now(
    backend_settings, tmp_path: Path
) -> None:
    """The dead worker posted the root while the incident was open; it resolved before
    the root was found. Found, the root shows what it showed then: it is edited to
    RESOLVED, not taken for a root that says so (which left it open in Slack for good)."""
    async with FakeSlack() as slack, cluster(tmp_path) as c:
        slack.fail_with(503, method="chat.postMessage")
        settings = slack_settings(slack, slack_channel=slack.channel_id(CHANNEL))
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await when(svc, "SetEnv", "notification.delayed")
            key = f"{inc['id']}:notify:slack:root"
            store = svc.runtime.store

            async def claimed() -> bool:
                claim = await store.claim_effect(key, owner="dead-worker", lease_s=3)
                return claim.status == "start"

            await eventually(claimed, what="the root's effect claimed")
            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            await settled(svc, "SetEnv", "incident.resolved")
            slack.respond_normally()
            ts = await post_as_dead_worker(
                slack, key, "*Status:* INVESTIGATING (the root as the dead worker posted it)"
            )

            async def root_resolved() -> bool:
                [root] = [m for m in posted(slack) if str(m.ts) == ts]
                return "RESOLVED" in root.text

            await eventually(root_resolved, timeout_s=30, what="the found root edited")
            ours = [m for m in posted(slack) if m.metadata and key_of(m) == key]
            assert len(ours) == 1  # found, not posted again
