"""Recent error lines of the pods behind a label selector, secrets redacted.

Only in the namespaces the action allowlist names (``RESPONDER_ACTION_ALLOWLIST``, its
first segment): the namespace comes from an alert's label, and whoever can push an alert
must not read the logs of any namespace the service account can see. The namespace,
selector and container are checked before any call.
"""

from __future__ import annotations

import re
from typing import Any

from responder.domain.facts import ProbeResult
from responder.domain.names import k8s_name_problem, selector_problem
from responder.domain.plans import PodLogsProbe
from responder.mitigate.guards import namespace_allowed
from responder.ports import KubeError, KubeGateway, PodInfo
from responder.redaction import Redactor
from responder.render.words import plural

# Bounds: how many pods are read, and how many lines are read per pod before filtering.
MAX_PODS = 10  # also the evidence bundle's cap (adapters/evidence.py)
_READ_LINES = 5000


def why_not_read(spec: PodLogsProbe, allowlist: tuple[str, ...] | None) -> str | None:
    """Why these pods' logs are not read (the probe's and the evidence bundle's rule), or
    ``None``: names and selector that are not Kubernetes names, or a namespace the action
    allowlist does not name (``None``: no allowlist to obey). The namespace may come from an
    alert's label, so it is checked before any call."""
    problem = k8s_name_problem(spec.namespace, kind="namespace") or selector_problem(spec.selector)
    if problem is None and spec.container is not None:
        problem = k8s_name_problem(spec.container, kind="container")
    if problem is not None:
        return problem
    if allowlist is not None and not namespace_allowed(allowlist, spec.namespace):
        return (
            f"namespace {spec.namespace} is not one the action allowlist names "
            "(RESPONDER_ACTION_ALLOWLIST): its logs are not read"
        )
    return None


def _access(status: int | None) -> dict[str, Any]:
    """The runbook's "kubectl fails: auth expired" (401) and "permission denied" (403)
    as the fact ``logs.access``; nothing for another failure."""
    said = {401: "auth_failed", 403: "permission_denied"}.get(status or 0)
    return {"access": said} if said else {}


class PodLogsReader:
    kind = "pod_logs"

    def __init__(
        self, kube: KubeGateway, redact: Redactor, *, allowlist: tuple[str, ...] | None = None
    ) -> None:
        """``allowlist``: the action allowlist, whose namespaces the probe may read (the app
        passes it); ``None``: any namespace (a probe run by hand)."""
        self._kube = kube
        self._redact = redact
        self._allowlist = allowlist

    async def run(self, spec: PodLogsProbe) -> ProbeResult:
        refusal = why_not_read(spec, self._allowlist)
        if refusal is not None:
            return ProbeResult(
                probe="pod_logs", ok=False, error=refusal, summary=f"logs: not read: {refusal}"
            )
        try:
            pods = await self._kube.list_pods(namespace=spec.namespace, selector=spec.selector)
        except KubeError as exc:
            return ProbeResult(
                probe="pod_logs",
                ok=False,
                error=str(exc),
                facts=_access(exc.status),
                summary=f"logs: {exc}",
            )
        pattern = re.compile(spec.pattern)
        lines: dict[str, Any] = {}
        read: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        gone: list[Any] = []
        statuses: list[int | None] = []
        for pod in pods[:MAX_PODS]:
            chosen = containers_to_read(pod, spec.container)
            for container in chosen:
                # one container read: its lines under the pod's name; each of several:
                # under pod/container (a pod name has no "/")
                key = pod.name if len(chosen) == 1 else f"{pod.name}/{container}"
                try:
                    text = await self._kube.read_log(
                        namespace=spec.namespace,
                        pod=pod.name,
                        container=container,
                        since_s=spec.since_s,
                        tail_lines=_READ_LINES,
                    )
                except KubeError as exc:
                    if exc.status == 404:  # replaced since it was listed: a fact, not a fault
                        gone.append(pod.name)
                        break
                    errors[key] = str(exc)
                    statuses.append(exc.status)
                    continue
                matching = [self._redact(ln) for ln in text.splitlines() if pattern.search(ln)]
                lines[key] = matching[-spec.tail_lines :]
                read.setdefault(pod.name, []).extend([container] if container else [])
        total = sum(len(v) for v in lines.values())
        if pods and not lines and errors:
            return ProbeResult(
                probe="pod_logs",
                ok=False,
                error="; ".join(f"{k}: {v}" for k, v in errors.items()),
                facts=_access(next(iter(statuses), None)),
                summary="logs: no pod log could be read",
            )
        with_matches = {key.split("/", 1)[0] for key, found in lines.items() if found}
        return ProbeResult(
            probe="pod_logs",
            ok=True,
            facts={
                "pods": len(pods),
                "pods_with_matches": len(with_matches),
                "matching_lines": total,
                "pods_gone": len(gone),
            },
            evidence={
                "selector": spec.selector,
                "namespace": spec.namespace,
                "container": spec.container,
                "containers": read,
                "pattern": spec.pattern,
                "since_s": spec.since_s,
                "lines": lines,
                "errors": errors,
                "gone": gone,
            },
            summary=f"logs: {plural(total, 'line')} matching {spec.pattern!r} in "
            f"{plural(len(pods), 'pod')}"
            + _read_from(read)
            + (f"; {plural(len(gone), 'pod')} gone since listed" if gone else ""),
        )


def containers_to_read(pod: PodInfo, named: str | None) -> list[str | None]:
    """The containers of ``pod`` whose log is read: the rule's; else the pod's
    ``default-container``; else each (the API refuses a multi-container pod's log without
    one). ``None``: the pod's containers are not known (the API picks its only one)."""
    if named is not None:
        return [named]
    if pod.default_container is not None and pod.default_container in pod.containers:
        return [pod.default_container]
    return list(pod.containers) or [None]


def _read_from(read: dict[str, Any]) -> str:
    """Which containers were read, when it is not one for every pod alike."""
    kinds = {tuple(names) for names in read.values()}
    if not kinds or kinds == {()}:
        return ""
    return " (container " + "; ".join(", ".join(k) for k in sorted(kinds)) + ")"
