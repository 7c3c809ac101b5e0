"""Recent error lines of the pods behind a label selector, secrets redacted."""

from __future__ import annotations

import re
from typing import Any

from responder.domain.facts import ProbeResult
from responder.domain.plans import PodLogsProbe
from responder.ports import KubeError, KubeGateway
from responder.redaction import Redactor

# Bounds: how many pods are read, and how many lines are read per pod before filtering.
_MAX_PODS = 10
_READ_LINES = 5000


class PodLogsReader:
    kind = "pod_logs"

    def __init__(self, kube: KubeGateway, redact: Redactor) -> None:
        self._kube = kube
        self._redact = redact

    async def run(self, spec: PodLogsProbe) -> ProbeResult:
        try:
            pods = await self._kube.list_pods(namespace=spec.namespace, selector=spec.selector)
        except KubeError as exc:
            return ProbeResult(probe="pod_logs", ok=False, error=str(exc), summary=f"logs: {exc}")
        pattern = re.compile(spec.pattern)
        lines: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for pod in pods[:_MAX_PODS]:
            try:
                text = await self._kube.read_log(
                    namespace=spec.namespace,
                    pod=pod.name,
                    container=spec.container,
                    since_s=spec.since_s,
                    tail_lines=_READ_LINES,
                )
            except KubeError as exc:
                errors[pod.name] = str(exc)
                continue
            matching = [self._redact(line) for line in text.splitlines() if pattern.search(line)]
            lines[pod.name] = matching[-spec.tail_lines :]
        total = sum(len(v) for v in lines.values())
        if pods and not lines:
            return ProbeResult(
                probe="pod_logs",
                ok=False,
                error="; ".join(f"{k}: {v}" for k, v in errors.items()),
                summary="logs: no pod log could be read",
            )
        return ProbeResult(
            probe="pod_logs",
            ok=True,
            facts={
                "pods": len(pods),
                "pods_with_matches": sum(1 for v in lines.values() if v),
                "matching_lines": total,
            },
            evidence={
                "selector": spec.selector,
                "namespace": spec.namespace,
                "pattern": spec.pattern,
                "since_s": spec.since_s,
                "lines": lines,
                "errors": errors,
            },
            summary=f"logs: {total} line(s) matching {spec.pattern!r} in {len(pods)} pod(s)",
        )
