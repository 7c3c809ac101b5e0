"""The access check: a SelfSubjectAccessReview for each permission the action allowlist
needs, asked of the (fake) API server through the real client, what is not granted said
by ``check_access`` (what ``responder check`` will call) and, at start-up, in the log,
the metric and GET /v1/automation."""

from __future__ import annotations

from pathlib import Path

from responder.adapters.kube import ClusterGateway
from responder.kube_access import (
    Access,
    SecretUse,
    check_access,
    required_access,
)
from tests.support.fake_kube import running_fake_kube
from tests.support.service import running_service
from tests.support.waiting import eventually
from tests.test_probe_pod_logs import kubeconfig

NS = "production"
ALLOWLIST = [f"{NS}/posthog-integration/*"]
SECRETS = [SecretUse("posthog-secrets")]


async def test_check_access_says_which_permissions_are_not_granted(tmp_path: Path) -> None:
    async with running_fake_kube() as kube:
        kube.access_reviews.deny(namespace=NS, resource="deployments", verb="patch")
        kube.access_reviews.deny(namespace=NS, resource="pods/log")
        gateway = ClusterGateway(kubeconfig(tmp_path / "kc", kube.url))
        required = required_access(ALLOWLIST, SECRETS)
        findings = await check_access(gateway, required)
        await gateway.close()
        asked = kube.access_reviews.asked

    assert [str(f.access) for f in findings] == [
        f"get pods/log in {NS}",
        f"patch deployments.apps posthog-integration in {NS}",
    ]
    assert all(f.problem == f"not allowed: {f.access}" for f in findings)
    # one review per permission, each naming the object where the Role names it
    assert len(asked) == len(required.accesses)
    assert {
        "namespace": NS,
        "group": "",
        "resource": "secrets",
        "verb": "get",
        "name": "posthog-secrets",
    } in asked
    assert {
        "namespace": NS,
        "group": "",
        "resource": "pods",
        "subresource": "log",
        "verb": "get",
    } in (asked)
    assert {
        "namespace": NS,
        "group": "apps",
        "resource": "deployments",
        "subresource": "scale",
        "verb": "patch",
        "name": "posthog-integration",
    } in asked


async def test_everything_granted_is_no_finding_and_no_cluster_is_one(tmp_path: Path) -> None:
    required = required_access(ALLOWLIST, SECRETS)
    async with running_fake_kube() as kube:
        gateway = ClusterGateway(kubeconfig(tmp_path / "kc", kube.url))
        assert await check_access(gateway, required) == []
        await gateway.close()
        # credentials refused: every review would be, so it is said once
        stranger = ClusterGateway(kubeconfig(tmp_path / "kc2", kube.url, token="wrong"))
        refused = await check_access(stranger, required)
        await stranger.close()
    assert [f.problem for f in refused] == [
        f"could not ask the API server ({len(required.accesses)} unchecked): "
        "review access (SelfSubjectAccessReview): 401 unauthorized (Unauthorized)"
    ]
    # the API server gone (its port closed): said once too
    gone = ClusterGateway(kubeconfig(tmp_path / "kc", kube.url))
    unreachable = await check_access(gone, required)
    await gone.close()
    assert len(unreachable) == 1
    assert "API server unreachable" in unreachable[0].problem
    # no cluster configured: said once, not once per permission
    nowhere = await check_access(ClusterGateway(None), required)
    assert len(nowhere) == 1
    assert nowhere[0].access is None
    assert "could not ask the API server" in nowhere[0].problem
    assert "no Kubernetes cluster configured" in nowhere[0].problem


def test_an_allowlist_no_role_can_name_is_a_finding_not_a_grant() -> None:
    required = required_access(["*/web/set_env", "prod/*/scale", "prod/web/nothing"], [])
    assert required.accesses == ()
    assert len(required.problems) == 3
    # page_human touches no cluster object: only the pod-log probe's reads
    assert required_access(["prod/web/page_human"], []).accesses == (
        Access("prod", "", "pods", "list"),
        Access("prod", "", "pods/log", "get"),
    )


async def test_start_up_check_is_logged_counted_and_served(
    tmp_path: Path, make_settings, capsys
) -> None:
    async with running_fake_kube() as kube:
        kube.access_reviews.deny(namespace=NS, resource="secrets", verb="get")
        settings = make_settings(
            kubeconfig=kubeconfig(tmp_path / "kc", kube.url), action_allowlist=ALLOWLIST
        )
        async with running_service(settings) as svc:

            async def checked() -> dict | None:
                doc = await (await svc.client.get("/v1/automation")).json()
                return doc["kube_access"] if doc["kube_access"]["checked_at"] else None

            access = await eventually(checked, what="the start-up access check")
            metrics = await (await svc.client.get("/metrics")).text()
    # the shipped pack's secret rotation reads posthog-secrets: the one thing not granted
    assert access["missing"] == [
        {
            "problem": f"not allowed: get secrets posthog-secrets in {NS}",
            "access": f"get secrets posthog-secrets in {NS}",
        }
    ]
    assert access["checked"] == len(required_access(ALLOWLIST, SECRETS).accesses)
    assert "responder_kube_access_missing 1.0" in metrics
    logged = capsys.readouterr()
    assert "kubernetes access missing" in logged.out + logged.err
    assert f"get secrets posthog-secrets in {NS}" in logged.out + logged.err
