"""PagerDuty through the ``pagerduty`` package (REST API v2 and Events API v2, over TLS)
against a fake PagerDuty on loopback: a rule that pages triggers one alert per incident
under a stable dedup key and resolves it; an alert Alertmanager already paged for does not;
a linked PagerDuty incident gets the triage, each action and the handoff as notes; rate
limits are waited out; no key ever shows in the incident."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from responder.domain.signal import HumanSignal, alertmanager_pagerduty_key
from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.ingest.pagerduty import sign
from tests.support.fake_notify import FakePagerDuty, FakeSlack, FakeStatuspage, SlackMessage
from tests.support.mitigation import alert, cluster, responder, settled
from tests.support.service import EXAMPLES, Service, example, running_service, started_now
from tests.support.waiting import eventually

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"  # P1, page: true
UNREACHABLE_RESOLVED = "alertmanager/posthog-api-unreachable-resolved.json"
AUTH = "alertmanager/posthog-auth-failure-401-firing.json"  # P1, page: true
SECRET = (EXAMPLES / "pagerduty" / "webhook-secret.txt").read_text().strip()
SENDER = "responder-bot@example.com"
CHANNEL = "#incidents-pd-test"


def pd_settings(pd: FakePagerDuty, **more: Any) -> dict[str, Any]:
    assert pd.ca_file is not None
    return {
        "pagerduty_api_key": pd.api_key,
        "pagerduty_from": SENDER,
        "pagerduty_api_url": pd.url,
        "pagerduty_events_url": pd.url,
        "pagerduty_routing_key": pd.routing_key,
        "ca_file": Path(pd.ca_file),
        "pagerduty_webhook_secrets": SECRET,
        "notify_retry_base_s": 0.2,
        **more,
    }


def pd_event(name: str, *, agent: dict[str, Any] | None = None, **data: Any) -> bytes:
    """A PagerDuty V3 webhook example with fields of its ``data`` (and its agent) changed."""
    doc = json.loads((EXAMPLES / "pagerduty" / f"{name}.json").read_text())
    doc["event"]["data"].update(data)
    if agent is not None:
        doc["event"]["agent"] = agent
    return json.dumps(doc).encode()


async def post_signed(svc: Service, body: bytes) -> None:
    resp = await svc.post_pagerduty(body, {"X-PagerDuty-Signature": sign(body, SECRET)})
    assert resp.status == 200, await resp.text()


async def get(svc: Service, incident_id: str) -> dict[str, Any]:
    resp = await svc.client.get(f"/v1/incidents/{incident_id}")
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


def of_sink(inc: dict[str, Any], kind: str, sink: str = "pagerduty") -> list[dict[str, Any]]:
    return [e for e in inc["timeline"] if e["kind"] == kind and e["data"].get("sink") == sink]


def actions_of(pd: FakePagerDuty, action: str) -> list[dict[str, Any]]:
    return [e for e in pd.events if e["event_action"] == action]


async def triggered(pd: FakePagerDuty, count: int = 1) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        sent = actions_of(pd, "trigger")
        return sent if len(sent) >= count else None

    return await eventually(found, what=f"{count} Events API trigger(s)")


async def redeliver(svc: Service, *payloads: dict[str, Any]) -> None:
    """Every signal of the payloads handled again, as a redelivered queue entry is."""
    for payload in payloads:
        webhook = AlertmanagerWebhook.model_validate(payload)
        for signal in webhook.signals(received_at=svc.runtime.clock.now()):
            await svc.runtime.pipeline.handle(signal)


async def test_a_paging_rule_triggers_once_and_resolves_under_the_same_key(
    backend_settings,
) -> None:
    async with (
        FakePagerDuty() as pd,
        running_service(backend_settings(**pd_settings(pd)), notify=True) as svc,
    ):
        firing, done = example(UNREACHABLE), example(UNREACHABLE_RESOLVED)
        await svc.post_alertmanager(firing)
        [trigger] = await triggered(pd)
        [inc] = await svc.incidents()
        key = f"responder-{inc['id']}"
        assert trigger["dedup_key"] == key
        assert trigger["routing_key"] == pd.routing_key
        payload = trigger["payload"]
        assert payload["severity"] == "critical"  # P1
        assert payload["source"] == "responder"
        assert payload["summary"].startswith("P1 PostHog API unreachable from ")
        assert payload["component"] == "posthog-integration"
        assert payload["group"] == "production"
        assert payload["class"] == "unreachable"
        assert payload["custom_details"]["incident"] == inc["id"]
        assert pd.alert(key).status == "triggered"

        # Alertmanager repeats the alert, and the queue redelivers it: no new trigger
        await svc.post_alertmanager(firing)
        await redeliver(svc, firing)
        await svc.idle()
        assert len(actions_of(pd, "trigger")) == 1
        inc = await get(svc, inc["id"])
        [posted] = of_sink(inc, "notification.posted")
        assert posted["detail"] == "PagerDuty: on-call paged (Events API trigger)"
        assert inc["deliveries"]["pagerduty"] == {"dedup_key": key}

        await svc.post_alertmanager(done)

        async def resolved() -> list[dict[str, Any]]:
            return actions_of(pd, "resolve")

        [resolve] = await eventually(resolved, what="Events API resolve")
        assert resolve["dedup_key"] == key
        assert pd.alert(key).status == "resolved"
        await redeliver(svc, firing, done)
        await svc.idle()
        assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [
            ("trigger", key),
            ("resolve", key),
        ]


async def test_replicas_and_redeliveries_page_once(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """Two replicas on one Redis both get every alert (an Alertmanager HA pair), then
    handle each signal again: one trigger, one resolve."""
    async with FakePagerDuty() as pd:
        settings = make_settings(
            workers=4, redis_url=redis_url, redis_prefix=redis_prefix, **pd_settings(pd)
        )
        async with (
            running_service(settings, notify=True) as a,
            running_service(settings, notify=True) as b,
        ):
            firing, done = example(UNREACHABLE), example(UNREACHABLE_RESOLVED)
            for payload in (firing, done):
                sent = await asyncio.gather(
                    a.post_alertmanager(payload), b.post_alertmanager(payload)
                )
                assert all(r.status == 200 for r in sent)
                await a.idle()
                await b.idle()
            await eventually(lambda: _async(actions_of(pd, "resolve")), what="resolve")
            await redeliver(a, firing, done)
            await redeliver(b, firing, done)
            # (a redelivered signal is delivered inline: anything sent twice is sent now)
            await a.idle()
            await b.idle()
            [inc] = await a.incidents()
            key = f"responder-{inc['id']}"
            assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [
                ("trigger", key),
                ("resolve", key),
            ]
            assert pd.alert(key).incident_count == 1


async def _async(value: Any) -> Any:
    return value


async def test_an_alert_already_paged_by_alertmanager_does_not_page_again(
    backend_settings,
) -> None:
    async with FakePagerDuty() as pd:
        settings = backend_settings(**pd_settings(pd))
        async with running_service(settings, notify=True) as svc:
            paged = copy.deepcopy(example(UNREACHABLE))
            paged["alerts"][0]["labels"]["paged"] = "true"
            paged["alerts"][0]["fingerprint"] = ""
            await svc.post_alertmanager(paged)
            # the pipeline has handled the alert, its delivery included
            await svc.idle()
            [quiet] = await svc.incidents()
            assert quiet["severity"] == "P1"
            assert pd.requests == []
            # the same rule for an alert without the label (another group) does page
            await svc.post_alertmanager(example(AUTH))
            [trigger] = await triggered(pd)
            [paging] = [i for i in await svc.incidents() if i["id"] != quiet["id"]]
            assert trigger["dedup_key"] == f"responder-{paging['id']}"
            await svc.idle()
            assert len(pd.events) == 1
            assert "pagerduty" not in (await get(svc, quiet["id"]))["deliveries"]


def notes_by_event(pd: FakePagerDuty, pd_id: str, incident_id: str) -> dict[int, str]:
    """The notes on the PagerDuty incident, by the seq of the timeline event each tells
    (from the reference responder puts at their end)."""
    found: dict[int, str] = {}
    prefix = f"[ref {incident_id}:notify:pagerduty:e"
    for note in pd.notes(pd_id):
        body, _, ref = note["content"].rpartition("\n")
        assert ref.startswith(prefix), note["content"]
        assert ref.endswith("]"), note["content"]
        seq = int(ref[len(prefix) : -1])
        assert seq not in found, f"two notes for event {seq}"
        found[seq] = body
    return found


def noted_events(inc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e
        for e in inc["timeline"]
        if e["kind"] in ("triage.completed", "incident.acknowledged")
        or e["kind"].startswith("action.")
    ]


async def test_a_linked_incident_gets_triage_actions_and_the_handoff_as_notes(
    backend_settings, tmp_path: Path
) -> None:
    """Linked by the alert's ``pagerduty_incident_id`` label; acknowledged in PagerDuty."""
    async with (
        FakePagerDuty() as pd,
        FakeSlack() as slack,
        cluster(tmp_path) as c,
    ):
        pd_id = pd.add_incident("Q2SC2ZUVOGX8H7")  # the webhook examples' incident
        settings = pd_settings(
            pd, slack_token=slack.token, slack_api_url=slack.api_url, slack_channel=CHANNEL
        )
        async with responder(c, backend_settings, notify=True, **settings) as svc:
            firing = alert("SetEnv")
            firing["alerts"][0]["labels"]["pagerduty_incident_id"] = pd_id
            await svc.post_alertmanager(firing)
            inc = await settled(svc, "SetEnv", "action.applied")
            assert inc["pagerduty_incident_id"] == pd_id

            async def noted(count: int) -> dict[int, str] | None:
                found = notes_by_event(pd, pd_id, inc["id"])
                return found if len(found) >= count else None

            expected = noted_events(inc)
            notes = await eventually(lambda: noted(len(expected)), what="triage and action notes")
            assert sorted(notes) == [e["seq"] for e in expected]
            triage = notes[expected[0]["seq"]]
            assert expected[0]["kind"] == "triage.completed"
            assert triage.startswith("[responder] Triage findings for P2 ")
            # each probe's finding, as the triage event has it
            [probe] = expected[0]["data"]["probes"]
            assert probe["probe"] == "health"
            # the probe's own summary, named once ("health: down ...", not "health: health:")
            assert probe["summary"].startswith("health: ")
            assert f"\n- {probe['summary']}\n" in triage
            for event in expected[1:]:
                assert notes[event["seq"]] == f"[responder] {event['detail']}"
            assert any("set_env on production/posthog-integration" in n for n in notes.values())
            # notes are written as the configured PagerDuty user
            writes = [r for r in pd.requests if r.method == "POST" and r.api == "rest"]
            assert {r.headers["From"] for r in writes} == {SENDER}
            # linked to a PagerDuty incident: nothing is triggered on top of it
            assert pd.events == []

            # the on-call acknowledges in PagerDuty, while its REST API rate-limits us
            pd.rate_limit(retry_after=1, times=2, api="rest")
            await post_signed(svc, pd_event("incident-acknowledged", id=pd_id))
            inc = await settled(svc, "SetEnv", "incident.acknowledged")
            expected = noted_events(inc)
            notes = await eventually(lambda: noted(len(expected)), what="the handoff note")
            assert sorted(notes) == [e["seq"] for e in expected]
            handoff = notes[expected[-1]["seq"]]
            assert handoff.startswith("[responder] Handoff to Dana Oncall: P2 ")
            assert "The automation stops acting now and only reports." in handoff
            assert "set_env on production/posthog-integration: applied" in handoff
            # the rate limit was waited out, then the note went

            async def recovered() -> dict[str, Any] | None:
                found = await get(svc, inc["id"])
                return found if of_sink(found, "notification.recovered") else None

            inc = await eventually(recovered, what="the recovery recorded")
            [delayed] = of_sink(inc, "notification.delayed")
            assert "rate limited (HTTP 429)" in delayed["data"]["error"]
            assert delayed["data"]["retry_in_s"] >= 1.0
            assert len(of_sink(inc, "notification.recovered")) == 1

            # and the Slack thread says who took over; the root names the commander
            [root] = slack.roots(CHANNEL)

            async def taken_over() -> list[SlackMessage]:
                return [m for m in slack.replies(CHANNEL, root.ts) if "took over" in m.text]

            [reply] = await eventually(taken_over, what="the takeover in the thread")
            assert reply.text.startswith(":raising_hand: *Dana Oncall took over.*")
            await eventually(
                lambda: _async("*Incident commander:* Dana Oncall" in root.text),
                what="the root names the commander",
            )
            assert len(pd.notes(pd_id)) == len(expected)


