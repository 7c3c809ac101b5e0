"""Kubernetes: each allowlisted Deployment exists, and each permission the allowlist needs
is granted (``kube_access.access_report``: a SelfSubjectAccessReview each, as at start-up)."""

from __future__ import annotations

from datetime import UTC, datetime

from responder.adapters.kube import ClusterGateway
from responder.check.result import Result, fail, ok, skip
from responder.kube_access import access_report
from responder.ports import KubeError
from responder.rules.engine import RuleSet
from responder.settings import Settings

NAME = "kubernetes"
FIX_RBAC = (
    "grant it: apply the Role that `make manifests` renders from this allowlist "
    "(deploy/kubernetes/role.yaml), or narrow RESPONDER_ACTION_ALLOWLIST"
)


def _targets(allowlist: list[str]) -> list[tuple[str, str]]:
    """The Deployments named outright (a wildcard names none to look up)."""
    found: dict[tuple[str, str], None] = {}
    for entry in allowlist:
        parts = entry.split("/")
        if len(parts) == 3 and "*" not in parts[0] and "*" not in parts[1]:
            found[(parts[0], parts[1])] = None
    return list(found)


def _unreachable(why: str) -> Result:
    return fail(
        NAME,
        f"cannot reach the cluster: {why}",
        "set RESPONDER_KUBECONFIG (or run in a pod with a service account) and check the "
        "network path to the API server",
    )


async def check(settings: Settings, rules: RuleSet | None) -> list[Result]:
    allowlist = list(settings.action_allowlist)
    if not allowlist:
        return [skip(NAME, "empty action allowlist: no automatic action, nothing to check")]
    gateway = ClusterGateway(settings.kubeconfig)
    try:
        results: list[Result] = []
        for namespace, name in _targets(allowlist):
            try:
                await gateway.get_deployment(namespace=namespace, name=name)
            except KubeError as exc:
                if exc.status == 404:
                    results.append(
                        fail(
                            NAME,
                            f"deployment {namespace}/{name} not found",
                            "fix the entry in RESPONDER_ACTION_ALLOWLIST "
                            "(namespace/deployment/action), or deploy it",
                        )
                    )
                    continue
                if exc.status in (401, 403):
                    results.append(fail(NAME, f"deployment {namespace}/{name}: {exc}", FIX_RBAC))
                    continue
                return [*results, _unreachable(str(exc))]
            except Exception as exc:  # noqa: BLE001 - refused, DNS, TLS: said, not raised
                return [*results, _unreachable(type(exc).__name__)]
            results.append(ok(NAME, f"deployment {namespace}/{name} exists"))
        state = await access_report(gateway, allowlist, rules or RuleSet(), now=datetime.now(UTC))
        if state.skipped:
            results.append(skip(NAME, f"access not checked: {state.skipped}"))
        for finding in state.findings:
            results.append(fail(NAME, finding.problem, FIX_RBAC))
        if not state.findings and not state.skipped:
            results.append(ok(NAME, f"all {state.checked} permissions the allowlist needs granted"))
        return results
    finally:
        await gateway.close()
