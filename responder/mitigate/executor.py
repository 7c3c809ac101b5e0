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

Each reversible action is undone by its revert policy (``reverts.py``). A verification
that shows the action did not help hands the incident to a human (and the step is undone
when its rule says ``revert_if_unhelpful``); one that falls due after the incident resolved
or its action was undone is dropped and recorded (``action.verify_dropped``), not run. What
every step shares (the claim, the guards, the query, the write) is ``step.py``.

A guard's refusal that leaves the runbook's step undone (every guard but a human's ack and
dry-run) calls a human, and so does an incident no branch of the decision tree decided.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from responder.domain.action import ActionRecord, Outcome, Verdict
from responder.domain.decision import PlannedAction
from responder.domain.incident import Approval, Incident, IncidentChange, approval_of, hand_over
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.mitigate import patches
from responder.mitigate.actions import DeploymentAction, PageHumanAction, action_for
from responder.mitigate.approvals import Approvals, approval_mode
from responder.mitigate.guards import ACKNOWLEDGED, DRY_RUN
from responder.mitigate.reverts import Reverts
from responder.mitigate.step import (
    Policy,
    StepBusyError,
    StepKit,
    StepResult,
    bounds_text,
    cooldown_key,
    describe_change,
    log,
    runbook_row,
    short_patch,
    within_bounds,
)
from responder.ports import (
    IncidentState,
    KubeError,
    StageIncompleteError,
    StageResult,
    merge_results,
)

__all__ = ["Mitigator", "Policy", "step_of"]


def step_of(incident: Incident, index: int, planned: PlannedAction) -> str:
    return f"{incident.branch}#{index}:{planned.spec.type}"


