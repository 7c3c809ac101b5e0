"""Guards: may an automatic action go ahead? Pure functions, each with its reason.

In order: automation not paused (for every incident, or for this one by a person); the
incident not acknowledged by a human (unless a person approved the step: then it is their
decision, not the automation's); the
(namespace, deployment, action) on the allowlist; not in dry-run; the target out of its
cooldown for the same change; the action budget not spent. (The per-target lock is taken
by the executor, the last guard.) The first guard that says no decides; every verdict is recorded.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime

from responder.domain.action import Verdict
from responder.domain.names import k8s_name_problem
from responder.ports import Pause

DRY_RUN = "dry_run"  # the guard whose "no" means "record what you would do"
ACKNOWLEDGED = "acknowledged"  # the guard whose "no" means "a human has it already"


@dataclass(frozen=True)
class GuardInput:
    action: str
    namespace: str | None
    deployment: str | None
    paused: Pause | None
    acked_by: str | None
    allowlist: tuple[str, ...]
    dry_run: bool
    dry_run_why: str
    cooldown_until: datetime | None
    budget_used: int
    budget_limit: int
    budget_window_s: float
    now: datetime
    changes_cluster: bool = True
    change: str = ""  # the exact change (``Action.change``), which the cooldown is kept by
    # who paused this incident's automation (``Incident.paused_by``)
    incident_paused_by: str | None = None
    # who approved this step (``approval:``): the ack guard lets it through
    approved_by: str | None = None

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.deployment}" if self.deployment else "-"


def _segments_match(pattern: str, segments: tuple[str, ...]) -> bool:
    """Shell wildcards, one ``/``-separated segment at a time: ``*`` never spans a ``/``,
    so ``production/*/set_env`` does not allow ``production/a/b/set_env``."""
    parts = pattern.split("/")
    return len(parts) == len(segments) and all(
        fnmatch.fnmatchcase(segment, part) for part, segment in zip(parts, segments, strict=True)
    )


def allowed(allowlist: tuple[str, ...], namespace: str, deployment: str, action: str) -> bool:
    """``namespace/deployment/action`` entries; shell wildcards within a segment
    (``production/*/set_env``). Names that are not Kubernetes names are never allowed."""
    if target_problem(namespace, deployment):
        return False
    return any(_segments_match(p, (namespace, deployment, action)) for p in allowlist)


def namespace_allowed(allowlist: tuple[str, ...], namespace: str) -> bool:
    """Whether some entry of the allowlist names ``namespace`` (its first segment, with
    its wildcards): what a probe that reads the cluster (pod logs) may read."""
    if k8s_name_problem(namespace, kind="namespace"):
        return False
    return any(
        len(p.split("/")) == 3 and fnmatch.fnmatchcase(namespace, p.split("/")[0])
        for p in allowlist
    )


def target_problem(namespace: str, deployment: str) -> str | None:
    """Why ``namespace/deployment`` is no target (not Kubernetes names), or ``None``."""
    return k8s_name_problem(namespace, kind="namespace") or k8s_name_problem(
        deployment, kind="deployment"
    )


def allowlist_verdict(
    allowlist: tuple[str, ...], namespace: str, deployment: str, action: str
) -> tuple[str, bool, str]:
    """The allowlist guard's answer (guard, ok, reason): also what a step that needs
    approval must pass before a person is asked (a target it refuses is not offered)."""
    invalid = target_problem(namespace, deployment)
    on_list = invalid is None and allowed(allowlist, namespace, deployment, action)
    target = f"{namespace}/{deployment}"
    if invalid is not None:
        reason = f"the target is refused: {invalid}"
    elif on_list:
        reason = f"{target}/{action} is on the allowlist"
    else:
        reason = f"{target}/{action} is not on the allowlist (RESPONDER_ACTION_ALLOWLIST)"
    return "allowlist", on_list, reason


def check(g: GuardInput) -> list[Verdict]:
    """The verdicts up to the first refusal (or all of them, each ok)."""
    verdicts: list[Verdict] = []

    def say(guard: str, ok: bool, reason: str) -> bool:
        verdicts.append(Verdict(guard=guard, ok=ok, reason=reason))
        return ok

    if g.paused is not None:
        pause = f"automation is paused by {g.paused.by}: {g.paused.reason}"
    elif g.incident_paused_by is not None:
        pause = f"automation of this incident is paused by {g.incident_paused_by}"
    else:
        pause = None
    if not say("paused", pause is None, pause or "automation is running"):
        return verdicts
    if g.acked_by is None:
        ack = "no human has taken the incident"
    elif g.approved_by is not None:
        # a step a person approved is their decision, taken knowing the incident is theirs
        ack = f"{g.acked_by} acknowledged the incident; {g.approved_by} approved this step"
    else:
        ack = f"{g.acked_by} acknowledged the incident: the automation only reports now"
    if not say(ACKNOWLEDGED, g.acked_by is None or g.approved_by is not None, ack):
        return verdicts
    if not g.changes_cluster:
        return verdicts
    assert g.namespace is not None
    assert g.deployment is not None
    if not say(*allowlist_verdict(g.allowlist, g.namespace, g.deployment, g.action)):
        return verdicts
    if not say(DRY_RUN, not g.dry_run, "live" if not g.dry_run else f"dry-run: {g.dry_run_why}"):
        return verdicts
    cooling = g.cooldown_until is not None and g.cooldown_until > g.now
    if not say(
        "cooldown",
        not cooling,
        "out of cooldown"
        if not cooling
        else f"{g.target} had the same change ({g.change or g.action}) until "
        f"{g.cooldown_until:%H:%M:%S}: in cooldown",
    ):
        return verdicts
    spent = g.budget_used >= g.budget_limit
    say(
        "budget",
        not spent,
        f"{g.budget_used} of {g.budget_limit} actions used in {g.budget_window_s:g}s"
        if not spent
        else f"the action budget is spent ({g.budget_limit} in {g.budget_window_s:g}s): "
        "no more automatic actions until the window moves on",
    )
    return verdicts
