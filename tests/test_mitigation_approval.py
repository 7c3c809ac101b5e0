"""Steps a rule says need a person's yes (``approval:``): offered once with the exact patch,
run once when approved (through every guard but the ack), not run when rejected, expired
with a human called when no one answers, lapsed at resolve; and a person's pause of one
incident. On real Redis and the fake Kubernetes API server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from responder.app import Overrides
from responder.domain.signal import HumanAct, HumanSignal
from responder.settings import Settings
from tests.support.clock import ShiftableClock
from tests.support.fake_notify import FakePagerDuty
from tests.support.mitigation import (
    DEPLOY,
    NS,
    Cluster,
    alert,
    cluster,
    kinds,
    pack_text,
    responder,
    settled,
)
from tests.support.service import Service
from tests.test_notify_pagerduty import actions_of, pd_settings, triggered

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
        approval_timeout_s: 600
  - name: rotated-key
    match: ['alertname="Unsure"']
    when: ["health.ok == false"]
    actions:
      - {type: restart_if_secret_rotated, namespace: production,
         deployment: posthog-integration, secret: posthog-secrets, approval: when_unsure}
"""

STEP = "fallback#0:set_env"


@pytest.fixture
def on_redis(make_settings, redis_url, redis_prefix) -> Callable[..., Settings]:
    def make(**values: Any) -> Settings:
        return make_settings(redis_url=redis_url, redis_prefix=redis_prefix, **values)

    return make


def with_pack(c: Cluster) -> Cluster:
    pack = pack_text(
        RULES, name="approval-test", health_url=c.health.health_url, error_type="upstream_5xx"
    )
    c.pack.write_text(pack)
    return c


@asynccontextmanager
async def cluster_and_service(
    tmp_path: Path, make: Callable[..., Settings], overrides: Overrides | None = None, **more: Any
) -> AsyncIterator[tuple[Cluster, Service]]:
    """The fake cluster with this module's pack, and the service acting on it."""
    async with (
        cluster(tmp_path) as c,
        responder(with_pack(c), make, overrides, **more) as svc,
    ):
        yield c, svc


async def waiting_for_approval(svc: Service, name: str) -> dict[str, Any]:
    """The incident of a new alert ``name``, once it asks for a step's approval."""
    await svc.post_alertmanager(alert(name))
    return await settled(svc, name, "action.approval_requested")


def deployment_patches(c: Cluster) -> list[Any]:
    return [r for r in c.patches() if "/deployments/" in r.path]


async def human(
    svc: Service, incident_id: str, act: HumanAct, by: str, step: str | None = None
) -> None:
    """A person's press, queued as the Slack button or the admin API queues it."""
    signal = HumanSignal(
        incident_id=incident_id,
        act=act,
        step=step,
        by=by,
        via="api",
        request_id=secrets.token_hex(8),
        received_at=svc.runtime.clock.now(),
    )
    await svc.runtime.store.observe([signal.observation()])


def event(inc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in inc["timeline"] if e["kind"] == kind)


async def test_a_step_that_needs_approval_is_offered_with_its_patch_and_nothing_is_sent(
    on_redis, tmp_path: Path
) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        inc = await waiting_for_approval(svc, "Fallback")
        assert c.patches() == []
        assert inc["actions"] == []
        asked = event(inc, "action.approval_requested")
        assert asked["data"]["step"] == STEP
        assert asked["data"]["patch"] == {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "env": [{"name": "POSTHOG_FALLBACK", "value": "true"}]}
                        ]
                    }
                }
            }
        }
        assert asked["data"]["before"] == {"containers": {"app": {"POSTHOG_FALLBACK": None}}}
        assert "container app: POSTHOG_FALLBACK: None → 'true'; would send {" in asked["detail"]
        [approval] = inc["approvals"]
        assert (approval["step"], approval["state"]) == (STEP, "requested")
        assert kinds(inc).count("action.approval_requested") == 1
        assert inc["needs_human"] is None


async def test_an_approved_step_is_applied_once_and_says_who_approved_it(
    on_redis, tmp_path: Path
) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        inc = await waiting_for_approval(svc, "Fallback")
        await human(svc, inc["id"], "approve", "Dana Oncall", STEP)
        inc = await settled(svc, "Fallback", "action.applied")
        assert len(deployment_patches(c)) == 1
        assert c.env()["POSTHOG_FALLBACK"] == "true"
        [record] = inc["actions"]
        assert (record["verdict"], record["approved_by"], record["approved_via"]) == (
            "applied",
            "Dana Oncall",
            "api",
        )
        assert record["before"] == {"containers": {"app": {"POSTHOG_FALLBACK": None}}}
        assert record["after"] == {"containers": {"app": {"POSTHOG_FALLBACK": "true"}}}
        assert event(inc, "action.applied")["data"]["approved_by"] == "Dana Oncall"
        assert kinds(inc).index("action.approved") < kinds(inc).index("action.applied")
        # a second press changes nothing and sends nothing
        await human(svc, inc["id"], "approve", "Sam Second", STEP)
        await svc.idle()
        inc = await settled(svc, "Fallback", "action.applied")
        assert kinds(inc).count("action.approved") == 1
        assert len(deployment_patches(c)) == 1
        # on resolve its revert policy undoes it, as any step's
        await svc.post_alertmanager(alert("Fallback", status="resolved"))
        await settled(svc, "Fallback", "action.reverted")
        assert len(deployment_patches(c)) == 2


