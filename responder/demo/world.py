"""The demo's world: the bundled scenarios, a loopback server standing in for the
runbook's triage sources (PostHog's status page, our health endpoint, Prometheus), and a
read-only in-memory cluster with the posthog-integration Deployment, its pods, their logs
and the API-key Secret. Everything answers from the current scenario's ``evidence``.

Nothing here is a test double of the responder: the service under demonstration is the
real one, reaching these over HTTP and through its ``KubeGateway`` port, as it reaches the
real sources in production.
"""

from __future__ import annotations

import copy
import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from responder.ports import KubeError, PodInfo

NAMESPACE, DEPLOYMENT = "production", "posthog-integration"


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor_incident: str | None = None  # the name of PostHog's open incident, if any
    health: str = "ok"  # our health endpoint's .services.posthog.status
    error_ratio: float = 0.0
    errors_by_status_code: dict[str, float] = Field(default_factory=dict)
    secret_rotated: bool = False  # the API key Secret changed after the pods started
    # the PostHog API's rate limit headers (its answer is 429 when any are given)
    rate_limit_headers: dict[str, str] = Field(default_factory=dict)
    logs: list[str] = Field(default_factory=list)


class DemoAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str
    alert: DemoAlert
    evidence: Evidence

    def payload(self, status: str, started: datetime, now: datetime) -> dict[str, Any]:
        """The Alertmanager (v4) webhook for this scenario's alert."""
        labels = self.alert.labels
        group = {k: labels[k] for k in ("alertname", "service") if k in labels}
        alert = {
            "status": status,
            "labels": labels,
            "annotations": self.alert.annotations,
            "startsAt": started.isoformat().replace("+00:00", "Z"),
            "endsAt": now.isoformat().replace("+00:00", "Z")
            if status == "resolved"
            else "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": hashlib.sha256(self.name.encode()).hexdigest()[:16],
        }
        return {
            "version": "4",
            "receiver": "responder",
            "status": status,
            "alerts": [alert],
            "groupLabels": group,
            "commonLabels": labels,
            "commonAnnotations": self.alert.annotations,
            "externalURL": "http://alertmanager.demo:9093",
            "groupKey": "{}:" + ",".join(f'{k}="{v}"' for k, v in group.items()),
            "truncatedAlerts": 0,
        }


def load_scenarios() -> list[Scenario]:
    text = resources.files("responder.demo").joinpath("scenarios.yaml").read_text()
    return [Scenario.model_validate(s) for s in yaml.safe_load(text)]


class EvidenceServer:
    """PostHog's status page (``/vendor/api/v2/summary.json``), our health endpoint
    (``/health``), the PostHog API's rate limit headers (``/posthog-api``) and the
    Prometheus HTTP API (``/prometheus/api/v1/query`` and ``query_range``), on a loopback
    port, answering from ``evidence``."""

    def __init__(self) -> None:
        self.evidence = Evidence()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/vendor/api/v2/summary.json", self._summary)
        app.router.add_get("/health", self._health)
        app.router.add_get("/posthog-api", self._posthog_api)
        app.router.add_get("/prometheus/api/v1/query", self._query)
        app.router.add_get("/prometheus/api/v1/query_range", self._query_range)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _summary(self, _: web.Request) -> web.Response:
        name = self.evidence.vendor_incident
        incidents = []
        if name:
            incidents.append(
                {
                    "id": "demo1",
                    "name": name,
                    "status": "investigating",
                    "impact": "major",
                    "shortlink": "https://stspg.io/demo",
                    "components": [{"name": "API", "status": "major_outage"}],
                }
            )
        return web.json_response(
            {
                "page": {"id": "posthog", "name": "PostHog", "url": "https://status.posthog.com"},
                "status": {
                    "indicator": "major" if name else "none",
                    "description": "Partial System Outage" if name else "All Systems Operational",
                },
                "components": [
                    {
                        "id": "api",
                        "name": "API",
                        "status": "major_outage" if name else "operational",
                    }
                ],
                "incidents": incidents,
            }
        )

    async def _posthog_api(self, _: web.Request) -> web.Response:
        headers = self.evidence.rate_limit_headers
        return web.json_response({}, status=429 if headers else 200, headers=headers)

    async def _health(self, _: web.Request) -> web.Response:
        status = self.evidence.health
        return web.json_response(
            {"status": "ok", "services": {"posthog": {"status": status}}},
            status=200 if status != "down" else 503,
        )

    def _vector(self, query: str) -> list[dict[str, Any]]:
        ev = self.evidence
        if "by (status_code)" in query:
            return [
                {"metric": {"status_code": code}, "value": [time.time(), f"{rate:g}"]}
                for code, rate in ev.errors_by_status_code.items()
            ]
        if re.search(r"/\s*sum\(rate\(posthog_requests_total", query):
            value = ev.error_ratio
        elif "posthog_errors_total" in query:
            value = sum(ev.errors_by_status_code.values())
        else:
            return []  # no such series in the demo: "no data"
        return [{"metric": {}, "value": [time.time(), f"{value:g}"]}]

    async def _query(self, request: web.Request) -> web.Response:
        result = self._vector(request.query.get("query", ""))
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async def _query_range(self, request: web.Request) -> web.Response:
        start = float(request.query.get("start", "0"))
        end = float(request.query.get("end", "0"))
        step = max(1.0, float(request.query.get("step", "60")))
        points = [start + i * step for i in range(int((end - start) / step) + 1)][:500]
        series = [
            {"metric": s["metric"], "values": [[t, s["value"][1]] for t in points]}
            for s in self._vector(request.query.get("query", ""))
        ]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": series}}
        )


