"""Slack's buttons as Slack receives them: the service posts through slack-sdk's
AsyncWebClient to the fake Slack Web API (which checks actions blocks as Slack does), and
an approval's press comes in as the ``HumanSignal`` the interactions endpoint queues,
handled by the real pipeline. The root's buttons follow the incident; an approval request gets
Approve and Reject, then loses them once approved, in place; without a signing secret, or
through an incoming webhook, nothing has a button and the messages say why."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import JsonValue
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from responder.adapters.slack import METADATA_EVENT, SlackWebSink
from responder.domain.incident import IncidentChange, acknowledge, pause_automation
from responder.domain.notification import Outbound
from responder.domain.signal import HumanAct, HumanSignal
from responder.notify.planners import approval_buttons, approval_ref
from responder.ports import IncidentMutator, IncidentState, mutate_incident
from responder.settings import Settings
from tests.support.approvals import asking_approval
from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually

CHANNEL = "#posthog-incidents"
LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"
STEP = "our-integration-rate-limit#0:set_env"
PATCH = {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": []}]}}}}


def slack_settings(fake: FakeSlack, **more: Any) -> dict[str, Any]:
    return {
        "slack_token": fake.token,
        "slack_api_url": fake.api_url,
        "slack_channel": CHANNEL,
        "slack_signing_secrets": "signing-secret",
        "public_url": "https://responder.example",
        "notify_retry_base_s": 0.05,
        **more,
    }


def action_ids(blocks: list[dict[str, Any]] | None) -> list[str]:
    return [e["action_id"] for b in blocks or [] if b["type"] == "actions" for e in b["elements"]]


def context_of(blocks: list[dict[str, Any]] | None) -> str:
    return " ".join(
        e["text"] for b in blocks or [] if b["type"] == "context" for e in b["elements"]
    )


async def _async(value: Any) -> Any:
    return value


async def press(svc: Service, incident_id: str, act: HumanAct, step: str | None = None) -> None:
    """A person's press, as the interactions endpoint hands it on: handled by the pipeline."""
    now = svc.runtime.clock.now()
    signal = HumanSignal(
        incident_id=incident_id,
        act=act,
        step=step,
        by="Jane Doe",
        user_id="U0JANE",
        via="slack",
        request_id=f"{act}-{now.timestamp()}",
        received_at=now,
    )
    await svc.runtime.pipeline.handle(signal)


async def record(svc: Service, incident_id: str, transition: IncidentMutator) -> None:
    """A transition written as the pipeline writes a press's (``pause_automation``,
    ``acknowledge`` with ``commander``), then told: what the sinks see of it is the same."""
    result = await mutate_incident(svc.runtime.store, incident_id, transition)
    assert result.change is not None
    await svc.runtime.deliveries.incident_changed(result.change)


async def open_root(svc: Service, slack: FakeSlack) -> tuple[str, SlackMessage]:
    await svc.post_alertmanager(example(LIMITED))
    await svc.idle()
    [inc] = await svc.incidents()
    [root] = await eventually(lambda: _async(slack.roots(CHANNEL)), what="the root")
    return str(inc["id"]), root


async def test_the_root_carries_the_buttons_its_state_calls_for(
    make_settings: Callable[..., Settings],
) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(**slack_settings(slack))
        async with running_service(settings, notify=True) as svc:
            incident_id, root = await open_root(svc, slack)
            # as Slack received it
            [posted] = [r for r in slack.requests if r.api == "chat.postMessage"]
            sent_blocks = posted.args["blocks"]
            sent_blocks = json.loads(sent_blocks) if isinstance(sent_blocks, str) else sent_blocks
            assert sent_blocks == root.blocks
            assert action_ids(root.blocks) == ["incident.acknowledge", "incident.pause"]
            [actions] = [b for b in root.blocks or [] if b["type"] == "actions"]
            pause = actions["elements"][1]
            assert json.loads(pause["value"]) == {"incident": incident_id}
            assert pause["confirm"]["confirm"]["text"] == "Pause"
            assert f"/incidents/{incident_id}|Incident page>" in context_of(root.blocks)

            def paused(state: IncidentState) -> IncidentChange | None:
                assert state.incident is not None
                return pause_automation(
                    state.incident, by="Jane Doe", now=svc.runtime.clock.now(), via="slack"
                )

            def acked(state: IncidentState) -> IncidentChange | None:
                assert state.incident is not None
                now = svc.runtime.clock.now()
                return acknowledge(
                    state.incident, by="Jane Doe", at=now, now=now, via="in Slack", commander=True
                )

            await record(svc, incident_id, paused)
            await eventually(
                lambda: _async(
                    action_ids(root.blocks) == ["incident.acknowledge", "incident.resume"]
                ),
                what="Resume in place of Pause",
            )
            assert "*Automation:* paused by Jane Doe at " in root.text
            await record(svc, incident_id, acked)
            await eventually(
                lambda: _async(action_ids(root.blocks) == ["incident.resume"]),
                what="no Acknowledge once acknowledged",
            )
            assert "*Incident commander:* Jane Doe" in root.text
            replies = [m.text for m in slack.replies(CHANNEL, root.ts)]
            assert any(
                t.startswith(":double_vertical_bar: *Automation paused* by Jane Doe")
                for t in replies
            )
            assert len(slack.roots(CHANNEL)) == 1


