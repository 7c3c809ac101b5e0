"""Steps that wait for a person's yes (a rule's ``approval:``): the request, its deadline
and its lapse at resolve. The approved step itself is carried out by the executor, as
every step, through every guard but the ack (a person decided it).

``required``: the step is offered with the exact change it would send (its patch, as a
dry run records it), once the guards that do not depend on a person agree (the
allowlist: a target it refuses is refused now, not offered). ``when_unsure``: only when
the action's own precondition check cannot confirm the step would help
(``restart_if_secret_rotated``: the Secret not visibly rotated after the pods started);
when it can, the step runs on its own as without ``approval:``.

Asked once per step: the ``ask:<step>`` record in the ledger is claimed before the
request is written and finished after its deadline's ``approval_expiry`` timer is
scheduled (a redelivery or a second replica finds it done; a worker that recovers it
finds the request on the incident and schedules the timer again, which is harmless: the
expiry is an idempotent transition). The expiry needs no record of its own for the same
reason: it changes the incident only while the step still waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from responder.domain.decision import PlannedAction
from responder.domain.incident import (
    Approval,
    IncidentChange,
    approval_of,
    call_human,
    combine,
    expire_approval,
    lapse_approvals,
    request_approval,
)
from responder.domain.signal import TimerSignal
from responder.mitigate import patches
from responder.mitigate.actions import DeploymentAction, action_for
from responder.mitigate.guards import allowlist_verdict
from responder.mitigate.step import StepKit, describe_change, log, short_patch
from responder.ports import IncidentState, KubeError, StageResult, merge_results

# carries out the step the usual way (guards, claim, record): what a step that needs no
# approval after all (sure, or refused by the allowlist) is handed to
RunStep = Callable[[], Awaitable[StageResult | None]]


def approval_mode(planned: PlannedAction) -> str:
    """The step's ``approval:`` (``none`` for an action type without it: ``page_human``)."""
    return str(getattr(planned.spec, "approval", "none"))


class Approvals:
    """The approval requests of the mitigation stage's steps, and their deadlines."""

    def __init__(self, kit: StepKit) -> None:
        self._kit = kit

    async def ask(
        self, incident_id: str, step: str, planned: PlannedAction, *, run: RunStep
    ) -> StageResult | None:
        """Ask a person to approve ``step``, or ``run`` it when it needs no asking."""
        key = f"{incident_id}:ask:{step}"
        found = await self._kit.claim_with_incident(key, incident_id)
        if found is None:
            return None
        _, incident = found

        async def finish() -> None:
            await self._kit.ledger.finish_effect(key, data={"step": step})

        done = StageResult(after_write=(finish,))
        waiting = approval_of(incident, step)
        if waiting is not None:  # asked by a worker that died before finishing
            return StageResult(after_write=(self._timer(incident_id, waiting), finish))
        if any(a.step == step for a in incident.actions):
            return done
        action = action_for(planned.spec)
        if not isinstance(action, DeploymentAction):  # page_human takes no approval:
            return merge_results([r for r in (await run(), done) if r is not None])
        _, on_list, _ = allowlist_verdict(
            self._kit.policy.allowlist, action.namespace, action.deployment, planned.spec.type
        )
        why: str | None = None
        if on_list and approval_mode(planned) == "when_unsure":
            try:
                skip = await action.skip(self._kit.kube)
            except (KubeError, patches.TargetProblem):
                skip = None  # the step's own run meets the same failure, and says it
                on_list = False
            if skip is None:
                on_list = False  # sure (or failing): no one is asked
            else:
                why = skip.reason
        request = await self._request(incident_id, step, planned, action, why) if on_list else None
        if request is None:
            # the allowlist refuses it, or the check says it helps, or no plan could be
            # made: the step's usual path records that (refused, run, failed)
            return merge_results([r for r in (await run(), done) if r is not None])
        return merge_results([request, done])

    async def _request(
        self,
        incident_id: str,
        step: str,
        planned: PlannedAction,
        action: DeploymentAction[Any],
        why: str | None,
    ) -> StageResult | None:
        """The request, with the exact change: the target read and the patch planned as a
        dry run does (a target that cannot be read: the patch, its state before unknown)."""
        spec = planned.spec
        try:
            deployment: dict[str, Any] | None = await action.read(self._kit.kube)
        except KubeError as exc:
            log.info("approval asked without the target's state", error=str(exc))
            deployment = None
        try:
            plan = await action.plan(deployment, kube=self._kit.kube, clock=self._kit.clock)
        except patches.TargetProblem:
            return None
        target = f"{action.namespace}/{action.deployment}"
        # as the dry-run line says it (the request's own detail names the action and target)
        change = (
            (f"{describe_change(plan.before, plan.wanted)}; " if plan.before else "")
            + f"would send {short_patch(plan.patch)}"
            + (f" (asked because {why})" if why else "")
        )
        now = self._kit.clock.now()
        timeout_s = getattr(spec, "approval_timeout_s", None) or self._kit.policy.approval_timeout_s
        approval = Approval(
            step=step,
            action=spec.type,
            target=target,
            change=change,
            requested_at=now,
            expires_at=now + timedelta(seconds=timeout_s),
        )
        extra: dict[str, Any] = {"why": why} if why else {}

        def mutate(state: IncidentState) -> IncidentChange | None:
            if state.incident is None:
                return None
            return request_approval(
                state.incident,
                approval,
                now,
                patch=plan.patch,
                before=plan.before,
                wanted=plan.wanted,
                mode=approval_mode(planned),
                dry_run=planned.dry_run or self._kit.policy.force_dry_run,
                **extra,
            )

        self._kit.metrics.actions.labels(spec.type, "approval_requested").inc()
        return StageResult(mutators=(mutate,), after_write=(self._timer(incident_id, approval),))

    def _timer(self, incident_id: str, approval: Approval) -> Callable[[], Awaitable[None]]:
        async def schedule() -> None:
            await self._kit.ledger.schedule(
                TimerSignal(
                    kind="approval_expiry",
                    incident_id=incident_id,
                    step=approval.step,
                    due_at=approval.expires_at,
                    received_at=self._kit.clock.now(),
                )
            )

        return schedule

    async def expired(self, timer: TimerSignal) -> StageResult | None:
        """The deadline of a step waiting for approval: if it still waits and the incident
        is active, it expires and a human is called (the PagerDuty planner pages the
        on-call for it); answered, lapsed or resolved: nothing."""
        view = await self._kit.store.get_incident(timer.incident_id)
        if view is None:
            return None
        approval = approval_of(view.incident, timer.step)
        if approval is None or approval.state != "requested" or not view.incident.is_active:
            return None
        now = max(self._kit.clock.now(), approval.expires_at)
        reason = (
            f"no one approved {approval.action} on {approval.target} in time: it did not "
            "run; decide whether to do it by hand"
        )

        def mutate(state: IncidentState) -> IncidentChange | None:
            # the incident as it is now: an answer or a resolve written meanwhile wins
            incident = state.incident
            if incident is None or not incident.is_active:
                return None
            first = expire_approval(incident, timer.step, now)
            if first is None:
                return None
            return combine(first, call_human(first.incident, reason, now))

        return StageResult(mutators=(mutate,))

    @staticmethod
    def lapsed(change: IncidentChange) -> StageResult | None:
        """At resolve, the steps still waiting lapse (said once each; nothing runs)."""
        if not any(a.state == "requested" for a in change.incident.approvals):
            return None
        now = change.incident.updated_at

        def mutate(state: IncidentState) -> IncidentChange | None:
            return None if state.incident is None else lapse_approvals(state.incident, now)

        return StageResult(mutators=(mutate,))