class DemoCluster:
    """The ``KubeGateway`` of the demo: reads only. The demo's actions are dry-run, so the
    responder reads the Deployment to compute the exact patch and sends nothing; a write
    would be refused like a Role without ``patch``."""

    def __init__(self) -> None:
        self.evidence = Evidence()
        self._started = datetime.now(UTC) - timedelta(hours=3)
        self._deployment: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "resourceVersion": "4711"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": DEPLOYMENT}},
                "template": {
                    "metadata": {"labels": {"app": DEPLOYMENT}, "annotations": {}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "example/posthog-integration:1.4.2",
                                "env": [
                                    {"name": "POSTHOG_HOST", "value": "https://us.i.posthog.com"},
                                    {"name": "LOG_LEVEL", "value": "info"},
                                ],
                                # the API key, as the shipped pack's auth branch reads it:
                                # what restart_if_secret_rotated judges the pods by
                                "envFrom": [{"secretRef": {"name": "posthog-secrets"}}],
                            }
                        ]
                    },
                },
            },
        }

    async def list_pods(self, *, namespace: str, selector: str) -> list[PodInfo]:
        return [
            PodInfo(
                name=f"{DEPLOYMENT}-7d9f8-{n}",
                namespace=namespace,
                containers=("app",),
                started_at=self._started + timedelta(minutes=n),
                phase="Running",
            )
            for n in range(2)
        ]

    async def read_log(
        self, *, namespace: str, pod: str, container: str | None, since_s: int, tail_lines: int
    ) -> str:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = [f"{stamp} INFO posthog: flushed 120 events"] + [
            f"{stamp} {line}" for line in self.evidence.logs
        ]
        return "\n".join(lines[-tail_lines:]) + "\n"

    async def get_deployment(self, *, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) != (NAMESPACE, DEPLOYMENT):
            raise KubeError(f"deployments.apps {name!r} not found", status=404)
        return copy.deepcopy(self._deployment)

    async def patch_deployment(
        self, *, namespace: str, name: str, patch: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        raise KubeError("the demo cluster is read-only: the demo only dry-runs", status=403)

    async def get_scale(self, *, namespace: str, name: str) -> int:
        return int(self._deployment["spec"]["replicas"])

    async def patch_scale(self, *, namespace: str, name: str, replicas: int, dry_run: bool) -> int:
        raise KubeError("the demo cluster is read-only: the demo only dry-runs", status=403)

    async def secret_changed_at(self, *, namespace: str, name: str) -> datetime | None:
        if self.evidence.secret_rotated:
            return datetime.now(UTC) - timedelta(minutes=20)  # after the pods started
        return self._started - timedelta(days=30)

    async def close(self) -> None:
        return None
