"""The mitigation stage: carry out the decided plan, guarded, exactly once, and audited.

For each planned action of the branch the decision tree chose, in order:

1. claim the step's idempotency record (incident, step): a step already carried out, by
   this worker before a redelivery or by another replica, is not carried out again; a step
   whose worker died mid-way is recovered by reading the target first;
2. run the guards (paused, acknowledged, allowlist, dry-run, cooldown, budget), then take
   the per-target lock;
3. read the target, note the exact change in the record, send it, read the result: the
   target before and after are recorded, a cooldown starts, and when the rule asks for it
   a verification is scheduled after the settle time (what each action type reads, sends
   and reads back, and how it is undone: ``actions.py``);
4. return the outcome to record on the incident (``incident.actions`` and a timeline
   event; the pipeline writes it), and finish the step's record once it is written.

Each reversible action says when it is undone (``revert``, ``ActionRecord.revert_when``):
``resolve``: on resolve, the same way; ``vendor_resolved``: once the vendor's incident is
over (``vendor.resolved``) a ``revert_check`` timer waits a quiet period and undoes it only
if its ``verify`` query is in bounds then (else waits again, at most ``REVERT_CHECKS``
times, then calls a human); ``never``: at resolve the undo is shown for a human
(``action.revert_due``). A verification that shows the action did not help hands the
incident to a human, and reverts the action when the rule says ``revert_if_unhelpful``; one
that falls due after the incident resolved or its action was undone is dropped and
recorded (``action.verify_dropped``), not run.

A dry-run step's revert comes when its policy's would: the undo it would send is recorded
(``action.dry_run``: "revert of ...: would send <patch>", with ``revert_patch``), once per
step (the ``revert:<step>`` record, as a real revert), and the cluster is never touched;
the record keeps its ``dry_run`` verdict and is marked ``reverted`` (its revert was shown,
so it is not shown again, and nothing says a change was undone).

A guard's refusal that leaves the runbook's step undone (every guard but a human's ack and
dry-run) calls a human, and so does an incident no branch of the decision tree decided.
"""

from __future__ import annotations

import hashlib
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
    hand_over,
    record_action,
)
from responder.domain.plans import REVERT_CHECKS
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.metrics import Metrics
from responder.mitigate import patches
from responder.mitigate.actions import (
    AnyAction,
    DeploymentAction,
    PageHumanAction,
    action_for,
    env_by_container,
)
from responder.mitigate.guards import ACKNOWLEDGED, DRY_RUN, GuardInput, check
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
    StageIncompleteError,
    StageResult,
    Store,
    merge_results,
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


@dataclass
class _Result:
    record: ActionRecord
    kind: EventKind
    detail: str
    human: str | None = None
    data: dict[str, JsonValue] = field(default_factory=dict)


def step_of(incident: Incident, index: int, planned: PlannedAction) -> str:
    return f"{incident.branch}#{index}:{planned.spec.type}"


def cooldown_key(action: AnyAction) -> str:
    """The cooldown's key: the target and the exact change (hashed: values come from
    templates), so enabling one switch is not held back by another set before."""
    digest = hashlib.sha256(action.change.encode()).hexdigest()[:16]
    return f"{action.namespace}/{action.deployment}:{action.spec.type}:{digest}"


def revert_check_step(step: str, event_seq: int, check: int) -> str:
    """A ``revert_check`` timer's step: the action's, the ``vendor.resolved`` event's number
    and which check (from 1), so each check is its own timer and its own effect."""
    return f"{step}@{event_seq}.{check}"


def parse_revert_check_step(step: str) -> tuple[str, int, int] | None:
    action_step, _, at = step.rpartition("@")
    seq, _, check = at.partition(".")
    if not action_step or not seq.isdigit() or not check.isdigit():
        return None
    return action_step, int(seq), int(check)


