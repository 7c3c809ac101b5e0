"""The mitigation stage: carry out the decided plan, guarded, exactly once, and audited.

For each planned action of the branch the decision tree chose, in order:

1. claim the step's idempotency record (incident, step): a step already carried out, by
   this worker before a redelivery or by another replica, is not carried out again; a step
   whose worker died mid-way is recovered by reading the target first;
2. run the guards (paused, acknowledged, allowlist, dry-run, cooldown, budget), then take
   the per-target lock;
3. read the target, note the exact change in the record, send it, read the result: the
   target before and after are recorded, a cooldown starts, and when the rule asks for it
   a verification is scheduled after the settle time;
4. write the outcome on the incident (``incident.actions`` and a timeline event).

On resolve, actions marked ``revert_on_resolve`` are undone the same way. A verification
that shows the action did not help hands the incident to a human, and reverts the action
when the rule says ``revert_if_unhelpful``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import structlog
from pydantic import JsonValue

from responder.domain.action import ActionRecord, Outcome, Verdict
from responder.domain.decision import PlannedAction
from responder.domain.errors import RetryLaterError
from responder.domain.incident import (
    Incident,
    IncidentChange,
    combine,
    record_action,
)
from responder.domain.plans import (
    PageHuman,
    RestartIfSecretRotated,
    RolloutRestart,
    Scale,
    SetEnv,
    UnsetEnv,
)
from responder.domain.signal import TimerSignal
from responder.metrics import Metrics
from responder.mitigate import patches
from responder.mitigate.guards import DRY_RUN, GuardInput, check
from responder.ports import (
    ActionLedger,
    Clock,
    EffectClaim,
    IncidentState,
    KubeError,
    KubeGateway,
    Store,
    mutate_incident,
)

log = structlog.get_logger("responder.mitigate")

REVERSIBLE = frozenset({"set_env", "unset_env", "scale"})


class StepBusyError(RetryLaterError):
    """Another worker is carrying out this step (or holds the target's lock): the signal
    is retried later, when it will find the step done or free."""


class VerifyQuery(Protocol):
    """Runs a verification query; the number it returns (None: no data)."""

    async def value(self, query: str) -> float | None: ...


@dataclass(frozen=True)
class Policy:
    """The configured limits of automatic actions."""

    allowlist: tuple[str, ...] = ()
    cooldown_s: float = 600.0
    budget: int = 5
    budget_window_s: float = 3600.0
    lock_ttl_s: float = 120.0
    lease_s: float = 120.0
    force_dry_run: bool = False


@dataclass
class _Result:
    record: ActionRecord
    kind: str
    detail: str
    human: str | None = None
    data: dict[str, JsonValue] = field(default_factory=dict)


def step_of(incident: Incident, index: int, planned: PlannedAction) -> str:
    return f"{incident.branch}#{index}:{planned.spec.type}"


def _target(spec: Any) -> tuple[str | None, str | None]:
    return getattr(spec, "namespace", None), getattr(spec, "deployment", None)


class Mitigator:
    """The mitigation stage (``IncidentStage``) and the verifier of its actions."""

    def __init__(
        self,
        *,
        store: Store,
        ledger: ActionLedger,
        kube: KubeGateway,
        clock: Clock,
        metrics: Metrics,
        policy: Policy,
        verify: VerifyQuery | None,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._kube = kube
        self._clock = clock
        self._metrics = metrics
        self._policy = policy
        self._verify = verify
        self._owner = owner or secrets.token_hex(6)

    # ------------------------------------------------------------------------- stage

    async def __call__(self, change: IncidentChange) -> IncidentChange | None:
        kinds = {e.kind for e in change.events}
        out: IncidentChange | None = None
        if "incident.decided" in kinds:
            incident = change.incident
            for index, planned in enumerate(incident.planned_actions):
                out = _chain(
                    out, await self._step(incident.id, step_of(incident, index, planned), planned)
                )
        if "incident.resolved" in kinds:
            for record in change.incident.actions:
                if record.revert_on_resolve:
                    out = _chain(
                        out,
                        await self._revert(change.incident.id, record, why="the incident resolved"),
                    )
        return out

    async def verify(self, timer: TimerSignal) -> IncidentChange | None:
        """The due verification of an action: did it help?"""
        key = f"{timer.incident_id}:verify:{timer.step}"
        claim = await self._claim(key)
        if claim is None:
            return None
        view = await self._store.get_incident(timer.incident_id)
        record = (
            next((a for a in view.incident.actions if a.step == timer.step), None) if view else None
        )
        if (
            record is None
            or record.verified is not None
            or record.planned is None
            or record.planned.spec.verify is None
        ):
            await self._ledger.finish_effect(key, data={"skipped": True})
            return None
        spec = record.planned.spec.verify
        value: float | None = None
        error = None
        if self._verify is None:
            error = "RESPONDER_PROMETHEUS_URL is not set"
        else:
            try:
                value = await self._verify.value(spec.query)
            except Exception as exc:  # noqa: BLE001 - an unanswered check is a result
                error = f"{type(exc).__name__}: {exc}"
        helped = (
            value is not None
            and (spec.below is None or value < spec.below)
            and (spec.above is None or value > spec.above)
        )
        bounds = " and ".join(
            b
            for b in (
                f"< {spec.below:g}" if spec.below is not None else "",
                f"> {spec.above:g}" if spec.above is not None else "",
            )
            if b
        )
        shown = "no data" if value is None else f"{value:.4g}"
        if helped:
            result = _Result(
                record.model_copy(update={"verified": True}),
                "action.verified",
                f"{record.action} on {record.target} helped: {spec.query} = {shown} ({bounds})",
                data={"value": value, "query": spec.query},
            )
        else:
            why = error or f"{spec.query} = {shown}, wanted {bounds}"
            result = _Result(
                record.model_copy(update={"verified": False}),
                "action.unhelpful",
                f"{record.action} on {record.target} did not help: {why}",
                human=f"{record.action} on {record.target} did not help ({why})",
                data={"value": value, "query": spec.query, "error": error},
            )
        self._metrics.verifications.labels("helped" if helped else "unhelpful").inc()
        change = await self._write(timer.incident_id, result, replace=True)
        await self._ledger.finish_effect(key, data={"helped": helped})
        if not helped and record.planned.spec.revert_if_unhelpful and change is not None:
            after = next(a for a in change.incident.actions if a.step == record.step)
            change = _chain(
                change, await self._revert(timer.incident_id, after, why="it did not help")
            )
        return change

    # ------------------------------------------------------------------- one step

    async def _claim(self, key: str) -> EffectClaim | None:
        """This worker's hold on the effect ``key``; ``None`` when it was carried out
        before (a redelivery, another replica); ``StepBusyError`` while another worker
        holds it (the signal is handled again later)."""
        claim = await self._ledger.claim_effect(
            key, owner=self._owner, lease_s=self._policy.lease_s
        )
        if claim.status == "done":
            return None
        if claim.status == "busy":
            raise StepBusyError(key)
        return claim

    async def _claim_with_incident(
        self, key: str, incident_id: str
    ) -> tuple[EffectClaim, Incident] | None:
        """The claim on ``key`` and the incident as it is now; ``None`` when the effect was
        carried out before or the incident is gone."""
        claim = await self._claim(key)
        if claim is None:
            return None
        view = await self._store.get_incident(incident_id)
        return None if view is None else (claim, view.incident)

    async def _step(
        self, incident_id: str, step: str, planned: PlannedAction
    ) -> IncidentChange | None:
        key = f"{incident_id}:{step}"
        found = await self._claim_with_incident(key, incident_id)
        if found is None:
            return None
        claim, incident = found
        existing = next((a for a in incident.actions if a.step == step), None)
        if existing is not None:  # recorded, but the record's owner died before finishing
            await self._ledger.finish_effect(key, data={"verdict": existing.verdict.value})
            return None
        result = await self._execute(
            incident, step, planned, key=key, noted=claim.data if claim.status == "recover" else {}
        )
        self._metrics.actions.labels(planned.spec.type, result.record.verdict.value).inc()
        change = await self._write(incident_id, result)
        await self._ledger.finish_effect(key, data={"verdict": result.record.verdict.value})
        if result.record.verdict is Outcome.APPLIED and planned.spec.verify is not None:
            due = self._clock.now() + timedelta(seconds=planned.spec.settle_s)
            await self._ledger.schedule(
                TimerSignal(
                    kind="verify",
                    incident_id=incident_id,
                    step=step,
                    due_at=due,
                    received_at=self._clock.now(),
                )
            )
        return change

    async def _guard(
        self, incident: Incident, planned: PlannedAction, *, revert: bool = False
    ) -> list[Verdict]:
        spec = planned.spec
        namespace, deployment = _target(spec)
        now = self._clock.now()
        cooldown = None
        used = 0
        if deployment is not None and not revert:
            cooldown = await self._ledger.cooldown_until(f"{namespace}/{deployment}:{spec.type}")
            used = await self._ledger.budget_used(window_s=self._policy.budget_window_s, now=now)
        dry_why = (
            "the rule or its pack says dry_run" if planned.dry_run else "RESPONDER_DRY_RUN is set"
        )
        return check(
            GuardInput(
                action=spec.type,
                namespace=namespace,
                deployment=deployment,
                paused=await self._ledger.paused(),
                acked_by=incident.acked_by,
                allowlist=self._policy.allowlist,
                dry_run=planned.dry_run or self._policy.force_dry_run,
                dry_run_why=dry_why,
                cooldown_until=cooldown,
                budget_used=used,
                budget_limit=self._policy.budget if not revert else used + 1,
                budget_window_s=self._policy.budget_window_s,
                now=now,
                changes_cluster=deployment is not None,
            )
        )

    async def _execute(
        self,
        incident: Incident,
        step: str,
        planned: PlannedAction,
        *,
        key: str,
        noted: dict[str, JsonValue],
    ) -> _Result:
        spec = planned.spec
        namespace, deployment = _target(spec)
        target = f"{namespace}/{deployment}" if deployment else incident.id
        verdicts = await self._guard(incident, planned)
        refusal = next((v for v in verdicts if not v.ok), None)
        base = ActionRecord(
            step=step,
            action=spec.type,
            target=target,
            verdict=Outcome.REFUSED,
            reason="",
            at=self._clock.now(),
            dry_run=planned.dry_run or self._policy.force_dry_run,
            revert_on_resolve=bool(getattr(spec, "revert_on_resolve", False)),
            reversible=spec.type in REVERSIBLE,
            verdicts=tuple(verdicts),
            planned=planned,
        )
        if isinstance(spec, PageHuman):
            if refusal is not None:
                return self._refused(base, refusal)
            return _Result(
                base.model_copy(update={"verdict": Outcome.NEEDS_HUMAN, "reason": spec.reason}),
                "action.needs_human",
                spec.reason,
                human=spec.reason,
            )
        if refusal is not None and refusal.guard == DRY_RUN:
            return await self._dry_run(base, spec, refusal)
        if refusal is not None:
            result = self._refused(base, refusal)
            if refusal.guard == "budget":
                result.human = refusal.reason
            return result
        now = self._clock.now()
        if not await self._ledger.spend_budget(
            window_s=self._policy.budget_window_s, limit=self._policy.budget, now=now, token=step
        ):
            spent = Verdict(
                guard="budget",
                ok=False,
                reason="the action budget was spent by another worker meanwhile",
            )
            result = self._refused(base.model_copy(update={"verdicts": (*verdicts, spent)}), spent)
            result.human = spent.reason
            return result
        lock = f"{namespace}/{deployment}"
        # the step is the token: if this step's worker died holding the lock, the worker
        # that recovers the step takes it over at once
        token = key
        if not await self._ledger.acquire_lock(lock, token=token, ttl_s=self._policy.lock_ttl_s):
            raise StepBusyError(f"lock {lock}")
        locked = Verdict(guard="lock", ok=True, reason=f"holds the lock of {lock}")
        base = base.model_copy(update={"verdicts": (*verdicts, locked)})
        try:
            result = await self._apply(base, spec, key=key, noted=noted)
        except KubeError as exc:
            result = _Result(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                "action.failed",
                f"{spec.type} on {target} failed: {exc}",
                human=f"{spec.type} on {target} failed: {exc}",
            )
        except patches.TargetProblem as exc:
            result = _Result(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                "action.failed",
                f"{spec.type} on {target}: {exc}",
                human=f"{spec.type} on {target} was not possible: {exc}",
            )
        finally:
            await self._ledger.release_lock(lock, token=token)
        if result.record.verdict in (Outcome.APPLIED, Outcome.IN_PLACE):
            await self._ledger.start_cooldown(
                f"{lock}:{spec.type}", until=now + timedelta(seconds=self._policy.cooldown_s)
            )
        return result

    def _refused(self, base: ActionRecord, refusal: Verdict) -> _Result:
        return _Result(
            base.model_copy(update={"verdict": Outcome.REFUSED, "reason": refusal.reason}),
            "action.refused",
            f"{base.action} on {base.target} refused by {refusal.guard}: {refusal.reason}",
        )

    # ----------------------------------------------------------- per action type

    async def _plan(
        self, spec: Any, deployment: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, JsonValue], dict[str, JsonValue]]:
        """The patch to send, the touched state before, and the state wanted after."""
        if isinstance(spec, SetEnv | UnsetEnv):
            values: dict[str, str | None] = (
                dict(spec.env) if isinstance(spec, SetEnv) else dict.fromkeys(spec.names)
            )
            if deployment is None:  # dry-run without a cluster: the patch, unknown before
                name = spec.container or "<first container>"
                unknown: dict[str, JsonValue] = {"env": dict(values)}
                return patches.env_patch(name, values), {}, unknown
            name = patches.container_name(deployment, spec.container)
            current: dict[str, JsonValue] = dict(patches.env_values(deployment, name, list(values)))
            wanted: dict[str, JsonValue] = dict(values)
            return (
                patches.env_patch(name, values),
                {"container": name, "env": current},
                {"container": name, "env": wanted},
            )
        if isinstance(spec, RolloutRestart | RestartIfSecretRotated):
            if deployment is not None:
                patches.check_restartable(deployment)
            stamp = self._clock.now()
            patch = patches.restart_patch(stamp)
            previous: dict[str, JsonValue] = {
                "restartedAt": patches.restarted_at(deployment) if deployment else None
            }
            after: dict[str, JsonValue] = {
                "restartedAt": patch["spec"]["template"]["metadata"]["annotations"][
                    patches.RESTARTED_AT
                ]
            }
            return patch, previous, after
        if isinstance(spec, Scale):
            return {"spec": {"replicas": spec.replicas}}, {}, {"replicas": spec.replicas}
        raise TypeError(f"no patch for {spec.type}")

    async def _read(self, spec: Any) -> dict[str, Any]:
        return await self._kube.get_deployment(namespace=spec.namespace, name=spec.deployment)

    async def _dry_run(self, base: ActionRecord, spec: Any, refusal: Verdict) -> _Result:
        deployment: dict[str, Any] | None
        try:
            deployment = await self._read(spec)
        except KubeError as exc:
            log.info("dry-run without the target's state", error=str(exc))
            deployment = None
        try:
            patch, before, after = await self._plan(spec, deployment)
            if isinstance(spec, Scale) and deployment is not None:
                before = {
                    "replicas": await self._kube.get_scale(
                        namespace=spec.namespace, name=spec.deployment
                    )
                }
        except patches.TargetProblem as exc:
            return _Result(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                "action.failed",
                f"{spec.type} on {base.target}: {exc}",
                human=f"{spec.type} on {base.target} is not possible: {exc}",
            )
        record = base.model_copy(
            update={
                "verdict": Outcome.DRY_RUN,
                "reason": refusal.reason,
                "patch": patch,
                "before": before,
                "after": after,
                "dry_run": True,
            }
        )
        return _Result(
            record,
            "action.dry_run",
            f"{spec.type} on {base.target} (dry-run): would send {_short(patch)}",
            data={"patch": patch},
        )

    async def _apply(
        self, base: ActionRecord, spec: Any, *, key: str, noted: dict[str, JsonValue]
    ) -> _Result:
        target = base.target
        if isinstance(spec, RestartIfSecretRotated):
            rotated, why = await self._secret_rotated(spec)
            if not rotated:
                human = (
                    f"the Secret {spec.secret} was not changed after the pods started: "
                    "a human must check the key"
                )
                return _Result(
                    base.model_copy(update={"verdict": Outcome.SKIPPED, "reason": why}),
                    "action.skipped",
                    f"No restart of {target}: {why}",
                    human=human,
                )
        deployment = await self._read(spec)
        patch, before, wanted = await self._plan(spec, deployment)
        if isinstance(spec, Scale):
            before = {
                "replicas": await self._kube.get_scale(
                    namespace=spec.namespace, name=spec.deployment
                )
            }
        if noted.get("patch") is not None and self._in_place(spec, deployment, noted):
            # a worker sent this and died before recording it: it is on the target
            after = noted.get("wanted") if isinstance(noted.get("wanted"), dict) else wanted
            record = base.model_copy(
                update={
                    "verdict": Outcome.APPLIED,
                    "patch": noted["patch"],
                    "before": noted.get("before") or before,
                    "after": after,
                    "reason": "sent by a worker that died before recording it; found in place",
                }
            )
            return _Result(
                record, "action.applied", f"{spec.type} on {target}: found applied (after a crash)"
            )
        if before == wanted and not isinstance(spec, RolloutRestart | RestartIfSecretRotated):
            record = base.model_copy(
                update={
                    "verdict": Outcome.IN_PLACE,
                    "before": before,
                    "after": before,
                    "reason": "already in place",
                }
            )
            return _Result(
                record,
                "action.in_place",
                f"{spec.type} on {target}: already as wanted, nothing sent",
            )
        # noted before sending: a worker that dies after the patch left this for the next
        await self._ledger.note_effect(
            key, owner=self._owner, data={"patch": patch, "before": before, "wanted": wanted}
        )
        after = await self._send(spec, patch)
        record = base.model_copy(
            update={
                "verdict": Outcome.APPLIED,
                "patch": patch,
                "before": before,
                "after": after,
                "reason": "applied",
            }
        )
        return _Result(
            record,
            "action.applied",
            f"{spec.type} on {target}: {_change(before, after)}",
            data={"patch": patch},
        )

    async def _send(self, spec: Any, patch: dict[str, Any]) -> dict[str, JsonValue]:
        if isinstance(spec, Scale):
            replicas = await self._kube.patch_scale(
                namespace=spec.namespace,
                name=spec.deployment,
                replicas=int(patch["spec"]["replicas"]),  # the action's, or a revert's
                dry_run=False,
            )
            return {"replicas": replicas}
        result = await self._kube.patch_deployment(
            namespace=spec.namespace, name=spec.deployment, patch=patch, dry_run=False
        )
        if isinstance(spec, SetEnv | UnsetEnv):
            names = list(spec.env) if isinstance(spec, SetEnv) else list(spec.names)
            name = patches.container_name(result, spec.container)
            return {"container": name, "env": dict(patches.env_values(result, name, names))}
        return {"restartedAt": patches.restarted_at(result)}

    def _in_place(self, spec: Any, deployment: dict[str, Any], noted: dict[str, JsonValue]) -> bool:
        wanted = noted.get("wanted")
        if not isinstance(wanted, dict):
            return False
        if isinstance(spec, SetEnv | UnsetEnv):
            env = wanted.get("env")
            if not isinstance(env, dict):
                return False
            name = patches.container_name(deployment, spec.container)
            return patches.env_values(deployment, name, list(env)) == env
        if isinstance(spec, RolloutRestart | RestartIfSecretRotated):
            return patches.restarted_at(deployment) == wanted.get("restartedAt")
        return False

    async def _secret_rotated(self, spec: RestartIfSecretRotated) -> tuple[bool, str]:
        deployment = await self._read(spec)
        selector = patches.pod_selector(deployment)
        pods = await self._kube.list_pods(namespace=spec.namespace, selector=selector)
        starts = [p.started_at for p in pods if p.started_at is not None]
        changed = await self._kube.secret_changed_at(namespace=spec.namespace, name=spec.secret)
        if not starts:
            return False, f"no running pod of {spec.deployment} to compare with"
        oldest = min(starts)
        if changed is None:
            return False, f"the Secret {spec.secret} shows no change time"
        if changed > oldest:
            return True, (
                f"the Secret {spec.secret} changed at {changed:%H:%M:%S}, after the "
                f"oldest pod started ({oldest:%H:%M:%S}): pods hold the old key"
            )
        return False, (
            f"the Secret {spec.secret} last changed at {changed:%Y-%m-%d %H:%M:%S}, "
            f"before the oldest pod started ({oldest:%Y-%m-%d %H:%M:%S})"
        )

    # -------------------------------------------------------------------- revert

    async def _revert(
        self, incident_id: str, record: ActionRecord, *, why: str
    ) -> IncidentChange | None:
        if (
            record.verdict is not Outcome.APPLIED
            or not record.reversible
            or record.reverted
            or record.planned is None
        ):
            return None
        step = f"revert:{record.step}"
        key = f"{incident_id}:{step}"
        found = await self._claim_with_incident(key, incident_id)
        if found is None:
            return None
        _, incident = found
        spec = record.planned.spec
        verdicts = await self._guard(incident, record.planned, revert=True)
        refusal = next((v for v in verdicts if not v.ok), None)
        revert_patch = self._revert_patch(spec, record)
        reverted = record.model_copy(update={"reverted": True})
        if refusal is not None:
            detail = (
                f"revert of {record.action} on {record.target} ({why}) not done: "
                f"{refusal.reason}; to undo it by hand send {_short(revert_patch)}"
            )
            result = _Result(
                record,
                "action.revert_refused",
                detail,
                data={"revert_patch": revert_patch, "guard": refusal.guard},
            )
        else:
            lock = record.target
            token = key
            if not await self._ledger.acquire_lock(
                lock, token=token, ttl_s=self._policy.lock_ttl_s
            ):
                raise StepBusyError(f"lock {lock}")
            try:
                after = await self._send(spec, revert_patch)
                result = _Result(
                    reverted.model_copy(update={"reverted_state": after}),
                    "action.reverted",
                    f"{record.action} on {record.target} reverted ({why}): "
                    f"{_change(record.after, after)}",
                    data={"revert_patch": revert_patch, "before": record.after},
                )
            except (KubeError, patches.TargetProblem) as exc:
                result = _Result(
                    record,
                    "action.revert_failed",
                    f"revert of {record.action} on {record.target} failed: {exc}",
                    human=f"the revert of {record.action} on {record.target} "
                    f"failed ({exc}); undo it by hand: {_short(revert_patch)}",
                    data={"revert_patch": revert_patch},
                )
            finally:
                await self._ledger.release_lock(lock, token=token)
        self._metrics.actions.labels(record.action, result.kind.removeprefix("action.")).inc()
        change = await self._write(incident_id, result, replace=True)
        await self._ledger.finish_effect(key, data={"kind": result.kind})
        return change

    def _revert_patch(self, spec: Any, record: ActionRecord) -> dict[str, Any]:
        if isinstance(spec, SetEnv | UnsetEnv):
            container = str(record.before.get("container") or record.after.get("container"))
            before = record.before.get("env")
            values = {
                str(k): (None if v is None else str(v))
                for k, v in (before.items() if isinstance(before, dict) else [])
            }
            return patches.env_patch(container, values)
        if isinstance(spec, Scale):
            return {"spec": {"replicas": record.before.get("replicas")}}
        raise TypeError(f"{spec.type} cannot be reverted")

    # --------------------------------------------------------------------- write

    async def _write(
        self, incident_id: str, result: _Result, *, replace: bool = False
    ) -> IncidentChange | None:
        now = self._clock.now()

        def mutate(state: IncidentState) -> IncidentChange | None:
            if state.incident is None:
                return None
            return record_action(
                state.incident,
                result.record,
                now,
                kind=result.kind,
                detail=result.detail,
                human=result.human,
                replace=replace,
                **result.data,
            )

        written = await mutate_incident(self._store, incident_id, mutate)
        log.info(
            "action recorded",
            incident_id=incident_id,
            step=result.record.step,
            verdict=result.record.verdict.value,
            kind=result.kind,
        )
        return written.change


def _chain(first: IncidentChange | None, then: IncidentChange | None) -> IncidentChange | None:
    if first is None:
        return then
    return combine(first, then)


def _short(patch: Any) -> str:
    text = json.dumps(patch, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 400 else text[:400] + "…"


def _change(before: dict[str, Any], after: dict[str, Any]) -> str:
    if "env" in after:
        b, a = before.get("env") or {}, after.get("env") or {}
        parts = [f"{k}: {b.get(k)!r} → {a.get(k)!r}" for k in a]
        return ", ".join(parts)
    keys = sorted(set(before) | set(after))
    return ", ".join(f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in keys)
