"""Slack's button presses (``POST /v1/slack/interactions``): signed by one of the secrets, in
time, once; from someone the settings grant the act; queued and applied by a worker like
every event of an incident. The fake Slack answers the route's own calls (who is in a user
group, the ephemeral refusals) through slack-sdk's real client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from responder.app import Overrides
from responder.settings import Settings
from tests.support.approvals import waiting_approval
from tests.support.clock import ShiftableClock
from tests.support.fake_notify import FakeSlack
from tests.support.procs import free_port
from tests.support.service import Service, example, running_service, started_now
from tests.support.slack_signing import button_press, form_body, signed_headers
from tests.support.waiting import eventually

LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"
LIMITED_RESOLVED = "alertmanager/posthog-rate-limited-429-resolved.json"
OLD_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NEW_SECRET = "e1f2a3b4c5d6e7f8091a2b3c4d5e6f70"
ROUTE = "/v1/slack/interactions"
JANE, JOHN, MALLORY = "U0000000001", "U0000000002", "U0000000666"
ONCALL_GROUP = "S0000000042"
STEP = "rate_limit#0:rollout_restart"  # as the mitigation stage names steps


async def metric(svc: Service, name: str, **labels: str) -> float | None:
    """A sample's value on GET /metrics (None when the series is absent)."""
    resp = await svc.client.get("/metrics")
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def outcome(svc: Service, name: str) -> float | None:
    return await metric(svc, "responder_slack_interactions_total", outcome=name)


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


class Slack:
    """The service under test, the fake Slack and the clock, with presses to send."""

    def __init__(self, svc: Service, fake: FakeSlack, clock: ShiftableClock) -> None:
        self.svc, self.fake, self.clock = svc, fake, clock

    def now_s(self) -> int:
        return int(self.clock.now().timestamp())

    async def post(self, body: bytes, headers: dict[str, str]) -> Any:
        return await self.svc.client.post(ROUTE, data=body, headers=headers)

    async def press(
        self, *, secret: str = OLD_SECRET, at_s: int | None = None, **press: Any
    ) -> Any:
        body = form_body(button_press(**press))
        return await self.post(
            body, signed_headers(secret, body, self.now_s() if at_s is None else at_s)
        )

    async def incident(self) -> dict[str, Any]:
        await self.svc.idle()
        [inc] = await self.svc.incidents()
        return inc

    async def ephemerals_to(self, user: str, count: int = 1) -> list[Any]:
        async def arrived() -> list[Any]:
            found = [e for e in self.fake.ephemerals if e.user == user]
            return found if len(found) >= count else []

        return await eventually(arrived, what=f"{count} ephemeral(s) to {user}")


