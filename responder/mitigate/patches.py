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


class TargetProblem(ValueError):
    """The Deployment is not as the action needs it (no such container, paused...)."""


def containers(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers") or [])


def container_name(deployment: Mapping[str, Any], wanted: str | None) -> str:
    """The named container, or the first (what ``kubectl set env`` does without -c)."""
    names = [str(c.get("name", "")) for c in containers(deployment)]
    if not names:
        raise TargetProblem("the deployment has no containers")
    if wanted is None:
        return names[0]
    if wanted not in names:
        raise TargetProblem(f"no container {wanted!r} (containers: {', '.join(names)})")
    return wanted


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


def env_patch(container: str, values: Mapping[str, str | None]) -> dict[str, Any]:
    """Set each name to its value; ``None`` removes the variable."""
    entries: list[dict[str, Any]] = []
    for name, value in values.items():
        if value is None:
            entries.append({"name": name, "$patch": "delete"})
        else:
            entries.append({"name": name, "value": value})
    return {"spec": {"template": {"spec": {"containers": [{"name": container, "env": entries}]}}}}


def restarted_at(deployment: Mapping[str, Any]) -> str | None:
    annotations = (
        deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    )
    value = annotations.get(RESTARTED_AT)
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
