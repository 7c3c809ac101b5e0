"""Deployments with more than one container, as meshes, log shippers and proxies make them:
which container an action changes and whose logs are read, end to end through the service,
its store and the fake cluster (the real kubernetes-asyncio client)."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_kube import FakeKube
from tests.support.mitigation import (
    DEPLOY,
    NS,
    SELECTOR,
    Cluster,
    alert,
    cluster,
    kinds,
    responder,
    settled,
)

DEFAULT = "kubectl.kubernetes.io/default-container"
SIDECAR = {
    "name": "linkerd-proxy",
    "image": "cr.l5d.io/linkerd/proxy:stable-2.14.10",
    "env": {"LINKERD2_PROXY_LOG": "warn"},
}
APP = {
    "name": "app",
    "image": "example/posthog-integration:1.4.2",
    "env": {"POSTHOG_HOST": "https://us.i.posthog.com", "LOG_LEVEL": "info"},
}

PACK = """
name: containers-test
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: {dry_run}
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
    - {{type: pod_logs, namespace: production, selector: app=posthog-integration}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: P2, error_type: rate_limit}}
    continue: true
  - name: queue-requests
    match: ['alertname="SetEnv"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{RATE_LIMIT_MODE: queue}}
        revert_on_resolve: true
        settle_s: 0.3
"""


def meshed(kube: FakeKube, *, default: str | None = "app") -> None:
    """The integration as a mesh injects it: the proxy first, the app second, the pod
    template's default-container naming the app (``None``: no annotation); two pods, each
    container logging its own lines."""
    annotations = {DEFAULT: default} if default else None
    kube.add_deployment(
        NS,
        DEPLOY,
        containers=[SIDECAR, APP],
        replicas=2,
        labels=SELECTOR,
        selector=SELECTOR,
        pod_annotations=annotations,
    )
    now = datetime.now(UTC)
    for n in range(2):
        name = f"{DEPLOY}-{n}"
        kube.remove_pod(NS, name)
        kube.add_pod(
            NS,
            name,
            SELECTOR,
            containers=[SIDECAR, APP],
            started_at=now - timedelta(hours=2),
            annotations=annotations,
            logs={
                "linkerd-proxy": [(now - timedelta(seconds=20), "ERROR proxy: connection reset")],
                "app": [(now - timedelta(seconds=30), f"ERROR 429 Too Many Requests (pod {n})")],
            },
        )


def write_pack(c: Cluster, tmp: Path, *, dry_run: bool = False) -> None:
    c.pack.write_text(PACK.format(health=c.health.health_url, dry_run=str(dry_run).lower()))


def container_env(kube: FakeKube, name: str) -> dict[str, str]:
    containers = kube.deployment(NS, DEPLOY)["spec"]["template"]["spec"]["containers"]
    [container] = [c for c in containers if c["name"] == name]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def patched(request: Any) -> list[str]:
    return [c["name"] for c in request.body["spec"]["template"]["spec"]["containers"]]


def pod_logs_probe(inc: dict[str, Any]) -> dict[str, Any]:
    [triage] = [e for e in inc["timeline"] if e["kind"] == "triage.completed"]
    [probe] = [p for p in triage["data"]["probes"] if p["probe"] == "pod_logs"]
    return dict(probe)


async def test_set_env_changes_the_default_container_reads_its_logs_and_reverts_it(
    backend_settings, tmp_path
):
    async with cluster(tmp_path) as c:
        meshed(c.kube)
        write_pack(c, tmp_path)
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await settled(svc, "SetEnv", "action.applied")
            # the app, named by the annotation, changed; the proxy listed first did not
            [patch] = c.patches()
            assert patched(patch) == ["app"]
            assert container_env(c.kube, "app")["RATE_LIMIT_MODE"] == "queue"
            assert container_env(c.kube, "linkerd-proxy") == {"LINKERD2_PROXY_LOG": "warn"}
            [action] = inc["actions"]
            assert action["before"] == {"containers": {"app": {"RATE_LIMIT_MODE": None}}}
            assert action["after"] == {"containers": {"app": {"RATE_LIMIT_MODE": "queue"}}}
            applied = next(e for e in inc["timeline"] if e["kind"] == "action.applied")
            assert "container app" in applied["detail"]

            # its logs were read (the app's, not the proxy's), and it says which
            probe = pod_logs_probe(inc)
            assert probe["ok"], probe
            assert "(container app)" in probe["summary"]
            evidence = probe["evidence"]
            assert evidence["errors"] == {}
            assert evidence["containers"] == {f"{DEPLOY}-0": ["app"], f"{DEPLOY}-1": ["app"]}
            assert evidence["lines"] == {
                f"{DEPLOY}-0": ["ERROR 429 Too Many Requests (pod 0)"],
                f"{DEPLOY}-1": ["ERROR 429 Too Many Requests (pod 1)"],
            }
            reads = c.kube.requests_to("GET", rf"/api/v1/namespaces/{NS}/pods/.*/log")
            assert {r.query.get("container") for r in reads} == {"app"}

            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            inc = await settled(svc, "SetEnv", "action.reverted")
            revert = c.patches()[-1]
            assert patched(revert) == ["app"]
            assert "RATE_LIMIT_MODE" not in container_env(c.kube, "app")
            assert container_env(c.kube, "app")["LOG_LEVEL"] == "info"
            assert container_env(c.kube, "linkerd-proxy") == {"LINKERD2_PROXY_LOG": "warn"}
            assert inc["actions"][0]["reverted"] is True


async def test_without_a_default_container_every_container_is_changed_and_read(
    backend_settings, tmp_path
):
    """``kubectl set env`` without -c changes every container; never the first alone. The
    logs of each container are read, each under pod/container (no 400 for a pod of two)."""
    async with cluster(tmp_path) as c:
        meshed(c.kube, default=None)
        write_pack(c, tmp_path)
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await settled(svc, "SetEnv", "action.applied")
            [patch] = c.patches()
            assert patched(patch) == ["linkerd-proxy", "app"]
            assert container_env(c.kube, "app")["RATE_LIMIT_MODE"] == "queue"
            assert container_env(c.kube, "linkerd-proxy")["RATE_LIMIT_MODE"] == "queue"
            assert set(inc["actions"][0]["after"]["containers"]) == {"linkerd-proxy", "app"}
            evidence = pod_logs_probe(inc)["evidence"]
            assert evidence["errors"] == {}
            assert evidence["lines"][f"{DEPLOY}-0/app"] == ["ERROR 429 Too Many Requests (pod 0)"]
            assert evidence["lines"][f"{DEPLOY}-0/linkerd-proxy"] == [
                "ERROR proxy: connection reset"
            ]
            assert evidence["containers"][f"{DEPLOY}-1"] == ["linkerd-proxy", "app"]


async def test_the_dry_run_patch_names_the_container_it_would_change(backend_settings, tmp_path):
    async with cluster(tmp_path) as c:
        meshed(c.kube)
        write_pack(c, tmp_path, dry_run=True)
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await settled(svc, "SetEnv", "action.dry_run")
            assert c.patches() == []
            dry = next(e for e in inc["timeline"] if e["kind"] == "action.dry_run")
            containers = dry["data"]["patch"]["spec"]["template"]["spec"]["containers"]
            assert [c["name"] for c in containers] == ["app"]
            assert "container app: RATE_LIMIT_MODE: None → 'queue'" in dry["detail"]
            assert inc["actions"][0]["after"] == {
                "containers": {"app": {"RATE_LIMIT_MODE": "queue"}}
            }
            assert container_env(c.kube, "linkerd-proxy") == {"LINKERD2_PROXY_LOG": "warn"}
            assert "RATE_LIMIT_MODE" not in container_env(c.kube, "app")
            assert "action.applied" not in kinds(inc)


ROTATION_PACK = """
name: rotation-test
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: false
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: P2, error_type: auth}}
    continue: true
  - name: rotated-key
    match: ['alertname="Rotated"']
    when: ["health.ok == false"]
    actions:
      - {{type: restart_if_secret_rotated, namespace: production,
         deployment: posthog-integration, secret: posthog-secrets}}
