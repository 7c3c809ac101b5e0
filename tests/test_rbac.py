"""The RBAC in deploy/ grants exactly the Kubernetes calls the code makes, and nothing
beyond the action allowlist it is rendered from (deploy/rbac.py, make manifests).

Every call goes through the KubeGateway port (an import-linter contract keeps
kubernetes_asyncio in responder/adapters/kube.py); the first test makes each of its calls
against the fake API server and compares what was requested with the Role, both ways.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.rbac import allowlist_of, render
from responder.adapters.kube import ClusterGateway
from responder.domain.plans import ActionSpec
from responder.kube_access import ACTION_CALLS, SecretUse
from responder.ports import KubeGateway
from tests.support.fake_kube import running_fake_kube
from tests.support.mitigation import alert as mitigation_alert
from tests.support.mitigation import cluster, responder, settled
from tests.test_probe_pod_logs import kubeconfig

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
ROLE = KUBE / "role.yaml"
NS = "production"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def granted(rules: list[dict], group: str, resource: str, verb: str, name: str | None) -> bool:
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or name in names:
                return True
    return False


async def test_the_role_grants_exactly_the_calls_the_gateway_makes(tmp_path) -> None:
    (rules,) = [r["rules"] for r in documents(ROLE) if r["metadata"]["namespace"] == NS]
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


def test_the_shipped_rbac_is_rendered_from_the_allowlist() -> None:
    """role.yaml and rolebinding.yaml are what make manifests renders from configmap.yaml's
    RESPONDER_ACTION_ALLOWLIST (no hand edit drifts away from it)."""
    check = subprocess.run(
        [sys.executable, "deploy/rbac.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


# What each action type may touch, written out here independently of the table the
# renderer reads (responder/kube_access.py): (group, resource, verb, named object).
MAY: dict[str, set[tuple[str, str, str, str | None]]] = {
    "set_env": {("apps", "deployments", v, "deployment") for v in ("get", "patch")},
    "unset_env": {("apps", "deployments", v, "deployment") for v in ("get", "patch")},
    "rollout_restart": {("apps", "deployments", v, "deployment") for v in ("get", "patch")},
    "restart_if_secret_rotated": {
        ("apps", "deployments", "get", "deployment"),
        ("apps", "deployments", "patch", "deployment"),
        ("", "pods", "list", None),
        ("", "secrets", "get", "secret"),
    },
    "scale": {
        ("apps", "deployments", "get", "deployment"),
        ("apps", "deployments/scale", "get", "deployment"),
        ("apps", "deployments/scale", "patch", "deployment"),
    },
    "page_human": set(),
}
PROBES = {("", "pods", "list", None), ("", "pods/log", "get", None)}


def beyond(
    roles: list[dict[str, Any]], allowlist: list[str], secrets: set[str]
) -> list[tuple[str, ...]]:
    """Every grant of ``roles`` no allowlist entry (or the pod-log probe in its namespace)
    accounts for: empty when the RBAC grants nothing beyond the allowlist."""
    entries = [e.split("/") for e in allowlist]
    extra: list[tuple[str, ...]] = []
    for role in roles:
        ns = role["metadata"]["namespace"]
        for rule in role["rules"]:
            names = rule.get("resourceNames") or [None]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in names:
                            if not any(
                                _accounts(e, ns, (group, resource, verb, name), secrets)
                                for e in entries
                            ):
                                extra.append((ns, group, resource, verb, str(name)))
    return extra


def _accounts(
    entry: list[str], ns: str, grant: tuple[str, str, str, str | None], secrets: set[str]
) -> bool:
    namespace, deployment, action = entry
    if namespace != ns:
        return False
    group, resource, verb, name = grant
    needs = set(PROBES)
    for kind, calls in MAY.items():
        if action in ("*", kind):
            needs |= calls
    for g, r, v, named in needs:
        if (g, r, v) != (group, resource, verb):
            continue
        if named is None and name is None:
            return True
        if named == "deployment" and name == deployment:
            return True
        if named == "secret" and name in secrets:
            return True
    return False


def test_the_shipped_rbac_grants_nothing_beyond_the_allowlist() -> None:
    allowlist = allowlist_of(KUBE / "configmap.yaml")
    roles = documents(ROLE)
    assert {r["kind"] for r in roles} == {"Role"}
    assert beyond(roles, allowlist, {"posthog-secrets"}) == []
    # every allowlisted namespace has its Role, bound to responder's ServiceAccount
    account = yaml.safe_load((KUBE / "serviceaccount.yaml").read_text())["metadata"]
    bindings = documents(KUBE / "rolebinding.yaml")
    namespaces = {e.split("/")[0] for e in allowlist}
    assert {r["metadata"]["namespace"] for r in roles} == namespaces
    assert {b["metadata"]["namespace"] for b in bindings} == namespaces
    for binding in bindings:
        assert binding["roleRef"]["name"] == "responder"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    # the Deployments and the Secret are granted by name, never all of a kind
    for role in roles:
        for rule in role["rules"]:
            if set(rule["resources"]) & {"deployments", "deployments/scale", "secrets"}:
                assert rule.get("resourceNames"), rule


def test_an_allowlist_renders_a_role_per_namespace_with_only_what_its_actions_need() -> None:
    allowlist = ["staging/api/scale", "production/web/set_env", "production/worker/page_human"]
    role_text, binding_text = render(
        allowlist, [SecretUse("web-creds"), SecretUse("db", "other")], ("responder", "ops")
    )
    roles = [d for d in yaml.safe_load_all(role_text) if d]
    assert beyond(roles, allowlist, {"web-creds"}) == []
    by_ns = {r["metadata"]["namespace"]: r["rules"] for r in roles}
    pods = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    assert by_ns == {
        "production": [
            *pods,
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "verbs": ["get", "patch"],
                "resourceNames": ["web"],
            },
        ],
        "staging": [
            *pods,
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "verbs": ["get"],
                "resourceNames": ["api"],
            },
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "verbs": ["get", "patch"],
                "resourceNames": ["api"],
            },
        ],
    }
    bindings = [d for d in yaml.safe_load_all(binding_text) if d]
    assert [(b["metadata"]["namespace"], b["subjects"]) for b in bindings] == [
        (ns, [{"kind": "ServiceAccount", "name": "responder", "namespace": "ops"}])
        for ns in ("production", "staging")
    ]
    # secret rotation in a namespace gets get on the packs' Secrets there, by name only
    rotation = [
        d
        for d in yaml.safe_load_all(
            render(
                ["other/db-proxy/restart_if_secret_rotated"],
                [SecretUse("web-creds"), SecretUse("db", "other"), SecretUse("x", "elsewhere")],
                ("responder", "ops"),
            )[0]
        )
        if d
    ]
    secret_rules = [r for r in rotation[0]["rules"] if r["resources"] == ["secrets"]]
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["db", "web-creds"],
        }
    ]


@pytest.mark.parametrize(
    "entry", ["*/web/set_env", "production/*/set_env", "production/web/nothing", "production/web"]
)
def test_an_allowlist_no_role_can_grant_exactly_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(entry))):
        render([entry], [], ("responder", "ops"))


def test_every_action_type_has_its_calls_in_the_one_table() -> None:
    (union,) = typing.get_args(ActionSpec)[:1]
    types = {
        typing.get_args(cls.model_fields["type"].annotation)[0] for cls in typing.get_args(union)
    }
    assert set(ACTION_CALLS) == types
    assert {
        k: {(c.group, c.resource, c.verb, c.named_by) for c in v} for k, v in ACTION_CALLS.items()
    } == MAY


@pytest.mark.parametrize(
    ("alert_name", "action", "revert"),
    [
        ("SetEnv", "set_env", True),
        ("UnsetEnv", "unset_env", False),
        ("Restart", "rollout_restart", False),
        ("Scale", "scale", True),
        ("Rotated", "restart_if_secret_rotated", False),
    ],
)
async def test_the_role_rendered_for_one_action_is_what_the_service_uses_for_it(
    make_settings, tmp_path, alert_name: str, action: str, revert: bool
) -> None:
    """Through the service on the fake cluster: an allowlist of one action type, its
    Role rendered, the action applied (and undone on resolve): every call the service made
    is granted by that Role, and the Role grants no call it did not make (beyond the
    pod-log probe's reads of the namespace), and the start-up check finds it all granted."""
    entry = f"{NS}/posthog-integration/{action}"
    role_text, _ = render([entry], [SecretUse("posthog-secrets")], ("responder", "monitoring"))
    (role,) = [d for d in yaml.safe_load_all(role_text) if d]
    async with cluster(tmp_path) as c:
        # rotated half an hour ago: after the pods started, so the restart is due
        c.kube.set_secret(
            NS,
            "posthog-secrets",
            {"api-key": "phc_new"},
            changed_at=datetime.now(UTC) - timedelta(minutes=30),
        )
        async with responder(c, make_settings, action_allowlist=entry) as svc:
            await svc.post_alertmanager(mitigation_alert(alert_name))
            await settled(svc, alert_name, "action.applied")
            if revert:
                await svc.post_alertmanager(mitigation_alert(alert_name, status="resolved"))
                await settled(svc, alert_name, "action.reverted")
            access = (await (await svc.client.get("/v1/automation")).json())["kube_access"]
        requests = list(c.kube.requests)
    used: set[tuple[str, str, str]] = set()
    for request in requests:
        if request.path == c.kube.access_reviews.PATH:
            continue
        target = c.kube.target_of(request.path)
        assert target is not None, request.path
        call = (target.group, target.rbac_resource, target.verb(request.method, request.query))
        assert granted(role["rules"], *call, target.name), f"{action}: not granted: {call}"
        used.add(call)
    declared = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # the pod-log probe's reads are granted whatever the action (triage may read logs)
    probe_calls = {(g, r, v) for g, r, v, _ in PROBES}
    assert declared - probe_calls == used - probe_calls, f"{action}: {declared} != {used}"
    assert access["missing"] == []
    assert access["checked"] > 0
