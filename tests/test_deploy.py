"""The deployment: the image, the Kubernetes manifests, Alertmanager's route and the
Prometheus alerts, checked against the schemas and tools that will read them, and against
the code and the rule pack they feed, so that none of them drifts from the others.

Needs ``amtool`` and ``promtool`` (Debian packages prometheus-alertmanager and prometheus,
which ``make test`` installs) and ``kubectl`` (its ``kustomize`` renders the overlays);
without them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from responder.domain.severity import ErrorType, Severity
from responder.rules.engine import AlertInput, RuleSet
from responder.rules.loader import load_rules
from responder.settings import ENV_PREFIX, Settings
from tests.support.procs import free_port, serve_process

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS_YML = ROOT / "deploy" / "prometheus" / "posthog-alerts.yml"
ALERTS_TEST_YML = ROOT / "deploy" / "prometheus" / "posthog-alerts.test.yml"
RULES_DIR = ROOT / "rules"
PACK = RULES_DIR / "posthog.yaml"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
OVERLAYS = ROOT / "deploy" / "overlays"

# The Kubernetes version the manifests are written for (kubernetes-validate bundles the
# schemas of every minor version; strict: unknown fields are errors).
KUBE_VERSION = "1.30.0"

# What the PostHog pack must make of each Prometheus alert: (rule, severity, error type);
# None for the error type: the alert's own error_type label.
EXPECTED: dict[str, tuple[str, Severity, ErrorType | None]] = {
    "PostHogAPIUnreachable": ("api-unreachable", Severity.P1, ErrorType.UNREACHABLE),
    "PostHogAuthFailures": ("auth-failures", Severity.P1, ErrorType.AUTH),
    "PostHogRateLimited": ("rate-limited", Severity.P2, ErrorType.RATE_LIMIT),
    "PostHogUpstreamErrors": ("upstream-errors", Severity.P2, ErrorType.UPSTREAM_5XX),
    "PostHogHighLatency": ("high-latency", Severity.P2, ErrorType.LATENCY),
    "PostHogWebhookDelay": ("webhook-delays", Severity.P3, ErrorType.WEBHOOK_DELAY),
    "PostHogErrors": ("non-critical-errors", Severity.P3, None),
    "PostHogMetricsAbsent": ("monitoring-gap", Severity.P4, ErrorType.MONITORING_GAP),
}
# The `severity` label people and routes read, by the pack's severity.
SEVERITY_LABEL = {"P1": "critical", "P2": "warning", "P3": "warning", "P4": "info"}


# --------------------------------------------------------------------------- helpers


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes manifest, by file name (not the kustomization itself)."""
    return {p.name: docs(p) for p in sorted(KUBE.glob("*.yaml")) if p.name != "kustomization.yaml"}


def one(kind: str, file: str) -> dict[str, Any]:
    [doc] = [d for d in docs(KUBE / file) if d["kind"] == kind]
    return doc


def deployment() -> dict[str, Any]:
    return one("Deployment", "deployment.yaml")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = deployment()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    [c] = pod_spec()["containers"]
    return c  # type: ignore[no-any-return]


def settings_env() -> dict[str, str]:
    """The pod's environment: the ConfigMap (envFrom), then the container's env."""
    env: dict[str, str] = {}
    for source in container().get("envFrom", []):
        name = source["configMapRef"]["name"]
        [cm] = [
            d
            for docs_ in manifests().values()
            for d in docs_
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name
        ]
        env.update(cm["data"])
    for var in container().get("env", []):
        assert set(var) == {"name", "value"}, f"{var['name']}: only literal values (no valueFrom)"
        env[var["name"]] = var["value"]
    return env


def setting_of(env_name: str) -> str:
    """RESPONDER_FOO_FILE and RESPONDER_FOO -> foo."""
    assert env_name.startswith(ENV_PREFIX), env_name
    name = env_name.removeprefix(ENV_PREFIX).lower()
    return name.removesuffix("_file") if name.endswith("_file") else name


def is_secret_setting(name: str) -> bool:
    annotation = repr(Settings.model_fields[name].annotation)
    return "SecretStr" in annotation


def mount_of(volume_kind: str, name: str) -> dict[str, Any]:
    """The volumeMount of the pod volume that is ``volume_kind`` (secret, configMap) ``name``."""
    [volume] = [
        v
        for v in pod_spec()["volumes"]
        if volume_kind in v
        and v[volume_kind].get("secretName" if volume_kind == "secret" else "name") == name
    ]
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]
    return mount  # type: ignore[no-any-return]