"""


def with_secret(app: dict[str, Any], how: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The app container reading the Secret ``how`` (env, envFrom, volume), and the pod
    volumes that takes."""
    app = dict(app)
    if how == "env":
        ref = {"secretKeyRef": {"name": "posthog-secrets", "key": "api-key"}}
        app["env"] = [{"name": "POSTHOG_API_KEY", "valueFrom": ref}]
        return app, []
    if how == "envFrom":
        app["envFrom"] = [{"secretRef": {"name": "posthog-secrets"}}]
        return app, []
    app["volumeMounts"] = [{"name": "keys", "mountPath": "/etc/posthog", "readOnly": True}]
    return app, [{"name": "keys", "secret": {"secretName": "posthog-secrets"}}]


async def rotation_world(
    c: Cluster, *, how: str | None, changed: datetime, restarted: str | None = None
) -> None:
    """The meshed integration whose app reads the Secret ``how`` (``None``: nothing reads
    it), its pod started two hours ago; the container ``restarted`` restarted a minute ago
    (it crash-looped); the Secret changed at ``changed``."""
    app, volumes = with_secret(APP, how) if how else (dict(APP), [])
    c.kube.add_deployment(NS, DEPLOY, containers=[SIDECAR, app], replicas=1, labels=SELECTOR)
    if volumes:
        c.kube.edit_deployment(
            NS, DEPLOY, lambda d: d["spec"]["template"]["spec"].update(volumes=volumes)
        )
    for n in range(2):
        c.kube.remove_pod(NS, f"{DEPLOY}-{n}")
    now = datetime.now(UTC)
    pod = f"{DEPLOY}-0"
    c.kube.add_pod(NS, pod, SELECTOR, [SIDECAR, app], started_at=now - timedelta(hours=2))
    if restarted:
        c.kube.restart_container(NS, pod, restarted, at=now - timedelta(minutes=1))
    c.kube.set_secret(NS, "posthog-secrets", {"api-key": "phc_new"}, changed_at=changed)
    c.pack.write_text(ROTATION_PACK.format(health=c.health.health_url))


