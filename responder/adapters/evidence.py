"""Collects what the incident window left outside the responder: the pod logs of the
pods that logged the errors when triage looked (by name: a rollout since may have put
others in their place; without a triage record, the pods its probes select now; at most
``MAX_PODS`` in all, the pod-logs probe's cap), and
Prometheus range queries of its rules' queries (triage queries and action verifications)
from 30 minutes before it opened to 30 minutes after it resolved (or now). What cannot be
had is listed in ``errors.json``, never fatal: a bundle with a gap is worth more than none.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import structlog

from responder.adapters.probes.pod_logs import MAX_PODS, containers_to_read, why_not_read
from responder.adapters.prometheus import PrometheusClient
from responder.domain.incident import Incident
from responder.domain.names import k8s_name_problem
from responder.domain.plans import PodLogsProbe, PrometheusProbe
from responder.mitigate.guards import namespace_allowed
from responder.ports import KubeError, KubeGateway
from responder.redaction import Redactor
from responder.report.bundle import EVIDENCE_WINDOW, ErroringPod

log = structlog.get_logger("responder.evidence")

WINDOW = EVIDENCE_WINDOW
MAX_POINTS = 500  # per series: a range query's step follows from the window
MAX_LOG_LINES = 5000
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _name(text: str) -> str:
    return _SAFE.sub("_", text).strip("_")[:80] or "query"


def incident_window(incident: Incident, now: datetime) -> tuple[datetime, datetime, float]:
    """The incident's evidence window (30 minutes before it opened to 30 minutes after it
    resolved, or now) and the range queries' step over it (at least 15 s, at most
    ``MAX_POINTS`` points): what the bundle collects, and the graph of it shows."""
    start = incident.opened_at - WINDOW
    end = min(now, (incident.resolved_at or now) + WINDOW)
    return start, end, max(15.0, (end - start).total_seconds() / MAX_POINTS)


async def window_range(
    client: PrometheusClient,
    query: str,
    *,
    start: datetime,
    end: datetime,
    step_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """One range query over the window: its answer's ``data``."""
    return await client.query_range(
        query, start=start.timestamp(), end=end.timestamp(), step_s=step_s, timeout_s=timeout_s
    )


def rule_queries(incident: Incident) -> dict[str, str]:
    """The PromQL the incident's rules use, by a file-safe name."""
    found: dict[str, str] = {}
    for probe in incident.planned_probes:
        if isinstance(probe.spec, PrometheusProbe):
            for name, query in probe.spec.queries.items():
                found.setdefault(_name(name), query)
    verifications = [a.planned.spec for a in incident.actions if a.planned is not None] + [
        a.spec for a in incident.planned_actions
    ]
    for i, spec in enumerate(verifications):
        verify = getattr(spec, "verify", None)
        if verify is not None and verify.query not in found.values():
            found[f"verify-{getattr(spec, 'type', 'action')}-{i}"] = verify.query
    return found


