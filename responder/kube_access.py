"""What the action allowlist needs of the Kubernetes API, and whether it is granted.

One table (``ACTION_CALLS``, ``PROBE_CALLS``) says which calls each action type and the
cluster-reading probes make; ``required_access`` turns ``RESPONDER_ACTION_ALLOWLIST``
(``namespace/deployment/action``) and the Secrets the packs' secret rotation reads into the
exact permissions. Both ``deploy/rbac.py`` (the Role and RoleBinding that ``make
manifests`` renders) and ``check_access`` (a SelfSubjectAccessReview per permission, at
start-up and for ``responder check``) read them, so the RBAC shipped and the RBAC checked
cannot drift apart. Pure but for the reviewer it is handed (``adapters/kube.py``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from responder.domain.names import k8s_name_problem
from responder.domain.plans import RestartIfSecretRotated
from responder.ports import KubeError
from responder.rules.engine import RuleSet

# What a call's object is named by: the allowlisted Deployment, the Secret the action
# reads, or nothing (a list, or an object whose name comes from an alert: a pod).
NamedBy = Literal["deployment", "secret"] | None


@dataclass(frozen=True)
class Call:
    group: str  # "" is the core API group
    resource: str  # with its subresource: "deployments/scale", "pods/log"
    verb: str
    named_by: NamedBy = None


_READ_AND_PATCH = (
    Call("apps", "deployments", "get", "deployment"),
    Call("apps", "deployments", "patch", "deployment"),
)
# Every call each action type makes through the KubeGateway (responder/mitigate/actions.py);
# tests/test_rbac.py checks every action type is here and every call is granted.
ACTION_CALLS: dict[str, tuple[Call, ...]] = {
    "set_env": _READ_AND_PATCH,
    "unset_env": _READ_AND_PATCH,
    "rollout_restart": _READ_AND_PATCH,
    "restart_if_secret_rotated": (
        *_READ_AND_PATCH,
        Call("", "pods", "list"),  # when the oldest pod started
        Call("", "secrets", "get", "secret"),  # when the Secret changed
    ),
    "scale": (
        Call("apps", "deployments", "get", "deployment"),  # crash recovery reads the target
        Call("apps", "deployments/scale", "get", "deployment"),
        Call("apps", "deployments/scale", "patch", "deployment"),
    ),
    "page_human": (),  # no cluster change
}
# The pod_logs probe and the evidence bundle read the logs of pods in the allowlisted
# namespaces (guards.namespace_allowed); pod names come from a selector, never named here.
PROBE_CALLS = (Call("", "pods", "list"), Call("", "pods/log", "get"))


@dataclass(frozen=True, order=True)
class Access:
    """One permission: ``verb`` on ``resource`` of ``group`` in ``namespace``, on the
    object ``name`` only (``None``: any)."""

    namespace: str
    group: str
    resource: str
    verb: str
    name: str | None = None

    def __str__(self) -> str:
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        what = f"{kind} {self.name}" if self.name else kind
        return f"{self.verb} {what} in {self.namespace}"


@dataclass(frozen=True)
class SecretUse:
    """A Secret a pack's ``restart_if_secret_rotated`` reads; ``namespace`` ``None``: the
    action's namespace comes from the alert (any allowlisted one)."""

    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class Required:
    """The permissions an allowlist needs, and the entries no Role can grant exactly."""

    accesses: tuple[Access, ...]
    problems: tuple[str, ...] = ()


def rotation_secrets(rules: RuleSet) -> list[SecretUse]:
    """The Secrets the packs' secret rotation reads (a templated name is kept as written:
    ``required_access`` says it cannot be granted by name)."""
    found: set[SecretUse] = set()
    for rule in rules.rules():
        for action in rule.spec.actions:
            if isinstance(action, RestartIfSecretRotated):
                fixed = "{" not in action.namespace
                found.add(SecretUse(action.secret, action.namespace if fixed else None))
    return sorted(found, key=lambda s: (s.name, s.namespace or ""))


