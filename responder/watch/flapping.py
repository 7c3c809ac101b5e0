"""Flapping: the quiet period of a flapping incident (the pack's ``flapping``).

While an incident flaps (``incident.flapping``, see ``domain.incident.note_fire`` and
``reopen_flapping``), each flap schedules a ``flap_quiet`` timer for when the incident
would have been quiet long enough; the timer of the last flap finds it so, and the
incident is steady again (``settle_flapping``: resolved if no alert fires).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from responder.domain.incident import IncidentChange, settle_flapping
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.ports import Clock, DurableTimers, IncidentState, StageResult, Store
from responder.rules.engine import RuleSet


class FlapWatch:
    """The quiet period of a flapping incident: each flap schedules a ``flap_quiet`` timer
    for when the incident would have been quiet long enough; the timer of the last flap
    finds it so, and the incident is steady again (resolved if no alert fires). A stage
    and a timer handler; it writes nothing itself."""

    reads_store = False

    def __init__(
        self,
        *,
        store: Store,
        timers: DurableTimers,
        clock: Clock,
        rules: Callable[[], RuleSet] = RuleSet,
    ) -> None:
        self._store = store
        self._timers = timers
        self._clock = clock
        self._rules = rules

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        incident = change.incident
        if incident.flapping_since is None:
            return None
        quiet_s = self._rules().flapping(incident.pack).quiet_s
        # a timer per flap (bounded by the flaps): only the last one finds it quiet
        timers = [
            TimerSignal(
                kind="flap_quiet",
                incident_id=incident.id,
                step=f"flap{event.seq}",
                due_at=event.at + timedelta(seconds=quiet_s),
                received_at=self._clock.now(),
            )
            for event in change.events
            if event.kind is EventKind.INCIDENT_FLAPPING
        ]
        if not timers:
            return None

        async def schedule() -> None:
            for timer in timers:
                await self._timers.schedule(timer)

        return StageResult(after_write=(schedule,))

    async def settle(self, timer: TimerSignal) -> StageResult | None:
        view = await self._store.get_incident(timer.incident_id)
        if view is None or view.incident.flapping_since is None:
            return None
        quiet_s = self._rules().flapping(view.incident.pack).quiet_s
        now = self._clock.now()

        def mutate(state: IncidentState) -> IncidentChange | None:
            if state.incident is None:
                return None
            return settle_flapping(state.incident, now, quiet_s=quiet_s)

        return StageResult(mutators=(mutate,))