@pytest.mark.parametrize("how", ["env", "envFrom", "volume"])
async def test_a_rotation_is_judged_by_the_container_that_reads_the_secret(
    backend_settings, tmp_path, how
):
    """The pod started before the rotation, but the app (which reads the key, whichever
    way) restarted after it: it holds the new key, so nothing is restarted and a human
    checks the key. The pod's start time alone would have restarted it for nothing."""
    async with cluster(tmp_path) as c:
        changed = datetime.now(UTC) - timedelta(minutes=30)
        await rotation_world(c, how=how, changed=changed, restarted="app")
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("Rotated"))
            inc = await settled(svc, "Rotated", "action.skipped")
            assert c.patches() == []
            reason = inc["actions"][0]["reason"]
            assert "before the oldest pod's container app started" in reason
            assert "a human must check the key" in inc["needs_human"]


async def test_a_secret_no_container_reads_is_no_reason_to_restart(backend_settings, tmp_path):
    async with cluster(tmp_path) as c:
        await rotation_world(c, how=None, changed=datetime.now(UTC) - timedelta(minutes=30))
        async with responder(c, backend_settings) as svc:
            await svc.post_alertmanager(alert("Rotated"))
            inc = await settled(svc, "Rotated", "action.skipped")
            assert c.patches() == []
            reason = inc["actions"][0]["reason"]
            assert "no container of posthog-integration reads the Secret" in reason
            assert "a human must check the key" in inc["needs_human"]


def bundle_files(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle.read_bytes()), mode="r:gz") as tar:
        return {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


async def test_the_evidence_bundle_keeps_each_containers_log_and_says_which(
    make_settings, tmp_path
):
    """Without a default container, triage read each container; the bundle keeps each
    one's error lines as triage read them and its log now, in files of their own, and
    ``logs/containers.json`` says which pod and container each file is."""
    reports = tmp_path / "reports"
    async with cluster(tmp_path) as c:
        meshed(c.kube, default=None)
        write_pack(c, tmp_path)
        async with responder(c, make_settings, reports_dir=reports) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            await settled(svc, "SetEnv", "action.applied")
            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            inc = await settled(svc, "SetEnv", "report.written")

    [written] = [e for e in inc["timeline"] if e["kind"] == "report.written"]
    files = bundle_files(Path(written["data"]["evidence"]))
    logs = f"logs/{NS}/{DEPLOY}-0"
    assert b"ERROR 429 Too Many Requests (pod 0)" in files[f"{logs}.app.at-triage.log"]
    assert b"connection reset" in files[f"{logs}.linkerd-proxy.at-triage.log"]
    assert b"ERROR 429 Too Many Requests (pod 0)" in files[f"{logs}.app.log"]
    assert b"connection reset" not in files[f"{logs}.app.log"]
    assert b"connection reset" in files[f"{logs}.linkerd-proxy.log"]
    read = json.loads(files["logs/containers.json"])
    assert read[f"{logs}.app.log"] == {"pod": f"{DEPLOY}-0", "container": "app"}
    assert read[f"{logs}.linkerd-proxy.log"] == {"pod": f"{DEPLOY}-0", "container": "linkerd-proxy"}
    assert "errors.json" not in files, files.get("errors.json")