class WindowEvidence:
    def __init__(
        self,
        *,
        prometheus: PrometheusClient | None,
        kube: KubeGateway | None,
        redact: Redactor,
        allowlist: tuple[str, ...],
        timeout_s: float = 15.0,
    ) -> None:
        self._prometheus = prometheus
        self._kube = kube
        self._redact = redact
        self._allowlist = allowlist  # the pod-logs probe's bound: only these namespaces
        self._timeout_s = timeout_s

    async def collect(
        self, incident: Incident, now: datetime, *, pods: Sequence[ErroringPod] = ()
    ) -> dict[str, bytes]:
        start, end, step = incident_window(incident, now)
        files: dict[str, bytes] = {}
        errors: list[dict[str, str]] = []
        await asyncio.gather(
            self._ranges(incident, start, end, step, files, errors),
            self._logs(incident, start, now, files, errors, pods),
        )
        files["window.json"] = orjson.dumps(
            {"start": start.isoformat(), "end": end.isoformat()}, option=orjson.OPT_INDENT_2
        )
        if errors:
            files["errors.json"] = orjson.dumps(errors, option=orjson.OPT_INDENT_2)
        return files

    async def _ranges(
        self,
        incident: Incident,
        start: datetime,
        end: datetime,
        step: float,
        files: dict[str, bytes],
        errors: list[dict[str, str]],
    ) -> None:
        queries = rule_queries(incident)
        if not queries:
            return
        if self._prometheus is None:
            errors.append({"source": "prometheus", "error": "RESPONDER_PROMETHEUS_URL is unset"})
            return
        client = self._prometheus

        async def one(name: str, query: str) -> None:
            try:
                data = await window_range(
                    client, query, start=start, end=end, step_s=step, timeout_s=self._timeout_s
                )
            except Exception as exc:  # noqa: BLE001 - a gap in the bundle, said so
                errors.append({"source": f"prometheus/{name}", "error": str(exc)[:300]})
                return
            body = {"query": query, "start": start.isoformat(), "end": end.isoformat()}
            files[f"prometheus/{name}.json"] = orjson.dumps(
                {**body, "step_s": step, "data": data}, option=orjson.OPT_INDENT_2
            )

        await asyncio.gather(*(one(n, q) for n, q in queries.items()))

    async def _logs(
        self,
        incident: Incident,
        start: datetime,
        now: datetime,
        files: dict[str, bytes],
        errors: list[dict[str, str]],
        erroring: Sequence[ErroringPod],
    ) -> None:
        # one listing per distinct selection, however often the rules name it
        specs = list(
            {
                (p.spec.namespace, p.spec.selector, p.spec.container): p.spec
                for p in incident.planned_probes
                if isinstance(p.spec, PodLogsProbe)
            }.values()
        )
        if not specs:
            return
        if self._kube is None:
            errors.append({"source": "kubernetes", "error": "no cluster configured"})
            return
        readable = []
        for spec in specs:
            refusal = why_not_read(spec, self._allowlist)
            if refusal is None:
                readable.append(spec)
            else:
                errors.append({"source": "kubernetes", "error": f"logs not read: {refusal}"})
        specs = readable
        kube = self._kube
        since_s = max(1, min(86_400, int((now - start).total_seconds())))

        async def listed(spec: PodLogsProbe) -> list[ErroringPod]:
            try:
                pods = await kube.list_pods(namespace=spec.namespace, selector=spec.selector)
            except Exception as exc:  # noqa: BLE001
                errors.append({"source": f"pods/{spec.namespace}", "error": str(exc)[:300]})
                return []
            found = []
            for pod in pods:
                # the probe's choice: the named container, the default one, else each
                chosen = containers_to_read(pod, spec.container)
                for container in chosen:
                    several = len(chosen) > 1 and container is not None
                    key = f"{pod.name}/{container}" if several else pod.name
                    found.append(ErroringPod(pod.namespace, pod.name, container, (), key))
            return found

        read: dict[str, dict[str, str | None]] = {}

        async def pod_log(pod: ErroringPod) -> None:
            try:
                text = await kube.read_log(
                    namespace=pod.namespace,
                    pod=pod.pod,
                    container=pod.container,
                    since_s=since_s,
                    tail_lines=MAX_LOG_LINES,
                )
            except Exception as exc:  # noqa: BLE001
                gone = isinstance(exc, KubeError) and exc.status == 404
                said = (
                    "gone since triage (replaced, by a rollout?): its error lines as triage "
                    "read them are in the .at-triage.log"
                    if gone
                    else str(exc)[:300]
                )
                errors.append({"source": f"logs/{pod.key or pod.pod}", "error": said})
                return
            path = f"logs/{_name(pod.namespace)}/{pod.stem}.log"
            files[path] = self._redact(text).encode()
            read[path] = {"pod": pod.pod, "container": pod.container}

        async def all_logs() -> None:
            found: dict[tuple[str, str], ErroringPod] = {}
            if erroring:
                # the pods that logged the errors at triage, by name: not those a rollout
                # (ours, to mitigate) put in their place since; one gone since is said
                for e in erroring:
                    if namespace_allowed(self._allowlist, e.namespace) and not (
                        k8s_name_problem(e.pod, kind="pod")
                    ):
                        found.setdefault((e.namespace, e.key or e.pod), e)
            else:
                for pods in await asyncio.gather(*(listed(s) for s in specs)):
                    for pod in pods:
                        found.setdefault((pod.namespace, pod.key), pod)
            # the pod-logs probe's cap, for the bundle as a whole: a selector that matches
            # a whole fleet must not turn one request into hundreds of reads
            chosen = list(found.values())[:MAX_PODS]
            if len(found) > MAX_PODS:
                errors.append(
                    {
                        "source": "kubernetes",
                        "error": f"{len(found)} pod logs matched; the first {MAX_PODS} were read",
                    }
                )
            await asyncio.gather(*(pod_log(pod) for pod in chosen))
            if read:
                # which pod and container each log file is (None: the pod's only one)
                files["logs/containers.json"] = orjson.dumps(
                    dict(sorted(read.items())), option=orjson.OPT_INDENT_2
                )

        try:
            await asyncio.wait_for(all_logs(), self._timeout_s * 2)
        except TimeoutError:
            errors.append({"source": "kubernetes", "error": "timed out reading pod logs"})
