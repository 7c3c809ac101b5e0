"""The Role in deploy/ grants exactly the Kubernetes calls the code makes.

Every call goes through the KubeGateway port (an import-linter contract keeps
kubernetes_asyncio in responder/adapters/kube.py); this test makes each of its calls
against the fake API server and compares what was requested with the Role, both ways.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from responder.adapters.kube import ClusterGateway
from responder.ports import KubeGateway
from tests.support.fake_kube import running_fake_kube
from tests.test_probe_pod_logs import kubeconfig

ROLE = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "role.yaml"
NS = "production"


def granted(rules: list[dict], group: str, resource: str, verb: str, name: str | None) -> bool:
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or name in names:
                return True
    return False


async def test_the_role_grants_exactly_the_calls_the_gateway_makes(tmp_path) -> None:
    rules = yaml.safe_load(ROLE.read_text())["rules"]
    async with running_fake_kube() as kube:
        now = datetime.now(UTC)
        kube.add_deployment(
            NS,
            "posthog-integration",
            containers=[{"name": "app", "image": "x:1", "env": {"A": "1"}}],
            replicas=2,
            labels={"app": "p"},
            selector={"app": "p"},
        )
        kube.add_pod(
            NS, "p-1", {"app": "p"}, started_at=now - timedelta(hours=1), logs=[(now, "ERROR x")]
        )
        kube.set_secret(NS, "posthog-secrets", {"api-key": "k"}, changed_at=now)
        gateway = ClusterGateway(kubeconfig(tmp_path / "kc", kube.url))
        called = {
            "list_pods": await gateway.list_pods(namespace=NS, selector="app=p"),
            "read_log": await gateway.read_log(
                namespace=NS, pod="p-1", container=None, since_s=300, tail_lines=10
            ),
            "get_deployment": await gateway.get_deployment(
                namespace=NS, name="posthog-integration"
            ),
            "patch_deployment": await gateway.patch_deployment(
                namespace=NS,
                name="posthog-integration",
                dry_run=False,
                patch={
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "env": [{"name": "B", "value": "2"}]}
                                ]
                            }
                        }
                    }
                },
            ),
            "get_scale": await gateway.get_scale(namespace=NS, name="posthog-integration"),
            "patch_scale": await gateway.patch_scale(
                namespace=NS, name="posthog-integration", replicas=3, dry_run=True
            ),
            "secret_changed_at": await gateway.secret_changed_at(
                namespace=NS, name="posthog-secrets"
            ),
        }
        await gateway.close()
        # every method of the port was exercised (a new one must be added here, and to the
        # Role if it needs a new verb)
        port_methods = {
            n
            for n, _ in inspect.getmembers(KubeGateway, inspect.isfunction)
            if not n.startswith("_")
        }
        assert set(called) == port_methods

        used: set[tuple[str, str, str]] = set()
        for request in kube.requests:
            target = kube.target_of(request.path)
            assert target is not None, request.path
            verb = target.verb(request.method, request.query)
            call = (target.group, target.rbac_resource, verb)
            assert granted(rules, *call, target.name), f"the Role does not grant {call}"
            used.add(call)
    declared = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert declared == used, f"the Role grants more than is used: {declared - used}"
    assert all(r.get("resourceNames") for r in rules if "secrets" in r["resources"])