async def test_a_webhook_linked_incident_gets_a_summary_then_the_handoff(
    backend_settings, tmp_path: Path
) -> None:
    """Linked later, by PagerDuty's incident.triggered webhook (Alertmanager paged through
    its own receiver): the summary of what happened so far, then the notes that follow."""
    async with FakePagerDuty() as pd, cluster(tmp_path) as c:
        pd_id = pd.add_incident("Q2SC2ZUVOGX8H7")
        async with responder(c, backend_settings, notify=True, **pd_settings(pd)) as svc:
            firing = alert("SetEnv")
            await svc.post_alertmanager(firing)
            inc = await settled(svc, "SetEnv", "action.applied")
            assert pd.requests == []  # not linked: nowhere to write notes

            key = alertmanager_pagerduty_key(firing["groupKey"])
            await post_signed(svc, pd_event("incident-triggered", id=pd_id, incident_key=key))
            inc = await settled(svc, "SetEnv", "pagerduty.linked")
            assert inc["pagerduty_incident_id"] == pd_id

            async def notes(count: int) -> list[str] | None:
                found = [n["content"] for n in pd.notes(pd_id)]
                return found if len(found) >= count else None

            [summary] = await eventually(lambda: notes(1), what="the summary note")
            assert summary.startswith("[responder] Summary so far: P2 ")
            assert "Decision tree: queue-requests." in summary
            assert "- set_env on production/posthog-integration: applied" in summary

            await post_signed(svc, pd_event("incident-acknowledged", id=pd_id, incident_key=key))
            [_, handoff] = await eventually(lambda: notes(2), what="the handoff note")
            assert handoff.startswith("[responder] Handoff to Dana Oncall: P2 ")
            await svc.idle()
            assert len(pd.notes(pd_id)) == 2
            assert pd.events == []


