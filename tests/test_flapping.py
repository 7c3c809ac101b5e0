"""Flapping: an alert that fires and resolves ``fires`` times within ``window_s`` (the
pack's ``flapping``) puts its incident in a flapping state: one notice in the thread, no
reply per flap, no new incident per flap, no action repeated; its resolve does not close
it until no alert fired for ``quiet_s``, then ``incident.steady`` and the resolve."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.fake_notify import FakeSlack
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = "#posthog-incidents"
UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def flapping_pack(tmp: Path, *, fires: int, quiet_s: float) -> Path:
    """The shipped pack (its probes unused: triage off), flapping as asked."""
    text = (ROOT / "rules" / "posthog.yaml").read_text()
    assert "\nflapping:" not in text
    text += f"\nflapping:\n  fires: {fires}\n  window_s: 600\n  quiet_s: {quiet_s}\n"
    path = tmp / "posthog.yaml"
    path.write_text(text)
    return path


def flap(n: int, status: str) -> dict[str, Any]:
    """The n-th firing of the same alert (a new occurrence: a later startsAt), or its
    resolve."""
    payload = copy.deepcopy(example(UNREACHABLE))
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5) + timedelta(seconds=n)
    for alert in payload["alerts"]:
        alert["startsAt"] = starts.isoformat().replace("+00:00", "Z")
        alert["status"] = status
        if status == "resolved":
            alert["endsAt"] = (starts + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    payload["status"] = status
    return payload


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


async def post(svc: Service, payload: dict[str, Any]) -> None:
    resp = await svc.post_alertmanager(payload)
    assert resp.status == 200, await resp.text()
    await svc.idle()


async def test_a_flapping_alert_keeps_one_quiet_incident_until_it_is_steady(
    backend_settings, tmp_path
) -> None:
    async with FakeSlack() as slack:
        settings = backend_settings(
            rules=[flapping_pack(tmp_path, fires=3, quiet_s=2.0)],
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel=CHANNEL,
        )
        async with running_service(settings, notify=True) as svc:
            # fire, resolve, fire, resolve: an incident each, as any alert's
            for n in (1, 2):
                await post(svc, flap(n, "firing"))
                await post(svc, flap(n, "resolved"))
            assert len(await svc.incidents()) == 2
            # the third firing within the window: the last incident opens again, flapping
            await post(svc, flap(3, "firing"))
            incidents = await svc.incidents()
            assert len(incidents) == 2, [i["id"] for i in incidents]
            [flapping] = [i for i in incidents if i["status"] != "resolved"]
            assert kinds(flapping).count("incident.flapping") == 1
            notice = next(e for e in flapping["timeline"] if e["kind"] == "incident.flapping")
            assert notice["data"]["fires"] == 3
            # more flaps: the incident stays open across resolves, no new one
            await post(svc, flap(3, "resolved"))
            for n in (4, 5):
                await post(svc, flap(n, "firing"))
                await post(svc, flap(n, "resolved"))
            incidents = await svc.incidents()
            assert len(incidents) == 2
            [same] = [i for i in incidents if i["id"] == flapping["id"]]
            assert same["status"] != "resolved"
            assert "incident.resolved" not in kinds(same)[len(kinds(flapping)) :]
            # no action and no decision again while it flaps
            later = kinds(same)[len(kinds(flapping)) :]
            assert not [k for k in later if k.startswith("action.") or k == "incident.decided"]

            # quiet for quiet_s: steady, and resolved as its alert is
            async def steady() -> dict[str, Any] | None:
                [inc] = [i for i in await svc.incidents() if i["id"] == flapping["id"]]
                return inc if inc["status"] == "resolved" else None

            done = await eventually(steady, timeout_s=15, what="steady after the quiet period")
            told = [k for k in kinds(done) if k in ("incident.steady", "incident.resolved")]
            # resolved once before it flapped, then steady and resolved for good
            assert told[-2:] == ["incident.steady", "incident.resolved"], told

            # the thread said it flaps once, and that it is steady; not each flap
            roots = slack.roots(CHANNEL)

            async def told_steady() -> list[str] | None:
                thread = [m.text for root in roots for m in slack.replies(CHANNEL, root.ts)]
                return thread if any("Steady" in t for t in thread) else None

            thread = await eventually(told_steady, what="the thread told it is steady")
            assert sum("*Flapping:*" in t for t in thread) == 1, thread
            assert sum("Steady" in t for t in thread) == 1, thread
            assert len(roots) == 2
