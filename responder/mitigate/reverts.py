"""When and how the mitigation stage undoes a step, by its revert policy
(``ActionRecord.revert_when``).

``resolve``: on resolve it is undone (guarded, under the target's lock, once:
``revert:<step>``); ``vendor_resolved``: once the vendor's incident is over
(``vendor.resolved``) a ``revert_check`` timer waits the action's ``revert_quiet_s`` and
undoes it only if its verify query is in bounds then (else waits again, at most
``REVERT_CHECKS`` times, then calls a human); ``never``: at resolve the undo is shown for a
human (``action.revert_due``). A step whose rule says ``revert_if_unhelpful`` is undone once
its verification says it did not help.

A dry-run step's revert comes when its policy's would: the undo it would send is recorded
(``action.dry_run``: "revert of ...: would send <patch>", with ``revert_patch``), once per
step (the ``revert:<step>`` record, as a real revert), and the cluster is never touched;
the record keeps its ``dry_run`` verdict and is marked ``reverted`` (its revert was shown,
so it is not shown again, and nothing says a change was undone).
"""

from __future__ import annotations

from datetime import timedelta

from responder.domain.action import ActionRecord, Outcome
from responder.domain.incident import Incident, IncidentChange
from responder.domain.plans import REVERT_CHECKS
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.mitigate import patches
from responder.mitigate.actions import DeploymentAction, action_for
from responder.mitigate.guards import DRY_RUN
from responder.mitigate.step import (
    UNDOABLE,
    StepBusyError,
    StepKit,
    StepResult,
    bounds_text,
    describe_change,
    short_patch,
    within_bounds,
)
from responder.ports import AfterWrite, KubeError, StageResult, merge_results


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