async def test_a_rate_limited_trigger_is_sent_after_retry_after(backend_settings) -> None:
    async with (
        FakePagerDuty() as pd,
        running_service(backend_settings(**pd_settings(pd)), notify=True) as svc,
    ):
        # the package retries a 429 once at once; the delivery waits Retry-After
        pd.rate_limit(retry_after=1, times=2, api="events")
        await svc.post_alertmanager(example(UNREACHABLE))
        [trigger] = await triggered(pd)
        [inc] = await svc.incidents()
        assert trigger["dedup_key"] == f"responder-{inc['id']}"
        tries = [r for r in pd.requests if r.api == "events"]
        assert len(tries) == 3
        assert tries[2].at - tries[0].at >= 1.0  # not the 0.2 s backoff
        assert len(actions_of(pd, "trigger")) == 1

        async def recovered() -> dict[str, Any] | None:
            found = await get(svc, inc["id"])
            return found if of_sink(found, "notification.posted") else None

        inc = await eventually(recovered, what="the trigger recorded")
        [delayed] = of_sink(inc, "notification.delayed")
        assert delayed["data"]["error"] == "Events API trigger: rate limited (HTTP 429)"
        assert delayed["data"]["retry_in_s"] >= 1.0
        [back] = of_sink(inc, "notification.recovered")
        assert back["data"]["attempts"] == 1
        [posted] = of_sink(inc, "notification.posted")
        assert delayed["seq"] < back["seq"] < posted["seq"]


