"""What the mitigation stage's steps share: the step's record claimed once, the guards,
the verification query, the outcome written on the incident (``StepKit``); a step's
outcome (``StepResult``); how changes and patches read on the timeline."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from pydantic import JsonValue

from responder.domain.action import ActionRecord, Outcome, Verdict
from responder.domain.decision import PlannedAction
from responder.domain.errors import RetryLaterError
from responder.domain.incident import Incident, IncidentChange, record_action
from responder.domain.timeline import EventKind
from responder.metrics import Metrics
from responder.mitigate.actions import AnyAction, action_for, env_by_container
from responder.mitigate.guards import GuardInput, check
from responder.ports import (
    ActionLimits,
    AfterWrite,
    AutomationSwitch,
    Clock,
    DurableTimers,
    EffectClaim,
    EffectLedger,
    IncidentState,
    KubeError,
    KubeGateway,
    NamedLocks,
    StageResult,
    Store,
)

log = structlog.get_logger("responder.mitigate")


class StepBusyError(RetryLaterError):
    """Another worker is carrying out this step (or holds the target's lock): the signal
    is retried later, when it will find the step done or free."""


class MitigationLedger(
    EffectLedger, AutomationSwitch, ActionLimits, NamedLocks, DurableTimers, Protocol
):
    """What the mitigation stage keeps in the action ledger: each step's record, the
    kill switch, the cooldowns and budget, the per-target locks, and the verifications'
    timers."""


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
    approval_timeout_s: float = 900.0  # unless the action says its own


@dataclass
class StepResult:
    """A step's outcome to record: the action's record, the timeline event (kind, detail,
    data) and, when a human must take over, why."""

    record: ActionRecord
    kind: EventKind
    detail: str
    human: str | None = None
    data: dict[str, JsonValue] = field(default_factory=dict)


# the steps a revert policy acts on: applied ones, and dry-run ones (their revert shown)
UNDOABLE = frozenset({Outcome.APPLIED, Outcome.DRY_RUN})


def cooldown_key(action: AnyAction) -> str:
    """The cooldown's key: the target and the exact change (hashed: values come from
    templates), so enabling one switch is not held back by another set before."""
    digest = hashlib.sha256(action.change.encode()).hexdigest()[:16]
    return f"{action.namespace}/{action.deployment}:{action.spec.type}:{digest}"


class StepKit:
    """The store, the ledger, the cluster and the policy, and what every step (an action,
    its verification, its revert) does with them."""

    def __init__(
        self,
        *,
        store: Store,
        ledger: MitigationLedger,
        kube: KubeGateway,
        clock: Clock,
        metrics: Metrics,
        policy: Policy,
        verify: VerifyQuery | None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.kube = kube
        self.clock = clock
        self.metrics = metrics
        self.policy = policy
        self.verify = verify
        self.owner = owner or secrets.token_hex(6)

    async def claim(self, key: str) -> EffectClaim | None:
        """This worker's hold on the effect ``key``; ``None`` when it was carried out
        before (a redelivery, another replica); ``StepBusyError`` while another worker
        holds it (the signal is handled again later)."""
        claim = await self.ledger.claim_effect(key, owner=self.owner, lease_s=self.policy.lease_s)
        if claim.status == "done":
            return None
        if claim.status == "busy":
            raise StepBusyError(key)
        return claim

    async def claim_with_incident(
        self, key: str, incident_id: str
    ) -> tuple[EffectClaim, Incident] | None:
        """The claim on ``key`` and the incident as it is now; ``None`` when the effect was
        carried out before or the incident is gone."""
        claim = await self.claim(key)
        if claim is None:
            return None
        view = await self.store.get_incident(incident_id)
        return None if view is None else (claim, view.incident)

    async def guard(
        self,
        incident: Incident,
        planned: PlannedAction,
        *,
        revert: bool = False,
        approved_by: str | None = None,
    ) -> list[Verdict]:
        spec = planned.spec
        action = action_for(spec)
        namespace, deployment = action.namespace, action.deployment
        now = self.clock.now()
        cooldown = None
        used = 0
        if deployment is not None and not revert:
            cooldown = await self.ledger.cooldown_until(cooldown_key(action))
            used = await self.ledger.budget_used(window_s=self.policy.budget_window_s, now=now)
        dry_why = (
            "the rule or its pack says dry_run" if planned.dry_run else "RESPONDER_DRY_RUN is set"
        )
        return check(
            GuardInput(
                action=spec.type,
                namespace=namespace,
                deployment=deployment,
                paused=await self.ledger.paused(),
                acked_by=incident.acked_by,
                allowlist=self.policy.allowlist,
                dry_run=planned.dry_run or self.policy.force_dry_run,
                dry_run_why=dry_why,
                cooldown_until=cooldown,
                budget_used=used,
                budget_limit=self.policy.budget if not revert else used + 1,
                budget_window_s=self.policy.budget_window_s,
                now=now,
                changes_cluster=deployment is not None,
                change=action.change,
                incident_paused_by=incident.paused_by,
                approved_by=approved_by,
            )
        )

    async def query(self, query: str) -> tuple[float | None, str | None]:
        """The query's value (``None``: no data) and why there is none, if it failed."""
        if self.verify is None:
            return None, "RESPONDER_PROMETHEUS_URL is not set"
        try:
            return await self.verify.value(query), None
        except Exception as exc:  # noqa: BLE001 - an unanswered check is a result
            return None, f"{type(exc).__name__}: {exc}"

    def recorded(
        self,
        incident_id: str,
        result: StepResult,
        finish: AfterWrite,
        *,
        replace: bool = False,
    ) -> StageResult:
        """The outcome to record on the incident, then ``finish``."""
        now = self.clock.now()

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

        async def logged() -> None:
            log.info(
                "action recorded",
                incident_id=incident_id,
                step=result.record.step,
                verdict=result.record.verdict.value,
                kind=result.kind,
            )

        return StageResult(mutators=(mutate,), after_write=(logged, finish))


def runbook_row(exc: KubeError) -> str:
    """The runbook's error-handling row for a cluster refusal, as what the human does next:
    "kubectl fails / auth expired: re-authenticate", "secret rotation fails / permission
    denied: escalate to admin"."""
    if exc.status == 401:
        return (
            " (the cluster no longer accepts the responder's credentials: re-authenticate, "
            "i.e. renew its service account token, then do the step by hand)"
        )
    if exc.status == 403:
        return (
            " (permission denied: escalate to a cluster admin to grant the responder's "
            "service account this verb on this resource, or to do the step)"
        )
    return ""


def short_patch(patch: Any) -> str:
    text = json.dumps(patch, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 400 else text[:400] + "…"


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    if isinstance(after.get("containers"), dict):  # an env action: say which containers
        b, a = env_by_container(before), env_by_container(after)
        return "; ".join(
            f"container {c}: "
            + ", ".join(f"{k}: {b.get(c, {}).get(k)!r} → {v!r}" for k, v in env.items())
            for c, env in a.items()
        )
    keys = sorted(set(before) | set(after))
    return ", ".join(f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in keys)


def within_bounds(value: float | None, below: float | None, above: float | None) -> bool:
    return (
        value is not None and (below is None or value < below) and (above is None or value > above)
    )


def bounds_text(below: float | None, above: float | None) -> str:
    return " and ".join(
        b
        for b in (
            f"< {below:g}" if below is not None else "",
            f"> {above:g}" if above is not None else "",
        )
        if b
    )