@pytest.fixture
def slack_service(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> Callable[..., Any]:
    """A service on Redis with an open incident, the fake Slack behind its bot token, and
    the two signing secrets of a rotation."""

    @asynccontextmanager
    async def start(**values: Any) -> AsyncIterator[Slack]:
        clock = ShiftableClock()
        async with FakeSlack(channels=["incidents"]) as fake:
            values.setdefault("slack_signing_secrets", f"{OLD_SECRET},{NEW_SECRET}")
            settings = make_settings(
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                slack_token=fake.token,
                slack_api_url=fake.api_url,
                **values,
            )
            async with running_service(settings, Overrides(clock=clock)) as svc:
                resp = await svc.post_alertmanager(started_now(example(LIMITED))[0])
                assert resp.status == 200, await resp.text()
                await svc.idle()
                yield Slack(svc, fake, clock)

    return start


# ------------------------------------------------------------------------- signatures


async def test_a_press_signed_with_either_secret_of_a_rotation_is_applied(slack_service) -> None:
    async with slack_service() as slack:
        inc = await slack.incident()
        resp = await slack.press(action_id="incident.acknowledge", incident=inc["id"])
        assert resp.status == 200, await resp.text()
        assert await resp.read() == b""  # Slack shows nothing more than the press
        resp = await slack.press(
            secret=NEW_SECRET,
            action_id="incident.pause",
            incident=inc["id"],
            user_id=JOHN,
            username="john",
            trigger_id="1337.43.fedcba",
        )
        assert resp.status == 200, await resp.text()
        inc = await slack.incident()
        assert inc["status"] == "acked"
        assert (inc["acked_by"], inc["commander"]) == ("jane", "jane")
        assert inc["paused_by"] == "john"
        [acked] = [e for e in inc["timeline"] if e["kind"] == "incident.acknowledged"]
        assert acked["data"]["via"] == "slack"
        assert acked["data"]["user_id"] == JANE
        assert await outcome(slack.svc, "accepted") == 2


async def test_forged_requests_are_refused_and_counted_and_nothing_is_queued(
    slack_service,
) -> None:
    async with slack_service() as slack:
        inc = await slack.incident()
        body = form_body(button_press(action_id="incident.acknowledge", incident=inc["id"]))
        now = slack.now_s()
        wrong = signed_headers("not-our-secret-at-all", body, now)
        unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
        no_number = {**signed_headers(OLD_SECRET, body, now), "X-Slack-Request-Timestamp": "soon"}
        not_ascii = {**signed_headers(OLD_SECRET, body, now), "X-Slack-Signature": "v0=\u00e9"}
        tampered = signed_headers(OLD_SECRET, body, now)
        for headers, sent in (
            (wrong, body),
            (unsigned, body),
            (no_number, body),
            (not_ascii, body),
            (tampered, body.replace(b"acknowledge", b"pause")),
        ):
            resp = await slack.post(sent, headers)
            assert resp.status == 401, await resp.text()
            answer = await resp.text()
            assert json.loads(answer)["error"] == "unauthorized"
            assert OLD_SECRET not in answer
            assert NEW_SECRET not in answer
        assert await outcome(slack.svc, "forged") == 5
        assert await outcome(slack.svc, "accepted") == 0
        inc = await slack.incident()
        assert inc["status"] == "open"


async def test_stale_requests_either_way_are_refused_and_in_time_ones_taken(
    slack_service,
) -> None:
    async with slack_service() as slack:
        inc = await slack.incident()
        for off_s in (-301, 301):
            resp = await slack.press(
                action_id="incident.acknowledge",
                incident=inc["id"],
                at_s=slack.now_s() + off_s,
                trigger_id=f"stale{off_s}",
            )
            assert resp.status == 401, await resp.text()
            assert "5 minutes" in (await resp.json())["detail"]
        assert await outcome(slack.svc, "stale") == 2
        assert (await slack.incident())["status"] == "open"
        # signed 4 minutes ago by Slack's clock: our clock moves, the same request expires
        signed_at = slack.now_s()
        body = form_body(button_press(action_id="incident.acknowledge", incident=inc["id"]))
        headers = signed_headers(NEW_SECRET, body, signed_at)
        slack.clock.advance(301)
        resp = await slack.post(body, headers)
        assert resp.status == 401
        slack.clock.advance(-60)
        resp = await slack.post(body, headers)
        assert resp.status == 200, await resp.text()
        assert (await slack.incident())["status"] == "acked"
        assert await outcome(slack.svc, "stale") == 3


async def test_a_replayed_request_is_refused_and_its_press_queued_once(slack_service) -> None:
    async with slack_service() as slack:
        inc = await slack.incident()
        body = form_body(button_press(action_id="incident.pause", incident=inc["id"]))
        headers = signed_headers(OLD_SECRET, body, slack.now_s())
        first = await slack.post(body, headers)
        again = await slack.post(body, headers)
        assert (first.status, again.status) == (200, 409)
        assert (await again.json())["error"] == "replayed"
        inc = await slack.incident()
        assert kinds(inc).count("automation.paused") == 1
        assert (await outcome(slack.svc, "replayed"), await outcome(slack.svc, "accepted")) == (
            1,
            1,
        )


# ------------------------------------------------------------------------ permissions


async def test_presses_are_granted_by_user_id_and_by_user_group_looked_up_in_slack(
    slack_service,
) -> None:
    async with slack_service(slack_acknowledge_by=f"{JANE},{ONCALL_GROUP}") as slack:
        slack.fake.add_usergroup(ONCALL_GROUP, [JOHN, "U0000000003"])
        inc = await slack.incident()
        refused = await slack.press(
            action_id="incident.acknowledge",
            incident=inc["id"],
            user_id=MALLORY,
            username="mallory",
            trigger_id="t-mallory",
        )
        assert refused.status == 200  # Slack's answer; the presser is told privately
        [told] = await slack.ephemerals_to(MALLORY)
        assert told.channel == "C0000000001"
        assert "acknowledge" in told.text
        assert "RESPONDER_SLACK_ACKNOWLEDGE_BY" in told.text
        assert (await slack.incident())["status"] == "open"
        assert await outcome(slack.svc, "refused") == 1

        by_group = await slack.press(
            action_id="incident.acknowledge",
            incident=inc["id"],
            user_id=JOHN,
            username="john",
            trigger_id="t-john",
        )
        assert by_group.status == 200
        inc = await slack.incident()
        assert (inc["status"], inc["acked_by"]) == ("acked", "john")
        by_id = await slack.press(action_id="incident.acknowledge", incident=inc["id"])
        assert by_id.status == 200
        assert await outcome(slack.svc, "accepted") == 2
        # one lookup of the group for both presses that needed it (kept a minute)
        lookups = [r for r in slack.fake.requests if r.api == "usergroups.users.list"]
        assert len(lookups) == 1
        assert lookups[0].args["usergroup"] == ONCALL_GROUP


async def test_approving_is_granted_to_nobody_by_default_and_the_presser_is_told(
    slack_service,
) -> None:
    async with slack_service() as slack:
        inc = await slack.incident()
        await waiting_approval(slack.svc, inc["id"], STEP)
        resp = await slack.press(action_id="action.approve", incident=inc["id"], step=STEP)
        assert resp.status == 200
        [told] = await slack.ephemerals_to(JANE)
        assert "approve" in told.text
        assert "RESPONDER_SLACK_APPROVE_BY" in told.text
        inc = await slack.incident()
        assert [a["state"] for a in inc["approvals"]] == ["requested"]
        assert await outcome(slack.svc, "refused") == 1


async def test_a_failed_group_lookup_refuses_the_press_with_the_reason(slack_service) -> None:
    async with slack_service(slack_pause_by=ONCALL_GROUP) as slack:
        inc = await slack.incident()
        slack.fake.error("missing_scope", method="usergroups.users.list")
        resp = await slack.press(action_id="incident.pause", incident=inc["id"])
        assert resp.status == 200
        [told] = await slack.ephemerals_to(JANE)
        assert "Could not check" in told.text
        assert "missing_scope" in told.text
        slack.fake.respond_normally()
        slack.fake.add_usergroup(ONCALL_GROUP, [JANE])
        # the failure was not kept: the next press asks again
        resp = await slack.press(action_id="incident.pause", incident=inc["id"], trigger_id="2")
        assert resp.status == 200
        assert (await slack.incident())["paused_by"] == "jane"


async def test_an_approval_pressed_twice_is_decided_once_and_the_second_told_so(
    slack_service,
) -> None:
    async with slack_service(slack_approve_by=f"{JANE},{JOHN}") as slack:
        inc = await slack.incident()
        await waiting_approval(slack.svc, inc["id"], STEP)
        resp = await slack.press(action_id="action.approve", incident=inc["id"], step=STEP)
        assert resp.status == 200
        inc = await slack.incident()
        [approval] = inc["approvals"]
        assert (approval["state"], approval["decided_by"], approval["via"]) == (
            "approved",
            "jane",
            "slack",
        )
        late = await slack.press(
            action_id="action.reject",
            incident=inc["id"],
            step=STEP,
            user_id=JOHN,
            username="john",
            trigger_id="t-late",
        )
        assert late.status == 200
        [told] = await slack.ephemerals_to(JOHN)
        assert told.text.startswith("Already approved by jane at ")
        inc = await slack.incident()
        assert kinds(inc).count("action.approved") == 1
        assert "action.rejected" not in kinds(inc)


async def test_without_a_bot_token_presses_are_verified_and_queued_but_groups_cannot_grant(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    """Incoming-webhook mode: messages carry no buttons, but a press that comes anyway is
    taken like any; a group grant cannot be checked (no token to ask Slack with), and
    nobody can be told privately."""
    settings = make_settings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        slack_signing_secrets=OLD_SECRET,
        slack_pause_by=ONCALL_GROUP,
    )
    clock = ShiftableClock()
    async with running_service(settings, Overrides(clock=clock)) as svc:
        await svc.post_alertmanager(started_now(example(LIMITED))[0])
        await svc.idle()
        [inc] = await svc.incidents()
        slack = Slack(svc, FakeSlack(), clock)  # never started: nothing may call it
        resp = await slack.press(action_id="incident.pause", incident=inc["id"])
        assert resp.status == 200
        assert await outcome(svc, "refused") == 1
        resp = await slack.press(action_id="incident.acknowledge", incident=inc["id"])
        assert resp.status == 200
        inc = await slack.incident()
        assert (inc["status"], inc["acked_by"], inc["paused_by"]) == ("acked", "jane", None)


# ----------------------------------------------------------------------- moot presses


async def handled_human_signals(svc: Service) -> float | None:
    """Presses a worker handled (None: none was ever queued)."""
    await svc.idle()
    return await metric(svc, "responder_signal_processing_seconds_count", source="human")


async def test_a_press_for_an_incident_the_store_does_not_hold_is_told_and_not_queued(
    slack_service,
) -> None:
    """An expired incident's button, or another install's: well-formed, but nothing of it
    here. The presser learns why nothing happens; nothing is queued."""
    async with slack_service(incident_retention_s=3 * 24 * 3600) as slack:
        gone = "inc-" + "0" * 18
        resp = await slack.press(action_id="incident.acknowledge", incident=gone)
        assert resp.status == 200, await resp.text()
        [told] = await slack.ephemerals_to(JANE)
        assert told.text.startswith("This incident is no longer known to responder")
        assert "kept 3 days (RESPONDER_INCIDENT_RETENTION_S)" in told.text
        assert told.channel == "C0000000001"
        assert await outcome(slack.svc, "moot") == 1
        assert await outcome(slack.svc, "accepted") == 0
        assert await handled_human_signals(slack.svc) is None
        [inc] = await slack.svc.incidents()
        assert inc["id"] != gone


async def test_a_press_on_a_resolved_incident_is_told_already_resolved_and_not_queued(
    slack_service,
) -> None:
    async with slack_service(slack_approve_by=JANE) as slack:
        inc = await slack.incident()
        await waiting_approval(slack.svc, inc["id"], STEP)
        resp = await slack.svc.post_alertmanager(started_now(example(LIMITED_RESOLVED))[0])
        assert resp.status == 200, await resp.text()
        inc = await slack.incident()
        assert inc["status"] == "resolved"
        before = kinds(inc)
        presses = [
            {"action_id": "incident.acknowledge"},
            {"action_id": "incident.pause"},
            {"action_id": "action.approve", "step": STEP},
        ]
        for n, press in enumerate(presses):
            resp = await slack.press(incident=inc["id"], trigger_id=f"t-{n}", **press)
            assert resp.status == 200, await resp.text()
        told = await slack.ephemerals_to(JANE, count=len(presses))
        assert len(told) == len(presses)
        for each in told:
            assert each.text.startswith("This incident was already resolved at ")
            assert each.text.endswith(" UTC: nothing was done.")
        assert await outcome(slack.svc, "moot") == len(presses)
        assert await outcome(slack.svc, "accepted") == 0
        assert await handled_human_signals(slack.svc) is None
        inc = await slack.incident()
        assert kinds(inc) == before
        assert (inc["acked_by"], inc["paused_by"]) == (None, None)
        assert [a["state"] for a in inc["approvals"]] == ["expired"]  # lapsed at resolve


# --------------------------------------------------------------------------- payloads


async def test_payloads_that_are_no_press_of_our_buttons_are_invalid(slack_service) -> None:
    async with slack_service() as slack:
        inc = await slack.incident()
        good = button_press(action_id="incident.acknowledge", incident=inc["id"])
        unknown = button_press(action_id="incident.delete", incident=inc["id"])
        bad_id = button_press(action_id="incident.acknowledge", incident="inc-:timeline")
        no_step = button_press(action_id="action.approve", incident=inc["id"])
        not_json = {**good, "actions": [{**good["actions"][0], "value": "inc-123"}]}
        view = {**good, "type": "view_submission"}
        bodies = [form_body(p) for p in (unknown, bad_id, no_step, not_json, view)] + [
            b"payload=%7Bnot+json",
            b"text=hello",
            b"payload=1&payload=2",
        ]
        for n, body in enumerate(bodies):
            resp = await slack.post(body, signed_headers(OLD_SECRET, body, slack.now_s() + n))
            assert resp.status == 400, (body, await resp.text())
        as_json = json.dumps(good).encode()
        headers = {
            **signed_headers(OLD_SECRET, as_json, slack.now_s()),
            "Content-Type": "application/json",
        }
        assert (await slack.post(as_json, headers)).status == 400
        assert await outcome(slack.svc, "invalid") == len(bodies) + 1
        assert (await slack.incident())["status"] == "open"


async def test_without_a_signing_secret_the_route_is_off(make_settings) -> None:
    async with running_service(make_settings()) as svc:
        body = form_body(button_press(action_id="incident.acknowledge", incident="inc-" + "0" * 18))
        resp = await svc.client.post(ROUTE, data=body, headers=signed_headers("x", body, 1))
        assert resp.status == 404
        assert "RESPONDER_SLACK_SIGNING_SECRETS" in (await resp.json())["detail"]
        assert await outcome(svc, "unconfigured") == 1


async def test_every_outcome_is_counted_from_zero_at_start(make_settings) -> None:
    async with running_service(make_settings()) as svc:
        for name in ("accepted", "forged", "stale", "replayed", "refused", "moot", "invalid"):
            assert await outcome(svc, name) == 0, name


async def test_a_press_while_the_store_is_down_is_answered_503(make_settings) -> None:
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", slack_signing_secrets=OLD_SECRET
    )
    async with running_service(settings) as svc:
        body = form_body(button_press(action_id="incident.acknowledge", incident="inc-" + "0" * 18))
        now = int(svc.runtime.clock.now().timestamp())
        resp = await svc.client.post(
            ROUTE, data=body, headers=signed_headers(OLD_SECRET, body, now)
        )
        assert resp.status == 503
        assert "Retry-After" in resp.headers