async def test_no_key_or_token_shows_in_the_incident(make_settings) -> None:
    """Every sink configured with distinctive secrets, each failing once on the way: the
    incident, its timeline and the list show none of them."""
    keys = {
        "pd_api": "pd-api-key-secret-7c1e4b",
        "pd_routing": "Rsecret0123456789abcdef01234567",
        "slack": "xoxb-secret-slack-token-93a1",
        "statuspage": "sp-secret-key-5f2d",
        "admin": "admin-secret-token-44b0",
    }
    async with (
        FakePagerDuty(api_key=keys["pd_api"], routing_key=keys["pd_routing"]) as pd,
        FakeSlack(token=keys["slack"]) as slack,
        FakeStatuspage(api_key=keys["statuspage"]) as sp,
    ):
        pd_id = pd.add_incident("Q2SC2ZUVOGX8H7")
        settings = make_settings(
            **pd_settings(
                pd,
                slack_token=slack.token,
                slack_api_url=slack.api_url,
                slack_channel=CHANNEL,
                statuspage_api_key=sp.api_key,
                statuspage_page_id=sp.page_id,
                statuspage_api_url=sp.api_url,
                admin_token=keys["admin"],
            )
        )
        async with running_service(settings, notify=True) as svc:
            pd.fail_with(503, times=2, api="events")
            sp.rate_limit(status=429, retry_after=1, times=1)
            firing, resolved = started_now(example(UNREACHABLE), example(UNREACHABLE_RESOLVED))
            await svc.post_alertmanager(firing)
            await triggered(pd)
            await eventually(lambda: _async(len(sp.incidents) == 1), what="status page")
            # PagerDuty's own incident comes back by webhook (incident_key: Alertmanager's)
            await post_signed(svc, pd_event("incident-triggered", id=pd_id))
            pd.rate_limit(retry_after=1, times=2, api="rest")
            [inc] = await svc.incidents()
            ack = await svc.client.post(
                f"/v1/incidents/{inc['id']}/ack",
                json={"by": "Jane Doe"},
                headers={"Authorization": f"Bearer {keys['admin']}"},
            )
            assert ack.status == 200, await ack.text()
            await eventually(lambda: _async(len(pd.notes(pd_id)) == 1), what="handoff note")
            await svc.post_alertmanager(resolved)
            await eventually(lambda: _async(actions_of(pd, "resolve")), what="resolve")
            await svc.idle()

            # each key was in use, and each sink failed once and recovered
            assert {r.headers.get("Authorization") for r in pd.requests if r.api == "rest"} == {
                f"Token token={keys['pd_api']}"
            }
            assert {e["routing_key"] for e in pd.events} == {keys["pd_routing"]}
            assert {r.headers["Authorization"] for r in sp.requests} == {
                f"OAuth {keys['statuspage']}"
            }
            assert slack.roots("#posthog-incidents")  # the shipped pack's channel

            async def all_recovered() -> dict[str, Any] | None:
                found = await get(svc, inc["id"])
                sinks = ("pagerduty", "statuspage")
                return (
                    found
                    if all(of_sink(found, "notification.recovered", s) for s in sinks)
                    else None
                )

            one = await eventually(all_recovered, what="both sinks recovered")
            for sink in ("pagerduty", "statuspage"):
                assert of_sink(one, "notification.delayed", sink), sink
            assert one["pagerduty_incident_id"] == pd_id

            shown = [
                await (await svc.client.get(f"/v1/incidents/{inc['id']}")).text(),
                await (await svc.client.get("/v1/incidents")).text(),
                json.dumps(one["timeline"]),
            ]
            secrets = [*keys.values(), SECRET]
            for text in shown:
                assert [s for s in secrets if s in text] == []