PROVIDED_BY = {"amtool": "prometheus-alertmanager", "kubectl": "kubectl"}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} is not installed: `make test` installs it (Debian package "
            f"{PROVIDED_BY.get(binary, 'prometheus')}), or apt-get install it by hand",
            pytrace=False,
        )
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def pack() -> RuleSet:
    return load_rules([PACK])


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------- Kubernetes manifests


@pytest.mark.parametrize("file", sorted(manifests()))
def test_each_manifest_is_valid_for_kubernetes_strictly(file: str) -> None:
    for doc in manifests()[file]:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{file}: {doc['kind']}: {exc}", pytrace=False)
        # no namespace comes from the kustomization (the Role lives elsewhere): each says it
        assert doc["metadata"].get("namespace"), f"{file}: {doc['kind']} names no namespace"


def test_the_schema_check_catches_a_misspelt_field() -> None:
    """The validation above can fail: a typo in the securityContext is an error."""
    broken = deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization  # it would move the Role out of production
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(manifests()) - {"secret.example.yaml"}


def test_the_deployment_runs_two_unprivileged_replicas_with_probes_and_resources() -> None:
    dep = deployment()
    spec = pod_spec()
    c = container()
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_sec = spec["securityContext"]
    assert pod_sec["runAsNonRoot"] is True
    assert pod_sec["runAsUser"] > 0
    assert pod_sec["seccompProfile"] == {"type": "RuntimeDefault"}
    sec = c["securityContext"]
    assert sec["runAsNonRoot"] is True
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["allowPrivilegeEscalation"] is False
    assert sec.get("privileged", False) is False
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert sec["seccompProfile"] == {"type": "RuntimeDefault"}
    # the image's user is the one the pod runs as
    user = re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert user is not None
    assert int(user.group(1)) == pod_sec["runAsUser"] == sec.get("runAsUser", pod_sec["runAsUser"])
    # probes on the service's own endpoints, through the named port 8080
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["args"] == ["serve", "--host", "0.0.0.0"]
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}, kind
    # a read-only root: the writable places are emptyDirs on /tmp and on the reports
    # directory the ConfigMap names
    reports = one("ConfigMap", "configmap.yaml")["data"]["RESPONDER_REPORTS_DIR"]
    writable = [m for m in c["volumeMounts"] if m["mountPath"] in ("/tmp", reports)]
    assert len(writable) == 2
    for mount in writable:
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert "emptyDir" in volume
    assert all(m.get("readOnly") for m in c["volumeMounts"] if m not in writable)


def test_every_responder_variable_of_the_manifests_is_a_setting() -> None:
    env = settings_env()
    assert env, "the pod gets no settings"
    for name in env:
        assert name.startswith(ENV_PREFIX), f"{name}: not a responder setting"
        assert setting_of(name) in Settings.model_fields, f"{name}: no such setting"


def test_every_secret_reaches_the_pod_as_a_file_never_as_a_variable() -> None:
    secret = one("Secret", "secret.example.yaml")
    keys = set(secret["stringData"])
    mount = mount_of("secret", secret["metadata"]["name"])["mountPath"]
    env = settings_env()
    files = {name: value for name, value in env.items() if name.endswith("_FILE")}
    # every key of the Secret is read by exactly one RESPONDER_<NAME>_FILE, and back
    read = {Path(path).name for path in files.values()}
    assert all(Path(path).parent == Path(mount) for path in files.values()), files
    assert read == keys
    assert len(read) == len(files)
    # ... of a secret setting; and no secret setting is given any other way
    for name in files:
        assert is_secret_setting(setting_of(name)), f"{name} is no secret: keep it in the ConfigMap"
    for name in env:
        if not name.endswith("_FILE"):
            assert not is_secret_setting(setting_of(name)), f"{name} is a secret: use {name}_FILE"
    text = "\n".join((KUBE / f).read_text() for f in manifests() if f != "secret.example.yaml")
    assert "secretKeyRef" not in text
    assert "secretRef" not in text
    # the example holds placeholders only
    for key, value in secret["stringData"].items():
        assert "EXAMPLE" in value, f"{key}: the example must hold a placeholder"
    assert "EXAMPLE ONLY" in (KUBE / "secret.example.yaml").read_text()


def test_secret_settings_are_told_apart() -> None:
    """The check above relies on telling SecretStr settings apart: it does."""
    assert is_secret_setting("alertmanager_token")
    assert is_secret_setting("pagerduty_webhook_secrets")
    assert not is_secret_setting("slack_channel")


