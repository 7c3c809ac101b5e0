"""The guards: each one's refusal, recorded with its reason, and nothing sent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from responder.mitigate.guards import GuardInput, allowed, check
from responder.ports import Pause
from tests.support.mitigation import alert, cluster, kinds, responder, settled

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def guard_input(**kw: object) -> GuardInput:
    values: dict[str, object] = dict(
        action="set_env",
        namespace="production",
        deployment="posthog-integration",
        paused=None,
        acked_by=None,
        allowlist=("production/posthog-integration/*",),
        dry_run=False,
        dry_run_why="",
        cooldown_until=None,
        budget_used=0,
        budget_limit=5,
        budget_window_s=3600,
        now=NOW,
    )
    values.update(kw)
    return GuardInput(**values)  # type: ignore[arg-type]


def test_all_guards_pass_in_order() -> None:
    verdicts = check(guard_input())
    assert [v.guard for v in verdicts] == [
        "paused",
        "acknowledged",
        "allowlist",
        "dry_run",
        "cooldown",
        "budget",
    ]
    assert all(v.ok for v in verdicts)


def test_the_first_refusal_decides_and_says_why() -> None:
    cases = {
        "paused": guard_input(paused=Pause(by="dana", reason="deploy freeze", at=NOW)),
        "acknowledged": guard_input(acked_by="Dana Oncall"),
        "allowlist": guard_input(allowlist=("staging/*/*",)),
        "dry_run": guard_input(dry_run=True, dry_run_why="the pack says dry_run"),
        "cooldown": guard_input(cooldown_until=NOW + timedelta(minutes=5)),
        "budget": guard_input(budget_used=5),
    }
    for guard, given in cases.items():
        verdicts = check(given)
        assert verdicts[-1].guard == guard
        assert not verdicts[-1].ok
        assert all(v.ok for v in verdicts[:-1])
    assert "deploy freeze" in check(cases["paused"])[-1].reason
    assert "Dana Oncall acknowledged" in check(cases["acknowledged"])[-1].reason
    assert "RESPONDER_ACTION_ALLOWLIST" in check(cases["allowlist"])[-1].reason
    assert "budget is spent" in check(cases["budget"])[-1].reason


def test_a_cooldown_in_the_past_does_not_count() -> None:
    assert all(v.ok for v in check(guard_input(cooldown_until=NOW - timedelta(seconds=1))))


def test_allowlist_patterns() -> None:
    assert allowed(
        ("production/posthog-integration/set_env",), "production", "posthog-integration", "set_env"
    )
    assert not allowed(
        ("production/posthog-integration/set_env",), "production", "posthog-integration", "scale"
    )
    assert allowed(("production/*/*",), "production", "anything", "scale")
    assert not allowed(("production/*/*",), "staging", "anything", "scale")
    assert not allowed((), "production", "posthog-integration", "set_env")


async def test_dry_run_records_the_exact_patch_and_sends_nothing(backend_settings, tmp_path):
    async with cluster(tmp_path, dry_run=True) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.dry_run")
        assert c.patches() == []
        [action] = inc["actions"]
        assert (action["verdict"], action["dry_run"]) == ("dry_run", True)
        assert action["patch"] == {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "env": [{"name": "RATE_LIMIT_MODE", "value": "queue"}]}
                        ]
                    }
                }
            }
        }
        assert action["before"] == {"containers": {"app": {"RATE_LIMIT_MODE": None}}}
        assert "the rule or its pack says dry_run" in action["reason"]


async def test_forced_dry_run_wins_over_a_live_pack(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings, dry_run=True) as svc:
        await svc.post_alertmanager(alert("Scale"))
        inc = await settled(svc, "Scale", "action.dry_run")
        assert c.patches() == []
        assert inc["actions"][0]["patch"] == {"spec": {"replicas": 4}}
        assert inc["actions"][0]["before"] == {"replicas": 2}


async def test_a_target_off_the_allowlist_is_refused(backend_settings, tmp_path):
    async with (
        cluster(tmp_path) as c,
        responder(c, backend_settings, action_allowlist="production/other/*") as svc,
    ):
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.refused")
        assert c.patches() == []
        assert inc["actions"][0]["verdicts"][-1]["guard"] == "allowlist"


async def test_pause_and_resume_through_the_admin_api(backend_settings, tmp_path):
    admin = {"Authorization": "Bearer adm-1"}
    async with cluster(tmp_path) as c, responder(c, backend_settings, admin_token="adm-1") as svc:
        resp = await svc.client.post(
            "/v1/admin/pause", headers=admin, json={"by": "dana", "reason": "deploy freeze"}
        )
        assert resp.status == 200
        assert (await resp.json())["paused"] is True
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.refused")
        assert "deploy freeze" in inc["actions"][0]["reason"]
        assert c.patches() == []
        state = await (await svc.client.get("/v1/automation")).json()
        assert (state["paused"], state["paused_by"]) == (True, "dana")

        assert (await svc.client.post("/v1/admin/resume", headers=admin, json={})).status == 200
        await svc.post_alertmanager(alert("Restart"))
        await settled(svc, "Restart", "action.applied")
        assert len(c.patches()) == 1


async def test_after_an_ack_the_automation_only_reports(backend_settings, tmp_path):
    admin = {"Authorization": "Bearer adm-1"}
    async with (
        cluster(tmp_path) as c,
        responder(c, backend_settings, admin_token="adm-1", triage_budget_s=2) as svc,
    ):
        c.health.slow(0.8)  # triage takes a while: the on-call acknowledges meanwhile
        await svc.post_alertmanager(alert("SetEnv"))

        async def opened() -> str | None:
            incidents = await svc.incidents()
            return incidents[0]["id"] if incidents else None

        incident_id = None
        for _ in range(100):
            incident_id = await opened()
            if incident_id:
                break
            await asyncio.sleep(0.02)
        assert incident_id is not None
        resp = await svc.client.post(
            f"/v1/incidents/{incident_id}/ack", headers=admin, json={"by": "Dana Oncall"}
        )
        assert resp.status == 200
        assert (await resp.json())["status"] == "acked"
        inc = await settled(svc, "SetEnv", "action.refused")
        assert c.patches() == []
        assert "Dana Oncall acknowledged" in inc["actions"][0]["reason"]
        assert kinds(inc).index("incident.acknowledged") < kinds(inc).index("action.refused")


async def test_cooldown_refuses_the_same_action_on_the_same_target(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("Restart", instance="a"))
        await settled(svc, "Restart", "action.applied")
        await svc.post_alertmanager(alert("Restart", status="resolved", instance="a"))
        await svc.idle()
        await svc.post_alertmanager(alert("Restart", instance="b"))  # a new incident

        async def second() -> dict | None:
            for inc in await svc.incidents():
                if inc["status"] == "open" and "action.refused" in kinds(inc):
                    return inc
            return None

        from tests.support.waiting import eventually

        inc = await eventually(second, what="second restart refused")
        assert inc["actions"][0]["verdicts"][-1]["guard"] == "cooldown"
        assert len(c.patches()) == 1


async def test_a_spent_budget_refuses_and_calls_a_human(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings, action_budget=1) as svc:
        await svc.post_alertmanager(alert("Restart"))
        await settled(svc, "Restart", "action.applied")
        await svc.post_alertmanager(alert("Scale"))
        inc = await settled(svc, "Scale", "action.refused")
        assert inc["actions"][0]["verdicts"][-1]["guard"] == "budget"
        assert "budget is spent" in inc["needs_human"]
        assert len(c.patches()) == 1
        state = await (await svc.client.get("/v1/automation")).json()
        assert (state["budget_used"], state["budget"]) == (1, 1)


async def test_after_an_ack_no_revert_is_made_but_its_patch_is_given(backend_settings, tmp_path):
    admin = {"Authorization": "Bearer adm-1"}
    async with cluster(tmp_path) as c, responder(c, backend_settings, admin_token="adm-1") as svc:
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.applied")
        await svc.client.post(
            f"/v1/incidents/{inc['id']}/ack", headers=admin, json={"by": "Dana Oncall"}
        )
        await svc.post_alertmanager(alert("SetEnv", status="resolved"))
        inc = await settled(svc, "SetEnv", "action.revert_refused")
        assert c.env()["RATE_LIMIT_MODE"] == "queue"  # left as the human has it
        event = next(e for e in inc["timeline"] if e["kind"] == "action.revert_refused")
        assert event["data"]["guard"] == "acknowledged"
        assert event["data"]["revert_patch"]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ] == [{"name": "RATE_LIMIT_MODE", "$patch": "delete"}]
        assert "by hand" in event["detail"]
        assert len(c.patches()) == 1