async def test_an_approval_request_gets_approve_and_reject_then_says_who_approved(
    backend_settings: Callable[..., Settings],
) -> None:
    async with FakeSlack() as slack:
        settings = backend_settings(**slack_settings(slack))
        async with running_service(settings, notify=True) as svc:
            incident_id, root = await open_root(svc, slack)
            ask = asking_approval(
                step=STEP,
                now=svc.runtime.clock.now(),
                action="set_env",
                change="set_env POSTHOG_BATCH=true",
                patch=PATCH,
            )
            # what the mitigation stage records of a step that needs a yes, then tells
            await record(svc, incident_id, ask)

            def the_request() -> SlackMessage | None:
                return next(
                    (
                        m
                        for m in slack.replies(CHANNEL, root.ts)
                        if m.text.startswith(":raised_hand: *Approval needed:*")
                    ),
                    None,
                )

            request = await eventually(lambda: _async(the_request()), what="the request")
            assert action_ids(request.blocks) == ["action.approve", "action.reject"]
            approve = next(
                e for b in request.blocks or [] if b["type"] == "actions" for e in b["elements"]
            )
            assert json.loads(approve["value"]) == {"incident": incident_id, "step": STEP}
            assert approve["style"] == "primary"
            assert "production/posthog-integration" in approve["confirm"]["text"]["text"]
            [code] = [b for b in request.blocks or [] if b["type"] == "rich_text"]
            assert json.loads(code["elements"][0]["elements"][0]["text"]) == PATCH
            key = request.metadata["event_payload"]["key"] if request.metadata else None

            await press(svc, incident_id, "approve", STEP)
            await eventually(lambda: _async(not action_ids(request.blocks)), what="edited")
            # edited in place, once: the outcome instead of the buttons, its own key kept
            assert len(request.edits) == 1
            assert "*Approved* by Jane Doe in Slack" in context_of(request.blocks)
            assert request.metadata is not None
            assert request.metadata["event_payload"] == {"key": key}
            answer = await eventually(
                lambda: _async(
                    [
                        m
                        for m in slack.replies(CHANNEL, root.ts)
                        if m.text.startswith(":white_check_mark: *Approved* by")
                    ]
                ),
                what="the answer in the thread",
            )
            assert (
                "by Jane Doe in Slack: set_env on production/posthog-integration" in answer[0].text
            )
            # a second press changes nothing and edits nothing
            await press(svc, incident_id, "approve", STEP)
            await svc.idle()
            assert len(request.edits) == 1
            assert len(slack.roots(CHANNEL)) == 1


async def test_without_interactivity_or_a_bot_token_no_button_and_the_root_says_why(
    make_settings: Callable[..., Settings],
) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(**slack_settings(slack, slack_signing_secrets=[]))
        async with running_service(settings, notify=True) as svc:
            _, root = await open_root(svc, slack)
            assert action_ids(root.blocks) == []
            assert "No buttons: interactivity is not configured" in context_of(root.blocks)
        webhook = make_settings(
            slack_webhook_url=slack.webhook_url, public_url="https://responder.example"
        )
        async with running_service(webhook, notify=True) as svc:
            await svc.post_alertmanager(example(LIMITED))
            await svc.idle()
            [first, *_] = await eventually(
                lambda: _async(slack.webhook_messages), what="a webhook message"
            )
            assert action_ids(first.blocks) == []
            said = context_of(first.blocks)
            assert "No buttons: an incoming webhook cannot take button presses" in said
            assert "/incidents/inc-" in said


