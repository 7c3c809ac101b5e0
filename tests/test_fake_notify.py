"""The notification fakes of tests/support/fake_notify.py answer the real client libraries as
the real services do: slack_sdk's AsyncWebClient and AsyncWebhookClient, aiohttp for the
Statuspage management API, and the ``pagerduty`` package's (synchronous) RestApiV2Client and
EventsApiV2Client, run in a thread. No mocks: every call crosses a loopback socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
import pagerduty
import pytest
from multidict import CIMultiDictProxy
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.support.fake_notify import FakePagerDuty, FakeSlack, FakeStatuspage

BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "HighErrorRate (firing)"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Service:* api"}},
]
METADATA = {"event_type": "incident_opened", "event_payload": {"incident_id": "inc-1"}}


# -------------------------------------------------------------------------------- slack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels=["#incidents"], missing_channels=["#gone"]) as fake:
        yield fake


def web_client(slack: FakeSlack, **kw: Any) -> AsyncWebClient:
    kw.setdefault("timeout", 5)
    kw.setdefault("token", "xoxb-test")
    return AsyncWebClient(base_url=slack.api_url, **kw)


async def test_slack_thread_and_update_show_in_the_fake(slack: FakeSlack) -> None:
    client = web_client(slack)
    root = await client.chat_postMessage(
        channel="#incidents", text="HighErrorRate firing", blocks=BLOCKS, metadata=METADATA
    )
    channel = root["channel"]
    assert channel == slack.channel_id("#incidents") == slack.channel_id("incidents")
    assert channel.startswith("C")
    assert channel[1:].isdigit()
    assert root["message"]["text"] == "HighErrorRate firing"

    first = await client.chat_postMessage(channel=channel, text="triage: 5xx", thread_ts=root["ts"])
    second = await client.chat_postMessage(
        channel="#incidents", text="mitigated", thread_ts=root["ts"]
    )
    assert float(root["ts"]) < float(first["ts"]) < float(second["ts"])

    updated = await client.chat_update(
        channel=channel, ts=root["ts"], text="HighErrorRate resolved"
    )
    assert (updated["ok"], updated["channel"], updated["ts"]) == (True, channel, root["ts"])
    assert updated["text"] == "HighErrorRate resolved"

    [stored_root] = slack.roots("#incidents")
    assert stored_root.ts == root["ts"]
    assert stored_root.text == "HighErrorRate resolved"
    assert stored_root.blocks == BLOCKS  # chat.update without blocks keeps them
    assert stored_root.metadata == METADATA
    assert [e.text for e in stored_root.edits] == ["HighErrorRate firing"]
    replies = slack.replies(channel, root["ts"])
    assert [(r.text, r.thread_ts) for r in replies] == [
        ("triage: 5xx", root["ts"]),
        ("mitigated", root["ts"]),
    ]
    assert len(slack.messages("#incidents")) == 3

    thread = await client.conversations_replies(
        channel=channel, ts=root["ts"], include_all_metadata=True
    )
    assert [m["ts"] for m in thread["messages"]] == [root["ts"], first["ts"], second["ts"]]
    assert thread["has_more"] is False
    parent = thread["messages"][0]
    assert parent["metadata"] == METADATA
    assert parent["reply_count"] == 2
    assert parent["edited"]["ts"]

    history = await client.conversations_history(
        channel=channel, oldest="0", include_all_metadata=True, limit=10
    )
    assert [m["ts"] for m in history["messages"]] == [root["ts"]]  # top-level only
    assert history["messages"][0]["metadata"] == METADATA
    plain = await client.conversations_history(channel=channel)
    assert "metadata" not in plain["messages"][0]  # only with include_all_metadata

    calls = [(r.method, r.api) for r in slack.requests]
    assert ("GET", "conversations.history") in calls  # slack_sdk sends reads as GET
    post = slack.requests[0]
    assert post.headers["Authorization"] == "Bearer xoxb-test"
    assert post.args["channel"] == "#incidents"


async def test_slack_history_is_newest_first_and_pages(slack: FakeSlack) -> None:
    client = web_client(slack)
    posted = [(await client.chat_postMessage(channel="#ops", text=f"m{i}"))["ts"] for i in range(3)]
    first = await client.conversations_history(channel=slack.channel_id("ops"), limit=2)
    assert [m["ts"] for m in first["messages"]] == [posted[2], posted[1]]
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = await client.conversations_history(channel=slack.channel_id("ops"), cursor=cursor)
    assert [m["ts"] for m in rest["messages"]] == [posted[0]]
    assert rest["has_more"] is False
    since = await client.conversations_history(channel=slack.channel_id("ops"), oldest=posted[0])
    assert [m["ts"] for m in since["messages"]] == [posted[2], posted[1]]


async def test_slack_form_encoded_and_unknown_method(slack: FakeSlack) -> None:
    client = web_client(slack)
    posted = await client.api_call(
        "chat.postMessage",
        data={"channel": "#incidents", "text": "via form", "blocks": json.dumps(BLOCKS)},
    )
    assert slack.message("#incidents", posted["ts"]).blocks == BLOCKS
    assert slack.requests[-1].body["text"] == "via form"
    e = await expect_slack_error(client.api_call("chat.nope", json={}))
    assert (e.response.status_code, e.response["error"]) == (200, "unknown_method")


async def expect_slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


async def test_slack_logical_errors_raise_and_store_nothing(slack: FakeSlack) -> None:
    client = web_client(slack)
    root = await client.chat_postMessage(channel="#incidents", text="root")
    channel = root["channel"]

    cases = [
        (client.chat_postMessage(channel="#gone", text="x"), "channel_not_found"),
        (client.chat_postMessage(channel="C9999999999", text="x"), "channel_not_found"),
        (
            client.chat_postMessage(channel=channel, text="x", thread_ts="1.000001"),
            "thread_not_found",
        ),
        (client.api_call("chat.postMessage", json={"channel": channel}), "no_text"),
        (client.chat_update(channel="#incidents", ts=root["ts"], text="x"), "channel_not_found"),
        (client.chat_update(channel=channel, ts="1.000001", text="x"), "message_not_found"),
        (client.conversations_replies(channel=channel, ts="1.000001"), "thread_not_found"),
        (
            web_client(slack, token="xoxb-wrong").chat_postMessage(channel=channel, text="x"),
            "invalid_auth",
        ),
    ]
    for call, error in cases:
        e = await expect_slack_error(call)
        assert e.response.status_code == 200
        assert e.response["ok"] is False
        assert e.response["error"] == error

    slack.error("msg_too_long", times=1, method="chat.postMessage")
    e = await expect_slack_error(client.chat_postMessage(channel=channel, text="long"))
    assert e.response["error"] == "msg_too_long"
    assert [m.text for m in slack.messages(channel)] == ["root"]
    assert slack.channel_id("#incidents") == channel
    with pytest.raises(KeyError):
        slack.messages("#gone")


async def test_slack_429_raises_without_a_retry_handler(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.rate_limit(retry_after=7, times=1)
    e = await expect_slack_error(client.chat_postMessage(channel="#incidents", text="x"))
    assert e.response.status_code == 429
    assert e.response.headers["Retry-After"] == "7"
    assert e.response["error"] == "ratelimited"
    assert slack.messages("#incidents") == []
    assert len(slack.requests) == 1  # no retry by default

    await client.chat_postMessage(channel="#incidents", text="x")  # times=1: back to normal
    assert [m.text for m in slack.messages("#incidents")] == ["x"]


async def test_slack_rate_limit_handler_honours_retry_after(slack: FakeSlack) -> None:
    client = web_client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    slack.rate_limit(retry_after=1, times=1)
    started = time.monotonic()
    posted = await client.chat_postMessage(channel="#incidents", text="after the wait")
    assert posted["ok"] is True
    first, second = slack.requests
    assert second.at - first.at >= 1.0  # slept Retry-After (plus slack_sdk's jitter)
    assert time.monotonic() - started < 5
    assert [m.text for m in slack.messages("#incidents")] == ["after the wait"]


async def test_slack_failure_limited_to_one_method(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.fail_with(500, times=1, method="chat.update")
    root = await client.chat_postMessage(channel="#incidents", text="v1")  # not affected
    e = await expect_slack_error(
        client.chat_update(channel=root["channel"], ts=root["ts"], text="v2")
    )
    assert e.response.status_code == 500
    assert slack.message(root["channel"], root["ts"]).text == "v1"
    await client.chat_update(channel=root["channel"], ts=root["ts"], text="v2")
    assert slack.message(root["channel"], root["ts"]).text == "v2"


async def test_slack_slow_answer_trips_the_client_timeout(slack: FakeSlack) -> None:
    client = web_client(slack, timeout=0.3)  # aiohttp takes a float timeout
    slack.slow(5.0, times=1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.chat_postMessage(channel="#incidents", text="late")
    assert time.monotonic() - started < 2
    await asyncio.sleep(0.05)  # the cancelled handler stored nothing
    assert slack.messages("#incidents") == []
    await client.chat_postMessage(channel="#incidents", text="on time")
    assert [m.text for m in slack.messages("#incidents")] == ["on time"]


async def test_slack_incoming_webhook(slack: FakeSlack) -> None:
    hook = AsyncWebhookClient(slack.webhook_url, timeout=5)
    response = await hook.send(text="HighErrorRate firing", blocks=BLOCKS)
    assert (response.status_code, response.body) == (200, "ok")
    [message] = slack.webhook_messages
    assert (message.text, message.blocks) == ("HighErrorRate firing", BLOCKS)
    assert slack.requests[-1].api == "webhook"

    slack.error("no_service", times=1, method="webhook")
    gone = await hook.send(text="x")
    assert (gone.status_code, gone.body) == (404, "no_service")
    empty = await hook.send_dict({"unfurl_links": False})
    assert (empty.status_code, empty.body) == (400, "no_text")
    slack.rate_limit(retry_after=3, times=1, method="webhook")
    limited = await hook.send(text="x")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert len(slack.webhook_messages) == 1


# --------------------------------------------------------------------------- statuspage


@pytest.fixture
async def statuspage() -> AsyncIterator[FakeStatuspage]:
    async with FakeStatuspage(components={"cmp1": "PostHog integration", "cmp2": "API"}) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(
        timeout=timeout, headers={"Authorization": "OAuth sp-key"}
    ) as s:
        yield s


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with http.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_statuspage_incident_lifecycle(
    statuspage: FakeStatuspage, http: aiohttp.ClientSession
) -> None:
    incidents = f"{statuspage.api_url}/pages/page123/incidents"
    status, created, _ = await call(
        http,
        "POST",
        incidents,
        json={
            "incident": {
                "name": "PostHog integration degraded",
                "status": "investigating",
                "body": "We are looking into elevated errors.",
                "component_ids": ["cmp1"],
                "components": {"cmp1": "major_outage"},
                "deliver_notifications": False,
                "metadata": {"responder": {"incident": "inc-1"}},
            }
        },
    )
    assert status == 201
    incident_id = created["id"]
    assert created["status"] == "investigating"
    assert created["impact"] == "critical"  # from major_outage
    assert created["resolved_at"] is None
    assert created["shortlink"].startswith("https://")
    assert [(c["id"], c["status"]) for c in created["components"]] == [("cmp1", "major_outage")]
    assert [u["body"] for u in created["incident_updates"]] == [
        "We are looking into elevated errors."
    ]
    assert created["metadata"] == {"responder": {"incident": "inc-1"}}
    assert statuspage.component_status("cmp1") == "major_outage"

    status, updated, _ = await call(
        http,
        "PATCH",
        f"{incidents}/{incident_id}",
        json={"incident": {"status": "identified", "body": "Cause found."}},
    )
    assert (status, updated["status"]) == (200, "identified")
    status, unresolved, _ = await call(http, "GET", f"{incidents}/unresolved")
    assert [i["id"] for i in unresolved] == [incident_id]

    status, resolved, _ = await call(
        http,
        "PATCH",
        f"{incidents}/{incident_id}",
        json={
            "incident": {
                "status": "resolved",
                "body": "Fixed.",
                "components": {"cmp1": "operational"},
            }
        },
    )
    assert status == 200
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] is not None
    assert [u["status"] for u in resolved["incident_updates"]] == [
        "resolved",
        "identified",
        "investigating",
    ]  # newest first
    assert statuspage.component_status("cmp1") == "operational"
    status, unresolved, _ = await call(http, "GET", f"{incidents}/unresolved")
    assert (status, unresolved) == (200, [])
    status, fetched, _ = await call(http, "GET", f"{incidents}/{incident_id}")
    assert fetched == statuspage.incident(incident_id)
    assert statuspage.incidents[incident_id]["status"] == "resolved"
    bodies = [r.body for r in statuspage.requests if r.method == "PATCH"]
    assert bodies[0] == {"incident": {"status": "identified", "body": "Cause found."}}


async def test_statuspage_form_encoded_create(
    statuspage: FakeStatuspage, http: aiohttp.ClientSession
) -> None:
    status, created, _ = await call(
        http,
        "POST",
        f"{statuspage.api_url}/pages/page123/incidents",
        data={
            "incident[name]": "API slow",
            "incident[status]": "identified",
            "incident[component_ids][]": "cmp2",
            "incident[components][cmp2]": "degraded_performance",
        },
    )
    assert status == 201
    assert (created["name"], created["impact"]) == ("API slow", "minor")
    assert statuspage.component_status("cmp2") == "degraded_performance"


@pytest.mark.parametrize(
    ("incident", "error"),
    [
        ({"status": "investigating"}, "name can't be blank"),
        ({"name": "x", "status": "exploded"}, "status must be one of"),
        ({"name": "x", "components": {"cmp1": "on_fire"}}, "cmp1 status must be one of"),
        ({"name": "x", "component_ids": ["nope"]}, "component nope not found"),
    ],
)
async def test_statuspage_validation(
    statuspage: FakeStatuspage, http: aiohttp.ClientSession, incident: dict[str, Any], error: str
) -> None:
    url = f"{statuspage.api_url}/pages/page123/incidents"
    status, body, _ = await call(http, "POST", url, json={"incident": incident})
    assert status == 422
    assert any(error in e for e in body["error"])
    assert statuspage.incidents == {}


async def test_statuspage_auth_page_and_incident_errors(
    statuspage: FakeStatuspage, http: aiohttp.ClientSession
) -> None:
    url = f"{statuspage.api_url}/pages/page123/incidents"
    status, body, _ = await call(
        http, "POST", url, json={"incident": {"name": "x"}}, headers={"Authorization": "OAuth no"}
    )
    assert status == 401
    assert "error" in body
    status, _, _ = await call(http, "GET", f"{statuspage.api_url}/pages/other/incidents/unresolved")
    assert status == 404
    status, _, _ = await call(http, "PATCH", f"{url}/missing", json={"incident": {"body": "x"}})
    assert status == 404
    assert statuspage.incidents == {}


@pytest.mark.parametrize("code", [420, 429])
async def test_statuspage_rate_limit_carries_retry_after(
    statuspage: FakeStatuspage, http: aiohttp.ClientSession, code: int
) -> None:
    url = f"{statuspage.api_url}/pages/page123/incidents"
    statuspage.rate_limit(status=code, retry_after=2, times=1)  # type: ignore[arg-type]
    status, body, headers = await call(http, "POST", url, json={"incident": {"name": "x"}})
    assert status == code
    assert headers["Retry-After"] == "2"
    assert "error" in body
    assert statuspage.incidents == {}
    status, _, _ = await call(http, "POST", url, json={"incident": {"name": "x"}})
    assert status == 201


async def test_statuspage_fail_with_and_slow(
    statuspage: FakeStatuspage, http: aiohttp.ClientSession
) -> None:
    url = f"{statuspage.api_url}/pages/page123/incidents/unresolved"
    statuspage.fail_with(503, times=1)
    async with http.get(url) as resp:
        assert resp.status == 503
    statuspage.slow(5.0)
    with pytest.raises(TimeoutError):
        await call(http, "GET", url, timeout=aiohttp.ClientTimeout(total=0.2))
    statuspage.respond_normally()
    status, body, _ = await call(http, "GET", url)
    assert (status, body) == (200, [])


# ---------------------------------------------------------------------------- pagerduty


def answer(error: pagerduty.HttpError) -> tuple[int, Any]:
    """The status and JSON body of the response a pagerduty error carries."""
    assert error.response is not None
    return error.response.status_code, error.response.json()


@pytest.fixture
async def pd() -> AsyncIterator[FakePagerDuty]:
    async with FakePagerDuty() as fake:
        yield fake


def rest_client(pd: FakePagerDuty, **kw: Any) -> pagerduty.RestApiV2Client:
    kw.setdefault("default_from", "responder@example.com")
    kw.setdefault("verify", pd.ssl_context())
    client = pagerduty.RestApiV2Client(kw.pop("api_key", pd.api_key), base_url=pd.url, **kw)
    client.timeout = 5
    client.sleep_timer = 0.01  # retries (429, network errors) without 1.5 s sleeps
    return client


def events_client(pd: FakePagerDuty, **kw: Any) -> pagerduty.EventsApiV2Client:
    kw.setdefault("verify", pd.ssl_context())
    client = pagerduty.EventsApiV2Client(
        kw.pop("routing_key", pd.routing_key), base_url=pd.url, **kw
    )
    client.timeout = 5
    client.sleep_timer = 0.01
    return client


async def test_pagerduty_note_via_rest_client(pd: FakePagerDuty) -> None:
    pd.add_incident("PABC123")

    def add_and_list() -> tuple[Any, Any]:
        with rest_client(pd) as client:
            note = client.rpost("/incidents/PABC123/notes", json={"content": "triage: 5xx up"})
            return note, client.rget("/incidents/PABC123/notes")

    note, notes = await asyncio.to_thread(add_and_list)
    assert note["content"] == "triage: 5xx up"
    assert note["channel"] == {"summary": "API"}
    assert note["user"]["type"] == "user_reference"
    assert note["id"]
    assert note["created_at"]
    assert notes == [note]
    assert pd.notes("PABC123") == [note]
    post = next(r for r in pd.requests if r.method == "POST")
    assert post.headers["Authorization"] == f"Token token={pd.api_key}"
    assert post.headers["From"] == "responder@example.com"
    assert post.headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    assert post.body == {"note": {"content": "triage: 5xx up"}}
    assert post.api == "rest"


async def test_pagerduty_rest_errors(pd: FakePagerDuty) -> None:
    pd.add_incident("PABC123")

    def attempt(**kw: Any) -> pagerduty.HttpError:
        incident = kw.pop("incident", "PABC123")
        with rest_client(pd, **kw) as client, pytest.raises(pagerduty.HttpError) as caught:
            client.rpost(f"/incidents/{incident}/notes", json={"content": "x"})
        return caught.value

    no_from = await asyncio.to_thread(attempt, default_from=None)
    assert answer(no_from)[0] == 400
    assert answer(no_from)[1]["error"] == {"message": "Requester User Not Found", "code": 2100}
    wrong_key = await asyncio.to_thread(attempt, api_key="wrong")
    assert answer(wrong_key)[0] == 401
    assert answer(wrong_key)[1]["error"]["code"] == 2006
    unknown = await asyncio.to_thread(attempt, incident="PNOPE00")
    assert answer(unknown)[0] == 404
    assert pd.notes("PABC123") == []


async def test_pagerduty_incident_acknowledged_then_resolved_via_rest_client(
    pd: FakePagerDuty,
) -> None:
    pd.add_incident("PABC123")
    ack = {"type": "incident_reference", "status": "acknowledged"}

    def update(**kw: Any) -> Any:
        body = kw.pop("body", ack)
        with rest_client(pd, **kw) as client:
            return client.rput("/incidents/PABC123", json={"incident": body})

    def refused(**kw: Any) -> tuple[int, Any]:
        with pytest.raises(pagerduty.HttpError) as caught:
            update(**kw)
        return answer(caught.value)

    acked = await asyncio.to_thread(update)
    assert (acked["id"], acked["status"]) == ("PABC123", "acknowledged")
    [by] = acked["acknowledgements"]
    assert by["acknowledger"] == pd.user("responder@example.com")
    put = next(r for r in pd.requests if r.method == "PUT")
    assert (put.path, put.api, put.body) == ("/incidents/PABC123", "rest", {"incident": ack})
    assert put.headers["From"] == "responder@example.com"
    # again: accepted, and nothing more changes
    assert (await asyncio.to_thread(update))["acknowledgements"] == [by]
    assert pd.incident("PABC123").status == "acknowledged"

    status, body = await asyncio.to_thread(refused, default_from=None)
    assert (status, body["error"]["code"]) == (400, 2100)
    status, body = await asyncio.to_thread(refused, api_key="wrong")
    assert (status, body["error"]["code"]) == (401, 2006)
    bad = {"type": "incident_reference", "status": "triggered"}
    status, body = await asyncio.to_thread(refused, body=bad)
    assert status == 400
    assert body["error"]["errors"] == ["Status must be acknowledged or resolved."]
    pd.rate_limit(retry_after=3, times=1, api="rest")
    headers = {
        "Authorization": f"Token token={pd.api_key}",
        "Accept": "application/vnd.pagerduty+json;version=2",
        "From": "responder@example.com",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{pd.url}/incidents/PABC123",
            json={"incident": ack},
            headers=headers,
            ssl=pd.ssl_context(),
        ) as limited,
    ):
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "3"

    resolved = await asyncio.to_thread(
        update, body={"type": "incident_reference", "status": "resolved"}
    )
    assert resolved["status"] == "resolved"
    status, body = await asyncio.to_thread(refused)
    assert status == 400
    assert body["error"] == {
        "message": "Invalid Input Provided",
        "code": 2001,
        "errors": ["Incident Already Resolved"],
    }
    assert pd.incident("PABC123").status == "resolved"
    assert len(pd.incident("PABC123").updates) == 3  # the accepted ones


async def test_pagerduty_events_trigger_then_resolve(pd: FakePagerDuty) -> None:
    def trigger_and_resolve() -> tuple[str, str]:
        with events_client(pd) as client:
            key = client.trigger(
                "HighErrorRate on api", "prometheus", dedup_key="am-abc", severity="error"
            )
            client.resolve(key)
            generated = client.trigger("Another alert", "prometheus")  # no dedup_key
            return key, generated

    key, generated = await asyncio.to_thread(trigger_and_resolve)
    assert key == "am-abc"
    alert = pd.alert("am-abc")
    assert alert.status == "resolved"
    assert [e["event_action"] for e in alert.events] == ["trigger", "resolve"]
    assert (alert.summary, alert.source, alert.severity) == (
        "HighErrorRate on api",
        "prometheus",
        "error",
    )
    assert generated
    assert generated != key
    assert pd.alert(generated).status == "triggered"
    assert [e["dedup_key"] for e in pd.events] == ["am-abc", "am-abc", generated]
    enqueue = pd.requests[0]
    assert (enqueue.path, enqueue.api) == ("/v2/enqueue", "events")
    assert enqueue.body["routing_key"] == pd.routing_key


async def test_pagerduty_events_bad_routing_key_and_severity(pd: FakePagerDuty) -> None:
    def attempt(routing_key: str, severity: str) -> pagerduty.HttpError:
        with (
            events_client(pd, routing_key=routing_key) as client,
            pytest.raises(pagerduty.HttpError) as caught,
        ):
            client.trigger("x", "y", severity=severity)
        return caught.value

    bad_key = await asyncio.to_thread(attempt, "not-the-key", "critical")
    assert answer(bad_key)[0] == 400
    assert answer(bad_key)[1] == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Invalid routing key"],
    }
    bad_severity = await asyncio.to_thread(attempt, pd.routing_key, "catastrophic")
    assert answer(bad_severity)[0] == 400
    assert pd.events == []
    assert pd.alerts == {}


async def test_pagerduty_rate_limit_is_retried_by_the_client(pd: FakePagerDuty) -> None:
    pd.rate_limit(retry_after=1, times=2, api="events")

    def trigger() -> str:
        with events_client(pd) as client:
            return str(client.trigger("x", "y", dedup_key="k1"))

    assert await asyncio.to_thread(trigger) == "k1"
    assert [r.api for r in pd.requests] == ["events"] * 3  # two 429s, then accepted
    assert len(pd.events) == 1


async def test_pagerduty_tls_verification_is_on(pd: FakePagerDuty) -> None:
    pd.add_incident("PABC123")

    def without_ca() -> pagerduty.Error:
        client = pagerduty.RestApiV2Client(
            pd.api_key, default_from="responder@example.com", base_url=pd.url
        )
        client.max_network_attempts = 0  # fail at once instead of retrying with sleeps
        with client, pytest.raises(pagerduty.Error) as caught:
            client.rpost("/incidents/PABC123/notes", json={"content": "x"})
        return caught.value

    error = await asyncio.to_thread(without_ca)
    assert isinstance(error.__cause__, httpx2.ConnectError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error.__cause__)
    assert pd.notes("PABC123") == []

    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.post(f"{pd.url}/v2/enqueue", json={})
        async with session.post(f"{pd.url}/v2/enqueue", json={}, ssl=pd.ssl_context()) as trusted:
            assert trusted.status == 400


async def test_pagerduty_ssl_cert_file_env(
    pd: FakePagerDuty, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pd.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", pd.ca_file)  # read when the client is built

    def trigger() -> str:
        with pagerduty.EventsApiV2Client(pd.routing_key, base_url=pd.url) as client:
            return str(client.trigger("x", "y", dedup_key="env"))

    assert await asyncio.to_thread(trigger) == "env"
