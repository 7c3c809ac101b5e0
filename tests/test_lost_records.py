"""When Redis loses the service's last writes: no second Slack root, no second status page
incident, no message left behind that nothing follows.

A Redis that crashes with ``appendfsync everysec`` (or restarts without persistence, or
fails over to a replica that lagged) may forget incidents whose Slack root was posted and
whose status page incident was created. The alert is sent again (Alertmanager repeats a
firing alert every ``repeat_interval``); the incident it opens anew takes over the thread
and the status page incident of the lost record instead of opening second ones, edits
them to what it knows, and says so in the thread. Real ``responder serve``, real
``redis-server`` killed and started again, the fake Slack and Statuspage.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from responder.adapters.redis_keys import RedisKeys
from responder.adapters.redis_store import RedisStore
from responder.adapters.slack import METADATA_EVENT
from responder.domain.errors import StoreUnavailableError
from responder.ports import RecordsEpoch
from tests.support.clock import ShiftableClock
from tests.support.fake_notify import FakeSlack, FakeStatuspage, SlackMessage
from tests.support.procs import RedisServer, redis_server, serve_process
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = ROOT / "examples/alertmanager/posthog-api-unreachable-firing.json"  # P1
LIMITED = ROOT / "examples/alertmanager/posthog-rate-limited-429-firing.json"  # P2
CHANNEL = "#posthog-incidents"
PREFIX = "lost-records"


def firing(starts_at: str | None = None) -> dict[str, Any]:
    payload = json.loads(UNREACHABLE.read_text())
    if starts_at is not None:
        payload["alerts"][0]["startsAt"] = starts_at
    return payload


def resolved(payload: dict[str, Any]) -> dict[str, Any]:
    done = copy.deepcopy(payload)
    done["status"] = "resolved"
    for alert in done["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-29T04:40:00Z"
    return done


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_channel(CHANNEL)
        yield fake


@pytest.fixture
async def statuspage() -> AsyncIterator[FakeStatuspage]:
    async with FakeStatuspage() as fake:
        yield fake


def service_env(redis: RedisServer, slack: FakeSlack, sp: FakeStatuspage) -> dict[str, str]:
    return {
        "RESPONDER_REDIS_URL": redis.url,
        "RESPONDER_REDIS_PREFIX": PREFIX,
        "RESPONDER_RULES": str(ROOT / "rules"),
        "RESPONDER_DRY_RUN": "true",
        "RESPONDER_SLACK_TOKEN": slack.token,
        "RESPONDER_SLACK_API_URL": slack.api_url,
        "RESPONDER_SLACK_CHANNEL": slack.channel_id(CHANNEL),
        "RESPONDER_STATUSPAGE_API_KEY": sp.api_key,
        "RESPONDER_STATUSPAGE_PAGE_ID": sp.page_id,
        "RESPONDER_STATUSPAGE_API_URL": sp.api_url,
        "RESPONDER_STATUSPAGE_COMPONENTS": "cmp1",
        "RESPONDER_NOTIFY_RETRY_BASE_S": "0.2",
        "RESPONDER_LOG_LEVEL": "WARNING",
    }


async def post(url: str, payload: dict[str, Any]) -> None:
    """Sends like Alertmanager: again on a 503 (Redis still starting), bounded."""
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            async with session.post(f"{url}/v1/webhooks/alertmanager", json=payload) as r:
                if r.status == 200:
                    return
                assert r.status == 503, await r.text()
            await asyncio.sleep(0.05)
    raise AssertionError("the webhook was never accepted")


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        return await r.json() if r.status == 200 else None


async def incidents(url: str) -> list[dict[str, Any]]:
    body = await get_json(f"{url}/v1/incidents")
    return list(body["incidents"]) if body else []


async def timeline(url: str, incident_id: str) -> list[dict[str, Any]]:
    body = await get_json(f"{url}/v1/incidents/{incident_id}")
    assert body is not None, incident_id
    return list(body["timeline"])


def payload_of(message: SlackMessage) -> dict[str, Any]:
    metadata = message.metadata or {}
    assert metadata.get("event_type") == METADATA_EVENT
    return dict(metadata.get("event_payload") or {})


async def test_an_incident_whose_record_redis_lost_takes_over_its_thread_and_status_page(
    slack: FakeSlack, statuspage: FakeStatuspage
) -> None:
    with (
        redis_server() as server,  # no persistence: a restart loses every write
        serve_process(service_env(server, slack, statuspage)) as service,
    ):
        alert = firing()
        await post(service.url, alert)

        async def told_once() -> bool:
            roots = slack.roots(CHANNEL)
            return len(roots) == 1 and len(statuspage.incidents) == 1

        await eventually(told_once, timeout_s=30)
        [lost] = await incidents(service.url)
        [root] = slack.roots(CHANNEL)
        assert payload_of(root)["key"] == f"{lost['id']}:notify:slack:root"
        [sp_incident] = statuspage.incidents.values()

        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)  # empty: the incident's record is gone
        # Alertmanager repeats the firing alert: the incident opens again
        await post(service.url, alert)

        async def reopened() -> list[dict[str, Any]]:
            found = await incidents(service.url)
            return found if found and found[0]["id"] != lost["id"] else []

        [again] = await eventually(reopened, timeout_s=30)
        assert again["group_key"] == lost["group_key"]

        async def taken_over() -> bool:
            shown = payload_of(slack.message(root.channel, root.ts))
            return shown.get("key") == f"{again['id']}:notify:slack:root" and any(
                "lost the record" in m.text for m in slack.replies(CHANNEL, root.ts)
            )

        try:
            await eventually(taken_over, timeout_s=30)
        except AssertionError:
            events = await timeline(service.url, again["id"])
            told = "\n".join(f"{e['kind']}: {e['detail']}" for e in events)
            raise AssertionError(story(slack, service) + "\n" + told) from None
        assert len(slack.roots(CHANNEL)) == 1, [m.text for m in slack.roots(CHANNEL)]
        assert list(statuspage.incidents) == [sp_incident["id"]]
        kinds = [e["kind"] for e in await timeline(service.url, again["id"])]
        assert kinds.count("notification.adopted") == 2, kinds  # Slack, the status page
        assert "notification.posted" not in kinds

        # the resolve reaches what was taken over
        await post(service.url, resolved(alert))

        async def closed() -> bool:
            shown = payload_of(slack.message(root.channel, root.ts))
            page = statuspage.incident(sp_incident["id"])
            return shown.get("status") == "RESOLVED" and page["status"] == "resolved"

        await eventually(closed, timeout_s=30)
        assert len(slack.roots(CHANNEL)) == 1
        assert len(statuspage.incidents) == 1


async def test_a_genuine_new_episode_gets_a_thread_of_its_own(
    slack: FakeSlack, statuspage: FakeStatuspage
) -> None:
    """The look for a lost thread takes only threads still open: an episode that resolved
    keeps its thread, and the next one (an alert that started long ago by the store's
    count, as the example's do) opens its own."""
    with (
        redis_server() as server,
        serve_process(service_env(server, slack, statuspage)) as service,
    ):
        first = firing()
        await post(service.url, first)

        async def first_told() -> bool:
            return len(slack.roots(CHANNEL)) == 1 and len(statuspage.incidents) == 1

        await eventually(first_told, timeout_s=30)
        await post(service.url, resolved(first))

        async def first_closed() -> bool:
            roots = slack.roots(CHANNEL)
            return (
                len(roots) == 1
                and payload_of(roots[0]).get("status") == "RESOLVED"
                and not statuspage.unresolved()
            )

        await eventually(first_closed, timeout_s=30)
        await post(service.url, firing("2026-11-29T05:00:00Z"))

        async def second_told() -> bool:
            return len(slack.roots(CHANNEL)) == 2 and len(statuspage.incidents) == 2

        try:
            await eventually(second_told, timeout_s=30)
        except AssertionError:
            found = await incidents(service.url)
            raise AssertionError(story(slack, service) + f"\n{found}") from None
        newest = await incidents(service.url)
        assert len(newest) == 2
        kinds = [e["kind"] for e in await timeline(service.url, newest[0]["id"])]
        assert "notification.adopted" not in kinds


async def test_a_thread_no_alert_comes_back_for_is_marked_and_taken_over_when_it_does(
    slack: FakeSlack, statuspage: FakeStatuspage
) -> None:
    """Of two incidents lost with Redis, one's alert comes again at once and takes its
    thread over; the other's thread is marked (nothing follows it), until its alert comes
    again too and its new incident takes the marked thread over."""
    with redis_server() as server:
        env = {
            **service_env(server, slack, statuspage),
            # the marking waits two visibility timeouts for the signals in flight
            "RESPONDER_VISIBILITY_TIMEOUT_S": "1.5",
            "RESPONDER_TRIAGE_BUDGET_S": "0.5",
            "RESPONDER_BATCH_WAIT_S": "0.05",
        }
        with serve_process(env) as service:
            unreachable, limited = firing(), json.loads(LIMITED.read_text())
            await post(service.url, unreachable)
            await post(service.url, limited)

            async def both_told() -> bool:
                # one public incident: both incidents are of one service (its components)
                return len(slack.roots(CHANNEL)) == 2 and len(statuspage.incidents) == 1

            await eventually(both_told, timeout_s=30)
            by_alert = {alert_of(m): m for m in slack.roots(CHANNEL)}

            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)
            await post(service.url, unreachable)

            def shown(alertname: str) -> dict[str, Any]:
                root = by_alert[alertname]
                return payload_of(slack.message(root.channel, root.ts))

            async def one_taken_over_one_marked() -> bool:
                return shown("PostHogRateLimited").get("status") == "LOST" and shown(
                    "PostHogAPIUnreachable"
                ).get("status") not in (None, "LOST")

            try:
                await eventually(one_taken_over_one_marked, timeout_s=30)
            except AssertionError:
                raise AssertionError(story(slack, service)) from None
            marked = by_alert["PostHogRateLimited"]
            assert "lost its record" in slack.message(marked.channel, marked.ts).text
            [first_key] = [
                e.metadata["event_payload"]["key"] for e in marked.edits[:1] if e.metadata
            ]
            assert shown("PostHogRateLimited")["key"] == first_key
            assert len(slack.roots(CHANNEL)) == 2

            async def logged() -> bool:
                # written once the edit is answered: the fake may show the edit first
                return "thread of a lost incident record" in service.stderr()

            await eventually(logged, timeout_s=30)
            marks = [
                r
                for r in slack.requests
                if r.api == "chat.update"
                and r.args["metadata"]["event_payload"]["status"] == "LOST"
            ]
            assert len(marks) == 1  # once, though the channel is named twice (id and name)

            # its alert comes again: the marked thread is taken over, not a third posted
            await post(service.url, limited)

            async def marked_taken_over() -> bool:
                now = shown("PostHogRateLimited")
                return now.get("status") not in (None, "LOST") and now["key"] != first_key

            try:
                await eventually(marked_taken_over, timeout_s=30)
            except AssertionError:
                found = await incidents(service.url)
                raise AssertionError(f"{story(slack, service)}\n{found}") from None
            assert len(slack.roots(CHANNEL)) == 2
            assert len(statuspage.incidents) == 1