async def test_an_ack_in_slack_acknowledges_our_page_so_pagerduty_stops_escalating(
    backend_settings,
) -> None:
    async with (
        FakePagerDuty() as pd,
        running_service(backend_settings(**pd_settings(pd)), notify=True) as svc,
    ):
        await svc.post_alertmanager(example(UNREACHABLE))
        [trigger] = await triggered(pd)
        [inc] = await svc.incidents()
        press = HumanSignal(
            incident_id=inc["id"],
            act="acknowledge",
            by="jane",
            user_id="U0000000001",
            via="slack",
            request_id="1337.42",
            received_at=svc.runtime.clock.now(),
        )
        await svc.runtime.pipeline.handle(press)
        await svc.runtime.pipeline.handle(press)  # redelivered: nothing sent twice

        async def acknowledged() -> list[dict[str, Any]]:
            return actions_of(pd, "acknowledge")

        [ack] = await eventually(acknowledged, what="Events API acknowledge")
        assert ack["dedup_key"] == trigger["dedup_key"]
        assert pd.alert(trigger["dedup_key"]).status == "acknowledged"
        await svc.idle()
        assert len(actions_of(pd, "acknowledge")) == 1


async def test_an_ack_made_in_pagerduty_is_not_sent_back(backend_settings) -> None:
    async with (
        FakePagerDuty() as pd,
        running_service(backend_settings(**pd_settings(pd)), notify=True) as svc,
    ):
        await svc.post_alertmanager(example(UNREACHABLE))
        [trigger] = await triggered(pd)
        [inc] = await svc.incidents()
        body = pd_event("incident-acknowledged", incident_key=trigger["dedup_key"])
        await post_signed(svc, body)

        async def acked() -> dict[str, Any] | None:
            doc = await get(svc, inc["id"])
            return doc if doc["status"] == "acked" else None

        doc = await eventually(acked, what="the PagerDuty ack applied")
        [event] = [e for e in doc["timeline"] if e["kind"] == "incident.acknowledged"]
        assert event["data"]["via"] == "pagerduty"
        assert doc["pagerduty_incident_id"] == "Q2SC2ZUVOGX8H7"  # linked by that webhook
        await svc.idle()
        assert actions_of(pd, "acknowledge") == []
        # nor acknowledged again through the REST API: it is PagerDuty's own ack
        assert puts(pd) == []


def puts(pd: FakePagerDuty) -> list[Any]:
    return [r for r in pd.requests if r.method == "PUT"]