class Reverts:
    """The reverts of the mitigation stage's steps, by their policies."""

    def __init__(self, kit: StepKit) -> None:
        self._kit = kit

    @staticmethod
    def wanted(change: IncidentChange) -> dict[str, tuple[ActionRecord, str]]:
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

    async def revert(
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
        found = await self._kit.claim_with_incident(key, incident_id)
        if found is None:
            return None
        _, incident = found
        verdicts = await self._kit.guard(incident, record.planned, revert=True)
        refusal = next((v for v in verdicts if not v.ok), None)
        reverted = record.model_copy(update={"reverted": True})
        if refusal is not None:
            detail = (
                f"revert of {record.action} on {record.target} ({why}) not done: "
                f"{refusal.reason}; to undo it by hand send {short_patch(revert_patch)}"
            )
            result = StepResult(
                record,
                EventKind.ACTION_REVERT_REFUSED,
                detail,
                data={"revert_patch": revert_patch, "guard": refusal.guard},
            )
        else:
            lock = record.target
            token = key
            if not await self._kit.ledger.acquire_lock(
                lock, token=token, ttl_s=self._kit.policy.lock_ttl_s
            ):
                raise StepBusyError(f"lock {lock}")
            try:
                after = await action.send(revert_patch, kube=self._kit.kube)
                result = StepResult(
                    reverted.model_copy(update={"reverted_state": after}),
                    EventKind.ACTION_REVERTED,
                    f"{record.action} on {record.target} reverted ({why}): "
                    f"{describe_change(record.after, after)}",
                    data={"revert_patch": revert_patch, "before": record.after},
                )
            except (KubeError, patches.TargetProblem) as exc:
                result = StepResult(
                    record,
                    EventKind.ACTION_REVERT_FAILED,
                    f"revert of {record.action} on {record.target} failed: {exc}",
                    human=f"the revert of {record.action} on {record.target} "
                    f"failed ({exc}); undo it by hand: {short_patch(revert_patch)}",
                    data={"revert_patch": revert_patch},
                )
            finally:
                await self._kit.ledger.release_lock(lock, token=token)
        self._kit.metrics.actions.labels(record.action, result.kind.removeprefix("action.")).inc()

        async def finish() -> None:
            await self._kit.ledger.finish_effect(key, data={"kind": result.kind})

        return self._kit.recorded(incident_id, result, finish, replace=True)

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
        found = await self._kit.claim_with_incident(key, incident_id)
        if found is None:
            return None
        _, incident = found
        # the guards a live revert would meet before the dry-run one (paused, ack,
        # allowlist): said, so the dry run tells what a live one would have done
        verdicts = await self._kit.guard(incident, record.planned, revert=True)
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
                f"by hand it would be {short_patch(undo)}"
            )
        else:
            detail = f"{what}: would send {short_patch(undo)}"
        # marked ``reverted`` (its revert was shown) with its verdict still ``dry_run`` and
        # no ``reverted_state``: nothing was undone on the cluster
        result = StepResult(
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
        self._kit.metrics.actions.labels(record.action, "revert_dry_run").inc()

        async def finish() -> None:
            await self._kit.ledger.finish_effect(key, data={"kind": result.kind, "dry_run": True})

        return self._kit.recorded(incident_id, result, finish, replace=True)

    async def revert_due(self, incident_id: str, record: ActionRecord) -> StageResult | None:
        """At resolve, an applied change its policy leaves in place (``never``): its undo,
        shown for a human to send when they judge it is time (once per step)."""
        if (
            record.revert_when != "never"
            or record.verdict not in UNDOABLE
            or not record.reversible
            or record.reverted
            or record.planned is None
        ):
            return None
        action = action_for(record.planned.spec)
        if not isinstance(action, DeploymentAction) or (undo := action.undo(record)) is None:
            return None
        key = f"{incident_id}:revert_due:{record.step}"
        if await self._kit.claim(key) is None:
            return None
        dry_run = record.verdict is Outcome.DRY_RUN
        result = StepResult(
            record,
            EventKind.ACTION_REVERT_DUE,
            (
                f"{record.action} on {record.target} would stay (dry-run, nothing was "
                "changed; its rule says revert: never): "
                f"{describe_change(record.before, record.after)}"
                f"; to undo it a human would send {short_patch(undo)}"
            )
            if dry_run
            else f"{record.action} on {record.target} stays (its rule says revert: never): "
            f"{describe_change(record.before, record.after)}; to undo it send {short_patch(undo)}",
            data={"revert_patch": undo, "policy": "never", "dry_run": dry_run},
        )

        async def finish() -> None:
            await self._kit.ledger.finish_effect(key, data={"kind": result.kind})

        return self._kit.recorded(incident_id, result, finish, replace=True)

    def checks_after_vendor(self, incident: Incident, event_seq: int) -> list[StageResult]:
        """The vendor's incident is over: each applied change waiting for it gets its first
        check after the quiet period (a timer: it survives restarts, runs once)."""
        results: list[StageResult] = []
        for record in incident.actions:
            if (
                record.revert_when != "vendor_resolved"
                or record.verdict not in UNDOABLE
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
            now = self._kit.clock.now()
            # scheduled again (a redelivery), the second copy finds the check's effect
            # done (its key is the timer's step)
            await self._kit.ledger.schedule(
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
        found = await self._kit.claim_with_incident(key, timer.incident_id)
        if found is None:
            return None
        _, incident = found
        record = next((a for a in incident.actions if a.step == step), None)
        if (
            record is None
            or record.verdict not in UNDOABLE
            or record.reverted
            or record.planned is None
        ):
            await self._kit.ledger.finish_effect(key, data={"skipped": True})
            return None
        # a dry-run step's check reads the same query (it says what a live one would have
        # done), and its outcome is shown, never sent
        dry_run = record.verdict is Outcome.DRY_RUN
        spec = record.planned.spec.verify
        value, error, in_bounds = None, None, True
        if spec is not None:
            value, error = await self._kit.query(spec.query)
            in_bounds = within_bounds(value, spec.below, spec.above)
        shown = "no data" if value is None else f"{value:.4g}"
        reading = (
            "no verify query to wait for"
            if spec is None
            else f"{spec.query} = {shown} ({bounds_text(spec.below, spec.above)})"
        )

        async def finish() -> None:
            await self._kit.ledger.finish_effect(key, data={"in_bounds": in_bounds})

        if in_bounds:
            revert = await self.revert(
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
                + (f": {short_patch(undo)}" if undo is not None else "")
            )
            then = finish
        else:
            detail = human = (
                f"{record.action} on {record.target} is still in place: the vendor's incident "
                f"is over but {why} after {check} quiet periods; undo it by hand when it is "
                "safe" + (f": {short_patch(undo)}" if undo is not None else "")
            )
            then = finish
        result = StepResult(
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
        return self._kit.recorded(timer.incident_id, result, then, replace=True)
