"""The incident commander is whom PagerDuty says has the incident (its assignee, or who
acknowledged it there) once it says so: the Slack root's "Incident commander:" line."""

from __future__ import annotations

import json
from typing import Any

from responder.ingest.pagerduty import sign
from tests.support.fake_notify import FakeSlack
from tests.support.service import EXAMPLES, Service, example, running_service
from tests.support.waiting import eventually

PD = EXAMPLES / "pagerduty"
SECRET = (PD / "webhook-secret.txt").read_text().strip()
CHANNEL = "#posthog-incidents"
UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def pd_event(name: str, *, event_id: str | None = None, **event: Any) -> bytes:
    doc = json.loads((PD / f"{name}.json").read_text())
    doc["event"].update(event)
    if event_id is not None:
        doc["event"]["id"] = event_id
    return json.dumps(doc).encode()


def assigned_to(name: str, user_id: str) -> list[dict[str, str]]:
    return [{"id": user_id, "summary": name, "type": "user_reference"}]


async def post_pagerduty(svc: Service, body: bytes) -> None:
    resp = await svc.post_pagerduty(body, {"X-PagerDuty-Signature": sign(body, SECRET)})
    assert resp.status == 200, await resp.text()


def commander_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("*Incident commander:*"))


async def test_the_root_names_the_pagerduty_assignee_and_follows_reassignment(
    backend_settings,
) -> None:
    async with FakeSlack() as slack:
        settings = backend_settings(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel=CHANNEL,
            pagerduty_webhook_secrets=SECRET,
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(example(UNREACHABLE))
            await svc.idle()

            async def root_says(line: str) -> bool:
                roots = slack.roots(CHANNEL)
                return len(roots) == 1 and commander_line(roots[0].text) == line

            await eventually(
                lambda: root_says(
                    "*Incident commander:* unassigned: whoever acknowledges the page takes it"
                ),
                what="the root before PagerDuty names anyone",
            )
            # Alertmanager paged; PagerDuty assigned the on-call: they have it, unacked
            await post_pagerduty(svc, pd_event("incident-triggered"))
            await svc.idle()
            await eventually(
                lambda: root_says("*Incident commander:* Dana Oncall"),
                what="the root names the assignee",
            )
            # reassigned in PagerDuty: the new assignee has it
            data = json.loads((PD / "incident-triggered.json").read_text())["event"]["data"]
            data["assignees"] = assigned_to("Sam Lead", "PUSR002")
            await post_pagerduty(
                svc,
                pd_event(
                    "incident-triggered",
                    event_id="01DEN7X2REASSIGN0000000001",
                    event_type="incident.reassigned",
                    data=data,
                ),
            )
            await svc.idle()
            await eventually(
                lambda: root_says("*Incident commander:* Sam Lead"),
                what="the root names the new assignee",
            )
            [inc] = await svc.incidents()
            assert inc["commander"] == "Sam Lead"
            assigned = [e for e in inc["timeline"] if e["kind"] == "pagerduty.assigned"]
            assert [e["data"]["commander"] for e in assigned] == ["Dana Oncall", "Sam Lead"]
            # the reassignment is told as who has it, not as a bare PagerDuty event
            assert "pagerduty.event" not in [e["kind"] for e in inc["timeline"]]