async def test_a_request_found_after_a_crash_is_still_edited_once_decided() -> None:
    """The request's reply was posted, then its worker died before recording it: the lookup
    that finds it (``find_sent``) answers its ts as the send would have, so the edit once
    decided reaches that very message."""
    async with FakeSlack() as slack:
        sink = SlackWebSink(
            token=slack.token, base_url=slack.api_url, timeout_s=5, ssl_context=None
        )
        web = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
        try:
            channel = slack.channel_id(CHANNEL)
            root = await web.chat_postMessage(channel=channel, text="root")
            refs: dict[str, JsonValue] = {"channel": channel, "ts": root["ts"]}
            ref = approval_ref(STEP)
            key = "inc-1:notify:slack:e7"
            request = Outbound(
                sink="slack",
                step="e7",
                op="reply",
                text="approval needed",
                blocks=[
                    {"type": "section", "text": {"type": "mrkdwn", "text": "approval needed"}},
                    {"type": "actions", "elements": approval_buttons("inc-1", None, STEP)},
                ],
                fields={"channel": channel, "keeps": ref, "key": key},
            )
            sent = await sink.send(request, refs)
            [posted] = slack.replies(CHANNEL, root["ts"])
            assert sent == {ref: {"ts": posted.ts, "key": key}}
            assert await sink.find_sent(request, refs) == sent  # as the send answered
            settle = Outbound(
                sink="slack",
                step="settle9.0",
                op="update",
                text="approved",
                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "approved"}}],
                fields={"channel": channel, "edits": ref, "key": "inc-1:notify:slack:settle9.0"},
            )
            assert await sink.send(settle, {**refs, **sent}) == {}
            assert posted.text == "approved"
            assert action_ids(posted.blocks) == []
            # the reply keeps its own key: a lookup finds it, and it never reads as a root
            assert posted.metadata == {"event_type": METADATA_EVENT, "event_payload": {"key": key}}
            assert slack.message(CHANNEL, root["ts"]).text == "root"
            # nothing kept (the reply was refused): nothing to edit, nothing sent
            before = len(slack.requests)
            assert await sink.send(settle, refs) == {}
            assert len(slack.requests) == before
        finally:
            await sink.close()
            if web.session is not None:
                await web.session.close()


async def test_slack_refuses_a_button_value_longer_than_2000_characters() -> None:
    """Why a step too long for a button leaves the buttons off: the fake, like Slack,
    refuses the whole message."""
    async with FakeSlack() as slack:
        web = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
        try:
            fits = approval_buttons("inc-1", None, "s" * 1960)
            assert fits
            await web.chat_postMessage(
                channel=CHANNEL, text="ok", blocks=[{"type": "actions", "elements": fits}]
            )
            button = {**fits[0], "value": "v" * 2001}
            with pytest.raises(SlackApiError) as refused:
                await web.chat_postMessage(
                    channel=CHANNEL, text="no", blocks=[{"type": "actions", "elements": [button]}]
                )
            assert refused.value.response["error"] == "invalid_blocks"
            assert approval_buttons("inc-1", None, "s" * 2000) == []
        finally:
            if web.session is not None:
                await web.session.close()


async def test_a_root_marked_lost_loses_its_buttons() -> None:
    """A root whose incident the store lost is marked so: its buttons would act on an
    incident that is gone, so they go with the mark."""
    async with FakeSlack() as slack:
        sink = SlackWebSink(
            token=slack.token, base_url=slack.api_url, timeout_s=5, ssl_context=None
        )
        web = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
        try:
            channel = slack.channel_id(CHANNEL)
            key = "inc-1:notify:slack:root"
            section = {"type": "section", "text": {"type": "mrkdwn", "text": "root"}}
            buttons = {"type": "actions", "elements": approval_buttons("inc-1", None, STEP)}
            root = await web.chat_postMessage(
                channel=channel,
                text="root",
                blocks=[section, buttons],
                metadata={"event_type": METADATA_EVENT, "event_payload": {"key": key}},
            )
            [thread] = await sink.open_threads([channel], since=0)
            await sink.mark_lost(thread, "the record of this incident was lost")
            marked = slack.message(CHANNEL, root["ts"])
            assert [b["type"] for b in marked.blocks or []] == ["section", "context"]
            assert "was lost" in context_of(marked.blocks)
        finally:
            await sink.close()
            if web.session is not None:
                await web.session.close()