async def test_the_thread_of_an_incident_the_store_still_holds_is_never_taken_over(
    slack: FakeSlack, statuspage: FakeStatuspage
) -> None:
    """An episode resolved in the store whose root Slack would not let us edit still
    shows open there: the next episode of its group (its alert started long before the
    service's records begin, as the example's does) does not take that root over: its
    incident is not lost."""
    slack.error("cant_update_message", method="chat.update")  # every edit, for good
    with (
        redis_server() as server,
        serve_process(service_env(server, slack, statuspage)) as service,
    ):
        first = firing()
        await post(service.url, first)

        async def told() -> bool:
            return len(slack.roots(CHANNEL)) == 1

        await eventually(told, timeout_s=30)
        await post(service.url, resolved(first))

        async def first_resolved() -> bool:
            found = await incidents(service.url)
            return bool(found) and found[0]["status"] == "resolved"

        await eventually(first_resolved, timeout_s=30)
        [root] = slack.roots(CHANNEL)
        assert payload_of(root)["status"] == "INVESTIGATING"  # the edit was refused
        await post(service.url, firing("2026-11-29T05:00:00Z"))

        async def second_told() -> bool:
            return len(slack.roots(CHANNEL)) == 2

        await eventually(second_told, timeout_s=30)
        newest = await incidents(service.url)
        assert [i["status"] for i in newest] == ["open", "resolved"]
        assert payload_of(slack.roots(CHANNEL)[1])["key"].startswith(newest[0]["id"])
        assert payload_of(root)["key"].startswith(newest[1]["id"])