class Mitigator:
    """The mitigation stage (``IncidentStage``), the verifier of its actions and the
    handler of their revert checks (``revert_check``)."""

    def __init__(self, kit: StepKit) -> None:
        """``kit``: the store, ledger, cluster, clock and policy every step shares (the
        reverts and approvals use the same one)."""
        self._kit = kit
        self._reverts = Reverts(self._kit)
        self._approvals = Approvals(self._kit)
        # the timer handler of a quiet period after the vendor's incident ended
        self.revert_check = self._reverts.revert_check
        # the timer handler of a step's approval deadline
        self.approval_expired = self._approvals.expired

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
                    step = await self._planned(incident, step_of(incident, index, planned), planned)
                    results.extend([step] if step else [])
            for event in change.events:
                if event.kind is EventKind.ACTION_APPROVED:
                    approved = await self._approved(incident, str(event.data.get("step")))
                    results.extend([approved] if approved else [])
            for record, why in self._reverts.wanted(change).values():
                revert = await self._reverts.revert(incident.id, record, why=why)
                results.extend([revert] if revert else [])
            if EventKind.INCIDENT_RESOLVED in kinds:
                for record in incident.actions:
                    due = await self._reverts.revert_due(incident.id, record)
                    results.extend([due] if due else [])
                lapsed = self._approvals.lapsed(change)
                results.extend([lapsed] if lapsed else [])
            for event in change.events:
                if event.kind is EventKind.VENDOR_RESOLVED:
                    results.extend(self._reverts.checks_after_vendor(incident, event.seq))
        except Exception as exc:
            # a later step is busy or failed: the steps carried out before it are recorded
            # by the pipeline before the failure goes on, so the next try finds them done
            raise StageIncompleteError(merge_results(results), exc) from exc
        return merge_results(results)

    async def verify(self, timer: TimerSignal) -> StageResult | None:
        """The due verification of an action: did it help?"""
        key = f"{timer.incident_id}:verify:{timer.step}"
        claim = await self._kit.claim(key)
        if claim is None:
            return None
        view = await self._kit.store.get_incident(timer.incident_id)
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
            await self._kit.ledger.finish_effect(key, data={"skipped": True})
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
            self._kit.metrics.verifications.labels("dropped").inc()

            async def finish_dropped() -> None:
                await self._kit.ledger.finish_effect(key, data={"dropped": dropped})

            return self._kit.recorded(
                timer.incident_id,
                StepResult(
                    record,
                    EventKind.ACTION_VERIFY_DROPPED,
                    f"verification of {record.action} on {record.target} dropped: {dropped}",
                    data={"why": dropped},
                ),
                finish_dropped,
                replace=True,
            )
        spec = record.planned.spec.verify
        value, error = await self._kit.query(spec.query)
        helped = within_bounds(value, spec.below, spec.above)
        bounds = bounds_text(spec.below, spec.above)
        shown = "no data" if value is None else f"{value:.4g}"
        if helped:
            result = StepResult(
                record.model_copy(update={"verified": True}),
                EventKind.ACTION_VERIFIED,
                f"{record.action} on {record.target} helped: {spec.query} = {shown} ({bounds})",
                data={"value": value, "query": spec.query},
            )
        else:
            why = error or f"{spec.query} = {shown}, wanted {bounds}"
            result = StepResult(
                record.model_copy(update={"verified": False}),
                EventKind.ACTION_UNHELPFUL,
                f"{record.action} on {record.target} did not help: {why}",
                human=f"{record.action} on {record.target} did not help ({why})",
                data={"value": value, "query": spec.query, "error": error},
            )
        self._kit.metrics.verifications.labels("helped" if helped else "unhelpful").inc()

        async def finish() -> None:
            await self._kit.ledger.finish_effect(key, data={"helped": helped})

        # the pipeline writes it on the incident and follows it up: the stage then reverts
        # a step that did not help, if its rule says so (``_reverts_wanted``)
        return self._kit.recorded(timer.incident_id, result, finish, replace=True)

    def _undecided(self, change: IncidentChange) -> StageResult:
        """No branch decided: no runbook step runs by itself, so a human is called (Slack,
        and a page when the incident's rule says ``page``)."""
        event = next(e for e in change.events if e.kind is EventKind.INCIDENT_UNDECIDED)
        reason = f"the automation cannot choose a runbook branch ({event.detail})"
        now = self._kit.clock.now()

        def mutate(state: IncidentState) -> IncidentChange | None:
            return None if state.incident is None else hand_over(state.incident, reason, now)

        return StageResult(mutators=(mutate,))

    async def _planned(
        self, incident: Incident, step: str, planned: PlannedAction
    ) -> StageResult | None:
        """A step of the plan decided: carried out, or offered for approval first."""
        if approval_mode(planned) == "none":
            return await self._step(incident.id, step, planned)

        async def run() -> StageResult | None:
            return await self._step(incident.id, step, planned)

        return await self._approvals.ask(incident.id, step, planned, run=run)

    async def _approved(self, incident: Incident, step: str) -> StageResult | None:
        """A person approved ``step``: it runs now, once, through every guard but the ack."""
        approval = approval_of(incident, step)
        if approval is None or approval.state != "approved":
            return None
        planned = next(
            (
                p
                for index, p in enumerate(incident.planned_actions)
                if step_of(incident, index, p) == step
            ),
            None,
        )
        if planned is None:  # not a step of this incident's plan: nothing to run
            return None
        return await self._step(incident.id, step, planned, approval=approval)

    async def _step(
        self,
        incident_id: str,
        step: str,
        planned: PlannedAction,
        *,
        approval: Approval | None = None,
    ) -> StageResult | None:
        key = f"{incident_id}:{step}"
        found = await self._kit.claim_with_incident(key, incident_id)
        if found is None:
            return None
        claim, incident = found
        existing = next((a for a in incident.actions if a.step == step), None)
        if existing is not None:  # recorded, but the record's owner died before finishing
            await self._kit.ledger.finish_effect(key, data={"verdict": existing.verdict.value})
            return None
        result = await self._execute(
            incident,
            step,
            planned,
            key=key,
            noted=claim.data if claim.status == "recover" else {},
            approval=approval,
        )
        if approval is not None:
            result.data["approved_by"] = approval.decided_by
        self._kit.metrics.actions.labels(planned.spec.type, result.record.verdict.value).inc()

        async def finish() -> None:
            # once the outcome is written: a crash before leaves the step's record
            # unfinished (with the patch noted before it was sent), and the worker that
            # recovers it reads the target and records the outcome
            await self._kit.ledger.finish_effect(key, data={"verdict": result.record.verdict.value})
            if (
                result.record.verdict is Outcome.APPLIED
                and planned.spec.verify is not None
                # its verify query is the check before its revert, once the vendor is back:
                # while the vendor is down it could only say "did not help"
                and result.record.revert_when != "vendor_resolved"
            ):
                due = self._kit.clock.now() + timedelta(seconds=planned.spec.settle_s)
                await self._kit.ledger.schedule(
                    TimerSignal(
                        kind="verify",
                        incident_id=incident_id,
                        step=step,
                        due_at=due,
                        received_at=self._kit.clock.now(),
                    )
                )

        return self._kit.recorded(incident_id, result, finish)

    async def _execute(
        self,
        incident: Incident,
        step: str,
        planned: PlannedAction,
        *,
        key: str,
        noted: dict[str, JsonValue],
        approval: Approval | None = None,
    ) -> StepResult:
        spec = planned.spec
        action = action_for(spec)
        namespace, deployment = action.namespace, action.deployment
        target = f"{namespace}/{deployment}" if deployment else incident.id
        approved_by = approval.decided_by if approval is not None else None
        verdicts = await self._kit.guard(incident, planned, approved_by=approved_by)
        refusal = next((v for v in verdicts if not v.ok), None)
        base = ActionRecord(
            step=step,
            action=spec.type,
            target=target,
            verdict=Outcome.REFUSED,
            reason="",
            at=self._kit.clock.now(),
            dry_run=planned.dry_run or self._kit.policy.force_dry_run,
            revert_on_resolve=action.revert_when == "resolve",
            revert_when=action.revert_when,
            reversible=action.reversible,
            verdicts=tuple(verdicts),
            planned=planned,
            approved_by=approved_by,
            approved_via=approval.via if approval is not None else None,
        )
        if isinstance(action, PageHumanAction):
            if refusal is not None:
                result = self._refused(base, refusal)
                if refusal.guard != ACKNOWLEDGED:
                    result.human = action.reason  # paused or not, the page asks for a person
                return result
            return StepResult(
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
        now = self._kit.clock.now()
        if not await self._kit.ledger.spend_budget(
            window_s=self._kit.policy.budget_window_s,
            limit=self._kit.policy.budget,
            now=now,
            token=step,
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
        if not await self._kit.ledger.acquire_lock(
            lock, token=token, ttl_s=self._kit.policy.lock_ttl_s
        ):
            raise StepBusyError(f"lock {lock}")
        locked = Verdict(guard="lock", ok=True, reason=f"holds the lock of {lock}")
        base = base.model_copy(update={"verdicts": (*verdicts, locked)})
        try:
            result = await self._apply(
                base, action, key=key, noted=noted, approved=approval is not None
            )
        except KubeError as exc:
            result = StepResult(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                EventKind.ACTION_FAILED,
                f"{spec.type} on {target} failed: {exc}",
                human=f"{spec.type} on {target} failed: {exc}{runbook_row(exc)}",
            )
        except patches.TargetProblem as exc:
            result = StepResult(
                base.model_copy(update={"verdict": Outcome.FAILED, "reason": str(exc)}),
                EventKind.ACTION_FAILED,
                f"{spec.type} on {target}: {exc}",
                human=f"{spec.type} on {target} was not possible: {exc}",
            )
        finally:
            await self._kit.ledger.release_lock(lock, token=token)
        if result.record.verdict in (Outcome.APPLIED, Outcome.IN_PLACE):
            await self._kit.ledger.start_cooldown(
                cooldown_key(action), until=now + timedelta(seconds=self._kit.policy.cooldown_s)
            )
        return result

    def _refused(self, base: ActionRecord, refusal: Verdict) -> StepResult:
        self._kit.metrics.action_refusals.labels(refusal.guard).inc()
        return StepResult(
            base.model_copy(update={"verdict": Outcome.REFUSED, "reason": refusal.reason}),
            EventKind.ACTION_REFUSED,
            f"{base.action} on {base.target} refused by {refusal.guard}: {refusal.reason}",
        )

    async def _dry_run(
        self, base: ActionRecord, action: DeploymentAction[Any], refusal: Verdict
    ) -> StepResult:
        spec = action.spec
        deployment: dict[str, Any] | None
        try:
            deployment = await action.read(self._kit.kube)
        except KubeError as exc:
            log.info("dry-run without the target's state", error=str(exc))
            deployment = None
        try:
            plan = await action.plan(deployment, kube=self._kit.kube, clock=self._kit.clock)
        except patches.TargetProblem as exc:
            return StepResult(
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
        return StepResult(
            record,
            EventKind.ACTION_DRY_RUN,
            f"{spec.type} on {base.target} (dry-run): "
            # what it would change, where the target could be read (which containers)
            + (f"{describe_change(plan.before, plan.wanted)}; " if plan.before else "")
            + f"would send {short_patch(patch)}",
            data={"patch": patch},
        )

    async def _apply(
        self,
        base: ActionRecord,
        action: DeploymentAction[Any],
        *,
        key: str,
        noted: dict[str, JsonValue],
        approved: bool = False,
    ) -> StepResult:
        spec = action.spec
        target = base.target
        # an approved step runs as the person saw it offered: its own precondition check
        # (a Secret not visibly rotated) is what they were asked to overrule
        skip = None if approved else await action.skip(self._kit.kube)
        if skip is not None:
            return StepResult(
                base.model_copy(update={"verdict": Outcome.SKIPPED, "reason": skip.reason}),
                EventKind.ACTION_SKIPPED,
                skip.detail,
                human=skip.human,
            )
        deployment = await action.read(self._kit.kube)
        plan = await action.plan(deployment, kube=self._kit.kube, clock=self._kit.clock)
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
            return StepResult(
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
            return StepResult(
                record,
                EventKind.ACTION_IN_PLACE,
                f"{spec.type} on {target}: already as wanted, nothing sent",
            )
        # noted before sending: a worker that dies after the patch left this for the next
        await self._kit.ledger.note_effect(
            key, owner=self._kit.owner, data={"patch": patch, "before": before, "wanted": wanted}
        )
        after = await action.send(patch, kube=self._kit.kube)
        record = base.model_copy(
            update={
                "verdict": Outcome.APPLIED,
                "patch": patch,
                "before": before,
                "after": after,
                "reason": "applied",
            }
        )
        return StepResult(
            record,
            EventKind.ACTION_APPLIED,
            f"{spec.type} on {target}: {describe_change(before, after)}",
            data={"patch": patch},
        )