def _entry_problem(entry: str) -> str | None:
    parts = entry.split("/")
    if len(parts) != 3:
        return f"{entry!r}: not namespace/deployment/action"
    namespace, deployment, action = parts
    for value, kind in ((namespace, "namespace"), (deployment, "deployment")):
        if any(c in value for c in "*?["):
            return f"{entry!r}: a wildcard {kind} cannot be granted by name: name it"
        problem = k8s_name_problem(value, kind=kind)
        if problem:
            return f"{entry!r}: {problem}"
    if not fnmatch.filter(ACTION_CALLS, action):
        return f"{entry!r}: no action type matches {action!r}"
    return None


def required_access(allowlist: Iterable[str], secrets: Iterable[SecretUse]) -> Required:
    """Every permission the allowlisted actions (and the probes in their namespaces)
    need, each on the named object where the API can name it; nothing else."""
    secrets = list(secrets)
    accesses: set[Access] = set()
    problems: list[str] = []
    for entry in allowlist:
        problem = _entry_problem(entry)
        if problem:
            problems.append(problem)
            continue
        namespace, deployment, pattern = entry.split("/")
        calls = [c for a in fnmatch.filter(ACTION_CALLS, pattern) for c in ACTION_CALLS[a]]
        for call in [*calls, *PROBE_CALLS]:
            for name in _names(call, namespace, deployment, secrets, problems):
                accesses.add(Access(namespace, call.group, call.resource, call.verb, name))
    return Required(tuple(sorted(accesses, key=_order)), tuple(dict.fromkeys(problems)))


def _names(
    call: Call, namespace: str, deployment: str, secrets: list[SecretUse], problems: list[str]
) -> Iterator[str | None]:
    if call.named_by is None:
        yield None
    elif call.named_by == "deployment":
        yield deployment
    else:
        for secret in secrets:
            if secret.namespace not in (None, namespace):
                continue
            if "{" in secret.name or k8s_name_problem(secret.name, kind="secret"):
                problems.append(f"secret {secret.name!r}: not a fixed name: cannot grant it")
                continue
            yield secret.name


def _order(a: Access) -> tuple[str, str, str, str, str]:
    return (a.namespace, a.group, a.resource, a.verb, a.name or "")


# ------------------------------------------------------------------------------ the check


@runtime_checkable
class AccessReviewer(Protocol):
    """Asks the API server whether our identity may do ``access``
    (SelfSubjectAccessReview); ``KubeError`` when it cannot be asked."""

    async def review_access(self, access: Access) -> bool: ...


@dataclass(frozen=True)
class Finding:
    """A permission the allowlist needs that is not granted (``access``), or why the
    check could not be made (``access`` ``None``)."""

    problem: str
    access: Access | None = None


async def check_access(reviewer: AccessReviewer, required: Required) -> list[Finding]:
    """One SelfSubjectAccessReview per permission; what is not allowed, each said."""
    findings = [Finding(problem) for problem in required.problems]
    for n, access in enumerate(required.accesses):
        try:
            allowed = await reviewer.review_access(access)
        except KubeError as exc:
            # no cluster, unreachable, our credentials refused: the same for every review
            # (creating one needs no permission of its own), so said once
            left = len(required.accesses) - n
            findings.append(Finding(f"could not ask the API server ({left} unchecked): {exc}"))
            break
        if not allowed:
            findings.append(Finding(f"not allowed: {access}", access))
    return findings


@dataclass
class AccessState:
    """The last check's outcome, as GET /v1/automation shows it."""

    checked_at: datetime | None = None
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    # why it was not made (no cluster configured, a gateway that cannot review access)
    skipped: str | None = None


async def access_report(
    reviewer: object, allowlist: Iterable[str], rules: RuleSet, *, now: datetime
) -> AccessState:
    """The whole check for an allowlist and the packs in force, as start-up and
    ``responder check`` make it: what is needed, asked of the API server, what is not."""
    allowlist = list(allowlist)
    if not allowlist:
        return AccessState(skipped="no action allowlist: nothing to check")
    if not isinstance(reviewer, AccessReviewer):
        return AccessState(skipped="this Kubernetes gateway cannot review access")
    required = required_access(allowlist, rotation_secrets(rules))
    findings = await check_access(reviewer, required)
    return AccessState(checked_at=now, checked=len(required.accesses), findings=findings)