def test_the_rolebinding_binds_the_deployments_service_account() -> None:
    dep = deployment()
    account = pod_spec()["serviceAccountName"]
    namespace = dep["metadata"]["namespace"]
    sa = one("ServiceAccount", "serviceaccount.yaml")
    assert (sa["metadata"]["name"], sa["metadata"]["namespace"]) == (account, namespace)
    binding = one("RoleBinding", "rolebinding.yaml")
    role = one("Role", "role.yaml")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    # automatic actions may only target namespaces where the Role is bound
    allowlist = Settings(action_allowlist=settings_env()["RESPONDER_ACTION_ALLOWLIST"])
    for entry in allowlist.action_allowlist:
        assert entry.split("/")[0] == role["metadata"]["namespace"], entry
    assert pod_spec().get("automountServiceAccountToken", True) is True  # in-cluster config


def test_service_pdb_and_network_policy_select_the_deployments_pods() -> None:
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    namespace = deployment()["metadata"]["namespace"]
    service = one("Service", "service.yaml")
    pdb = one("PodDisruptionBudget", "pdb.yaml")
    policy = one("NetworkPolicy", "networkpolicy.yaml")
    for doc in (service, pdb, policy):
        assert doc["metadata"]["namespace"] == namespace
    assert labels_match(service["spec"]["selector"], labels)
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], labels)
    assert labels_match(policy["spec"]["podSelector"]["matchLabels"], labels)
    [port] = service["spec"]["ports"]
    assert port["port"] == 8080
    assert port["targetPort"] in {p["name"] for p in container()["ports"]}
    assert pdb["spec"]["minAvailable"] == 1 < deployment()["spec"]["replicas"]

    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    sources = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in ingress["from"]}
    assert sources == {"alertmanager", "prometheus"}
    egress = {
        (p.get("protocol", "TCP"), p["port"])
        for r in policy["spec"]["egress"]
        for p in r.get("ports", [])
    }
    for needed in [("UDP", 53), ("TCP", 53), ("TCP", 6379), ("TCP", 443), ("TCP", 6443)]:
        assert needed in egress, f"egress {needed} missing"
    # the Prometheus port the triage probe needs is the one in RESPONDER_PROMETHEUS_URL
    prometheus_port = int(settings_env()["RESPONDER_PROMETHEUS_URL"].rsplit(":", 1)[1])
    assert ("TCP", prometheus_port) in egress


def test_the_rules_configmap_is_the_rule_packs_byte_for_byte() -> None:
    cm = one("ConfigMap", "configmap-rules.yaml")
    shipped = {p.name: p.read_text(encoding="utf-8") for p in sorted(RULES_DIR.glob("*.yaml"))}
    assert set(cm["data"]) == set(shipped)
    for name, text in shipped.items():
        assert cm["data"][name] == text, (
            f"deploy/kubernetes/configmap-rules.yaml differs from rules/{name}: "
            "run `make manifests`"
        )
    # the generator agrees (its header and layout too)
    check = run(sys.executable, "deploy/rules_configmap.py", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    # and the pods load the packs from where the ConfigMap is mounted
    mount = mount_of("configMap", cm["metadata"]["name"])
    assert settings_env()["RESPONDER_RULES"] == mount["mountPath"]


def kubelet_layout(directory: Path, files: dict[str, str]) -> None:
    """A ConfigMap volume as the kubelet writes it: a timestamped directory, ``..data``
    linking to it, and each key a link through ``..data``."""
    stamp = directory / "..2026_11_29_09_00_00.123456789"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text, encoding="utf-8")
    (directory / "..data").symlink_to(stamp.name)
    for name in files:
        (directory / name).symlink_to(Path("..data") / name)


def test_the_packs_load_once_from_a_configmap_volume(tmp_path: Path) -> None:
    cm = one("ConfigMap", "configmap-rules.yaml")
    kubelet_layout(tmp_path / "rules", cm["data"])
    mounted = load_rules([tmp_path / "rules"])
    shipped = load_rules([RULES_DIR])
    assert [p.name for p in mounted.packs] == [p.name for p in shipped.packs] == ["posthog"]
    assert [r.name for r in mounted.rules()] == [r.name for r in shipped.rules()]


