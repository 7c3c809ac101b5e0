"""Every action of the catalog against a fake Kubernetes API, driven by the real client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.mitigation import DEPLOY, NS, alert, cluster, kinds, responder, settled


def first_container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def only_patch(c) -> dict:
    [patch] = c.patches()
    return patch


async def test_set_env_merges_by_name_and_records_before_and_after(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.applied")
        patch = only_patch(c)
        assert patch.content_type == "application/strategic-merge-patch+json"
        assert patch.body == {
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
        assert patch.query.get("fieldManager") == "responder"
        # kubectl set env semantics: the other variables stay
        assert c.env() == {
            "POSTHOG_HOST": "https://us.i.posthog.com",
            "LOG_LEVEL": "info",
            "RATE_LIMIT_MODE": "queue",
        }
        [action] = inc["actions"]
        assert (action["action"], action["target"], action["verdict"]) == (
            "set_env",
            "production/posthog-integration",
            "applied",
        )
        assert action["before"] == {"containers": {"app": {"RATE_LIMIT_MODE": None}}}
        assert action["after"] == {"containers": {"app": {"RATE_LIMIT_MODE": "queue"}}}
        assert [v["guard"] for v in action["verdicts"]] == [
            "paused",
            "acknowledged",
            "allowlist",
            "dry_run",
            "cooldown",
            "budget",
            "lock",
        ]
        assert all(v["ok"] for v in action["verdicts"])
        assert "action.applied" in kinds(inc)
        text = await (await svc.client.get("/metrics")).text()
        assert 'responder_actions_total{action="set_env",verdict="applied"} 1.0' in text


async def test_unset_env_removes_one_variable(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("UnsetEnv"))
        inc = await settled(svc, "UnsetEnv", "action.applied")
        env = only_patch(c).body["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "POSTHOG_HOST", "$patch": "delete"}]
        assert c.env() == {"LOG_LEVEL": "info"}
        assert inc["actions"][0]["before"]["containers"]["app"] == {
            "POSTHOG_HOST": "https://us.i.posthog.com"
        }
        assert inc["actions"][0]["after"]["containers"]["app"] == {"POSTHOG_HOST": None}


async def test_rollout_restart_sets_restarted_at(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("Restart"))
        inc = await settled(svc, "Restart", "action.applied")
        annotations = only_patch(c).body["spec"]["template"]["metadata"]["annotations"]
        stamp = annotations["kubectl.kubernetes.io/restartedAt"]
        assert abs(
            datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(UTC)
        ) < timedelta(minutes=1)
        assert inc["actions"][0]["after"] == {"restartedAt": stamp}
        assert inc["actions"][0]["reversible"] is False


async def test_restart_refused_on_a_paused_deployment(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        c.kube.edit_deployment(NS, DEPLOY, lambda d: d["spec"].update(paused=True))
        await svc.post_alertmanager(alert("Restart"))
        inc = await settled(svc, "Restart", "action.failed")
        assert c.patches() == []
        assert "paused" in inc["actions"][0]["reason"]
        assert inc["needs_human"]


async def test_scale_through_the_subresource_and_back_on_resolve(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("Scale"))
        inc = await settled(svc, "Scale", "action.applied")
        patch = only_patch(c)
        assert patch.path.endswith("/deployments/posthog-integration/scale")
        assert patch.body == {"spec": {"replicas": 4}}
        assert c.kube.scale(NS, DEPLOY)["spec"]["replicas"] == 4
        assert (inc["actions"][0]["before"], inc["actions"][0]["after"]) == (
            {"replicas": 2},
            {"replicas": 4},
        )
        await svc.post_alertmanager(alert("Scale", status="resolved"))
        inc = await settled(svc, "Scale", "action.reverted")
        assert c.kube.scale(NS, DEPLOY)["spec"]["replicas"] == 2
        assert inc["actions"][0]["reverted"] is True


async def test_revert_on_resolve_restores_or_removes_the_earlier_value(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("SetEnv"))
        await settled(svc, "SetEnv", "action.applied")
        assert c.env()["RATE_LIMIT_MODE"] == "queue"
        await svc.post_alertmanager(alert("SetEnv", status="resolved"))
        inc = await settled(svc, "SetEnv", "action.reverted")
        revert = c.patches()[-1].body["spec"]["template"]["spec"]["containers"][0]["env"]
        assert revert == [{"name": "RATE_LIMIT_MODE", "$patch": "delete"}]  # it was not set
        assert "RATE_LIMIT_MODE" not in c.env()
        assert c.env()["POSTHOG_HOST"] == "https://us.i.posthog.com"
        [action] = inc["actions"]
        assert action["reverted"] is True
        reverted = next(e for e in inc["timeline"] if e["kind"] == "action.reverted")
        assert (
            reverted["data"]["revert_patch"]["spec"]["template"]["spec"]["containers"][0]["env"]
            == revert
        )


async def test_revert_restores_an_earlier_value_that_was_set(backend_settings, tmp_path):
    async with cluster(tmp_path) as c:
        c.kube.edit_deployment(
            NS,
            DEPLOY,
            lambda d: first_container(d)["env"].append(
                {"name": "RATE_LIMIT_MODE", "value": "drop"}
            ),
        )
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            await settled(svc, "SetEnv", "action.applied")
            assert c.env()["RATE_LIMIT_MODE"] == "queue"
            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            await settled(svc, "SetEnv", "action.reverted")
            assert c.env()["RATE_LIMIT_MODE"] == "drop"


async def test_a_value_already_in_place_is_not_sent_again(backend_settings, tmp_path):
    async with cluster(tmp_path) as c:
        c.kube.edit_deployment(
            NS,
            DEPLOY,
            lambda d: first_container(d)["env"].append(
                {"name": "RATE_LIMIT_MODE", "value": "queue"}
            ),
        )
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await settled(svc, "SetEnv", "action.in_place")
            assert c.patches() == []
            assert inc["actions"][0]["verdict"] == "in_place"


@pytest.mark.parametrize(("changed_hours_ago", "restarted"), [(0.5, True), (72, False)])
async def test_restart_if_secret_rotated(backend_settings, tmp_path, changed_hours_ago, restarted):
    async with cluster(tmp_path) as c:
        c.kube.set_secret(
            NS,
            "posthog-secrets",
            {"api-key": "phc_new"},
            changed_at=datetime.now(UTC) - timedelta(hours=changed_hours_ago),
        )
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("Rotated"))
            kind = "action.applied" if restarted else "action.skipped"
            inc = await settled(svc, "Rotated", kind)
            [action] = inc["actions"]
            if restarted:
                patch = only_patch(c)
                assert "kubectl.kubernetes.io/restartedAt" in json.dumps(patch.body)
                assert "pods hold the old key" in action["reason"] or action["verdict"] == "applied"
                assert inc["needs_human"] is None
            else:
                assert c.patches() == []
                assert action["verdict"] == "skipped"
                assert "before the oldest pod's container app started" in action["reason"]
                assert "a human must check the key" in inc["needs_human"]
                assert "incident.needs_human" in kinds(inc)


async def test_page_human_marks_the_incident(backend_settings, tmp_path):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        await svc.post_alertmanager(alert("Page"))
        inc = await settled(svc, "Page", "incident.needs_human")
        assert inc["needs_human"] == "Our infrastructure issue: check pods, memory, network."
        assert inc["actions"][0]["verdict"] == "needs_human"
        assert c.patches() == []


@pytest.mark.parametrize(
    ("status", "phrase"),
    [(404, "404 not found"), (403, "403 forbidden"), (409, "409 conflict"), (500, "500 error")],
)
async def test_cluster_errors_fail_the_action_and_call_a_human(
    backend_settings, tmp_path, status, phrase
):
    async with cluster(tmp_path) as c, responder(c, backend_settings) as svc:
        c.kube.fail(
            "PATCH", r"/apis/apps/v1/namespaces/production/deployments/.*", status, times=None
        )
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.failed")
        [action] = inc["actions"]
        assert action["verdict"] == "failed"
        assert phrase in action["reason"]
        assert phrase in inc["needs_human"]


@pytest.mark.parametrize(
    ("status", "next_step"),
    [(403, "escalate to a cluster admin"), (401, "re-authenticate")],
)
async def test_a_secret_the_responder_may_not_read_is_escalated_as_the_runbook_says(
    backend_settings, tmp_path, status, next_step
):
    """The runbook's error-handling rows: "Secret rotation fails / permission denied:
    escalate to admin", "kubectl fails / auth expired: re-authenticate"."""
    async with cluster(tmp_path) as c:
        c.kube.set_secret(NS, "posthog-secrets", {"api-key": "phc_new"})
        c.kube.fail("GET", r"/api/v1/namespaces/production/secrets/.*", status, times=None)
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("Rotated"))
            inc = await settled(svc, "Rotated", "action.failed")
            assert next_step in inc["needs_human"]
            assert c.patches() == []
