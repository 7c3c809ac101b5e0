"""One class per action type, over its typed spec: what that action does to its target.

The executor (``executor.py``, with ``step.py`` and ``reverts.py``) owns what every action
shares: the step claimed once, the guards, the lock, the record. What differs by action
type is here, found by the spec's type in ``ACTIONS`` (``action_for``): the target it
changes; the patch it plans, with the touched state before and the state wanted after;
whether the target already is as wanted; whether a patch a dead worker sent is found on
the target; what it reads back after sending; the patch that undoes it (``None``: it
cannot be undone) and when (``revert_when``); the exact change it makes (``change``),
which its cooldown is kept by. A new action type is a spec in ``responder.domain.plans``
and a class here; a spec without one fails at import.

The patches themselves are built by pure functions (``patches.py``); the target is read and
changed through the ``KubeGateway`` port only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_args

from pydantic import JsonValue

from responder.domain.action import ActionRecord
from responder.domain.plans import (
    ActionSpec,
    PageHuman,
    RestartIfSecretRotated,
    RevertWhen,
    RolloutRestart,
    Scale,
    SetEnv,
    UnsetEnv,
)
from responder.mitigate import patches
from responder.ports import Clock, KubeGateway


class _Spec(Protocol):
    @property
    def type(self) -> str: ...


class _DeploymentSpec(_Spec, Protocol):
    @property
    def namespace(self) -> str: ...

    @property
    def deployment(self) -> str: ...


class _ReversibleSpec(_DeploymentSpec, Protocol):
    @property
    def revert_on_resolve(self) -> bool: ...

    @property
    def revert(self) -> RevertWhen: ...


SpecT = TypeVar("SpecT", bound=_Spec)
DeploymentSpecT = TypeVar("DeploymentSpecT", bound=_DeploymentSpec)
ReversibleSpecT = TypeVar("ReversibleSpecT", bound=_ReversibleSpec)
EnvSpecT = TypeVar("EnvSpecT", SetEnv, UnsetEnv)
RestartSpecT = TypeVar("RestartSpecT", RolloutRestart, RestartIfSecretRotated)


@dataclass(frozen=True)
class Plan:
    """What a step sends: the patch, the state it touches as it was before, and the state
    wanted after (both recorded; the wanted state is noted before sending, for recovery)."""

    patch: dict[str, Any]
    before: dict[str, JsonValue]
    wanted: dict[str, JsonValue]


@dataclass(frozen=True)
class Skip:
    """Why an action the guards let through does not go ahead: the target says it would
    not help. ``reason`` for the record, ``detail`` for the timeline, ``human`` for the
    handoff."""

    reason: str
    detail: str
    human: str


class Action(ABC, Generic[SpecT]):
    """An action of a plan, over its spec."""

    # whether a record of it can be undone (``undo``): what ``ActionRecord.reversible`` says
    reversible: ClassVar[bool] = False

    def __init__(self, spec: SpecT) -> None:
        self.spec = spec

    @property
    def namespace(self) -> str | None:
        return None

    @property
    def deployment(self) -> str | None:
        """The Deployment it changes; ``None``: it changes nothing in the cluster."""
        return None

    @property
    def revert_on_resolve(self) -> bool:
        return False

    @property
    def revert_when(self) -> RevertWhen:
        """When the automation undoes it (``plans.RevertWhen``)."""
        return "never"

    @property
    def change(self) -> str:
        """The exact change, as the cooldown tells changes apart: setting one variable
        does not hold back setting another (or the same to another value)."""
        return self.spec.type


class PageHumanAction(Action[PageHuman]):
    """No cluster change: the incident needs a human now, for ``reason``."""

    @property
    def reason(self) -> str:
        return self.spec.reason


class DeploymentAction(Action[DeploymentSpecT]):
    """An action that changes one Deployment."""

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def deployment(self) -> str:
        return self.spec.deployment

    async def read(self, kube: KubeGateway) -> dict[str, Any]:
        """The target, as the API server has it."""
        return await kube.get_deployment(namespace=self.spec.namespace, name=self.spec.deployment)

    async def skip(self, kube: KubeGateway) -> Skip | None:
        """Why not to go ahead though the guards agree, read from the cluster; ``None``:
        go ahead."""
        return None

    @abstractmethod
    async def plan(
        self, deployment: dict[str, Any] | None, *, kube: KubeGateway, clock: Clock
    ) -> Plan:
        """The patch to send, the touched state before, and the state wanted after.
        ``deployment`` is ``None`` in a dry run that could not read the target."""

    def as_wanted(self, plan: Plan) -> bool:
        """Whether the target already is as wanted, so that nothing is sent."""
        return plan.before == plan.wanted

    def found_sent(self, deployment: dict[str, Any], wanted: Mapping[str, JsonValue]) -> bool:
        """Whether ``wanted``, noted by a worker that died after (maybe) sending its patch,
        is on the target: then the patch was sent."""
        return False

    @abstractmethod
    async def send(self, patch: dict[str, Any], *, kube: KubeGateway) -> dict[str, JsonValue]:
        """Send ``patch`` (the plan's, or an undo's); the touched state read back after."""

    def undo(self, record: ActionRecord) -> dict[str, Any] | None:
        """The patch that puts back what ``record`` found; ``None``: it cannot be undone."""
        return None

    async def _patch_deployment(self, patch: dict[str, Any], kube: KubeGateway) -> dict[str, Any]:
        return await kube.patch_deployment(
            namespace=self.spec.namespace, name=self.spec.deployment, patch=patch, dry_run=False
        )


class ReversibleAction(DeploymentAction[ReversibleSpecT]):
    """A Deployment change that can be undone; undone on resolve when its spec asks."""

    reversible = True

    @property
    def revert_on_resolve(self) -> bool:
        return self.spec.revert_on_resolve

    @property
    def revert_when(self) -> RevertWhen:
        return self.spec.revert


class EnvAction(ReversibleAction[EnvSpecT]):
    """What ``kubectl set env`` does: container env entries merged by name (``None``: the
    entry removed)."""

    @property
    @abstractmethod
    def values(self) -> dict[str, str | None]:
        """Each variable's wanted value; ``None``: not set."""

    async def plan(
        self, deployment: dict[str, Any] | None, *, kube: KubeGateway, clock: Clock
    ) -> Plan:
        values = self.values
        if deployment is None:  # dry-run without a cluster: the patch, unknown before
            name = self.spec.container or "<the default container, else each container>"
            unknown: dict[str, JsonValue] = {"containers": {name: dict(values)}}
            return Plan(patches.env_patch({name: values}), {}, unknown)
        targets = patches.target_containers(deployment, self.spec.container)
        current = {n: patches.env_values(deployment, n, list(values)) for n in targets}
        # only the containers not yet as wanted are patched, so the record (and the dry-run
        # patch) names the containers that change; all of them when none would
        changing = [n for n in targets if current[n] != values] or targets
        return Plan(
            patches.env_patch(dict.fromkeys(changing, values)),
            {"containers": {n: dict(current[n]) for n in changing}},
            {"containers": {n: dict(values) for n in changing}},
        )

    def found_sent(self, deployment: dict[str, Any], wanted: Mapping[str, JsonValue]) -> bool:
        per_container = env_by_container(wanted)
        return bool(per_container) and all(
            patches.env_values(deployment, name, list(env)) == env
            for name, env in per_container.items()
        )

    async def send(self, patch: dict[str, Any], *, kube: KubeGateway) -> dict[str, JsonValue]:
        result = await self._patch_deployment(patch, kube)
        sent = patch["spec"]["template"]["spec"]["containers"]
        read: dict[str, JsonValue] = {
            str(c["name"]): dict(
                patches.env_values(result, str(c["name"]), [str(e["name"]) for e in c["env"]])
            )
            for c in sent
        }
        return {"containers": read}

    def undo(self, record: ActionRecord) -> dict[str, Any] | None:
        before = env_by_container(record.before)
        if not before:  # recorded before the target was read: nothing known to put back
            before = {n: dict.fromkeys(env) for n, env in env_by_container(record.after).items()}
        return patches.env_patch(before)