def pod_environment(tmp_path: Path, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """The pod's environment on this machine: its files (secrets, packs) in ``tmp_path``."""
    secret = one("Secret", "secret.example.yaml")["stringData"]
    values = {**secret, "redis-url": redis_url}
    env = settings_env()
    for name, path in list(env.items()):
        if name.endswith("_FILE"):
            local = tmp_path / "secrets" / Path(path).name
            local.parent.mkdir(exist_ok=True)
            local.write_text(values[Path(path).name] + "\n", encoding="utf-8")
            env[name] = str(local)
    kubelet_layout(tmp_path / "rules", one("ConfigMap", "configmap-rules.yaml")["data"])
    env["RESPONDER_RULES"] = str(tmp_path / "rules")
    env["RESPONDER_REDIS_PREFIX"] = redis_prefix  # this test's keys only
    return env


def healthcheck_command() -> list[str]:
    """The image's HEALTHCHECK, with this interpreter for the image's python."""
    match = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])\n", DOCKERFILE.read_text())
    assert match is not None, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    argv: list[str] = json.loads(match.group(1))
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_pods_configuration_starts_the_service_and_passes_its_probes(
    tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = pod_environment(tmp_path, redis_url, redis_prefix)
    # the settings accept it, and it may listen on every address (the intake has a token)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    settings.check_bind("0.0.0.0")
    assert settings.redis_url is not None
    assert settings.group_by == ["alertname", "service"]
    secret = one("Secret", "secret.example.yaml")["stringData"]
    # the service itself, on loopback here, as `responder serve` in the pod
    with serve_process(env, "--host", "127.0.0.1") as served:
        assert get(served.url + "/healthz") == 200
        assert get(served.url + "/readyz") == 200  # Redis reached through the secret URL
        with urllib.request.urlopen(served.url + "/v1/rules", timeout=5) as response:  # noqa: S310
            assert [p["name"] for p in json.load(response)["packs"]] == ["posthog"]
        hook = served.url + "/v1/webhooks/alertmanager"
        json_type = {"Content-Type": "application/json"}
        assert post(hook, b"{}", json_type) == 401  # the token file is in force
        bearer = {**json_type, "Authorization": f"Bearer {secret['alertmanager-token']}"}
        assert post(hook, b"{}", bearer) == 400  # authenticated; an empty payload is refused
        # the image's HEALTHCHECK passes against it, and fails where nothing answers
        probe = subprocess.run(
            healthcheck_command(),
            env={**os.environ, "RESPONDER_PORT": str(served.port)},
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert probe.returncode == 0, probe.stderr
    closed = subprocess.run(
        healthcheck_command(),
        env={**os.environ, "RESPONDER_PORT": str(free_port())},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert closed.returncode != 0


# ------------------------------------------------------------------ kustomize overlays

PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
# Kinds of CRDs (the Prometheus operator's) that kubernetes-validate has no schema for
OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """What ``kubectl apply -k directory`` would send: the rendered objects."""
    result = run(require("kubectl"), "kustomize", str(directory))
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def rendered(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in objects if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every workload's pod spec, by workload name."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in objects
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    }


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    """responder's environment in the rendered objects: its ConfigMap, then its env."""
    [c] = pod_specs(objects)["responder"]["containers"]
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(rendered(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({v["name"]: v["value"] for v in c.get("env", [])})
    return env


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_each_overlay_renders_and_every_object_is_valid_for_kubernetes_strictly(
    overlay: str,
) -> None:
    objects = kustomize(OVERLAYS / overlay)
    assert {d["kind"] for d in objects} >= {"Deployment", "Service", "ConfigMap", "Role"}
    for doc in objects:
        if (doc["apiVersion"], doc["kind"]) in OPERATOR_KINDS:
            continue  # a CRD: no schema here (its own tests check it)
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']} {doc['metadata']['name']}: {exc}", pytrace=False)
        assert doc["metadata"].get("namespace"), f"{overlay}: {doc['kind']} names no namespace"


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_rendered_container_runs_unprivileged_on_a_read_only_root(overlay: str) -> None:
    objects = kustomize(OVERLAYS / overlay)
    specs = pod_specs(objects)
    assert "responder" in specs
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec["containers"]:
            sec = c["securityContext"]
            assert sec["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sec["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sec["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
            assert (
                set(c["resources"]["requests"])
                == set(c["resources"]["limits"])
                == {"cpu", "memory"}
            )
            # whatever it writes goes to a volume: an emptyDir, or a StatefulSet's claim
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for mount in c.get("volumeMounts", []):
                if not mount.get("readOnly"):
                    volume = volumes.get(mount["name"])
                    assert volume is None or "emptyDir" in volume, (name, mount)
    # responder writes /tmp and its reports, both emptyDirs
    [c] = specs["responder"]["containers"]
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp", env_of(objects)["RESPONDER_REPORTS_DIR"]}


def test_the_dev_overlay_is_one_namespace_with_its_own_persistent_redis() -> None:
    objects = kustomize(OVERLAYS / "dev")
    [namespace] = {d["metadata"]["namespace"] for d in objects}
    assert namespace not in ("monitoring", "production", "default")
    binding = rendered(objects, "RoleBinding", "responder")
    assert [s["namespace"] for s in binding["subjects"]] == [namespace]
    # the allowlist (so the Role) points into the same namespace
    allowlist = Settings(action_allowlist=env_of(objects)["RESPONDER_ACTION_ALLOWLIST"])
    assert {e.split("/")[0] for e in allowlist.action_allowlist} == {namespace}
    # one replica, and so no disruption budget that would block every drain
    assert rendered(objects, "Deployment", "responder")["spec"]["replicas"] == 1
    assert not [d for d in objects if d["kind"] == "PodDisruptionBudget"]
    # Redis: a StatefulSet keeping the append-only file on its claim
    redis = rendered(objects, "StatefulSet", "responder-redis")
    spec = redis["spec"]
    [c] = spec["template"]["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    data_dir = args[args.index("--dir") + 1]
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert {"name": claim["metadata"]["name"], "mountPath": data_dir} in c["volumeMounts"]
    service = rendered(objects, "Service", spec["serviceName"])
    assert labels_match(service["spec"]["selector"], spec["template"]["metadata"]["labels"])
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    # only responder reaches it, and it reaches no one; responder may reach it
    responder_labels = rendered(objects, "Deployment", "responder")["spec"]["template"]["metadata"][
        "labels"
    ]
    guard = rendered(objects, "NetworkPolicy", "responder-redis")
    assert labels_match(
        guard["spec"]["podSelector"]["matchLabels"], spec["template"]["metadata"]["labels"]
    )
    [ingress] = guard["spec"]["ingress"]
    assert [
        labels_match(p["podSelector"]["matchLabels"], responder_labels) for p in ingress["from"]
    ] == [True]
    assert guard["spec"]["egress"] == []
    assert "Egress" in guard["spec"]["policyTypes"]
    policy = rendered(objects, "NetworkPolicy", "responder")
    assert any(
        "podSelector" in peer
        and labels_match(peer["podSelector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        and rule["ports"] == [{"protocol": "TCP", "port": 6379}]
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
    )


def test_the_production_overlay_runs_two_replicas_apart_with_a_budget() -> None:
    objects = kustomize(OVERLAYS / "production")
    # the base (deploy/kubernetes, applied alone as before) is all there
    base = {(d["kind"], d["metadata"]["name"]) for d in kustomize(KUBE)}
    assert base <= {(d["kind"], d["metadata"]["name"]) for d in objects}
    dep = rendered(objects, "Deployment", "responder")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["replicas"] == 2
    pdb = rendered(objects, "PodDisruptionBudget", "responder")
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"]["minAvailable"] == 1
    # never two replicas on one node
    [term] = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert labels_match(term["labelSelector"]["matchLabels"], labels)
    # its own monitoring: the Component, included
    kustomization = yaml.safe_load((OVERLAYS / "production" / "kustomization.yaml").read_text())
    [component] = kustomization["components"]
    component_file = (OVERLAYS / "production" / component / "kustomization.yaml").resolve()
    assert component_file == KUBE / "monitoring" / "kustomization.yaml"
    assert yaml.safe_load(component_file.read_text())["kind"] == "Component"
    # Redis from the Secret's file, as in the base
    assert env_of(objects)["RESPONDER_REDIS_URL_FILE"].startswith("/etc/responder/secrets/")


def test_the_production_network_policy_calls_only_what_it_needs() -> None:
    policy = rendered(kustomize(OVERLAYS / "production"), "NetworkPolicy", "responder")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports: set[int] = set()
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), f"egress to anywhere: {rule}"
        rule_ports = {p["port"] for p in rule.get("ports", [])}
        ports |= rule_ports
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block is None:
                assert "podSelector" in peer, peer  # pods, never whole namespaces
                continue
            assert rule_ports, f"{block}: every port"
            if block["cidr"] == "0.0.0.0/0":
                # the Internet's HTTPS, not the cluster's own addresses
                assert rule_ports == {443}
                assert sorted(block["except"]) == sorted(PRIVATE_RANGES)
            else:
                assert block["cidr"] in PRIVATE_RANGES, block
    assert ports == {53, 9090, 6379, 26379, 443, 6443}


def test_the_sentinel_component_gives_settings_the_service_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """production with `- sentinel`: the sentinels instead of the URL, and the settings
    the pod gets are valid together (they exclude each other)."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(OVERLAYS / "production", overlay)],
                "components": [os.path.relpath(OVERLAYS / "production" / "sentinel", overlay)],
            }
        )
    )
    env = env_of(kustomize(overlay))
    assert "RESPONDER_REDIS_URL_FILE" not in env
    for name, value in env.items():
        if name.endswith("_FILE"):  # the Secret's files, here
            local = tmp_path / Path(value).name
            local.write_text("EXAMPLE-value\n")
            value = str(local)
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.redis_url is None
    assert len(settings.redis_sentinels) == 3
    assert settings.redis_sentinel_master
    assert settings.redis_password is not None


# ----------------------------------------------------------------------- the lock

NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)", re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(text: str) -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: each package's pinned version and its sha256 hashes."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(
        r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text
    ):
        match = NAME.match(entry)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
            pins[canonical(match.group(1))] = (match.group(3), hashes)
    return pins


def runtime_closure() -> dict[str, str]:
    """Every distribution the package needs at run time, with the version installed (and
    tested) here: pyproject.toml's dependencies, and theirs."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    todo = [Requirement(r) for r in config["project"]["dependencies"]]
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        key = (canonical(req.name), frozenset(req.extras))
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed here", pytrace=False)
        found[canonical(req.name)] = dist.version
        # its own requirements, and those of the extras asked for (redis[hiredis])
        for line in dist.requires or []:
            sub = Requirement(line)
            wanted = sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in ["", *req.extras]
            )
            if wanted:
                sub.marker = None
                todo.append(sub)
    return found


def missing_from_lock(lock_text: str) -> list[str]:
    from packaging.requirements import Requirement

    pins = lock_pins(lock_text)
    problems = []
    for name, version in sorted(runtime_closure().items()):
        if name not in pins:
            problems.append(f"{name}: not in requirements.lock")
        elif pins[name][0] != version:
            problems.append(f"{name}: {pins[name][0]} locked, {version} installed and tested")
        elif not pins[name][1]:
            problems.append(f"{name}: no hash")
    # what the image builds the package with (pip install --no-build-isolation)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for line in config["build-system"]["requires"]:
        req = Requirement(line)
        pinned = pins.get(canonical(req.name))
        if pinned is None or not req.specifier.contains(pinned[0]) or not pinned[1]:
            problems.append(f"{req.name}: the build's {line} is not locked with hashes")
    return problems


def test_the_lock_pins_every_runtime_dependency_with_its_hashes() -> None:
    text = LOCK.read_text()
    assert "make lock" in text  # how to regenerate it, in its header
    assert missing_from_lock(text) == [], "run `make lock`"
    closure = runtime_closure()
    assert {"aiohttp", "redis", "hiredis", "pydantic-core", "uvloop"} <= set(closure)
    # and nothing for development only: the image is not the test bench
    for name in ("pytest", "mypy", "ruff", "pip-tools", "kubernetes-validate"):
        assert name not in lock_pins(text), name
    # the lock agrees with the constraints the tests ran on
    constrained = dict(
        (canonical(m.group(1)), m.group(3))
        for m in NAME.finditer((ROOT / "constraints.txt").read_text())
    )
    for name, (version, _) in lock_pins(text).items():
        if name in constrained:
            assert constrained[name] == version, name


def test_the_lock_check_catches_a_missing_dependency_and_a_missing_hash() -> None:
    text = LOCK.read_text()
    without_multidict = re.sub(r"\nmultidict==[^\n]*(\n +[^\n]*)*", "", text)
    assert missing_from_lock(without_multidict) == ["multidict: not in requirements.lock"]
    unhashed = re.sub(r"(\nyarl==\S+) \\(\n +--hash=[^\n]*)+", r"\1", text)
    assert missing_from_lock(unhashed) == ["yarl: no hash"]
    unbuildable = re.sub(r"\nsetuptools==[^\n]*(\n +[^\n]*)*", "", text)
    [problem] = missing_from_lock(unbuildable)
    assert problem.startswith("setuptools: the build's")


# ------------------------------------------------------------------------- the image


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_builds_in_two_stages_and_runs_unprivileged() -> None:
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    final = froms[-1].replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", ""))
    # an exact release (a digest may follow), never a moving tag such as 3.11-slim
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", final), final
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    # the dependencies from the hashed lock, then the package alone, downloading nothing
    assert "pip install --require-hashes -r requirements.lock" in runs
    assert "pip install --no-deps --no-build-isolation --no-index ." in runs
    assert any(word == "COPY" and "requirements.lock" in rest.split() for word, rest in steps)
    assert "-e " not in runs  # not editable: the package data goes into the venv
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    final_steps = steps[last_from:]
    users = [rest for word, rest in final_steps if word == "USER"]
    assert len(users) == 1
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[0]), "a numeric, non-root user"
    assert ("EXPOSE", "8080") in final_steps
    env = " ".join(rest for word, rest in final_steps if word == "ENV")
    rules = re.search(r"RESPONDER_RULES=(\S+)", env)
    assert rules is not None
    assert any(
        word == "COPY" and rest.split()[-1].rstrip("/") == rules.group(1) and "rules/" in rest
        for word, rest in final_steps
    )
    [health] = [rest for word, rest in final_steps if word == "HEALTHCHECK"]
    assert "urllib.request" in health
    assert "/healthz" in health
    assert "curl" not in health
    [entry] = [json.loads(rest) for word, rest in final_steps if word == "ENTRYPOINT"]
    [cmd] = [json.loads(rest) for word, rest in final_steps if word == "CMD"]
    assert [*entry, *cmd] == ["responder", "serve", "--host", "0.0.0.0"]


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more() -> None:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "*"  # everything out (.venv, .git, tests, secrets), then back in
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            for source in shlex.split(rest)[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source}: not in the build context"


def test_every_non_python_file_of_the_package_is_package_data() -> None:
    """The image installs the package (not editable): a template, a Lua script, any file
    the package data patterns miss, would be missing there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["responder"]
    package = ROOT / "responder"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    data = {
        p
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert any(p.suffix == ".j2" for p in data)  # the message templates are among them
    assert data <= shipped, sorted(str(p.relative_to(ROOT)) for p in data - shipped)


# ---------------------------------------------------------------------- Alertmanager


def alertmanager() -> dict[str, Any]:
    return yaml.safe_load(ALERTMANAGER_YML.read_text())  # type: ignore[no-any-return]


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = run(require("amtool"), "check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=PostHogAPIUnreachable", "paged=true"], "responder,pagerduty"),
        (["alertname=PostHogAuthFailures", "paged=true", "status_code=401"], "responder,pagerduty"),
        (["alertname=PostHogRateLimited", "status_code=429"], "responder"),
        (["alertname=PostHogMetricsAbsent"], "responder"),
    ],
)
def test_alertmanager_sends_posthog_alerts_to_responder_and_paged_ones_to_pagerduty(
    labels: list[str], receivers: str
) -> None:
    result = run(
        require("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YML}",
        f"--verify.receivers={receivers}",
        "service=posthog-integration",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_keeps_other_services_alerts_from_responder() -> None:
    result = run(
        require("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YML}",
        "--verify.receivers=default",
        "alertname=KubePodCrashLooping",
        "service=checkout-api",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanagers_webhook_reaches_the_service_as_responder_expects() -> None:
    config = alertmanager()
    [receiver] = [r for r in config["receivers"] if r["name"] == "responder"]
    [hook] = receiver["webhook_configs"]
    service = one("Service", "service.yaml")
    [port] = service["spec"]["ports"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert hook["url"] == f"http://{name}.{namespace}.svc:{port['port']}/v1/webhooks/alertmanager"
    assert hook["send_resolved"] is True
    assert hook["max_alerts"] == 0
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    assert hook["http_config"]["authorization"]["credentials_file"]
    env = settings_env()
    group_by = env["RESPONDER_GROUP_BY"].split(",")
    routes = config["route"]["routes"]
    to_responder = [r for r in routes if r["receiver"] == "responder"]
    assert to_responder
    for route in routes:
        # one Alertmanager group is one incident
        assert route["group_by"] == group_by, route
        assert 'service="posthog-integration"' in route["matchers"]
    # a paged alert: responder and PagerDuty from routes with the same matchers (so the
    # same groupKey, whose sha256 is PagerDuty's incident key: responder links the two)
    paged = f'{env["RESPONDER_PAGERDUTY_PAGED_LABEL"]}="true"'
    [pager] = [r for r in routes if r["receiver"] == "pagerduty"]
    assert paged in pager["matchers"]
    [twin] = [r for r in to_responder if r["matchers"] == pager["matchers"]]
    assert routes.index(twin) < routes.index(pager)
    assert twin["continue"] is True


# ------------------------------------------------------------------------ Prometheus


def alert_rules() -> dict[str, dict[str, Any]]:
    rules = {}
    for group in yaml.safe_load(ALERTS_YML.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] not in rules, rule["alert"]
            rules[rule["alert"]] = rule
    return rules


def unit_tests() -> Iterator[dict[str, Any]]:
    for case in yaml.safe_load(ALERTS_TEST_YML.read_text())["tests"]:
        yield from case["alert_rule_test"]


def expected_alerts() -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(alertname, labels, annotations) of every alert the unit tests expect to fire:
    what Prometheus sends for it, as promtool checks."""
    return [
        (test["alertname"], exp["exp_labels"], exp.get("exp_annotations", {}))
        for test in unit_tests()
        for exp in test["exp_alerts"]
    ]


def test_promtool_accepts_the_alert_rules() -> None:
    result = run(require("promtool"), "check", "rules", str(ALERTS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    result = run(
        require("promtool"), "test", "rules", ALERTS_TEST_YML.name, cwd=ALERTS_TEST_YML.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_when_an_alert_does_not_fire_as_expected(tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against rules whose thresholds are out of
    reach expect alerts that never come."""
    rules = yaml.safe_load(ALERTS_YML.read_text())
    for rule in rules["groups"][0]["rules"]:
        rule["expr"] = f"({rule['expr']}) and on () vector(0) > 1"
    (tmp_path / ALERTS_YML.name).write_text(yaml.safe_dump(rules))
    shutil.copy(ALERTS_TEST_YML, tmp_path / ALERTS_TEST_YML.name)
    result = run(require("promtool"), "test", "rules", ALERTS_TEST_YML.name, cwd=tmp_path)
    assert result.returncode != 0
    for alertname in alert_rules():
        assert f"alertname: {alertname}" in result.stdout + result.stderr, alertname


def test_each_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing = {t["alertname"] for t in unit_tests() if t["exp_alerts"]}
    quiet = {t["alertname"] for t in unit_tests() if not t["exp_alerts"]}
    assert firing == set(alert_rules())
    assert quiet == set(alert_rules())


def test_the_alerts_are_the_ones_the_rule_pack_names() -> None:
    assert set(alert_rules()) == set(EXPECTED)
    named: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for rule in pack().rules():
        for matcher in rule.matchers:
            if matcher.name != "alertname":
                continue
            if matcher.op == "=":
                named.add(matcher.value)
            elif matcher.op == "=~" and rule.name != "other-posthog-alert":
                patterns.append(re.compile(matcher.value))
    # every alert a rule names is raised by Prometheus, and each alternation has one
    assert named <= set(alert_rules()), named - set(alert_rules())
    for pattern in patterns:
        assert any(pattern.fullmatch(a) for a in alert_rules()), pattern.pattern


@pytest.mark.parametrize(
    ("alertname", "labels", "annotations"),
    expected_alerts(),
    ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(expected_alerts())],
)
def test_each_prometheus_alert_classifies_as_the_runbook_says(
    alertname: str, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    rule, severity, error_type = EXPECTED[alertname]
    # what Alertmanager forwards: the alert's labels and its rendered annotations
    alert = AlertInput(labels={"alertname": alertname, **labels}, annotations=annotations)
    decision = pack().evaluate(alert).decision
    assert decision.pack == "posthog"
    assert (decision.rule, decision.severity) == (rule, severity)
    wanted = error_type or ErrorType(labels["error_type"])
    assert decision.error_type == wanted
    assert decision.error_type != ErrorType.UNKNOWN
    # the labels the pack's probes and actions read
    assert labels["service"] == "posthog-integration"
    assert labels["namespace"]
    assert labels["severity"] == SEVERITY_LABEL[decision.severity.value]
    # the alerts the pack pages for are paged by Alertmanager (and so not again by responder)
    assert (labels.get("paged") == "true") is decision.page


def test_every_unit_test_expectation_carries_the_rules_own_labels() -> None:
    """exp_labels are what promtool compares: they hold every static label of the rule, so
    the classification above sees what Prometheus really sends."""
    rules = alert_rules()
    for alertname, labels, rendered in expected_alerts():
        assert rules[alertname].get("labels", {}).items() <= labels.items(), alertname
        assert set(rendered) == set(rules[alertname]["annotations"]), alertname


def test_the_classification_check_can_fail() -> None:
    """A 429 alert renamed to what the pack calls an auth failure is classified by the
    auth-failures rule (P1), not by the rate-limited one: its error type is what its
    status label says."""
    decision = (
        pack()
        .evaluate(
            AlertInput(
                labels={
                    "alertname": "PostHogAuthFailures",
                    "service": "posthog-integration",
                    "namespace": "production",
                    "status_code": "429",
                }
            )
        )
        .decision
    )
    assert (decision.rule, decision.error_type) == ("auth-failures", ErrorType.RATE_LIMIT)
    assert decision.reasons["error_type"] == 'label status_code="429"'
    assert decision.rule != EXPECTED["PostHogRateLimited"][0]
