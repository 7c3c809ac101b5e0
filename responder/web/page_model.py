"""What the incident page shows, read off an incident and its timeline (no I/O): the
classification and the decision with their reasons, the triage facts, the action events,
the messages sent, the list's rows and its next page. The template (``render/pages/``)
lays them out; every value here may come from an alert and is escaped there."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from pydantic import JsonValue

from responder.domain.incident import Incident, IncidentAlert
from responder.domain.timeline import EventKind, TimelineEvent
from responder.ports import IncidentPage, IncidentView
from responder.render.words import value_text


@dataclass(frozen=True)
class Line:
    """One named value, as text."""

    name: str
    value: str


@dataclass(frozen=True)
class IncidentSections:
    incident: Incident
    alerts: tuple[IncidentAlert, ...]
    timeline: tuple[TimelineEvent, ...]
    # the first classification (or "no rule matched") and why: the rule's reasons
    classified: TimelineEvent | None
    reasons: list[Line]
    # each branch taken (or "no branch matched") and the facts that chose it
    decisions: list[tuple[TimelineEvent, list[Line]]]
    triage: list[TimelineEvent]
    facts: list[Line]
    action_events: list[TimelineEvent]
    notifications: list[TimelineEvent]
    messages: dict[str, str] = field(default_factory=dict)


_CLASSIFIED = (EventKind.INCIDENT_CLASSIFIED, EventKind.INCIDENT_UNCLASSIFIED)
_DECIDED = (EventKind.INCIDENT_DECIDED, EventKind.INCIDENT_UNDECIDED)


def _lines(value: JsonValue, *, condition: bool = False) -> list[Line]:
    """A mapping of the event's data as lines; ``condition``: its keys are the branch's
    conditions and its values the facts read (``health.ok == false``: was no)."""
    if not isinstance(value, dict):
        return []
    if condition:
        return [Line(str(k), f"was {value_text(v)}") for k, v in value.items()]
    return [Line(str(k), value_text(v)) for k, v in value.items()]


def _facts(facts: dict[str, JsonValue]) -> list[Line]:
    """The triage facts by namespace and name (``health.ok``: no), one level down: a
    deeper value reads as ``value_text`` prints it."""
    lines: list[Line] = []
    for namespace, value in sorted(facts.items()):
        if isinstance(value, dict):
            lines += [Line(f"{namespace}.{k}", value_text(v)) for k, v in sorted(value.items())]
        else:
            lines.append(Line(namespace, value_text(value)))
    return lines


def sections(view: IncidentView, *, messages: dict[str, str]) -> IncidentSections:
    timeline = view.timeline
    classified = next((e for e in timeline if e.kind in _CLASSIFIED), None)
    reasons: list[Line] = []
    if classified is not None:
        data = classified.data
        if data.get("rule"):
            reasons.append(Line("rule", str(data["rule"])))
        if data.get("pack"):
            reasons.append(Line("pack", str(data["pack"])))
        reasons += _lines(data.get("reasons"))
        matched = data.get("matched")
        if isinstance(matched, list) and matched:
            reasons.append(Line("matched", value_text(matched)))
    return IncidentSections(
        incident=view.incident,
        alerts=view.alerts,
        timeline=timeline,
        classified=classified,
        reasons=reasons,
        decisions=[
            (e, _lines(e.data.get("facts"), condition=True)) for e in timeline if e.kind in _DECIDED
        ],
        triage=[e for e in timeline if e.kind is EventKind.TRIAGE_COMPLETED],
        facts=_facts(view.incident.facts),
        action_events=[
            e for e in timeline if e.kind.startswith(("action.", "automation.", "vendor."))
        ],
        notifications=[e for e in timeline if e.kind.startswith("notification.")],
        messages=messages,
    )


def next_page_query(request_query: dict[str, str], page: IncidentPage) -> str | None:
    """The query string of the list's next page (the same filters, the page's cursor);
    ``None`` when nothing follows."""
    if page.next is None:
        return None
    kept = {k: v for k, v in request_query.items() if k in ("status", "severity", "since", "limit")}
    return urlencode({**kept, "cursor": page.next.encode()})
