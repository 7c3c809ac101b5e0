"""Approvals, end to end: two ``responder serve`` processes on one Redis, the fake Slack
behind their bot token, the fake Kubernetes API server, and a pack whose steps need a
person's yes (``approval: required``).

The approval request reaches the Slack thread with the exact change and the Approve and
Reject buttons; Slack's signed presses go to both replicas at once: two people approving
together make one approval and one PATCH; a press replayed to the other replica is refused
there; someone the settings do not allow gets an ephemeral refusal and changes nothing; a
rejected step sends nothing. The request message is edited to its outcome once. The
replicas are started once for the module; each test has an incident of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.mitigation import Cluster, alert, cluster, kinds, pack_text
from tests.support.replicas import Replicas, serve_replicas
from tests.support.slack_signing import signed_press

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

SECRET = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"
JANE, JOHN, MALLORY = "U0000000001", "U0000000002", "U0000000666"

RULES = """
  - name: fallback
    match: ['alertname="Fallback"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {POSTHOG_FALLBACK: "true"}
        revert: resolve
        approval: required
  - name: queue
    match: ['alertname="Queue"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {RATE_LIMIT_MODE: queue}
        revert: resolve
        approval: required
"""


@dataclass
class World(Replicas):
    slack: FakeSlack
    cluster: Cluster

    async def fire(self, name: str) -> None:
        await self.post_alert(alert(name))

    async def incident_with(self, name: str, kind: str, timeout_s: float = 30) -> dict[str, Any]:
        """The incident of alert ``name`` once its timeline has ``kind``."""

        def found(incidents: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next(
                (i for i in incidents if i["labels"].get("alertname") == name and kind in kinds(i)),
                None,
            )

        return await self.incident_where(found, what=f"{name}: {kind}", timeout_s=timeout_s)

    def deployment_patches(self) -> list[Any]:
        return [r for r in self.cluster.patches() if "/deployments/" in r.path]

    def request_message(self, step: str) -> SlackMessage | None:
        """The thread reply asking for ``step``'s approval (its Approve button names it)."""
        channel = self.slack.channel_id("incidents")
        for root in self.slack.roots(channel):
            for reply in self.slack.replies(channel, root.ts):
                for button in buttons(reply):
                    if json.loads(button.get("value", "{}")).get("step") == step:
                        return reply
        return None

    async def until(self, check: Any, what: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (found := check()):
            assert time.monotonic() < deadline, f"not reached: {what}"
            await asyncio.sleep(0.05)
        return found


def buttons(message: SlackMessage) -> list[dict[str, Any]]:
    return [
        element
        for block in message.blocks or []
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def signed(
    incident: str, action_id: str, step: str, user_id: str, name: str
) -> tuple[bytes, dict[str, str]]:
    return signed_press(
        secret=SECRET,
        action_id=action_id,
        incident=incident,
        step=step,
        user_id=user_id,
        username=name,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("approvals")
    async with (
        cluster(tmp) as c,
        FakeSlack(channels=["incidents"]) as slack,
        aiohttp.ClientSession() as http,
    ):
        pack = pack_text(
            RULES,
            name="approval-e2e",
            health_url=c.health.health_url,
            error_type="upstream_5xx",
            notify=["slack:#incidents"],
        )
        c.pack.write_text(pack)
        env = {
            "RESPONDER_RULES": str(c.pack),
            "RESPONDER_TRIAGE": "true",
            "RESPONDER_KUBECONFIG": str(c.kubeconfig),
            "RESPONDER_ACTION_ALLOWLIST": "production/posthog-integration/*",
            "RESPONDER_SLACK_TOKEN": slack.token,
            "RESPONDER_SLACK_API_URL": slack.api_url,
            "RESPONDER_SLACK_SIGNING_SECRETS": SECRET,
            "RESPONDER_SLACK_APPROVE_BY": f"{JANE},{JOHN}",
            "RESPONDER_VISIBILITY_TIMEOUT_S": "5",
            "RESPONDER_TRIAGE_BUDGET_S": "2",
            "RESPONDER_LOG_LEVEL": "WARNING",
        }
        async with serve_replicas(env, redis_url=redis_url) as replicas:
            yield World(replicas=replicas, http=http, slack=slack, cluster=c)
            for replica in replicas:
                assert SECRET not in replica.stderr() + replica.stdout()


async def test_two_people_approving_on_two_replicas_apply_the_step_once(world: World) -> None:
    await world.fire("Fallback")
    inc = await world.incident_with("Fallback", "action.approval_requested")
    [asked] = [e for e in inc["timeline"] if e["kind"] == "action.approval_requested"]
    step = asked["data"]["step"]
    assert world.deployment_patches() == []  # nothing sent before a person says yes
    # the request in the thread: the exact change and the two buttons naming the step
    request = await world.until(lambda: world.request_message(step), "the approval request")
    assert "POSTHOG_FALLBACK" in json.dumps(request.blocks)
    assert {b["action_id"] for b in buttons(request)} == {"action.approve", "action.reject"}

    jane = signed(inc["id"], "action.approve", step, JANE, "jane")
    john = signed(inc["id"], "action.approve", step, JOHN, "john")
    statuses = await asyncio.gather(
        world.send(0, *jane), world.send(1, *jane), world.send(1, *john)
    )
    assert sorted(statuses[:2]) == [200, 409]  # Jane's request: taken once, replay refused
    assert statuses[2] == 200
    done = await world.incident_with("Fallback", "action.applied")
    assert kinds(done).count("action.approved") == 1
    assert kinds(done).count("action.applied") == 1
    [record] = done["actions"]
    assert record["approved_by"] in ("jane", "john")
    assert record["before"] != record["after"]
    [patch] = world.deployment_patches()
    assert "POSTHOG_FALLBACK" in json.dumps(patch.body)
    # the request message itself edited once to its outcome: no button left
    channel = world.slack.channel_id("incidents")
    settled = await world.until(
        lambda: next(
            (
                m
                for m in world.slack.messages(channel)
                if m.ts == request.ts and m.edits and not buttons(m)
            ),
            None,
        ),
        "the request edited to its outcome",
    )
    assert f"*Approved* by {record['approved_by']} in Slack" in settled.text
    assert len(settled.edits) == 1
    # and the second answer changed nothing afterwards either
    await asyncio.sleep(0.5)
    assert len(world.deployment_patches()) == 1


async def test_a_rejected_step_sends_nothing_and_a_stranger_cannot_answer(
    world: World,
) -> None:
    await world.fire("Queue")
    inc = await world.incident_with("Queue", "action.approval_requested")
    [asked] = [e for e in inc["timeline"] if e["kind"] == "action.approval_requested"]
    step = asked["data"]["step"]
    patches = len(world.deployment_patches())
    refusals = len(world.slack.ephemerals)
    # Mallory is not among RESPONDER_SLACK_APPROVE_BY: told privately, nothing queued
    assert await world.send(0, *signed(inc["id"], "action.approve", step, MALLORY, "m")) == 200
    await world.until(lambda: len(world.slack.ephemerals) > refusals, "Mallory's ephemeral refusal")
    [refusal] = world.slack.ephemerals[refusals:]
    assert refusal.user == MALLORY
    assert "RESPONDER_SLACK_APPROVE_BY" in refusal.text
    john = signed(inc["id"], "action.reject", step, JOHN, "john")
    assert sorted(await asyncio.gather(world.send(1, *john), world.send(0, *john))) == [
        200,
        409,
    ]
    done = await world.incident_with("Queue", "action.rejected")
    assert kinds(done).count("action.rejected") == 1
    assert "action.approved" not in kinds(done)
    [approval] = done["approvals"]
    assert (approval["state"], approval["decided_by"]) == ("rejected", "john")
    assert len(world.deployment_patches()) == patches
    assert done["actions"] == []
