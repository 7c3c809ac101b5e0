"""Humans in the loop, end to end: two ``responder serve`` processes on one Redis, the fake
Slack behind their bot token, and Slack's signed button presses sent to both at once.

Each press takes effect once whichever replica takes it: a signed request replayed to the
other replica is refused there; two people pressing Acknowledge together make one
acknowledgement, and its commander is the one applied first; Pause and Resume pressed on
both replicas pause and resume once each; forged and stale requests are refused on both and
counted in their ``/metrics``. The replicas are started once for the module (they cost
seconds each); every test opens an incident of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_notify import FakeSlack
from tests.support.replicas import Replicas, serve_replicas
from tests.support.service import example, started_now
from tests.support.slack_signing import button_press, form_body, signed_headers, signed_press

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

SECRETS = ("5e3c0de1b2a3948576f0a1b2c3d4e5f6", "0f9e8d7c6b5a49382716f5e4d3c2b1a0")
LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"
JANE, JOHN = "U0000000001", "U0000000002"


@dataclass
class Pair(Replicas):
    slack: FakeSlack

    async def open_incident(self, service: str) -> str:
        """An incident of its own for a test: the example alert, for another service."""
        payload = started_now(example(LIMITED))[0]
        for alert in payload["alerts"]:
            alert["labels"]["service"] = service
            alert["fingerprint"] = ""
        await self.post_alert(payload)
        found = await self.incident_where(
            lambda incs: _of(incs, service), what=f"{service}'s incident", timeout_s=20.0
        )
        return str(found["id"])

    async def sample(self, replica: int, name: str, **labels: str) -> float | None:
        async with self.http.get(self.replicas[replica].url + "/metrics") as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    async def counted(self, replica: int, outcome: str) -> float:
        value = await self.sample(replica, "responder_slack_interactions_total", outcome=outcome)
        assert value is not None, f"no responder_slack_interactions_total{{outcome={outcome!r}}}"
        return value

    async def presses_handled(self) -> float:
        """Human signals the workers of both replicas handled (applied, or found done)."""
        name = "responder_signal_processing_seconds_count"
        return sum([(await self.sample(r, name, source="human")) or 0.0 for r in (0, 1)])

    async def handled_since(self, before: float, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while await self.presses_handled() < before + count:
            assert time.monotonic() < deadline, f"{count} presses not handled"
            await asyncio.sleep(0.05)


def _of(incidents: list[dict[str, Any]], service: str) -> dict[str, Any] | None:
    return next((i for i in incidents if i["labels"].get("service") == service), None)


def press(
    incident: str, action_id: str, user_id: str, name: str, *, secret: str = SECRETS[0]
) -> tuple[bytes, dict[str, str]]:
    return signed_press(
        secret=secret, action_id=action_id, incident=incident, user_id=user_id, username=name
    )


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(redis_url: str) -> AsyncIterator[Pair]:
    async with FakeSlack(channels=["incidents"]) as slack, aiohttp.ClientSession() as http:
        env = {
            "RESPONDER_SLACK_SIGNING_SECRETS": ",".join(SECRETS),
            "RESPONDER_SLACK_TOKEN": slack.token,
            "RESPONDER_SLACK_API_URL": slack.api_url,
            "RESPONDER_VISIBILITY_TIMEOUT_S": "5",
            "RESPONDER_TRIAGE_BUDGET_S": "2",
        }
        async with serve_replicas(env, redis_url=redis_url) as replicas:
            try:
                yield Pair(replicas=replicas, http=http, slack=slack)
            finally:
                for replica in replicas:
                    for secret in SECRETS:
                        assert secret not in replica.stderr()
                        assert secret not in replica.stdout()


async def test_one_acknowledgement_whichever_replica_and_whoever_pressed_first(
    pair: Pair,
) -> None:
    incident = await pair.open_incident("ack-race")
    handled = await pair.presses_handled()
    jane = press(incident, "incident.acknowledge", JANE, "jane")
    john = press(incident, "incident.acknowledge", JOHN, "john", secret=SECRETS[1])
    statuses = await asyncio.gather(pair.send(0, *jane), pair.send(1, *jane), pair.send(1, *john))
    # Jane's request was taken by one replica, refused as replayed by the other
    assert sorted(statuses[:2]) == [200, 409]
    assert statuses[2] == 200
    await pair.handled_since(handled, 2)  # both presses taken: one applied, one found done
    inc = await pair.incident(incident)
    assert inc["status"] == "acked"
    [acked] = [e for e in inc["timeline"] if e["kind"] == "incident.acknowledged"]
    assert inc["commander"] == inc["acked_by"] == acked["data"]["by"]
    assert inc["commander"] in ("jane", "john")
    assert await pair.counted(0, "replayed") + await pair.counted(1, "replayed") == 1


async def test_pause_and_resume_pressed_on_both_replicas_take_effect_once_each(
    pair: Pair,
) -> None:
    incident = await pair.open_incident("pause-race")
    handled = await pair.presses_handled()
    pauses = await asyncio.gather(
        pair.send(0, *press(incident, "incident.pause", JANE, "jane")),
        pair.send(1, *press(incident, "incident.pause", JOHN, "john")),
    )
    assert pauses == [200, 200]
    await pair.handled_since(handled, 2)
    assert (await pair.incident(incident))["paused_by"] in ("jane", "john")
    resumes = await asyncio.gather(
        pair.send(1, *press(incident, "incident.resume", JANE, "jane")),
        pair.send(0, *press(incident, "incident.resume", JOHN, "john")),
    )
    assert resumes == [200, 200]
    await pair.handled_since(handled, 4)
    inc = await pair.incident(incident)
    assert kinds(inc).count("automation.paused") == 1
    assert kinds(inc).count("automation.resumed") == 1
    assert inc["paused_by"] is None


async def test_forged_and_stale_presses_are_refused_on_both_replicas_and_counted(
    pair: Pair,
) -> None:
    incident = await pair.open_incident("refusals")
    before = [(await pair.counted(r, "forged"), await pair.counted(r, "stale")) for r in (0, 1)]
    body = form_body(button_press(action_id="incident.acknowledge", incident=incident))
    forged = signed_headers("a-secret-slack-never-had", body, int(time.time()))
    stale = signed_headers(SECRETS[0], body, int(time.time()) - 600)
    for replica in (0, 1):
        assert await pair.send(replica, body, forged) == 401
        assert await pair.send(replica, body, stale) == 401
    after = [(await pair.counted(r, "forged"), await pair.counted(r, "stale")) for r in (0, 1)]
    assert [(f - f0, s - s0) for (f, s), (f0, s0) in zip(after, before, strict=True)] == [
        (1, 1),
        (1, 1),
    ]
    inc = await pair.incident(incident)
    assert inc["status"] == "open"
    assert "incident.acknowledged" not in kinds(inc)
