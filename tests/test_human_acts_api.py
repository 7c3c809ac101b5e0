"""What Slack's buttons do, through the admin API and the CLI, for teams without buttons
(incoming-webhook mode) and for scripts: pause and resume one incident's automation,
approve or reject a step waiting for approval. Queued like a press and applied by a worker;
the answer waits for it (200), or says it is queued (202)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from responder.app import Overrides
from responder.settings import Settings
from tests.support.approvals import waiting_approval
from tests.support.clock import ShiftableClock
from tests.support.procs import env_without_responder, serve_process
from tests.support.service import EXAMPLES, Service, example, running_service, started_now

LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"
ADMIN = {"Authorization": "Bearer admin-token"}
STEP = "rate_limit#0:rollout_restart"  # as the mitigation stage names steps
QUOTED = quote(STEP, safe="")


class SteppingClock(ShiftableClock):
    """Its waits move it forward at once: a wait for a worker that never comes is counted,
    not sat through. Its monotonic time moves only by those waits (real time passing on
    a loaded machine would end the wait early, after fewer steps)."""

    def __init__(self) -> None:
        super().__init__()
        self._started = time.monotonic()

    def monotonic(self) -> float:
        return self._started + self.offset_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


@pytest.fixture
def admin_settings(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> Callable[..., Settings]:
    """Settings on this test's Redis keys, with the admin API's token: the services a test
    starts with them share its incidents."""

    def make(**values: Any) -> Settings:
        return make_settings(
            redis_url=redis_url, redis_prefix=redis_prefix, admin_token="admin-token", **values
        )

    return make


async def open_incident(svc: Service) -> str:
    resp = await svc.post_alertmanager(started_now(example(LIMITED))[0])
    assert resp.status == 200, await resp.text()
    await svc.idle()
    [inc] = await svc.incidents()
    return str(inc["id"])


async def act(svc: Service, incident_id: str, path: str, by: str = "Jane Doe") -> Any:
    return await svc.client.post(
        f"/v1/incidents/{incident_id}/{path}", json={"by": by}, headers=ADMIN
    )


async def test_pause_and_resume_one_incident_through_the_api(
    admin_settings: Callable[..., Settings],
) -> None:
    async with running_service(admin_settings()) as svc:
        inc_id = await open_incident(svc)
        paused = await act(svc, inc_id, "pause")
        assert paused.status == 200, await paused.text()
        doc = await paused.json()
        assert doc["paused_by"] == "Jane Doe"
        [event] = [e for e in doc["timeline"] if e["kind"] == "automation.paused"]
        assert event["data"]["via"] == "api"
        assert "through the API" in event["detail"]
        again = await act(svc, inc_id, "pause", by="John")
        assert again.status == 200
        assert (await again.json())["paused_by"] == "Jane Doe"  # the first one stands
        resumed = await act(svc, inc_id, "resume")
        assert resumed.status == 200
        doc = await resumed.json()
        assert doc["paused_by"] is None
        assert kinds(doc).count("automation.paused") == 1
        assert kinds(doc).count("automation.resumed") == 1
        # the global automation switch is another thing, untouched
        automation = await (await svc.client.get("/v1/automation", headers=ADMIN)).json()
        assert automation["paused"] is False


async def test_approve_and_reject_a_waiting_step_and_409_when_none_waits(
    admin_settings: Callable[..., Settings],
) -> None:
    async with running_service(admin_settings()) as svc:
        inc_id = await open_incident(svc)
        nothing = await act(svc, inc_id, f"approvals/{QUOTED}/approve")
        assert nothing.status == 409
        assert "waits for no approval" in (await nothing.json())["detail"]
        await waiting_approval(svc, inc_id, STEP)
        await waiting_approval(svc, inc_id, "scale-up")
        approved = await act(svc, inc_id, f"approvals/{QUOTED}/approve")
        assert approved.status == 200, await approved.text()
        [approval] = [a for a in (await approved.json())["approvals"] if a["step"] == STEP]
        assert (approval["state"], approval["decided_by"], approval["via"]) == (
            "approved",
            "Jane Doe",
            "api",
        )
        late = await act(svc, inc_id, f"approvals/{QUOTED}/reject", by="John")
        assert late.status == 409
        assert "already approved by Jane Doe at " in (await late.json())["detail"]
        same = await act(svc, inc_id, f"approvals/{QUOTED}/approve", by="John")
        assert same.status == 200  # what was asked is what stands
        rejected = await act(svc, inc_id, "approvals/scale-up/reject")
        assert rejected.status == 200
        doc = await rejected.json()
        assert kinds(doc).count("action.approved") == 1
        assert kinds(doc).count("action.rejected") == 1

        missing = await act(svc, "inc-000000000000000000", "pause")
        assert missing.status == 404
        not_an_id = await act(svc, "inc-nope", "resume")
        assert not_an_id.status == 404
        no_token = await svc.client.post(f"/v1/incidents/{inc_id}/pause", json={"by": "x"})
        assert no_token.status == 401
        no_by = await svc.client.post(f"/v1/incidents/{inc_id}/pause", json={}, headers=ADMIN)
        assert no_by.status == 400


async def test_an_intake_only_replica_answers_202_and_a_worker_applies_the_act_later(
    admin_settings: Callable[..., Settings],
) -> None:
    async with running_service(admin_settings()) as worker:
        inc_id = await open_incident(worker)
    clock = SteppingClock()
    async with running_service(admin_settings(workers=0), Overrides(clock=clock)) as intake:
        queued = await act(intake, inc_id, "pause")
        assert queued.status == 202, await queued.text()
        assert (await queued.json())["paused_by"] is None
        assert round(sum(clock.sleeps), 6) >= 5.0  # it waited its 5 s (its clock) for a worker
    async with running_service(admin_settings()) as worker:
        await worker.idle()
        [inc] = await worker.incidents()
        assert inc["paused_by"] == "Jane Doe"


async def test_a_resolved_incident_takes_no_act(
    admin_settings: Callable[..., Settings],
) -> None:
    async with running_service(admin_settings()) as svc:
        firing = started_now(example(LIMITED))[0]
        await svc.post_alertmanager(firing)
        resolved = json.loads(json.dumps(firing))
        resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
        resolved["alerts"][0]["endsAt"] = resolved["alerts"][0]["startsAt"]
        await svc.post_alertmanager(resolved)
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["status"] == "resolved"
        resp = await act(svc, inc["id"], "pause")
        assert resp.status == 409
        assert "resolved" in (await resp.json())["detail"]


def responder(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responder", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env_without_responder(), **(env or {})},
    )


def test_the_cli_pauses_resumes_and_approves_one_incident() -> None:
    env = {"RESPONDER_ADMIN_TOKEN": "cli-admin-token"}
    with serve_process(env) as svc:
        replayed = responder("replay", "--url", svc.url, str(EXAMPLES / LIMITED))
        assert replayed.returncode == 0, replayed.stderr
        deadline = time.monotonic() + 10
        while True:
            listed = json.loads(responder("incidents", "list", "--url", svc.url, "--json").stdout)
            if listed["incidents"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        inc_id = listed["incidents"][0]["id"]
        paused = responder("incidents", "pause", inc_id, "--by", "Jane", "--url", svc.url, env=env)
        assert paused.returncode == 0, paused.stderr
        assert inc_id in paused.stdout
        assert "automation paused" in paused.stdout
        resumed = responder(
            "incidents", "resume", inc_id, "--by", "Jane", "--url", svc.url, env=env
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "automation resumed" in resumed.stdout
        refused = responder(
            "incidents", "approve", inc_id, STEP, "--by", "Jane", "--url", svc.url, env=env
        )
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1
        assert refused.stderr.startswith("error: 409 from ")
        assert "waits for no approval" in refused.stderr
        no_token = responder("incidents", "reject", inc_id, STEP, "--by", "Jane", "--url", svc.url)
        assert no_token.returncode == 2
        assert no_token.stderr.startswith("error: the admin API needs a token")
