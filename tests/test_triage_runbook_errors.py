"""The runbook's "Error Handling" rows during triage, through the real service: each a
fact, a line in the triage message and, where the solution is a person's, a human called.

| Can't reach status page | Network issue     | Use mobile or VPN    |
| kubectl fails           | Auth expired      | Re-authenticate      |
| Metrics unavailable     | Prometheus down   | Check backup metrics |
| ... fails               | Permission denied | Escalate to admin    |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.fake_http import FakeHealthEndpoint
from tests.support.fake_kube import running_fake_kube
from tests.support.packs import posthog_pack
from tests.support.procs import free_port
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually
from tests.test_probe_pod_logs import kubeconfig

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


async def triaged(svc: Service) -> dict[str, Any]:
    assert (await svc.post_alertmanager(example(UNREACHABLE))).status == 200

    async def done() -> dict[str, Any] | None:
        for listed in await svc.incidents():
            kinds = [e["kind"] for e in listed["timeline"]]
            if "incident.decided" in kinds or "incident.undecided" in kinds:
                resp = await svc.client.get(f"/v1/incidents/{listed['id']}")
                return dict(await resp.json())
        return None

    found = await eventually(done, timeout_s=20, interval_s=0.1, what="triaged")
    assert found is not None
    return found


def event(inc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in inc["timeline"] if e["kind"] == kind)


async def test_unreachable_status_page_denied_logs_and_metrics_down_are_runbook_rows(
    backend_settings, tmp_path: Path
) -> None:
    async with FakeHealthEndpoint() as health, running_fake_kube() as kube:
        # the cluster refuses to list the pods: 403, as RBAC would
        kube.fail("GET", r"/api/v1/namespaces/production/pods", 403, times=None)
        closed = f"http://127.0.0.1:{free_port()}"
        pack = posthog_pack(tmp_path, status_page_url=closed, health_url=health.health_url)
        settings = backend_settings(
            rules=[pack],
            triage=True,
            # the primary and its backup both down
            prometheus_url=f"http://127.0.0.1:{free_port()},http://127.0.0.1:{free_port()}",
            kubeconfig=kubeconfig(tmp_path / "kubeconfig", kube.url),
            action_allowlist=["production/posthog-integration/*"],
            visibility_timeout_s=10,
        )
        async with running_service(settings) as svc:
            inc = await triaged(svc)

    facts = inc["facts"]
    # each row is a fact, beside the probe's error
    assert facts["vendor"]["reachable"] is False
    assert facts["vendor"]["error"].endswith("unreachable")
    assert facts["logs"]["access"] == "permission_denied"
    assert facts["prometheus"]["reachable"] is False
    assert "no Prometheus answered" in facts["prometheus"]["error"]
    # a line each in the triage message
    detail = event(inc, "triage.completed")["detail"]
    assert "runbook: Can't reach status page (network issue): use mobile or vpn" in detail
    assert "runbook: Permission denied (the role lacks a permission): escalate to admin" in detail
    assert "runbook: Metrics unavailable (prometheus down): backup metrics tried" in detail
    # the rows whose solution is a person's call one (metrics down does not: the backups
    # were tried, and the tree is left undecided without them)
    [human] = [e for e in inc["timeline"] if e["kind"] == "incident.needs_human"]
    reason = human["data"]["reason"]
    assert "Can't reach status page" in reason
    assert "escalate to admin" in reason
    assert "Metrics unavailable" not in reason
    assert inc["needs_human"] == reason


async def test_expired_cluster_credentials_call_a_human_to_re_authenticate(
    backend_settings, tmp_path: Path
) -> None:
    async with FakeHealthEndpoint() as health, running_fake_kube() as kube:
        pack = posthog_pack(
            tmp_path, status_page_url=health.url + "/none", health_url=health.health_url
        )
        settings = backend_settings(
            rules=[pack],
            triage=True,
            # a token the cluster no longer takes: 401
            kubeconfig=kubeconfig(tmp_path / "kubeconfig", kube.url, token="expired"),
            action_allowlist=["production/posthog-integration/*"],
            visibility_timeout_s=10,
        )
        async with running_service(settings) as svc:
            inc = await triaged(svc)

    assert inc["facts"]["logs"]["access"] == "auth_failed"
    detail = event(inc, "triage.completed")["detail"]
    assert "runbook: kubectl fails (auth expired): re-authenticate" in detail
    [human] = [e for e in inc["timeline"] if e["kind"] == "incident.needs_human"]
    assert "re-authenticate the responder's cluster credentials" in human["data"]["reason"]
