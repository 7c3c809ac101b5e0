"""What each action sends to a Deployment, and what it reads back, as pure functions.

They build the patches ``kubectl`` builds: ``set env`` merges container env entries by
name (a strategic merge patch; a JSON merge patch would replace the whole list), removes
one with ``$patch: delete``; ``rollout restart`` sets the pod template's ``restartedAt``
annotation. Each also says how to read the part of the object it touches, so the state
before and after is recorded; an undo is the same kind of patch back to the state before.
The action classes (``actions.py``) use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# The container kubectl picks when none is named (logs, exec); ours too (``target_containers``).
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


class TargetProblem(ValueError):
    """The Deployment is not as the action needs it (no such container, paused...)."""


def containers(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers") or [])


def _template_annotations(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    template = deployment.get("spec", {}).get("template", {})
    return template.get("metadata", {}).get("annotations") or {}


def target_containers(deployment: Mapping[str, Any], wanted: str | None) -> list[str]:
    """The containers an env action changes: the named one; else the one the pod template's
    ``default-container`` annotation names (what ``kubectl logs``/``exec`` pick); else every
    container (what ``kubectl set env`` does without -c). Never one by position: a mesh
    sidecar is often first."""
    names = [str(c.get("name", "")) for c in containers(deployment)]
    if not names:
        raise TargetProblem("the deployment has no containers")
    if wanted is not None:
        if wanted not in names:
            raise TargetProblem(f"no container {wanted!r} (containers: {', '.join(names)})")
        return [wanted]
    default = _template_annotations(deployment).get(DEFAULT_CONTAINER)
    if default is not None:
        if default not in names:
            # a stale annotation must not turn "the app" into "every container"
            raise TargetProblem(
                f"the {DEFAULT_CONTAINER} annotation names {default!r}, not a container "
                f"(containers: {', '.join(names)}): name the container in the rule"
            )
        return [str(default)]
    return names


def env_values(
    deployment: Mapping[str, Any], container: str, names: list[str]
) -> dict[str, str | None]:
    """The current values of ``names`` in the container (None: not set)."""
    current: dict[str, str | None] = dict.fromkeys(names)
    for c in containers(deployment):
        if c.get("name") != container:
            continue
        for entry in c.get("env") or []:
            if entry.get("name") in current:
                value = entry.get("value")
                if value is None and "valueFrom" in entry:
                    value = "<valueFrom>"
                current[entry["name"]] = value if value is not None else ""
    return current


def env_patch(values: Mapping[str, Mapping[str, str | None]]) -> dict[str, Any]:
    """Per container (by name), set each variable to its value; ``None`` removes it."""
    patched: list[dict[str, Any]] = []
    for container, env in values.items():
        entries: list[dict[str, Any]] = []
        for name, value in env.items():
            if value is None:
                entries.append({"name": name, "$patch": "delete"})
            else:
                entries.append({"name": name, "value": value})
        patched.append({"name": container, "env": entries})
    return {"spec": {"template": {"spec": {"containers": patched}}}}


def patched_containers(patch: Mapping[str, Any]) -> list[str]:
    """The containers an env patch (ours, or its undo) names."""
    spec = patch.get("spec", {}).get("template", {}).get("spec", {})
    return [str(c.get("name")) for c in spec.get("containers") or []]


def secret_users(deployment: Mapping[str, Any], secret: str) -> list[str]:
    """The containers that read the Secret: an ``env`` ``secretKeyRef``, an ``envFrom``
    ``secretRef``, or a mounted volume of it (``secret`` or ``projected``)."""
    pod_spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    volumes = set()
    for volume in pod_spec.get("volumes") or []:
        sources = [volume.get("secret") or {}] + [
            s.get("secret") or {} for s in (volume.get("projected") or {}).get("sources") or []
        ]
        if any(s.get("secretName", s.get("name")) == secret for s in sources):
            volumes.add(volume.get("name"))
    users = []
    for c in containers(deployment):
        refs = [((e.get("valueFrom") or {}).get("secretKeyRef") or {}) for e in c.get("env") or []]
        refs += [(e.get("secretRef") or {}) for e in c.get("envFrom") or []]
        mounted = {m.get("name") for m in c.get("volumeMounts") or []}
        if any(r.get("name") == secret for r in refs) or mounted & volumes:
            users.append(str(c.get("name")))
    return users


def restarted_at(deployment: Mapping[str, Any]) -> str | None:
    value = _template_annotations(deployment).get(RESTARTED_AT)
    return str(value) if value is not None else None


def restart_patch(at: datetime) -> dict[str, Any]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def check_restartable(deployment: Mapping[str, Any]) -> None:
    if deployment.get("spec", {}).get("paused"):
        raise TargetProblem("the deployment is paused (kubectl refuses to restart it too)")


def pod_selector(deployment: Mapping[str, Any]) -> str:
    """The label selector of the deployment's pods (``matchLabels``)."""
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    if not labels:
        raise TargetProblem("the deployment has no matchLabels selector")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
