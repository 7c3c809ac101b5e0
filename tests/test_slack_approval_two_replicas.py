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
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis

from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.mitigation import Cluster, alert, cluster
from tests.support.procs import ServeProcess, serve_process
from tests.support.slack_signing import button_press, form_body, signed_headers

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

SECRET = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"
JANE, JOHN, MALLORY = "U0000000001", "U0000000002", "U0000000666"

PACK = """
name: approval-e2e
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: false
  notify: ["slack:#incidents"]
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: P2, error_type: upstream_5xx}}
    continue: true
  - name: fallback
    match: ['alertname="Fallback"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{POSTHOG_FALLBACK: "true"}}
        revert: resolve
        approval: required
  - name: queue
    match: ['alertname="Queue"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{RATE_LIMIT_MODE: queue}}
        revert: resolve
        approval: required
"""


@dataclass
class World:
    replicas: tuple[ServeProcess, ServeProcess]
    slack: FakeSlack
    cluster: Cluster
    http: aiohttp.ClientSession

    async def fire(self, name: str) -> None:
        url = self.replicas[0].url + "/v1/webhooks/alertmanager"
        async with self.http.post(url, json=alert(name)) as resp:
            assert resp.status == 200, await resp.text()

    async def incident_with(self, name: str, kind: str, timeout_s: float = 30) -> dict[str, Any]:
        """The incident of alert ``name`` once its timeline has ``kind`` (asked of the
        second replica: the state is in Redis, whichever replica wrote it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.http.get(self.replicas[1].url + "/v1/incidents") as resp:
                incidents = (await resp.json())["incidents"]
            for inc in incidents:
                if inc["labels"].get("alertname") == name and kind in kinds(inc):
                    return dict(inc)
            assert time.monotonic() < deadline, f"{name}: no {kind} in {incidents}"
            await asyncio.sleep(0.05)

    async def press(self, replica: int, body: bytes, headers: dict[str, str]) -> int:
        url = self.replicas[replica].url + "/v1/slack/interactions"
        async with self.http.post(url, data=body, headers=headers) as resp:
            return resp.status

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


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


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
    body = form_body(
        button_press(
            action_id=action_id,
            incident=incident,
            step=step,
            user_id=user_id,
            username=name,
            trigger_id=f"{uuid.uuid4().int % 10**12}.{user_id}",
        )
    )
    return body, signed_headers(SECRET, body, int(time.time()))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("approvals")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    async with (
        cluster(tmp) as c,
        FakeSlack(channels=["incidents"]) as slack,
        aiohttp.ClientSession() as http,
    ):
        c.pack.write_text(PACK.format(health=c.health.health_url))
        env = {
            "RESPONDER_REDIS_URL": redis_url,
            "RESPONDER_REDIS_PREFIX": prefix,
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
        with contextlib.ExitStack() as stack:
            # started off the loop: the fakes in it answer their start-up checks meanwhile
            a, b = await asyncio.gather(
                asyncio.to_thread(stack.enter_context, serve_process(env)),
                asyncio.to_thread(stack.enter_context, serve_process(env)),
            )
            yield World((a, b), slack, c, http)
            for replica in (a, b):
                assert SECRET not in replica.stderr() + replica.stdout()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


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
        world.press(0, *jane), world.press(1, *jane), world.press(1, *john)
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
    assert await world.press(0, *signed(inc["id"], "action.approve", step, MALLORY, "m")) == 200
    await world.until(lambda: len(world.slack.ephemerals) > refusals, "Mallory's ephemeral refusal")
    [refusal] = world.slack.ephemerals[refusals:]
    assert refusal.user == MALLORY
    assert "RESPONDER_SLACK_APPROVE_BY" in refusal.text
    john = signed(inc["id"], "action.reject", step, JOHN, "john")
    assert sorted(await asyncio.gather(world.press(1, *john), world.press(0, *john))) == [
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