def env_by_container(state: Mapping[str, JsonValue]) -> dict[str, dict[str, str | None]]:
    """An env action's recorded state, per container: ``{"containers": {name: {var: value}}}``,
    or the one-container ``{"container": name, "env": {...}}`` records of earlier versions
    (an incident open across the upgrade is still reverted)."""
    if "container" in state and isinstance(state.get("env"), dict):
        raw: Mapping[str, JsonValue] = {str(state["container"]): state["env"]}
    else:
        found = state.get("containers")
        raw = found if isinstance(found, dict) else {}
    return {
        str(name): {str(k): (None if v is None else str(v)) for k, v in env.items()}
        for name, env in raw.items()
        if isinstance(env, dict)
    }


class SetEnvAction(EnvAction[SetEnv]):
    @property
    def values(self) -> dict[str, str | None]:
        return dict(self.spec.env)

    @property
    def change(self) -> str:
        return "set_env " + " ".join(f"{k}={v}" for k, v in sorted(self.spec.env.items()))


class UnsetEnvAction(EnvAction[UnsetEnv]):
    @property
    def values(self) -> dict[str, str | None]:
        return dict.fromkeys(self.spec.names)

    @property
    def change(self) -> str:
        return "unset_env " + " ".join(sorted(self.spec.names))