# ------------------------------------------------------------------------------ store


async def test_remember_once_says_first_once_per_key_until_its_time_is_up(backend) -> None:
    store, _ = backend
    assert await store.remember_once("slack:abc", ttl_s=60)
    assert not await store.remember_once("slack:abc", ttl_s=60)
    assert await store.remember_once("slack:abd", ttl_s=60)
    assert await store.remember_once("slack:short", ttl_s=0.05)

    async def forgotten() -> bool:
        return await store.remember_once("slack:short", ttl_s=60)

    await eventually(forgotten, what="a remembered key expired")
    assert not await store.remember_once("slack:short", ttl_s=60)


# --------------------------------------------------------------------------- settings


def test_signing_secrets_and_grants_are_checked_and_secrets_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESPONDER_SLACK_SIGNING_SECRETS", f"{OLD_SECRET}, {NEW_SECRET}")
    settings = Settings()
    assert [s.get_secret_value() for s in settings.slack_signing_secrets] == [
        OLD_SECRET,
        NEW_SECRET,
    ]
    assert OLD_SECRET in settings.secret_values()
    assert NEW_SECRET in settings.secret_values()
    assert OLD_SECRET not in repr(settings)
    assert (settings.slack_acknowledge_by, settings.slack_pause_by) == (["*"], ["*"])
    assert settings.slack_approve_by == []
    monkeypatch.setenv("RESPONDER_SLACK_APPROVE_BY", f"{JANE}, W0000000007,{ONCALL_GROUP}")
    assert Settings().slack_approve_by == [JANE, "W0000000007", ONCALL_GROUP]
    monkeypatch.setenv("RESPONDER_SLACK_ACKNOWLEDGE_BY", "")
    assert Settings().slack_acknowledge_by == []  # nobody
    refused = {
        "RESPONDER_SLACK_SIGNING_SECRETS": (f"{OLD_SECRET},,{NEW_SECRET}", "empty entry"),
        "RESPONDER_SLACK_PAUSE_BY": ("@jane", "not a Slack user id"),
        "RESPONDER_SLACK_APPROVE_BY": (f"*,{JANE}", r"\* already grants everyone"),
    }
    for name, (value, words) in refused.items():
        with monkeypatch.context() as mp:
            mp.setenv(name, value)
            with pytest.raises(ValueError, match=words) as exc:
                Settings()
            assert OLD_SECRET not in str(exc.value)


def test_a_signing_secrets_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    path = tmp_path / "slack-signing"
    path.write_text(f"{NEW_SECRET}\n")
    monkeypatch.setenv("RESPONDER_SLACK_SIGNING_SECRETS_FILE", str(path))
    assert [s.get_secret_value() for s in Settings().slack_signing_secrets] == [NEW_SECRET]
