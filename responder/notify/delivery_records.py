"""What a sink did or could not do, for the incident's timeline (posted, adopted, delayed,
recovered, failed): collected during one delivery pass and handed back to the pipeline,
which writes them with the rest of its round (and tells them to the other sinks in the
next round)."""

from __future__ import annotations

from pydantic import JsonValue

from responder.domain.incident import IncidentChange, record_delivery
from responder.domain.timeline import EventKind
from responder.ports import Clock, IncidentMutator, IncidentState, StageResult

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
    """The timeline events of one delivery pass over one incident (every sink of it)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._mutators: list[IncidentMutator] = []

    def record(
        self,
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

        self._mutators.append(mutate)

    def result(self) -> StageResult | None:
        """What the pass asks the pipeline to record (``None``: nothing)."""
        return StageResult(mutators=tuple(self._mutators)) if self._mutators else None