class RestartAction(DeploymentAction[RestartSpecT]):
    """What ``kubectl rollout restart`` does: a new ``restartedAt`` on the pod template.
    Not undone: the pods it replaced are gone."""

    @property
    def change(self) -> str:
        # both restart types replace the pods: one cooldown for a restart, however asked
        return "restart"

    async def plan(
        self, deployment: dict[str, Any] | None, *, kube: KubeGateway, clock: Clock
    ) -> Plan:
        if deployment is not None:
            patches.check_restartable(deployment)
        stamp = clock.now()
        patch = patches.restart_patch(stamp)
        previous: dict[str, JsonValue] = {
            "restartedAt": patches.restarted_at(deployment) if deployment else None
        }
        after: dict[str, JsonValue] = {
            "restartedAt": patch["spec"]["template"]["metadata"]["annotations"][
                patches.RESTARTED_AT
            ]
        }
        return Plan(patch, previous, after)

    def as_wanted(self, plan: Plan) -> bool:
        return False  # a restart is wanted for itself, whatever the annotation shows

    def found_sent(self, deployment: dict[str, Any], wanted: Mapping[str, JsonValue]) -> bool:
        return patches.restarted_at(deployment) == wanted.get("restartedAt")

    async def send(self, patch: dict[str, Any], *, kube: KubeGateway) -> dict[str, JsonValue]:
        result = await self._patch_deployment(patch, kube)
        return {"restartedAt": patches.restarted_at(result)}


class RolloutRestartAction(RestartAction[RolloutRestart]):
    pass


