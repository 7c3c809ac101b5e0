"""``UpdateReminders``: the Slack root's "Next update", kept.

The root promises an update every ``intervals_s[severity]`` from the incident's opening
(P1 15 min, P2 30 min, P3 and P4 an hour by default; ``domain.watch.next_update_at``).
Each point of that schedule is a round of the incident's one ``update_due`` chain: when
nothing was told in the thread since the point before it, the thread gets a reminder
naming the commander (``incident.update_due``, which also has the root edited to show the
next point). The chain ends at resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import structlog

from responder.domain.incident import IncidentChange
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.domain.watch import last_update_at, next_update_at, tell
from responder.ports import Clock, IncidentState, StageResult, Store
from responder.watch.chain import TimerChain, generation, round_of

log = structlog.get_logger("responder.watch.updates")

# What starts a schedule: the incident's severity is known, or raised, from these on (a
# raised severity starts the schedule of its cadence, which ends the one before).
_SEVERITY_SET = frozenset(
    {
        EventKind.INCIDENT_CLASSIFIED,
        EventKind.INCIDENT_UNCLASSIFIED,
        EventKind.INCIDENT_STORM,
        EventKind.INCIDENT_ESCALATED,
    }
)
# An incident left open for a week at P1's cadence; nobody reads reminders past that.
MAX_ROUNDS = 7 * 24 * 4


class UpdateReminders:
    """The stage that starts the schedule and the handler of its rounds."""

    reads_store = False

    def __init__(
        self, *, store: Store, chain: TimerChain, clock: Clock, intervals_s: Mapping[str, float]
    ) -> None:
        self._store = store
        self._chain = chain
        self._clock = clock
        self._intervals_s = dict(intervals_s)

    def _every_s(self, severity: str | None) -> float:
        return self._intervals_s.get(severity or "", self._intervals_s.get("P3", 3600.0))

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        incident = change.incident
        if not incident.is_active or not any(e.kind in _SEVERITY_SET for e in change.events):
            return None
        severity = incident.severity.value if incident.severity else ""
        due = next_update_at(incident.opened_at, self._every_s(severity), self._clock.now())
        await self._chain.start(incident.id, due_at=due, generation=severity)
        return None

    async def round(self, timer: TimerSignal) -> StageResult | None:
        """One promised update's time: remind when none was posted since the last one."""
        if not await self._chain.claim(timer):
            return None
        view = await self._store.get_incident(timer.incident_id)
        severity = view.incident.severity if view is not None else None
        if (
            view is None
            or not view.incident.is_active
            # the severity changed: the chain of its cadence took over
            or generation(timer) != (severity.value if severity else "")
            or round_of(timer) >= MAX_ROUNDS
        ):
            return StageResult(after_write=(self._chain.then(timer, None),))
        incident = view.incident
        now = self._clock.now()
        every_s = self._every_s(generation(timer))
        next_due = next_update_at(incident.opened_at, every_s, now)
        last = last_update_at(view.timeline)
        if last is not None and last > timer.due_at - timedelta(seconds=every_s):
            return StageResult(after_write=(self._chain.then(timer, next_due),))
        since = f" since {last:%H:%M} UTC" if last is not None else ""

        def remind(state: IncidentState) -> IncidentChange | None:
            if state.incident is None or not state.incident.is_active:
                return None
            return tell(
                state.incident,
                now,
                kind=EventKind.UPDATE_DUE,
                detail=f"Update due: nothing told in this thread{since}; "
                f"next update by {next_due:%H:%M} UTC",
                next_update_at=next_due.isoformat(),
                last_update_at=last.isoformat() if last is not None else None,
                every_s=every_s,
            )

        log.info("update due", incident_id=incident.id, round=timer.step)
        return StageResult(mutators=(remind,), after_write=(self._chain.then(timer, next_due),))
