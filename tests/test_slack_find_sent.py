"""``SlackWebSink.find_sent``, through slack-sdk against the fake Slack: a message sent
before a crash is looked for from the first try's time on (less an allowance for clock
skew), page after page, whatever came after it; what is older than that is not read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from responder.adapters.slack import METADATA_EVENT, SlackWebSink
from responder.domain.notification import Outbound
from tests.support.fake_notify import FakeSlack

CHANNEL = "#posthog-incidents"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def sink(slack: FakeSlack) -> AsyncIterator[SlackWebSink]:
    sink = SlackWebSink(token=slack.token, base_url=slack.api_url, timeout_s=5, ssl_context=None)
    yield sink
    await sink.close()


@pytest.fixture
async def web(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
    yield client
    if client.session is not None:
        await client.session.close()


def marked(key: str) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT, "event_payload": {"key": key}}


def lookups(slack: FakeSlack, start: int, api: str) -> list[dict[str, Any]]:
    return [r.args for r in slack.requests[start:] if r.api == api]


async def test_a_root_behind_150_newer_messages_is_found_on_the_second_page(
    slack: FakeSlack, sink: SlackWebSink, web: AsyncWebClient
) -> None:
    channel = slack.channel_id(CHANNEL)
    key = "inc-1:notify:slack:root"
    tried = time.time()
    ours = await web.chat_postMessage(channel=channel, text="root", metadata=marked(key))
    for n in range(150):
        await web.chat_postMessage(channel=channel, text=f"chatter {n}")
    root = Outbound(
        sink="slack",
        step="root",
        op="post",
        marks="root",
        fields={"key": key, "channel": channel, "sent_after": tried},
    )
    start = len(slack.requests)
    assert await sink.find_sent(root, {}) == {"channel": channel, "ts": ours["ts"]}
    pages = lookups(slack, start, "conversations.history")
    assert len(pages) == 2
    assert pages[0]["limit"] == "100"
    assert "cursor" not in pages[0]
    assert pages[1]["cursor"]
    assert all(tried - 301 < float(p["oldest"]) < tried - 299 for p in pages)


async def test_a_reply_behind_150_older_replies_is_found_on_the_second_page(
    slack: FakeSlack, sink: SlackWebSink, web: AsyncWebClient
) -> None:
    channel = slack.channel_id(CHANNEL)
    parent = await web.chat_postMessage(channel=channel, text="root")
    for n in range(150):  # a busy thread: people talked in it before our reply
        await web.chat_postMessage(channel=channel, thread_ts=parent["ts"], text=f"reply {n}")
    key = "inc-1:notify:slack:e9"
    tried = time.time()
    await web.chat_postMessage(
        channel=channel, thread_ts=parent["ts"], text="ours", metadata=marked(key)
    )
    reply = Outbound(sink="slack", step="e9", op="reply", fields={"key": key, "sent_after": tried})
    refs = {"channel": channel, "ts": parent["ts"], "root": True}
    start = len(slack.requests)
    assert await sink.find_sent(reply, refs) == {}
    pages = lookups(slack, start, "conversations.replies")
    assert len(pages) == 2
    assert pages[1]["cursor"]
    assert all(float(p["oldest"]) < tried for p in pages)
    # not there: every page read, then "not sent"
    other = reply.model_copy(update={"fields": {"key": "inc-1:notify:slack:e10"}})
    start = len(slack.requests)
    assert await sink.find_sent(other, refs) is None
    pages = lookups(slack, start, "conversations.replies")
    assert len(pages) == 2
    assert "oldest" not in pages[0]  # no time known (a record older than claim times)


async def test_nothing_older_than_the_first_try_is_read(
    slack: FakeSlack, sink: SlackWebSink, web: AsyncWebClient
) -> None:
    channel = slack.channel_id(CHANNEL)
    key = "inc-1:notify:slack:root"
    await web.chat_postMessage(channel=channel, text="root", metadata=marked(key))
    # a try that began an hour from now cannot have posted what is in the channel now
    later = Outbound(
        sink="slack",
        step="root",
        op="post",
        marks="root",
        fields={"key": key, "channel": channel, "sent_after": time.time() + 3600},
    )
    start = len(slack.requests)
    assert await sink.find_sent(later, {}) is None
    [page] = lookups(slack, start, "conversations.history")
    assert float(page["oldest"]) > time.time()