class RestartIfSecretRotatedAction(RestartAction[RestartIfSecretRotated]):
    """A restart only when the Secret changed after the oldest running pod started (the
    pods hold the old value); otherwise a human checks the key."""

    async def skip(self, kube: KubeGateway) -> Skip | None:
        rotated, why = await self._secret_rotated(kube)
        if rotated:
            return None
        spec = self.spec
        human = (
            f"the Secret {spec.secret} was not changed after the pods started: "
            "a human must check the key"
        )
        return Skip(
            reason=why,
            detail=f"No restart of {spec.namespace}/{spec.deployment}: {why}",
            human=human,
        )

    async def _secret_rotated(self, kube: KubeGateway) -> tuple[bool, str]:
        """Judged per container that reads the Secret (env, envFrom, a volume): its pods'
        containers that started before the change hold the old value; the others (a
        sidecar) do not matter."""
        spec = self.spec
        deployment = await self.read(kube)
        users = patches.secret_users(deployment, spec.secret)
        if not users:
            return False, (
                f"no container of {spec.deployment} reads the Secret {spec.secret} "
                "(env, envFrom or a volume): a restart would not load it"
            )
        selector = patches.pod_selector(deployment)
        pods = await kube.list_pods(namespace=spec.namespace, selector=selector)
        starts = [
            started
            for p in pods
            for c in users
            if (started := p.container_started_at.get(c, p.started_at)) is not None
        ]
        changed = await kube.secret_changed_at(namespace=spec.namespace, name=spec.secret)
        which = f"container{'s' if len(users) > 1 else ''} {', '.join(users)}"
        if not starts:
            return False, f"no running pod of {spec.deployment} to compare with"
        oldest = min(starts)
        if changed is None:
            return False, f"the Secret {spec.secret} shows no change time"
        if changed > oldest:
            return True, (
                f"the Secret {spec.secret} changed at {changed:%H:%M:%S}, after the "
                f"oldest pod's {which} started ({oldest:%H:%M:%S}): pods hold the old key"
            )
        return False, (
            f"the Secret {spec.secret} last changed at {changed:%Y-%m-%d %H:%M:%S}, "
            f"before the oldest pod's {which} started ({oldest:%Y-%m-%d %H:%M:%S})"
        )


class ScaleAction(ReversibleAction[Scale]):
    """The Deployment's ``scale`` subresource: its replicas, read and set."""

    async def plan(
        self, deployment: dict[str, Any] | None, *, kube: KubeGateway, clock: Clock
    ) -> Plan:
        wanted = self.spec.replicas
        before: dict[str, JsonValue] = {}
        if deployment is not None:
            before = {
                "replicas": await kube.get_scale(
                    namespace=self.spec.namespace, name=self.spec.deployment
                )
            }
        return Plan({"spec": {"replicas": wanted}}, before, {"replicas": wanted})

    async def send(self, patch: dict[str, Any], *, kube: KubeGateway) -> dict[str, JsonValue]:
        replicas = await kube.patch_scale(
            namespace=self.spec.namespace,
            name=self.spec.deployment,
            replicas=int(patch["spec"]["replicas"]),  # the action's, or a revert's
            dry_run=False,
        )
        return {"replicas": replicas}

    def undo(self, record: ActionRecord) -> dict[str, Any] | None:
        return {"spec": {"replicas": record.before.get("replicas")}}

    @property
    def change(self) -> str:
        return f"scale replicas={self.spec.replicas}"


AnyAction = PageHumanAction | DeploymentAction[Any]

# The one place an action class is found: by its spec's type. (Each class takes its own
# spec type only, which a mapping's type cannot pair; the check below holds it complete.)
ACTIONS: Mapping[type[Any], Callable[[Any], AnyAction]] = {
    SetEnv: SetEnvAction,
    UnsetEnv: UnsetEnvAction,
    RolloutRestart: RolloutRestartAction,
    RestartIfSecretRotated: RestartIfSecretRotatedAction,
    Scale: ScaleAction,
    PageHuman: PageHumanAction,
}


def action_for(spec: ActionSpec) -> AnyAction:
    """The action that carries out ``spec``."""
    return ACTIONS[type(spec)](spec)


def _specs_without_action() -> set[type[Any]]:
    union, *_ = get_args(ActionSpec)  # Annotated[SetEnv | ..., discriminator]
    return set(get_args(union)) - set(ACTIONS)


if missing := _specs_without_action():
    raise TypeError(f"action specs without an action class: {sorted(c.__name__ for c in missing)}")