def alert_of(message: SlackMessage) -> str:
    return "PostHogRateLimited" if "rate limit" in message.text.lower() else "PostHogAPIUnreachable"


def story(slack: FakeSlack, service: Any) -> str:
    lines = [f"{m.ts} {m.thread_ts} {m.metadata} {m.text[:80]!r}" for m in slack.messages(CHANNEL)]
    calls = [f"{r.api} {str(r.args)[:300]}" for r in slack.requests]
    return "\n".join([*lines, *calls, service.stderr()[-3000:]])


async def test_records_are_trusted_from_when_the_service_first_saw_its_redis(
    tmp_path: Path,
) -> None:
    """``records_since`` stays put across calls and reconnections, and moves to the time
    of the first look after Redis was restarted: even from an append-only file that kept
    everything, a restart is where a loss would be. Only the first look that finds the
    new server says it began (one replica marks what was lost)."""
    clock = ShiftableClock()
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        other = aioredis.Redis.from_url(server.url, decode_responses=True)
        keys = RedisKeys(f"records-since-{tmp_path.name}")
        store = RedisStore(client, keys=keys, clock=clock, signal_ttl_s=60, queue_maxlen=100)
        replica = RedisStore(other, keys=keys, clock=clock, signal_ttl_s=60, queue_maxlen=100)
        try:
            first = await store.records_since()
            assert first.began
            clock.advance(60)
            assert await replica.records_since() == RecordsEpoch(first.since, began=False)
            await client.connection_pool.disconnect()
            clock.advance(60)
            assert await store.records_since() == RecordsEpoch(first.since, began=False)

            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)  # from its append-only file
            clock.advance(60)
            restarted = await eventually(store_answers(replica), timeout_s=10)
            assert restarted.began
            assert restarted.since - first.since >= timedelta(seconds=180)
            clock.advance(60)
            again = await eventually(store_answers(store), timeout_s=10)  # its pool reconnects
            assert again == RecordsEpoch(restarted.since, began=False)
        finally:
            await client.aclose()
            await other.aclose()


def store_answers(store: RedisStore) -> Any:
    async def attempt() -> Any:
        try:
            return await store.records_since()
        except StoreUnavailableError:  # reconnecting
            return None

    return attempt
