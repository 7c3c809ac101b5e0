"""What the watchers after the first response read and record (pure): the vendor's status
as last told, which events count as an update to the people following an incident, when
the next update is due, and the one transition that tells a watcher's finding.

The watchers themselves (``responder.watch``) run on timers; everything they decide from
is here, so the same incident and timeline always decide the same way, whichever replica
runs the round and however often it is redelivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import JsonValue

from responder.domain.incident import Incident, IncidentChange
from responder.domain.timeline import EventKind, TimelineEvent

# Events that are not news to the people following the incident: a sink's bookkeeping,
# alerts joining or resolving (the root counts them), and the watchers' own nudges (a
# reminder that an update is due is not that update).
_NOT_AN_UPDATE = frozenset(
    {
        EventKind.ALERT_JOINED,
        EventKind.ALERT_REFIRED,
        EventKind.ALERT_RESOLVED,
        EventKind.STORM_COLLECTED,
        EventKind.UPDATE_DUE,
        EventKind.ACK_OVERDUE,
    }
)

_VENDOR_KINDS = (EventKind.VENDOR_STATUS_CHANGED, EventKind.VENDOR_RESOLVED)


def is_update(event: TimelineEvent) -> bool:
    """Whether ``event`` told the people following the incident something new."""
    return event.kind not in _NOT_AN_UPDATE and not event.kind.startswith("notification.")


def last_update_at(timeline: Sequence[TimelineEvent]) -> datetime | None:
    return next((e.at for e in reversed(timeline) if is_update(e)), None)


def next_update_at(opened_at: datetime, every_s: float, now: datetime) -> datetime:
    """The first point of the incident's update schedule (every ``every_s`` from its
    opening) after ``now``: what the Slack root promises as its next update."""
    elapsed_s = max(0.0, (now - opened_at).total_seconds())
    return opened_at + timedelta(seconds=(int(elapsed_s // every_s) + 1) * every_s)


def vendor_status(facts: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The part of a ``vendor_status`` probe's facts that is the vendor's status: whether
    it shows an incident, its indicator, and its open incidents with their stage. Two of
    them differ exactly when the vendor's status page changed in a way worth telling."""
    incidents: list[JsonValue] = [
        {"name": i.get("name"), "status": i.get("status")} for i in _listed(facts.get("incidents"))
    ]
    return {
        "incident": bool(facts.get("incident")),
        "indicator": facts.get("indicator"),
        "incidents": incidents,
    }


def last_vendor_status(
    incident: Incident, timeline: Sequence[TimelineEvent]
) -> dict[str, JsonValue] | None:
    """The vendor's status as last told: the latest watcher event's, else triage's facts;
    ``None`` when triage did not read the vendor's status page."""
    for event in reversed(timeline):
        status = event.data.get("status")
        if event.kind in _VENDOR_KINDS and isinstance(status, dict):
            return status
    facts = incident.facts.get("vendor")
    if not isinstance(facts, dict) or "error" in facts:
        return None
    return vendor_status(facts)


def _listed(value: JsonValue) -> list[dict[str, JsonValue]]:
    """The objects of a JSON list (facts are JSON: anything else is no list)."""
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def vendor_resolved_told(timeline: Sequence[TimelineEvent]) -> bool:
    return any(e.kind is EventKind.VENDOR_RESOLVED for e in timeline)


def describe_vendor_status(vendor: str, status: Mapping[str, JsonValue]) -> str:
    """``PostHog: minor; Ingestion delays (monitoring)``: one line for the thread."""
    told = "; ".join(
        f"{i.get('name')} ({i.get('status')})" for i in _listed(status.get("incidents"))
    )
    return f"{vendor}: {status.get('indicator') or 'unknown'}" + (f"; {told}" if told else "")


def tell(
    incident: Incident, now: datetime, *, kind: EventKind, detail: str, **data: JsonValue
) -> IncidentChange:
    """Record one watcher's finding on the timeline; nothing else of the incident changes.
    Like every transition, the event is never dated before the incident's last change."""
    at = max(now, incident.updated_at)
    event = TimelineEvent(
        seq=incident.events_count, at=at, kind=kind, detail=detail, data=dict(data)
    )
    return IncidentChange(
        incident=incident.model_copy(
            update={"events_count": incident.events_count + 1, "updated_at": at}
        ),
        events=(event,),
    )
