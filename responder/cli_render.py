"""``responder render TEMPLATE INCIDENT_ID``: preview a message template on a real incident.

The incident comes from a running service's API; the templates are this machine's (the
shipped ones and ``RESPONDER_TEMPLATES_DIR``'s), so an override can be tried before it is
deployed. Templates that do not render are reported as the service would at start-up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from responder.app import build_renderer
from responder.domain.incident import Incident
from responder.domain.timeline import EventKind, TimelineEvent
from responder.notify.planners import (
    PAGERDUTY_NOTE,
    SLACK_EVENT,
    STATUSPAGE_BODY,
    STATUSPAGE_NAME,
    TEMPLATE_NAMES,
)
from responder.rules.loader import load_rules
from responder.settings import Settings

# which events each note is written for (as the PagerDuty planner does)
_NOTE_EVENTS = {
    "triage": (EventKind.TRIAGE_COMPLETED,),
    "handoff": (EventKind.INCIDENT_ACKNOWLEDGED,),
    "summary": (EventKind.PAGERDUTY_LINKED,),
}


class RenderProblem(ValueError):
    """The template cannot be previewed on this incident; the message says why."""


def template_name(given: str) -> str:
    """``slack_root`` or ``slack_root.mrkdwn.j2``: the shipped name."""
    for name in TEMPLATE_NAMES:
        if given in (name, name.split(".", 1)[0]):
            return name
    names = ", ".join(n.split(".", 1)[0] for n in TEMPLATE_NAMES)
    raise RenderProblem(f"no template {given!r}: use one of {names}")


def _event_for(
    name: str, timeline: list[TimelineEvent], seq: int | None, note: str | None
) -> TimelineEvent | None:
    if name not in (SLACK_EVENT, PAGERDUTY_NOTE):
        return None
    if seq is not None:
        found = next((e for e in timeline if e.seq == seq), None)
        if found is None:
            raise RenderProblem(f"the incident has no event {seq}")
        return found
    kinds = _NOTE_EVENTS.get(note or "", ()) if name == PAGERDUTY_NOTE else ()
    wanted = [
        e
        for e in timeline
        if (e.kind in kinds) or (not kinds and (note == "action") == e.kind.startswith("action."))
    ]
    if not wanted:
        raise RenderProblem("no event of the incident fits this template: name one with --event")
    return wanted[-1]


def render_incident(
    settings: Settings,
    template: str,
    document: dict[str, Any],
    *,
    event: int | None = None,
    note: str | None = None,
) -> str:
    name = template_name(template)
    if name == PAGERDUTY_NOTE and note is None:
        note = "summary"
    rules = load_rules(settings.rules)
    renderer = build_renderer(settings, lambda: rules)
    incident = Incident.model_validate(
        {k: v for k, v in document.items() if k not in ("alerts", "timeline")}
    )
    timeline = [TimelineEvent.model_validate(e) for e in document.get("timeline", [])]
    now = datetime.now(UTC)
    if name in (STATUSPAGE_NAME, STATUSPAGE_BODY):
        return renderer.public(name, incident, now)
    chosen = _event_for(name, timeline, event, note)
    return renderer.internal(name, incident, now, event=chosen, note=note)
