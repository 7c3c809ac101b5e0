"""``AckDeadline``: the severity table's response time, kept for P1.

A P1 not acknowledged within its level's ``respond_within_s`` (the pack's severity table;
15 minutes by the runbook's) is paged through the Events API, or paged again when it was
paged already: the incident's one ``ack_due`` chain writes ``incident.ack_overdue``, which
the PagerDuty planner turns into a trigger and the Slack thread tells. Again one response
time later while still unacknowledged, ``repages`` more times at most. The chain ends at
the acknowledgement (here or in PagerDuty) or the resolve.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog

from responder.domain.incident import IncidentChange, IncidentStatus
from responder.domain.severity import Severity
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.domain.watch import tell
from responder.ports import Clock, IncidentState, StageResult, Store
from responder.rules.engine import RuleSet
from responder.watch.chain import TimerChain, round_of

log = structlog.get_logger("responder.watch.response")

# The severity whose response time pages: the runbook's "complete outage".
PAGED_SEVERITY = Severity.P1
# From these on the incident may be a P1 (classified so, or raised to it).
_SEVERITY_SET = frozenset(
    {EventKind.INCIDENT_CLASSIFIED, EventKind.INCIDENT_ESCALATED, EventKind.INCIDENT_STORM}
)


class AckDeadline:
    """The stage that starts the deadline (once the incident is a P1) and the handler of
    its rounds."""

    reads_store = False

    def __init__(
        self,
        *,
        store: Store,
        chain: TimerChain,
        clock: Clock,
        rules: Callable[[], RuleSet],
        repages: int,
        pages: bool,
    ) -> None:
        """``pages``: a PagerDuty routing key is set (the Events API can page); without
        one the thread says the on-call must be called by hand."""
        self._store = store
        self._chain = chain
        self._clock = clock
        self._rules = rules
        self._repages = repages
        self._pages = pages

    def _respond_within_s(self, pack: str | None) -> int | None:
        return self._rules().severity_level(pack, PAGED_SEVERITY).respond_within_s

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        incident = change.incident
        if (
            incident.status is not IncidentStatus.OPEN
            or incident.severity is not PAGED_SEVERITY
            or not any(e.kind in _SEVERITY_SET for e in change.events)
        ):
            return None
        within_s = self._respond_within_s(incident.pack)
        if within_s is None:
            return None
        due = max(incident.opened_at + timedelta(seconds=within_s), self._clock.now())
        await self._chain.start(incident.id, due_at=due)
        return None

    async def round(self, timer: TimerSignal) -> StageResult | None:
        """The response time passed: page (again) unless someone took the incident."""
        if not await self._chain.claim(timer):
            return None
        view = await self._store.get_incident(timer.incident_id)
        incident = view.incident if view is not None else None
        within_s = self._respond_within_s(incident.pack) if incident is not None else None
        if incident is None or incident.status is not IncidentStatus.OPEN or within_s is None:
            return StageResult(after_write=(self._chain.then(timer, None),))
        page = round_of(timer)
        now = self._clock.now()
        late = now - incident.opened_at
        minutes = int(late.total_seconds() // 60)
        level = self._rules().severity_level(incident.pack, PAGED_SEVERITY)
        detail = f"Not acknowledged within the response time ({level.response_time}): " + (
            "paging the on-call" if page == 1 else f"paging again ({minutes} min open)"
        )

        def overdue(state: IncidentState) -> IncidentChange | None:
            found = state.incident
            if found is None or found.status is not IncidentStatus.OPEN:
                return None
            return tell(
                found,
                now,
                kind=EventKind.ACK_OVERDUE,
                detail=detail,
                page=page,
                response_time=level.response_time,
                open_s=int(late.total_seconds()),
            )

        log.info("acknowledgement overdue", incident_id=incident.id, page=page)
        next_due = now + timedelta(seconds=within_s) if page <= self._repages else None
        return StageResult(mutators=(overdue,), after_write=(self._chain.then(timer, next_due),))