def slack_ack(svc: Service, incident_id: str) -> HumanSignal:
    return HumanSignal(
        incident_id=incident_id,
        act="acknowledge",
        by="jane",
        user_id="U0000000001",
        via="slack",
        request_id="1337.43",
        received_at=svc.runtime.clock.now(),
    )


async def test_an_ack_in_slack_acknowledges_the_linked_pagerduty_incident_once(
    backend_settings, tmp_path: Path
) -> None:
    """Alertmanager paged PagerDuty through its own receiver; PagerDuty's webhook linked
    its incident. Acknowledge in Slack acknowledges that incident (REST API), once; the
    webhook PagerDuty sends back for it changes nothing."""
    async with FakePagerDuty() as pd, cluster(tmp_path) as c:
        pd_id = pd.add_incident("Q2SC2ZUVOGX8H7")
        async with responder(c, backend_settings, notify=True, **pd_settings(pd)) as svc:
            firing = alert("SetEnv")
            await svc.post_alertmanager(firing)
            await settled(svc, "SetEnv", "action.applied")
            key = alertmanager_pagerduty_key(firing["groupKey"])
            await post_signed(svc, pd_event("incident-triggered", id=pd_id, incident_key=key))
            inc = await settled(svc, "SetEnv", "pagerduty.linked")
            assert pd.incident(pd_id).status == "triggered"

            press = slack_ack(svc, inc["id"])
            await svc.runtime.pipeline.handle(press)
            await svc.runtime.pipeline.handle(press)  # redelivered: nothing sent twice

            async def acknowledged() -> bool:
                return pd.incident(pd_id).status == "acknowledged"

            await eventually(acknowledged, what="the linked incident acknowledged")
            await svc.idle()
            [put] = puts(pd)
            assert put.path == f"/incidents/{pd_id}"
            assert put.body == {
                "incident": {"type": "incident_reference", "status": "acknowledged"}
            }
            assert put.headers["From"] == SENDER
            assert put.headers["Authorization"] == f"Token token={pd.api_key}"
            [by] = pd.incident(pd_id).acknowledgements
            assert by["acknowledger"] == pd.user(SENDER)
            assert pd.events == []  # Alertmanager's page, not ours: no Events API call

            # PagerDuty tells of the ack, made by responder's user: nothing changes
            before = await get(svc, inc["id"])
            assert before["commander"] == "jane"
            echo = pd_event(
                "incident-acknowledged", agent=by["acknowledger"], id=pd_id, incident_key=key
            )
            await post_signed(svc, echo)
            await svc.idle()
            after = await get(svc, inc["id"])
            acks = [e for e in after["timeline"] if e["kind"] == "incident.acknowledged"]
            assert [e["data"]["via"] for e in acks] == ["slack"]
            assert after["timeline"] == before["timeline"]
            assert after["commander"] == "jane"
            assert len(puts(pd)) == 1
            assert of_sink(after, "notification.failed") == []


async def test_an_ack_of_a_linked_incident_resolved_in_pagerduty_is_refused_once(
    backend_settings,
) -> None:
    """PagerDuty resolved its incident (its webhook not in yet): its 400 "Incident Already
    Resolved" is on the timeline, and the ack is not tried again."""
    async with FakePagerDuty() as pd:
        pd_id = pd.add_incident()
        async with running_service(backend_settings(**pd_settings(pd)), notify=True) as svc:
            linked = copy.deepcopy(example(UNREACHABLE))
            linked["alerts"][0]["labels"]["pagerduty_incident_id"] = pd_id
            await svc.post_alertmanager(linked)
            await svc.idle()
            [inc] = await svc.incidents()
            assert inc["pagerduty_incident_id"] == pd_id
            pd.incident(pd_id).status = "resolved"

            await svc.runtime.pipeline.handle(slack_ack(svc, inc["id"]))

            async def refused() -> list[dict[str, Any]] | None:
                return of_sink(await get(svc, inc["id"]), "notification.failed") or None

            [failed] = await eventually(refused, what="the refusal on the timeline")
            assert "PUT /incidents/" in failed["detail"]
            assert (
                "HTTP 400 (Invalid Input Provided: Incident Already Resolved)" in failed["detail"]
            )
            await svc.idle()
            assert len(puts(pd)) == 1  # refused for good: not retried
            assert pd.incident(pd_id).status == "resolved"
            assert of_sink(await get(svc, inc["id"]), "notification.delayed") == []
