"""What a sink did or could not do, on the incident's timeline (posted, adopted, delayed,
recovered, failed), and the follow-up that lets the other sinks tell it."""

from __future__ import annotations

from pydantic import JsonValue

from responder.domain.incident import IncidentChange, record_delivery
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.ports import ActionLedger, Clock, IncidentState, Store, mutate_incident

# Events other sinks may want to tell (a delay, a failure): they get a follow-up at once.
_TELL_OTHERS = frozenset({EventKind.NOTIFICATION_DELAYED, EventKind.NOTIFICATION_FAILED})
SINK_NAMES = {
    "slack": "Slack",
    "statuspage": "Status page",
    "pagerduty": "PagerDuty",
    "console": "Console",
}


def label(sink: str) -> str:
    """A sink's name as people read it on the timeline."""
    return SINK_NAMES.get(sink, sink)


class DeliveryRecords:
    """Writes delivery events on incidents' timelines.

    ``others``: there are other sinks to tell a delay or failure (more than one channel).
    """

    def __init__(self, *, store: Store, ledger: ActionLedger, clock: Clock, others: bool) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._others = others

    async def record(
        self,
        incident_id: str,
        sink: str,
        kind: EventKind,
        detail: str,
        *,
        refs: dict[str, JsonValue] | None = None,
        **data: JsonValue,
    ) -> None:
        """A timeline event of what a sink did or could not do."""
        now = self._clock.now()

        def mutate(found: IncidentState) -> IncidentChange | None:
            if found.incident is None:
                return None
            return record_delivery(
                found.incident, sink, now, kind=kind, detail=detail, refs=refs, **data
            )

        await mutate_incident(self._store, incident_id, mutate)
        if kind is EventKind.NOTIFICATION_ADOPTED or (kind in _TELL_OTHERS and self._others):
            # the other sinks may tell people (the Slack thread says the status page is
            # late), and a takeover is told in the very thread taken over: follow the new
            # event up now rather than with the incident's next change
            await self._ledger.schedule(
                TimerSignal.follow_up_now(incident_id, f"notify:{sink}", now)
            )
