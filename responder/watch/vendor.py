"""``VendorWatch``: the runbook's "wait for PostHog to resolve", watched.

While an incident's triage facts show a vendor incident, the vendor's status page (the
incident's own ``vendor_status`` probe, as triage planned it) is read again every
``interval_s`` on the incident's one ``vendor_watch`` chain. Each change of the vendor's
status is told in the thread (``vendor.status_changed``); when its incident is over,
``vendor.resolved`` (vendor, status page URL) is written once, which is what the
``revert: vendor_resolved`` actions wait for, and the watch ends. It also ends when our
incident is resolved and no applied (or dry-run) action waits for the vendor any more, or after
``max_s`` from the incident's opening.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import structlog
from pydantic import JsonValue

from responder.domain.action import Outcome
from responder.domain.facts import ProbeResult
from responder.domain.incident import Incident, IncidentChange
from responder.domain.plans import VendorStatusProbe
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.domain.watch import (
    describe_vendor_status,
    last_vendor_status,
    tell,
    vendor_resolved_told,
    vendor_status,
)
from responder.ports import Clock, IncidentMutator, IncidentState, Probe, StageResult, Store
from responder.watch.chain import TimerChain

log = structlog.get_logger("responder.watch.vendor")


def vendor_probe(incident: Incident) -> VendorStatusProbe | None:
    """The vendor status probe triage ran for this incident, if any."""
    return next(
        (p.spec for p in incident.planned_probes if isinstance(p.spec, VendorStatusProbe)), None
    )


def waits_for_vendor(incident: Incident) -> bool:
    """Whether an action still in place is to be undone when the vendor resolves (a dry-run
    one too: its revert is shown then, for the dry run's timeline to be whole)."""
    return any(
        a.revert_when == "vendor_resolved"
        and a.verdict in (Outcome.APPLIED, Outcome.DRY_RUN)
        and not a.reverted
        for a in incident.actions
    )


class VendorWatch:
    """The stage that starts the watch (on triage showing a vendor incident) and the
    handler of its rounds (``vendor_watch`` timers)."""

    reads_store = False

    def __init__(
        self,
        *,
        store: Store,
        probe: Probe,
        chain: TimerChain,
        clock: Clock,
        interval_s: float,
        max_s: float,
    ) -> None:
        self._store = store
        self._probe = probe
        self._chain = chain
        self._clock = clock
        self._interval = timedelta(seconds=interval_s)
        self._max = timedelta(seconds=max_s)

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        if not any(e.kind is EventKind.TRIAGE_COMPLETED for e in change.events):
            return None
        incident = change.incident
        status = last_vendor_status(incident, ())
        if status is None or not status["incident"] or vendor_probe(incident) is None:
            return None
        await self._chain.start(incident.id, due_at=self._clock.now() + self._interval)
        return None

    async def round(self, timer: TimerSignal) -> StageResult | None:
        """Read the vendor's status page again; tell what changed; go on or stop."""
        if not await self._chain.claim(timer):
            return None
        view = await self._store.get_incident(timer.incident_id)
        now = self._clock.now()
        spec = vendor_probe(view.incident) if view is not None else None
        if (
            view is None
            or spec is None
            or vendor_resolved_told(view.timeline)
            or not (view.incident.is_active or waits_for_vendor(view.incident))
            or now - view.incident.opened_at > self._max
        ):
            log.info("vendor watch ends", incident_id=timer.incident_id, round=timer.step)
            return StageResult(after_write=(self._chain.then(timer, None),))
        next_due = now + self._interval
        result = await self._read(spec)
        if not result.ok:
            # the page did not answer this time: what it said last still stands
            log.warning("vendor status unread", incident_id=timer.incident_id, error=result.error)
            return StageResult(after_write=(self._chain.then(timer, next_due),))
        status = vendor_status(result.facts)
        vendor = str(result.evidence.get("page") or urlsplit(spec.url).hostname or spec.url)
        shown = describe_vendor_status(vendor, status)
        if not status["incident"]:
            said = result.facts.get("description") or f"indicator {status['indicator']}"
            told = _telling(
                now,
                EventKind.VENDOR_RESOLVED,
                f"{vendor}'s incident is over: its status page says {said}",
                vendor=vendor,
                url=spec.url,
                status=status,
            )
            return StageResult(mutators=(told,), after_write=(self._chain.then(timer, None),))
        if status == last_vendor_status(view.incident, view.timeline):
            return StageResult(after_write=(self._chain.then(timer, next_due),))
        told = _telling(
            now,
            EventKind.VENDOR_STATUS_CHANGED,
            f"Vendor status changed: {shown}",
            vendor=vendor,
            url=spec.url,
            status=status,
        )
        return StageResult(mutators=(told,), after_write=(self._chain.then(timer, next_due),))

    async def _read(self, spec: VendorStatusProbe) -> ProbeResult:
        try:
            return await asyncio.wait_for(self._probe.run(spec), timeout=spec.timeout_s)
        except TimeoutError:
            return ProbeResult(probe=spec.type, ok=False, error="timed out")
        except Exception as exc:  # noqa: BLE001 - an unread page waits for the next round
            return ProbeResult(probe=spec.type, ok=False, error=type(exc).__name__)


def _telling(now: datetime, kind: EventKind, detail: str, **data: JsonValue) -> IncidentMutator:
    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is None:
            return None
        return tell(state.incident, now, kind=kind, detail=detail, **data)

    return mutate
