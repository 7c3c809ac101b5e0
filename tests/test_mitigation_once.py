"""Exactly once: redeliveries, racing workers, racing replicas, and a worker killed mid-apply
never send a step's change twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.support.mitigation import alert, cluster, kinds, responder, settled
from tests.support.procs import serve_process
from tests.support.waiting import eventually


def deployment_patches(c) -> list[Any]:
    return [r for r in c.patches() if "/deployments/" in r.path]


async def test_a_redelivered_entry_does_not_apply_again(
    make_settings, redis_url, redis_prefix, tmp_path
):
    async with (
        cluster(tmp_path) as c,
        responder(
            c, make_settings, workers=0, redis_url=redis_url, redis_prefix=redis_prefix
        ) as svc,
    ):
        await svc.post_alertmanager(alert("SetEnv"))
        [entry] = await svc.runtime.queue.read(consumer="w1", count=10, block_ms=0)
        await svc.runtime.worker.handle(entry)
        await svc.runtime.worker.handle(entry)  # as if redelivered: same entry again
        assert len(deployment_patches(c)) == 1
        [inc] = await svc.incidents()
        assert kinds(inc).count("action.applied") == 1
        assert len(inc["actions"]) == 1


async def test_two_replicas_handling_one_entry_at_once_apply_once(
    make_settings, redis_url, redis_prefix, tmp_path
):
    async with cluster(tmp_path) as c:
        settings: dict[str, Any] = {
            "workers": 0,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
        }
        async with (
            responder(c, make_settings, **settings) as a,
            responder(c, make_settings, **settings) as b,
        ):
            await a.post_alertmanager(alert("SetEnv"))
            [entry] = await a.runtime.queue.read(consumer="w1", count=10, block_ms=0)
            await asyncio.gather(a.runtime.worker.handle(entry), b.runtime.worker.handle(entry))
            # a step still held by one of them is retried later: give it the chance
            for _ in range(3):
                stale = await a.runtime.queue.claim_stale(consumer="w2", min_idle_ms=0, count=10)
                if stale:
                    await asyncio.sleep(0.2)
                    await b.runtime.worker.handle(*stale)
            assert len(deployment_patches(c)) == 1
            [inc] = await a.incidents()
            assert [a_["verdict"] for a_ in inc["actions"]] == ["applied"]
            assert kinds(inc).count("action.applied") == 1
            assert c.env()["RATE_LIMIT_MODE"] == "queue"


async def _killed_once_patched(c, doomed, what: str) -> None:
    """Once a PATCH of the Deployment reached the API server (which applies it and then
    holds the connection), the replica carrying it out is killed: no chance to record it."""

    async def patched() -> bool:
        return bool(deployment_patches(c))

    await eventually(patched, timeout_s=20, what=what)
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(10)


def _survivor(c, make_settings, redis_url: str, redis_prefix: str):
    """A replica on the same Redis that claims the dead one's entries after the visibility
    timeout and recovers the step."""
    return responder(
        c,
        make_settings,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        visibility_timeout_s=3,
        triage_budget_s=1.5,
    )


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def _post(url: str, payload: dict[str, Any]) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
        return int(resp.status)


def _serve_env(c, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "RESPONDER_REDIS_URL": redis_url,
        "RESPONDER_REDIS_PREFIX": prefix,
        "RESPONDER_RULES": str(c.pack),
        "RESPONDER_TRIAGE": "true",
        "RESPONDER_KUBECONFIG": str(c.kubeconfig),
        "RESPONDER_ACTION_ALLOWLIST": "production/posthog-integration/*",
        "RESPONDER_VISIBILITY_TIMEOUT_S": "3",
        "RESPONDER_TRIAGE_BUDGET_S": "1.5",
        "RESPONDER_LOG_LEVEL": "WARNING",
    }


@pytest.mark.timeout(90)
async def test_a_worker_killed_after_its_patch_is_not_followed_by_a_second_patch(
    make_settings, redis_url, redis_prefix, tmp_path
):
    async with cluster(tmp_path) as c:
        # the API server applies the patch, then the connection dies with the worker
        c.kube.hang_after_apply("PATCH", r"/apis/apps/v1/namespaces/production/deployments/.*")
        with serve_process(_serve_env(c, redis_url, redis_prefix)) as doomed:
            await asyncio.to_thread(
                _post, doomed.url + "/v1/webhooks/alertmanager", alert("SetEnv")
            )

            await _killed_once_patched(c, doomed, "the patch reached the API server")
        assert c.env()["RATE_LIMIT_MODE"] == "queue"  # it was applied
        async with _survivor(c, make_settings, redis_url, redis_prefix) as survivor:
            inc = await settled(survivor, "SetEnv", "action.applied", timeout_s=30)
            assert len(deployment_patches(c)) == 1  # no second patch
            [action] = inc["actions"]
            assert action["verdict"] == "applied"
            assert "found in place" in action["reason"]
            assert action["after"] == {"containers": {"app": {"RATE_LIMIT_MODE": "queue"}}}


@pytest.mark.timeout(90)
async def test_two_service_processes_on_one_redis_patch_once(redis_url, redis_prefix, tmp_path):
    async with cluster(tmp_path) as c:
        env = _serve_env(c, redis_url, redis_prefix)
        with serve_process(env) as first, serve_process(env) as second:
            hook = "/v1/webhooks/alertmanager"
            # an HA pair delivering the same group to both replicas, several times
            posts = [
                asyncio.to_thread(_post, svc.url + hook, alert("SetEnv", instance=i))
                for i in ("pod-1", "pod-2")
                for svc in (first, second)
                for _ in range(3)
            ]
            assert set(await asyncio.gather(*posts)) == {200}

            def decided() -> dict[str, Any] | None:
                for inc in _get(first.url + "/v1/incidents")["incidents"]:
                    if "action.applied" in kinds(inc):
                        return inc
                return None

            deadline = time.monotonic() + 30
            inc = None
            while inc is None and time.monotonic() < deadline:
                inc = await asyncio.to_thread(decided)
                await asyncio.sleep(0.1)
            assert inc is not None
            await asyncio.sleep(1.0)  # any late duplicate would show by now
            assert len(deployment_patches(c)) == 1
            incidents = _get(second.url + "/v1/incidents")["incidents"]
            assert len(incidents) == 1
            assert kinds(incidents[0]).count("action.applied") == 1


@pytest.mark.timeout(90)
async def test_an_approved_step_whose_worker_died_after_its_patch_is_not_patched_again(
    make_settings, redis_url, redis_prefix, tmp_path
):
    """A person approved the step (through the admin API, as Slack's button queues it);
    the replica carrying it out is killed once the API server applied its PATCH; the
    survivor recovers the step by reading the target: one PATCH, and who approved kept."""
    from tests.test_mitigation_approval import STEP, with_pack

    async with cluster(tmp_path) as c:
        with_pack(c)
        c.kube.hang_after_apply("PATCH", r"/apis/apps/v1/namespaces/production/deployments/.*")
        env = {**_serve_env(c, redis_url, redis_prefix), "RESPONDER_ADMIN_TOKEN": "admin-1"}
        with serve_process(env) as doomed:
            await asyncio.to_thread(
                _post, doomed.url + "/v1/webhooks/alertmanager", alert("Fallback")
            )

            async def asked() -> dict[str, Any] | None:
                for inc in (await asyncio.to_thread(_get, doomed.url + "/v1/incidents"))[
                    "incidents"
                ]:
                    if "action.approval_requested" in kinds(inc):
                        return dict(inc)
                return None

            inc = await eventually(asked, timeout_s=20, what="the approval request")
            assert deployment_patches(c) == []  # nothing before a person's yes
            approve = urllib.request.Request(  # noqa: S310 - loopback
                doomed.url
                + f"/v1/incidents/{inc['id']}/approvals/{urllib.parse.quote(STEP, safe='')}"
                + "/approve",
                data=json.dumps({"by": "Dana Oncall"}).encode(),
                headers={"Content-Type": "application/json", "Authorization": "Bearer admin-1"},
            )
            # the answer may come (202) before the worker hangs on the PATCH, or never (the
            # replica is killed): it is not waited for
            answer = asyncio.create_task(
                asyncio.to_thread(
                    lambda: urllib.request.urlopen(approve, timeout=10).read()  # noqa: S310
                )
            )

            await _killed_once_patched(c, doomed, "the approved patch reached the API")
            with contextlib.suppress(OSError):
                await answer
        assert c.env()["POSTHOG_FALLBACK"] == "true"  # it was applied
        async with _survivor(c, make_settings, redis_url, redis_prefix) as survivor:
            done = await settled(survivor, "Fallback", "action.applied", timeout_s=30)
            assert len(deployment_patches(c)) == 1  # no second patch
            assert kinds(done).count("action.approved") == 1
            [action] = done["actions"]
            assert action["verdict"] == "applied"
            assert "found in place" in action["reason"]
            assert action["approved_by"] == "Dana Oncall"