async def test_an_acknowledged_incident_still_runs_the_step_a_person_approved(
    on_redis, tmp_path: Path
) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        inc = await waiting_for_approval(svc, "Fallback")
        await human(svc, inc["id"], "acknowledge", "Dana Oncall")
        await settled(svc, "Fallback", "incident.acknowledged")
        await human(svc, inc["id"], "approve", "Dana Oncall", STEP)
        inc = await settled(svc, "Fallback", "action.applied")
        assert len(deployment_patches(c)) == 1
        ack = next(v for v in inc["actions"][0]["verdicts"] if v["guard"] == "acknowledged")
        assert ack["ok"] is True
        assert "Dana Oncall approved this step" in ack["reason"]


async def test_a_paused_incident_refuses_its_approved_step_and_its_revert(
    on_redis, tmp_path: Path
) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        inc = await waiting_for_approval(svc, "Fallback")
        await human(svc, inc["id"], "pause", "Lee Lead")
        await human(svc, inc["id"], "approve", "Dana Oncall", STEP)
        inc = await settled(svc, "Fallback", "action.refused")
        assert c.patches() == []
        [record] = inc["actions"]
        assert record["verdicts"][-1]["guard"] == "paused"
        assert "automation of this incident is paused by Lee Lead" in record["reason"]
        assert inc["needs_human"] is not None  # the approved step is undone: a person does it


async def test_a_per_incident_pause_refuses_the_revert_and_gives_its_patch(
    on_redis, tmp_path: Path
) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        inc = await waiting_for_approval(svc, "Fallback")
        await human(svc, inc["id"], "approve", "Dana Oncall", STEP)
        await settled(svc, "Fallback", "action.applied")
        await human(svc, inc["id"], "pause", "Lee Lead")
        await settled(svc, "Fallback", "automation.paused")
        await svc.post_alertmanager(alert("Fallback", status="resolved"))
        inc = await settled(svc, "Fallback", "action.revert_refused")
        refused = event(inc, "action.revert_refused")
        assert refused["data"]["guard"] == "paused"
        assert "paused by Lee Lead" in refused["detail"]
        assert len(deployment_patches(c)) == 1
        assert c.env()["POSTHOG_FALLBACK"] == "true"


async def test_a_rejected_step_sends_nothing_and_calls_no_one(on_redis, tmp_path: Path) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        inc = await waiting_for_approval(svc, "Fallback")
        await human(svc, inc["id"], "reject", "Dana Oncall", STEP)
        inc = await settled(svc, "Fallback", "action.rejected")
        # an approval after the rejection is no answer any more
        await human(svc, inc["id"], "approve", "Sam Second", STEP)
        await svc.idle()
        inc = await settled(svc, "Fallback", "action.rejected")
        assert c.patches() == []
        assert inc["actions"] == []
        assert inc["needs_human"] is None
        assert [a["state"] for a in inc["approvals"]] == ["rejected"]
        assert "action.approved" not in kinds(inc)


async def test_an_unanswered_approval_expires_calls_a_human_and_pages_the_on_call(
    on_redis, tmp_path: Path
) -> None:
    clock = ShiftableClock()
    async with (
        FakePagerDuty() as pd,
        cluster_and_service(
            tmp_path, on_redis, Overrides(clock=clock), notify=True, **pd_settings(pd)
        ) as (c, svc),
    ):
        inc = await waiting_for_approval(svc, "Fallback")
        assert actions_of(pd, "trigger") == []  # the rule does not page by itself
        clock.advance(601)  # the rule's approval_timeout_s passes
        inc = await settled(svc, "Fallback", "action.approval_expired")
        assert "no one approved set_env on production/posthog-integration" in inc["needs_human"]
        assert [a["state"] for a in inc["approvals"]] == ["expired"]
        [page] = await triggered(pd)
        assert page["payload"]["summary"].startswith("[approval expired] ")
        assert page["dedup_key"] == f"responder-{inc['id']}"
        # an approval after the deadline is no answer any more: nothing is sent
        await human(svc, inc["id"], "approve", "Dana Oncall", STEP)
        await svc.idle()
        assert c.patches() == []
        inc = await settled(svc, "Fallback", "action.approval_expired")
        assert "action.approved" not in kinds(inc)


