"""A small world for mitigation tests: a fake cluster, a fake health endpoint whose state
drives the decision, and a rule pack with one branch per action."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from responder.app import Overrides
from responder.settings import Settings
from tests.support.fake_http import FakeHealthEndpoint
from tests.support.fake_kube import FakeKube, running_fake_kube
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually
from tests.test_probe_pod_logs import kubeconfig

NS, DEPLOY = "production", "posthog-integration"
SELECTOR = {"app": "posthog-integration"}

PACK_HEAD = """
name: {name}
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: {dry_run}{notify}
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: P2, error_type: {error_type}}}
    continue: true
"""

RULES = """
  - name: queue-requests
    match: ['alertname="SetEnv"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: "{{{{ labels.namespace }}}}"
        deployment: posthog-integration
        env: {{RATE_LIMIT_MODE: queue}}
        revert_on_resolve: true
        settle_s: {settle}
        {verify}
        revert_if_unhelpful: {revert_if_unhelpful}
  - name: drop-fallback
    match: ['alertname="UnsetEnv"']
    when: ["health.ok == false"]
    actions:
      - {{type: unset_env, namespace: production, deployment: posthog-integration,
         names: [POSTHOG_HOST]}}
  - name: restart
    match: ['alertname="Restart"']
    when: ["health.ok == false"]
    actions:
      - {{type: rollout_restart, namespace: production, deployment: posthog-integration}}
  - name: more-replicas
    match: ['alertname="Scale"']
    when: ["health.ok == false"]
    actions:
      - {{type: scale, namespace: production, deployment: posthog-integration, replicas: 4,
         min_replicas: 2, max_replicas: 6}}
  - name: rotated-key
    match: ['alertname="Rotated"']
    when: ["health.ok == false"]
    actions:
      - {{type: restart_if_secret_rotated, namespace: production,
         deployment: posthog-integration, secret: posthog-secrets}}
  - name: page
    match: ['alertname="Page"']
    when: ["health.ok == false"]
    actions:
      - {{type: page_human, reason: "Our infrastructure issue: check pods, memory, network."}}
"""


def pack_text(
    rules: str,
    *,
    name: str,
    health_url: str,
    error_type: str,
    dry_run: bool = False,
    notify: list[str] | None = None,
) -> str:
    """A rule pack for the integration: in its defaults the health probe the decisions
    read (and ``notify``), a first rule classifying its alerts as ``error_type``, then
    ``rules``: YAML list items, indented as under ``rules:``."""
    head = PACK_HEAD.format(
        name=name,
        dry_run=str(dry_run).lower(),
        notify=f"\n  notify: {json.dumps(notify)}" if notify else "",
        health=health_url,
        error_type=error_type,
    )
    return head + rules.lstrip("\n")


def write_pack(
    tmp: Path,
    health_url: str,
    *,
    dry_run: bool = False,
    settle_s: float = 0.3,
    verify_query: str | None = None,
    revert_if_unhelpful: bool = False,
) -> Path:
    verify = f'verify: {{query: "{verify_query}", below: 0.05}}' if verify_query else ""
    rules = RULES.format(
        settle=settle_s, verify=verify, revert_if_unhelpful=str(revert_if_unhelpful).lower()
    )
    text = pack_text(
        rules,
        name="mitigation-test",
        health_url=health_url,
        error_type="rate_limit",
        dry_run=dry_run,
    )
    path = tmp / "mitigation.yaml"
    path.write_text(text)
    return path


def alert(name: str, *, status: str = "firing", instance: str = "pod-1") -> dict[str, Any]:
    payload = copy.deepcopy(example("alertmanager/posthog-rate-limited-429-firing.json"))
    a = payload["alerts"][0]
    a["labels"] = {
        "alertname": name,
        "service": "posthog-integration",
        "namespace": "production",
        "instance": instance,
    }
    a["fingerprint"] = ""
    a["status"] = payload["status"] = status
    return payload


@dataclass
class Cluster:
    kube: FakeKube
    health: FakeHealthEndpoint
    kubeconfig: Path
    pack: Path

    def patches(self) -> list[Any]:
        return [r for r in self.kube.requests if r.method == "PATCH"]

    def env(self) -> dict[str, str]:
        containers = self.kube.deployment(NS, DEPLOY)["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", "") for e in containers[0].get("env") or []}


def add_integration(kube: FakeKube, *, started: datetime, log_line: str | None = None) -> None:
    """The posthog-integration Deployment, its two pods (started at ``started``, one
    minute apart; ``log_line`` in their logs) and its API key Secret (3 days older)."""
    kube.add_deployment(
        NS,
        DEPLOY,
        containers=[
            {
                "name": "app",
                "image": "example/posthog-integration:1.4.2",
                "env": {"POSTHOG_HOST": "https://us.i.posthog.com", "LOG_LEVEL": "info"},
                # the API key: what restart_if_secret_rotated judges the app by
                "envFrom": [{"secretRef": {"name": "posthog-secrets"}}],
            }
        ],
        replicas=2,
        labels=SELECTOR,
        selector=SELECTOR,
    )
    for n in range(2):
        logs = [(datetime.now(UTC) - timedelta(seconds=30), log_line)] if log_line else None
        kube.add_pod(
            NS, f"{DEPLOY}-{n}", SELECTOR, started_at=started + timedelta(minutes=n), logs=logs
        )
    kube.set_secret(
        NS, "posthog-secrets", {"api-key": "phc_old"}, changed_at=started - timedelta(days=3)
    )


@asynccontextmanager
async def cluster(tmp: Path, **pack: Any) -> AsyncIterator[Cluster]:
    tmp.mkdir(parents=True, exist_ok=True)
    async with running_fake_kube() as kube, FakeHealthEndpoint() as health:
        add_integration(kube, started=datetime.now(UTC) - timedelta(hours=2))
        health.set_posthog("down")
        yield Cluster(
            kube,
            health,
            kubeconfig(tmp / "kubeconfig", kube.url),
            write_pack(tmp, health.health_url, **pack),
        )


@asynccontextmanager
async def responder(
    c: Cluster,
    make: Callable[..., Settings],
    overrides: Overrides | None = None,
    *,
    notify: bool = False,
    **settings: Any,
) -> AsyncIterator[Service]:
    """The service on the cluster; ``notify``: its own notification delivery (the sinks the
    settings configure) instead of a recording notifier."""
    async with running_service(make(**on_cluster(c, **settings)), overrides, notify=notify) as svc:
        yield svc


def on_cluster(c: Cluster, **settings: Any) -> dict[str, Any]:
    """The settings of a service acting on the cluster (its pack, triage on, the allowlist
    naming the integration), with ``settings`` over them."""
    values: dict[str, Any] = {
        "rules": [c.pack],
        "triage": True,
        "kubeconfig": c.kubeconfig,
        "action_allowlist": "production/posthog-integration/*",
        "visibility_timeout_s": 4,
        "triage_budget_s": 2,
        "action_cooldown_s": 600,
    }
    return values | settings


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


async def settled(svc: Service, name: str, kind: str, *, timeout_s: float = 10) -> dict[str, Any]:
    """The incident whose alert is ``name``, once its timeline has an event ``kind``."""

    async def found() -> dict[str, Any] | None:
        for inc in await svc.incidents():
            if inc["labels"].get("alertname") == name and kind in kinds(inc):
                return inc
        return None

    inc = await eventually(found, timeout_s=timeout_s, what=f"{name}: {kind}")
    await svc.idle()
    one = await (await svc.client.get(f"/v1/incidents/{inc['id']}")).json()
    return dict(one)