class Mitigator:
    """The mitigation stage (``IncidentStage``) and the verifier of its actions."""

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
        self._store = store
        self._ledger = ledger
        self._kube = kube
        self._clock = clock
        self._metrics = metrics
        self._policy = policy
        self._verify = verify
        self._owner = owner or secrets.token_hex(6)

    # ------------------------------------------------------------------------- stage

    reads_store = False  # its own step records and the ack: no stage before it writes them

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        kinds = {e.kind for e in change.events}
        incident = change.incident
        results: list[StageResult] = []
        try:
            if EventKind.INCIDENT_UNDECIDED in kinds:
                results.append(self._undecided(change))
            if EventKind.INCIDENT_DECIDED in kinds:
                for index, planned in enumerate(incident.planned_actions):
                    step = await self._step(incident.id, step_of(incident, index, planned), planned)
                    results.extend([step] if step else [])
            for record, why in self._reverts_wanted(change).values():
                revert = await self._revert(incident.id, record, why=why)
                results.extend([revert] if revert else [])
            if EventKind.INCIDENT_RESOLVED in kinds:
                for record in incident.actions:
                    due = await self._revert_due(incident.id, record)
                    results.extend([due] if due else [])
            for event in change.events:
                if event.kind is EventKind.VENDOR_RESOLVED:
                    results.extend(self._revert_checks(incident, event.seq))
        except Exception as exc:
            # a later step is busy or failed: the steps carried out before it are recorded
            # by the pipeline before the failure goes on, so the next try finds them done
            raise StageIncompleteError(merge_results(results), exc) from exc
        return merge_results(results)

    @staticmethod
    def _reverts_wanted(change: IncidentChange) -> dict[str, tuple[ActionRecord, str]]:
        """The steps ``change`` asks to undo (by step, once each): those marked to revert on
        resolve when it resolves, and those marked to revert when unhelpful once their
        verification says so."""
        incident = change.incident
        wanted: dict[str, tuple[ActionRecord, str]] = {}
        if any(e.kind is EventKind.INCIDENT_RESOLVED for e in change.events):
            for record in incident.actions:
                if record.revert_when == "resolve":
                    wanted.setdefault(record.step, (record, "the incident resolved"))
        for event in change.events:
            if event.kind is not EventKind.ACTION_UNHELPFUL:
                continue
            found = next((a for a in incident.actions if a.step == event.data.get("step")), None)
            if (
                found is not None
                and found.planned is not None
                and found.planned.spec.revert_if_unhelpful
            ):
                wanted.setdefault(found.step, (found, "it did not help"))
        return wanted

    async def verify(self, timer: TimerSignal) -> StageResult | None:
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
            view is None
            or record is None
            or record.verified is not None
            or record.planned is None
            or record.planned.spec.verify is None
        ):
            await self._ledger.finish_effect(key, data={"skipped": True})
            return None
        dropped = (
            "the incident resolved"
            if not view.incident.is_active
            else "the action was undone"
            if record.reverted
            else None
        )
        if dropped is not None:
            # what the check would read says nothing of the action any more: not run, and
            # no "did not help" below the postmortem
            self._metrics.verifications.labels("dropped").inc()

            async def finish_dropped() -> None:
                await self._ledger.finish_effect(key, data={"dropped": dropped})

            return self._recorded(
                timer.incident_id,
                _Result(
                    record,
                    EventKind.ACTION_VERIFY_DROPPED,
                    f"verification of {record.action} on {record.target} dropped: {dropped}",
                    data={"why": dropped},
                ),
                finish_dropped,
                replace=True,
            )
        spec = record.planned.spec.verify
        value, error = await self._query(spec.query)
        helped = _in_bounds(value, spec.below, spec.above)
        bounds = _bounds(spec.below, spec.above)
        shown = "no data" if value is None else f"{value:.4g}"
        if helped:
            result = _Result(
                record.model_copy(update={"verified": True}),
                EventKind.ACTION_VERIFIED,
                f"{record.action} on {record.target} helped: {spec.query} = {shown} ({bounds})",
                data={"value": value, "query": spec.query},
            )
        else:
            why = error or f"{spec.query} = {shown}, wanted {bounds}"
            result = _Result(
                record.model_copy(update={"verified": False}),
                EventKind.ACTION_UNHELPFUL,
                f"{record.action} on {record.target} did not help: {why}",
                human=f"{record.action} on {record.target} did not help ({why})",
                data={"value": value, "query": spec.query, "error": error},
            )
        self._metrics.verifications.labels("helped" if helped else "unhelpful").inc()

        async def finish() -> None:
            await self._ledger.finish_effect(key, data={"helped": helped})

        # the pipeline writes it on the incident and follows it up: the stage then reverts
        # a step that did not help, if its rule says so (``_reverts_wanted``)
        return self._recorded(timer.incident_id, result, finish, replace=True)

    # ------------------------------------------------------------- handing over

    def _undecided(self, change: IncidentChange) -> StageResult:
        """No branch decided: no runbook step runs by itself, so a human is called (Slack,
        and a page when the incident's rule says ``page``)."""
        event = next(e for e in change.events if e.kind is EventKind.INCIDENT_UNDECIDED)
        reason = f"the automation cannot choose a runbook branch ({event.detail})"
        now = self._clock.now()

        def mutate(state: IncidentState) -> IncidentChange | None:
            return None if state.incident is None else hand_over(state.incident, reason, now)

        return StageResult(mutators=(mutate,))

    # ------------------------------------------------------------- revert policy

    async def _revert_due(self, incident_id: str, record: ActionRecord) -> StageResult | None:
        """At resolve, an applied change its policy leaves in place (``never``): its undo,
        shown for a human to send when they judge it is time (once per step)."""
        if (
            record.revert_when != "never"
            or record.verdict not in _UNDOABLE
            or not record.reversible
            or record.reverted
            or record.planned is None
        ):
            return None
        action = action_for(record.planned.spec)
        if not isinstance(action, DeploymentAction) or (undo := action.undo(record)) is None:
            return None
        key = f"{incident_id}:revert_due:{record.step}"
        if await self._claim(key) is None:
            return None
        dry_run = record.verdict is Outcome.DRY_RUN
        result = _Result(
            record,
            EventKind.ACTION_REVERT_DUE,
            (
                f"{record.action} on {record.target} would stay (dry-run, nothing was "
                f"changed; its rule says revert: never): {_change(record.before, record.after)}"
                f"; to undo it a human would send {_short(undo)}"
            )
            if dry_run
            else f"{record.action} on {record.target} stays (its rule says revert: never): "
            f"{_change(record.before, record.after)}; to undo it send {_short(undo)}",
            data={"revert_patch": undo, "policy": "never", "dry_run": dry_run},
        )

        async def finish() -> None:
            await self._ledger.finish_effect(key, data={"kind": result.kind})

        return self._recorded(incident_id, result, finish, replace=True)

    def _revert_checks(self, incident: Incident, event_seq: int) -> list[StageResult]:
        """The vendor's incident is over: each applied change waiting for it gets its first
        check after the quiet period (a timer: it survives restarts, runs once)."""
        results: list[StageResult] = []
        for record in incident.actions:
            if (
                record.revert_when != "vendor_resolved"
                or record.verdict not in _UNDOABLE
                or record.reverted
                or record.planned is None
            ):
                continue
            results.append(
                StageResult(after_write=(self._scheduler(incident.id, record, event_seq, 1),))
            )
        return results

    def _scheduler(
        self, incident_id: str, record: ActionRecord, event_seq: int, check: int
    ) -> AfterWrite:
        quiet_s = (
            float(getattr(record.planned.spec, "revert_quiet_s", 600.0))
            if record.planned
            else 600.0
        )

        async def schedule() -> None:
            now = self._clock.now()
            # scheduled again (a redelivery), the second copy finds the check's effect
            # done (its key is the timer's step)
            await self._ledger.schedule(
                TimerSignal(
                    kind="revert_check",
                    incident_id=incident_id,
                    step=revert_check_step(record.step, event_seq, check),
                    due_at=now + timedelta(seconds=quiet_s),
                    received_at=now,
                )
            )

        return schedule

    async def revert_check(self, timer: TimerSignal) -> StageResult | None:
        """A quiet period after the vendor's incident ended: undo the change if its verify
        query is in bounds now; else wait another period, and after ``REVERT_CHECKS`` call a
        human with the undo."""
        parsed = parse_revert_check_step(timer.step)
        if parsed is None:
            return None
        step, event_seq, check = parsed
        key = f"{timer.incident_id}:revert_check:{timer.step}"
        found = await self._claim_with_incident(key, timer.incident_id)
        if found is None:
            return None
        _, incident = found
        record = next((a for a in incident.actions if a.step == step), None)
        if (
            record is None
            or record.verdict not in _UNDOABLE
            or record.reverted
            or record.planned is None
        ):
            await self._ledger.finish_effect(key, data={"skipped": True})
            return None
        # a dry-run step's check reads the same query (it says what a live one would have
        # done), and its outcome is shown, never sent
        dry_run = record.verdict is Outcome.DRY_RUN
        spec = record.planned.spec.verify
        value, error, in_bounds = None, None, True
        if spec is not None:
            value, error = await self._query(spec.query)
            in_bounds = _in_bounds(value, spec.below, spec.above)
        shown = "no data" if value is None else f"{value:.4g}"
        reading = (
            "no verify query to wait for"
            if spec is None
            else f"{spec.query} = {shown} ({_bounds(spec.below, spec.above)})"
        )

        async def finish() -> None:
            await self._ledger.finish_effect(key, data={"in_bounds": in_bounds})

        if in_bounds:
            revert = await self._revert(
                timer.incident_id,
                record,
                why=f"the vendor's incident is over and, after the quiet period, {reading}",
            )
            return merge_results(
                [*([revert] if revert else []), StageResult(after_write=(finish,))]
            )
        undo = None
        action = action_for(record.planned.spec)
        if isinstance(action, DeploymentAction):
            undo = action.undo(record)
        why = error or reading
        human: str | None = None
        what = f"{record.action} on {record.target}" + (" (dry-run)" if dry_run else "")
        if check < REVERT_CHECKS:
            # on the timeline (the thread), so people see why the change is still there
            quiet_s = getattr(record.planned.spec, "revert_quiet_s", 600.0)
            detail = (
                f"the revert of {what} waits: the vendor's "
                f"incident is over but {why}; checking again in {quiet_s:g}s "
                f"({check + 1} of {REVERT_CHECKS})"
            )
            schedule = self._scheduler(timer.incident_id, record, event_seq, check + 1)

            async def then() -> None:
                await schedule()
                await finish()

        elif dry_run:
            # nothing is on the cluster to undo: no one is called, the thread says who would be
            detail = (
                f"{what} would still be in place: the vendor's incident is over but {why} "
                f"after {check} quiet periods; a human would be called to undo it"
                + (f": {_short(undo)}" if undo is not None else "")
            )
            then = finish
        else:
            detail = human = (
                f"{record.action} on {record.target} is still in place: the vendor's incident "
                f"is over but {why} after {check} quiet periods; undo it by hand when it is "
                "safe" + (f": {_short(undo)}" if undo is not None else "")
            )
            then = finish
        result = _Result(
            record,
            EventKind.ACTION_REVERT_DUE,
            detail,
            human=human,
            data={
                "revert_patch": undo,
                "policy": "vendor_resolved",
                "value": value,
                "check": check,
                "last": check >= REVERT_CHECKS,
                "dry_run": dry_run,
            },
        )
        return self._recorded(timer.incident_id, result, then, replace=True)

    async def _query(self, query: str) -> tuple[float | None, str | None]:
        """The query's value (``None``: no data) and why there is none, if it failed."""
        if self._verify is None:
            return None, "RESPONDER_PROMETHEUS_URL is not set"
        try:
            return await self._verify.value(query), None
        except Exception as exc:  # noqa: BLE001 - an unanswered check is a result
            return None, f"{type(exc).__name__}: {exc}"

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
    ) -> StageResult | None:
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

        async def finish() -> None:
            # once the outcome is written: a crash before leaves the step's record
            # unfinished (with the patch noted before it was sent), and the worker that
            # recovers it reads the target and records the outcome
            await self._ledger.finish_effect(key, data={"verdict": result.record.verdict.value})
            if (
                result.record.verdict is Outcome.APPLIED
                and planned.spec.verify is not None
                # its verify query is the check before its revert, once the vendor is back:
                # while the vendor is down it could only say "did not help"
                and result.record.revert_when != "vendor_resolved"
            ):
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

        return self._recorded(incident_id, result, finish)

    async def _guard(
        self, incident: Incident, planned: PlannedAction, *, revert: bool = False
    ) -> list[Verdict]:
        spec = planned.spec
        action = action_for(spec)
        namespace, deployment = action.namespace, action.deployment
        now = self._clock.now()
        cooldown = None
        used = 0
        if deployment is not None and not revert:
            cooldown = await self._ledger.cooldown_until(cooldown_key(action))
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
                change=action.change,
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
        action = action_for(spec)
        namespace, deployment = action.namespace, action.deployment
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
            revert_on_resolve=action.revert_when == "resolve",
            revert_when=action.revert_when,
            reversible=action.reversible,
            verdicts=tuple(verdicts),
            planned=planned,
        )
        if isinstance(action, PageHumanAction):
            if refusal is not None:
                result = self._refused(base, refusal)
                if refusal.guard != ACKNOWLEDGED:
                    result.human = action.reason  # paused or not, the page asks for a person
                return result
            return _Result(
                base.model_copy(update={"verdict": Outcome.NEEDS_HUMAN, "reason": action.reason}),
                EventKind.ACTION_NEEDS_HUMAN,
                action.reason,
                human=action.reason,
            )
        if refusal is not None and refusal.guard == DRY_RUN:
            return await self._dry_run(base, action, refusal)
        if refusal is not None:
            result = self._refused(base, refusal)
            if refusal.guard != ACKNOWLEDGED:
                # the runbook's step is not done: someone must do it (or lift the guard);
                # after an ack the human who took the incident already has it
                result.human = f"{spec.type} on {target} was not done: {refusal.reason}"
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
            result = await self._apply(base, action, key=key, noted=noted)
        except KubeError as exc:
            result = _Result(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                EventKind.ACTION_FAILED,
                f"{spec.type} on {target} failed: {exc}",
                human=f"{spec.type} on {target} failed: {exc}{_runbook_row(exc)}",
            )
        except patches.TargetProblem as exc:
            result = _Result(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                EventKind.ACTION_FAILED,
                f"{spec.type} on {target}: {exc}",
                human=f"{spec.type} on {target} was not possible: {exc}",
            )
        finally:
            await self._ledger.release_lock(lock, token=token)
        if result.record.verdict in (Outcome.APPLIED, Outcome.IN_PLACE):
            await self._ledger.start_cooldown(
                cooldown_key(action), until=now + timedelta(seconds=self._policy.cooldown_s)
            )
        return result

    def _refused(self, base: ActionRecord, refusal: Verdict) -> _Result:
        self._metrics.action_refusals.labels(refusal.guard).inc()
        return _Result(
            base.model_copy(update={"verdict": Outcome.REFUSED, "reason": refusal.reason}),
            EventKind.ACTION_REFUSED,
            f"{base.action} on {base.target} refused by {refusal.guard}: {refusal.reason}",
        )

    # ------------------------------------------------------ dry run and apply

    async def _dry_run(
        self, base: ActionRecord, action: DeploymentAction[Any], refusal: Verdict
    ) -> _Result:
        spec = action.spec
        deployment: dict[str, Any] | None
        try:
            deployment = await action.read(self._kube)
        except KubeError as exc:
            log.info("dry-run without the target's state", error=str(exc))
            deployment = None
        try:
            plan = await action.plan(deployment, kube=self._kube, clock=self._clock)
        except patches.TargetProblem as exc:
            return _Result(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                EventKind.ACTION_FAILED,
                f"{spec.type} on {base.target}: {exc}",
                human=f"{spec.type} on {base.target} is not possible: {exc}",
            )
        patch = plan.patch
        record = base.model_copy(
            update={
                "verdict": Outcome.DRY_RUN,
                "reason": refusal.reason,
                "patch": patch,
                "before": plan.before,
                "after": plan.wanted,
                "dry_run": True,
            }
        )
        return _Result(
            record,
            EventKind.ACTION_DRY_RUN,
            f"{spec.type} on {base.target} (dry-run): "
            # what it would change, where the target could be read (which containers)
            + (f"{_change(plan.before, plan.wanted)}; " if plan.before else "")
            + f"would send {_short(patch)}",
            data={"patch": patch},
        )

    async def _apply(
        self,
        base: ActionRecord,
        action: DeploymentAction[Any],
        *,
        key: str,
        noted: dict[str, JsonValue],
    ) -> _Result:
        spec = action.spec
        target = base.target
        skip = await action.skip(self._kube)
        if skip is not None:
            return _Result(
                base.model_copy(update={"verdict": Outcome.SKIPPED, "reason": skip.reason}),
                EventKind.ACTION_SKIPPED,
                skip.detail,
                human=skip.human,
            )
        deployment = await action.read(self._kube)
        plan = await action.plan(deployment, kube=self._kube, clock=self._clock)
        patch, before, wanted = plan.patch, plan.before, plan.wanted
        noted_wanted = noted.get("wanted")
        if (
            noted.get("patch") is not None
            and isinstance(noted_wanted, dict)
            and action.found_sent(deployment, noted_wanted)
        ):
            # a worker sent this and died before recording it: it is on the target
            record = base.model_copy(
                update={
                    "verdict": Outcome.APPLIED,
                    "patch": noted["patch"],
                    "before": noted.get("before") or before,
                    "after": noted_wanted,
                    "reason": "sent by a worker that died before recording it; found in place",
                }
            )
            return _Result(
                record,
                EventKind.ACTION_APPLIED,
                f"{spec.type} on {target}: found applied (after a crash)",
            )
        if action.as_wanted(plan):
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
                EventKind.ACTION_IN_PLACE,
                f"{spec.type} on {target}: already as wanted, nothing sent",
            )
        # noted before sending: a worker that dies after the patch left this for the next
        await self._ledger.note_effect(
            key, owner=self._owner, data={"patch": patch, "before": before, "wanted": wanted}
        )
        after = await action.send(patch, kube=self._kube)
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
            EventKind.ACTION_APPLIED,
            f"{spec.type} on {target}: {_change(before, after)}",
            data={"patch": patch},
        )

    # -------------------------------------------------------------------- revert

    async def _revert(
        self, incident_id: str, record: ActionRecord, *, why: str
    ) -> StageResult | None:
        if record.verdict is Outcome.DRY_RUN:
            return await self._dry_run_revert(incident_id, record, why=why)
        if (
            record.verdict is not Outcome.APPLIED
            or not record.reversible
            or record.reverted
            or record.planned is None
        ):
            return None
        action = action_for(record.planned.spec)
        # ``reversible`` said it can be undone: the action says how
        if (
            not isinstance(action, DeploymentAction)
            or (revert_patch := action.undo(record)) is None
        ):
            return None
        step = f"revert:{record.step}"
        key = f"{incident_id}:{step}"
        found = await self._claim_with_incident(key, incident_id)
        if found is None:
            return None
        _, incident = found
        verdicts = await self._guard(incident, record.planned, revert=True)
        refusal = next((v for v in verdicts if not v.ok), None)
        reverted = record.model_copy(update={"reverted": True})
        if refusal is not None:
            detail = (
                f"revert of {record.action} on {record.target} ({why}) not done: "
                f"{refusal.reason}; to undo it by hand send {_short(revert_patch)}"
            )
            result = _Result(
                record,
                EventKind.ACTION_REVERT_REFUSED,
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
                after = await action.send(revert_patch, kube=self._kube)
                result = _Result(
                    reverted.model_copy(update={"reverted_state": after}),
                    EventKind.ACTION_REVERTED,
                    f"{record.action} on {record.target} reverted ({why}): "
                    f"{_change(record.after, after)}",
                    data={"revert_patch": revert_patch, "before": record.after},
                )
            except (KubeError, patches.TargetProblem) as exc:
                result = _Result(
                    record,
                    EventKind.ACTION_REVERT_FAILED,
                    f"revert of {record.action} on {record.target} failed: {exc}",
                    human=f"the revert of {record.action} on {record.target} "
                    f"failed ({exc}); undo it by hand: {_short(revert_patch)}",
                    data={"revert_patch": revert_patch},
                )
            finally:
                await self._ledger.release_lock(lock, token=token)
        self._metrics.actions.labels(record.action, result.kind.removeprefix("action.")).inc()

        async def finish() -> None:
            await self._ledger.finish_effect(key, data={"kind": result.kind})

        return self._recorded(incident_id, result, finish, replace=True)

    async def _dry_run_revert(
        self, incident_id: str, record: ActionRecord, *, why: str
    ) -> StageResult | None:
        """A dry-run step's revert, due by its policy: the undo it would send, recorded
        (``action.dry_run``) and sent nowhere; once per step, under the same record as a
        real revert (``revert:<step>``)."""
        if not record.reversible or record.reverted or record.planned is None:
            return None
        action = action_for(record.planned.spec)
        if not isinstance(action, DeploymentAction):
            return None
        step = f"revert:{record.step}"
        key = f"{incident_id}:{step}"
        found = await self._claim_with_incident(key, incident_id)
        if found is None:
            return None
        _, incident = found
        # the guards a live revert would meet before the dry-run one (paused, ack,
        # allowlist): said, so the dry run tells what a live one would have done
        verdicts = await self._guard(incident, record.planned, revert=True)
        refusal = next((v for v in verdicts if not v.ok and v.guard != DRY_RUN), None)
        # the undo is made from the target as the dry run read it; unread (no cluster),
        # there is nothing exact to show
        undo = action.undo(record) if record.before else None
        what = f"revert of {record.action} on {record.target} ({why})"
        if undo is None:
            detail = (
                f"{what}: would send the undo of its change, not known here: the dry run "
                "could not read the target before it"
            )
        elif refusal is not None:
            detail = (
                f"{what}: would not be sent ({refusal.guard}: {refusal.reason}); "
                f"by hand it would be {_short(undo)}"
            )
        else:
            detail = f"{what}: would send {_short(undo)}"
        # marked ``reverted`` (its revert was shown) with its verdict still ``dry_run`` and
        # no ``reverted_state``: nothing was undone on the cluster
        result = _Result(
            record.model_copy(update={"reverted": True}),
            EventKind.ACTION_DRY_RUN,
            detail,
            data={
                "revert_patch": undo,
                "revert_of": record.step,
                "why": why,
                "guard": refusal.guard if refusal is not None else None,
            },
        )
        self._metrics.actions.labels(record.action, "revert_dry_run").inc()

        async def finish() -> None:
            await self._ledger.finish_effect(key, data={"kind": result.kind, "dry_run": True})

        return self._recorded(incident_id, result, finish, replace=True)

    # --------------------------------------------------------------------- write

    def _recorded(
        self,
        incident_id: str,
        result: _Result,
        finish: AfterWrite,
        *,
        replace: bool = False,
    ) -> StageResult:
        """The outcome to record on the incident, then ``finish``."""
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

        async def logged() -> None:
            log.info(
                "action recorded",
                incident_id=incident_id,
                step=result.record.step,
                verdict=result.record.verdict.value,
                kind=result.kind,
            )

        return StageResult(mutators=(mutate,), after_write=(logged, finish))


# the steps a revert policy acts on: applied ones, and dry-run ones (their revert shown)
_UNDOABLE = frozenset({Outcome.APPLIED, Outcome.DRY_RUN})


def _runbook_row(exc: KubeError) -> str:
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


def _short(patch: Any) -> str:
    text = json.dumps(patch, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 400 else text[:400] + "…"


def _change(before: dict[str, Any], after: dict[str, Any]) -> str:
    if isinstance(after.get("containers"), dict):  # an env action: say which containers
        b, a = env_by_container(before), env_by_container(after)
        return "; ".join(
            f"container {c}: "
            + ", ".join(f"{k}: {b.get(c, {}).get(k)!r} → {v!r}" for k, v in env.items())
            for c, env in a.items()
        )
    keys = sorted(set(before) | set(after))
    return ", ".join(f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in keys)


def _in_bounds(value: float | None, below: float | None, above: float | None) -> bool:
    return (
        value is not None and (below is None or value < below) and (above is None or value > above)
    )


def _bounds(below: float | None, above: float | None) -> str:
    return " and ".join(
        b
        for b in (
            f"< {below:g}" if below is not None else "",
            f"> {above:g}" if above is not None else "",
        )
        if b
    )