async def test_an_approval_waiting_at_resolve_lapses_and_its_deadline_does_nothing(
    on_redis, tmp_path: Path
) -> None:
    clock = ShiftableClock()
    async with cluster_and_service(tmp_path, on_redis, Overrides(clock=clock)) as (c, svc):
        await waiting_for_approval(svc, "Fallback")
        await svc.post_alertmanager(alert("Fallback", status="resolved"))
        inc = await settled(svc, "Fallback", "action.approval_expired")
        lapsed = event(inc, "action.approval_expired")
        assert lapsed["data"]["lapsed"] is True
        assert "the incident resolved before anyone answered" in lapsed["detail"]
        assert [a["state"] for a in inc["approvals"]] == ["expired"]
        clock.advance(601)  # the deadline's timer comes: the step no longer waits
        await asyncio.sleep(1.5)  # the worker's timer release runs every second
        await svc.idle()
        inc = await settled(svc, "Fallback", "action.approval_expired")
        assert kinds(inc).count("action.approval_expired") == 1
        assert inc["needs_human"] is None
        assert c.patches() == []


async def test_when_unsure_a_restart_waits_for_approval_then_runs_anyway(
    on_redis, tmp_path: Path
) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        # the Secret changed before the pods started: a restart may not help
        inc = await waiting_for_approval(svc, "Unsure")
        asked = event(inc, "action.approval_requested")
        assert "before the oldest pod's container app started" in asked["data"]["why"]
        assert "restartedAt" in asked["detail"]
        assert c.patches() == []
        await human(svc, inc["id"], "approve", "Dana Oncall", asked["data"]["step"])
        inc = await settled(svc, "Unsure", "action.applied")
        assert len(deployment_patches(c)) == 1
        assert inc["actions"][0]["approved_by"] == "Dana Oncall"
        assert "action.skipped" not in kinds(inc)


async def test_when_sure_a_restart_runs_on_its_own(on_redis, tmp_path: Path) -> None:
    async with cluster_and_service(tmp_path, on_redis) as (c, svc):
        c.kube.set_secret(
            NS, "posthog-secrets", {"api-key": "phc_new"}, changed_at=datetime.now(UTC)
        )
        await svc.post_alertmanager(alert("Unsure"))
        inc = await settled(svc, "Unsure", "action.applied")
        assert len(deployment_patches(c)) == 1
        assert "action.approval_requested" not in kinds(inc)
        assert inc["actions"][0]["approved_by"] is None


async def test_a_target_off_the_allowlist_is_refused_not_offered(on_redis, tmp_path: Path) -> None:
    allowlist = "production/other/*"
    async with cluster_and_service(tmp_path, on_redis, action_allowlist=allowlist) as (c, svc):
        await svc.post_alertmanager(alert("Fallback"))
        inc = await settled(svc, "Fallback", "action.refused")
        assert "action.approval_requested" not in kinds(inc)
        assert inc["approvals"] == []
        assert inc["actions"][0]["verdicts"][-1]["guard"] == "allowlist"
        assert c.patches() == []


async def test_two_approvals_racing_on_two_replicas_patch_once(
    make_settings, redis_url, redis_prefix, tmp_path: Path
) -> None:
    settings: dict[str, Any] = {"workers": 0, "redis_url": redis_url, "redis_prefix": redis_prefix}
    async with (
        cluster(tmp_path) as c,
        responder(with_pack(c), make_settings, **settings) as a,
        responder(c, make_settings, **settings) as b,
    ):
        await a.post_alertmanager(alert("Fallback"))
        [entry] = await a.runtime.queue.read(consumer="w1", count=10, block_ms=0)
        await a.runtime.worker.handle(entry)
        [inc] = await a.incidents()
        assert "action.approval_requested" in kinds(inc)
        # two people approve at once, each press handled by another replica
        await human(a, inc["id"], "approve", "Dana Oncall", STEP)
        await human(b, inc["id"], "approve", "Sam Second", STEP)
        entries = await a.runtime.queue.read(consumer="w1", count=10, block_ms=0)
        assert len(entries) == 2
        await asyncio.gather(
            a.runtime.worker.handle(entries[0]),
            b.runtime.worker.handle(entries[1]),
            # and the first press's follow-up raced by the other replica too
            b.runtime.worker.handle(entries[0]),
        )
        for _ in range(5):  # what one of them left busy is retried
            stale = await a.runtime.queue.claim_stale(consumer="w2", min_idle_ms=0, count=10)
            if not stale:
                break
            await asyncio.sleep(0.2)
            await b.runtime.worker.handle(*stale)
        assert len(deployment_patches(c)) == 1
        [inc] = await a.incidents()
        inc = await (await a.client.get(f"/v1/incidents/{inc['id']}")).json()
        assert kinds(inc).count("action.approved") == 1
        assert kinds(inc).count("action.applied") == 1
        [record] = inc["actions"]
        assert record["approved_by"] == event(inc, "action.approved")["data"]["by"]
        assert c.kube.deployment(NS, DEPLOY) is not None
