"""The error-rate graph in the incident's Slack thread: planned once per resolve from the
report's ``report.written`` (bot mode only), uploaded as a PNG with slack-sdk's
``files_upload_v2`` against the fake Slack (``files.getUploadURLExternal``, the upload URL,
``files.completeUploadExternal``), found again after a crash by its file name; a bot
without ``files:write`` gets one thread line linking the incident page instead."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient

from responder.adapters.slack import SlackWebSink
from responder.app import SHIPPED_TEMPLATES
from responder.domain.incident import Incident
from responder.domain.notification import DeliveryState, Outbound
from responder.domain.timeline import TimelineEvent
from responder.notify.planners import Renderer, SlackPlanner
from responder.render.templates import Templates
from responder.report.graph import Graph, Marker, Series, graph_png
from responder.rules.loader import load_rules
from responder.settings import default_rules_paths
from tests.support.fake_notify import FakeSlack

CHANNEL = "#posthog-incidents"
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
RENDERER = Renderer(
    templates=Templates([SHIPPED_TEMPLATES]), rules=lambda: load_rules(default_rules_paths())
)
PAGE = "https://responder.example.com/incidents/inc-1"


def written(seq: int = 9, **data: Any) -> TimelineEvent:
    return TimelineEvent(
        seq=seq + 1,
        at=T0,
        kind="report.written",
        detail="Postmortem draft: x",
        data={
            "resolved_seq": seq,
            "link": "/reports/inc-1-9.md",
            "graph_png": "/reports/inc-1-9.png",
            "page": PAGE,
            **data,
        },
    )


def incident() -> Incident:
    return Incident(id="inc-1", group_key="g", title="PostHog errors", opened_at=T0, updated_at=T0)


def planned(planner: SlackPlanner, *events: TimelineEvent) -> list[Outbound]:
    state = DeliveryState(refs={"root": True, "channel": "C1", "ts": "1.0"})
    return [m for m in planner.plan(incident(), events, state, T0) if m.op == "upload"]


def test_the_graph_is_planned_once_per_resolve_in_bot_mode_only() -> None:
    bot = SlackPlanner(renderer=RENDERER, uploads=True)
    [upload] = planned(bot, written())
    assert upload.step == "graph9"
    assert upload.fields["file"] == "/reports/inc-1-9.png"
    assert upload.fields["filename"] == "inc-1-9-error-rate.png"
    assert upload.fields["page"] == PAGE
    # the rewrite at the window's end, a report without a graph: nothing more
    assert planned(bot, written(window_complete=True)) == []
    assert planned(bot, written(graph_png=None)) == []
    # an incoming webhook cannot upload; nor can the console
    hook = SlackPlanner(renderer=RENDERER, threads=False, edits=False, uploads=False)
    assert planned(hook, written()) == []


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def sink(slack: FakeSlack) -> AsyncIterator[SlackWebSink]:
    sink = SlackWebSink(token=slack.token, base_url=slack.api_url, timeout_s=5, ssl_context=None)
    yield sink
    await sink.close()


async def thread(slack: FakeSlack) -> dict[str, Any]:
    web = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
    try:
        root = await web.chat_postMessage(channel=slack.channel_id(CHANNEL), text="root")
    finally:
        if web.session is not None:
            await web.session.close()
    return {"root": True, "channel": root["channel"], "ts": root["ts"]}


def upload_of(png: Path, **fields: Any) -> Outbound:
    [message] = planned(SlackPlanner(renderer=RENDERER, uploads=True), written(graph_png=str(png)))
    return message.model_copy(
        update={"fields": {**message.fields, "key": "inc-1:notify:slack:graph9", **fields}}
    )


def graph() -> Graph:
    start = T0.timestamp() - 1800
    points = tuple((start + 60 * n, 0.1 * (n % 7)) for n in range(60))
    return Graph(
        title="Error rate: PostHog errors",
        query="error_ratio",
        start_s=start,
        end_s=start + 3600,
        step_s=60,
        series=(Series("value", points),),
        markers=(Marker(T0.timestamp(), "alert", "alert: incident opened"),),
    )


async def test_the_graph_is_uploaded_as_a_png_into_the_thread_and_found_again(
    slack: FakeSlack, sink: SlackWebSink, tmp_path: Path
) -> None:
    png = tmp_path / "inc-1-9.png"
    png.write_bytes(graph_png(graph(), width_px=900))
    refs = await thread(slack)
    tried = time.time()
    message = upload_of(png)
    assert await sink.send(message, refs) == {}
    [shared] = slack.uploads(CHANNEL, refs["ts"])
    assert shared.data == png.read_bytes()
    image = Image.open(io.BytesIO(shared.data))
    assert (image.format, image.width) == ("PNG", 900)
    assert shared.name == "inc-1-9-error-rate.png"
    assert shared.title == "Error rate of inc-1 over its window"
    assert shared.alt_txt
    assert "error rate" in shared.alt_txt.lower()
    # the file's message is in the thread, and a lookup after a crash finds it there
    [reply] = slack.replies(CHANNEL, refs["ts"])
    assert reply.files
    assert reply.files[0]["name"] == shared.name
    again = message.model_copy(update={"fields": {**message.fields, "sent_after": tried}})
    assert await sink.find_sent(again, refs) == {}
    other = upload_of(png, filename="inc-1-12-error-rate.png")
    assert await sink.find_sent(other, refs) is None


async def test_a_bot_without_files_write_links_the_incident_page_once(
    slack: FakeSlack, sink: SlackWebSink, tmp_path: Path
) -> None:
    png = tmp_path / "inc-1-9.png"
    png.write_bytes(graph_png(graph(), width_px=400))
    refs = await thread(slack)
    slack.files_write = False
    tried = time.time()
    message = upload_of(png)
    start = len(slack.requests)
    assert await sink.send(message, refs) == {}  # no error: nothing to try again
    asked = [r.api for r in slack.requests[start:]]
    assert asked == ["files.getUploadURLExternal", "chat.postMessage"]
    assert slack.uploads(CHANNEL) == []
    [line] = slack.replies(CHANNEL, refs["ts"])
    assert f"<{PAGE}|on the incident page>" in line.text
    assert "files:write" in line.text
    again = message.model_copy(update={"fields": {**message.fields, "sent_after": tried}})
    assert await sink.find_sent(again, refs) == {}


async def test_a_graph_file_this_replica_does_not_have_is_a_link(
    slack: FakeSlack, sink: SlackWebSink, tmp_path: Path
) -> None:
    refs = await thread(slack)
    assert await sink.send(upload_of(tmp_path / "gone.png"), refs) == {}
    [line] = slack.replies(CHANNEL, refs["ts"])
    assert PAGE in line.text
    assert slack.uploads(CHANNEL) == []
