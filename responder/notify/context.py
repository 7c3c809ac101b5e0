"""What templates see: the internal context (Slack, PagerDuty) and the public one (the
status page), built from an incident as plain data.

The public context is built field by field from the pack's ``public`` section, the status
and the times: nothing else exists in it, so an external template cannot leak a label, a
host name, a log line or an action, even by mistake.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import JsonValue

from responder.domain.incident import Incident, approval_of
from responder.domain.notification import (
    comms_status,
    current_action,
    statuspage_status,
)
from responder.domain.severity import SeverityLevel
from responder.domain.timeline import TimelineEvent
from responder.domain.watch import next_update_at
from responder.render.words import facts_text, plural, value_text
from responder.rules.schema import PublicInfo

ICONS = {"P1": "🔴", "P2": "🟠", "P3": "🟡", "P4": "🔵"}
RESOLVED_ICON = "✅"


def duration(start: datetime, end: datetime) -> str:
    """``2h 05m``, ``7m``, ``40s``."""
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _clock(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else ""


def _impact(incident: Incident, level: SeverityLevel) -> str:
    said = incident.annotations.get("impact") or incident.annotations.get("summary")
    alerts = f"{incident.alerts_firing} of {plural(incident.alerts_total, 'alert')} firing"
    what = f"{level.definition}" + (f": {said}" if said else "")
    return f"{what} ({alerts})" if incident.alerts_total else what


def _next_update(
    incident: Incident, level: SeverityLevel, now: datetime, every_s: float | None
) -> str:
    if not incident.is_active:
        return "none: this is the last update"
    # the promise the update reminders keep (responder/watch/updates.py)
    when = (
        f"by {next_update_at(incident.opened_at, every_s, now):%H:%M} UTC"
        if every_s
        else "as things change"
    )
    if level.respond_within_s is None:
        return f"{when} in this thread (respond: {level.response_time})"
    due = incident.opened_at + timedelta(seconds=level.respond_within_s)
    return f"{when} in this thread; respond by {due:%H:%M} UTC ({level.response_time})"


# how a person's answer is said by where it came from (the event's ``via``)
_VIA = {"slack": " in Slack", "api": " through the API"}


def _paused(incident: Incident) -> dict[str, str] | None:
    if incident.paused_by is None:
        return None
    at = incident.paused_at
    return {"by": incident.paused_by, "at": f"{at:%H:%M} UTC" if at is not None else ""}


def _approval(incident: Incident, event: TimelineEvent | None) -> dict[str, Any] | None:
    """The approval an event is about, as it stands now (its deadline as people read it)."""
    step = event.data.get("step") if event is not None else None
    approval = approval_of(incident, step) if isinstance(step, str) else None
    if approval is None:
        return None
    return {
        **approval.model_dump(
            mode="json", include={"step", "action", "target", "change", "state", "decided_by"}
        ),
        "expires": f"{approval.expires_at:%H:%M} UTC",
        "via": _VIA.get(approval.via or "", ""),
    }


def internal_context(
    incident: Incident,
    *,
    level: SeverityLevel,
    now: datetime,
    commander: str | None = None,
    event: TimelineEvent | None = None,
    note: str | None = None,
    update_every_s: float | None = None,
) -> dict[str, Any]:
    """For Slack and PagerDuty: everything the responders may read. ``update_every_s``:
    the update cadence promised for the incident's severity (``None``: none promised)."""
    status = comms_status(incident)
    end = incident.resolved_at or now
    return {
        "incident": incident.model_dump(
            mode="json",
            include={
                "id",
                "title",
                "severity",
                "error_type",
                "status",
                "group_key",
                "rule",
                "pack",
                "branch",
                "opened_at",
                "acked_at",
                "acked_by",
                "resolved_at",
                "alerts_firing",
                "alerts_total",
                "labels",
                "annotations",
                "needs_human",
                "pagerduty_incident_id",
                "pagerduty_url",
                "commander",
                "paused_by",
            },
        ),
        "severity": incident.severity.value if incident.severity else "P?",
        "title": incident.title,
        "icon": RESOLVED_ICON
        if not incident.is_active
        else ICONS.get(incident.severity.value if incident.severity else "", "⚪"),
        "level": {"definition": level.definition, "response_time": level.response_time},
        "status": status.value,
        "impact": _impact(incident, level),
        "current_action": current_action(incident),
        "next_update": _next_update(incident, level, now, update_every_s),
        # PagerDuty's word on who has it, then who acknowledged it, then the configured one
        "commander": incident.commander
        or incident.acked_by
        or commander
        or "unassigned: whoever acknowledges the page takes it",
        "facts": incident.facts,
        # each namespace's facts as text (``status=down, status_code=503``): a template
        # that prints ``facts`` itself would show Python dicts
        "fact_lines": {
            space: facts_text(values) if isinstance(values, dict) else value_text(values)
            for space, values in incident.facts.items()
        },
        "actions": [
            a.model_dump(
                mode="json",
                include={"step", "action", "target", "verdict", "reason", "dry_run", "verified"},
            )
            for a in incident.actions
        ],
        "duration": duration(incident.opened_at, end),
        "event": event.model_dump(mode="json") if event is not None else None,
        # a person paused this incident's automation: who, since when
        "paused": _paused(incident),
        # the step waiting for (or given) a person's approval the event is about
        "approval": _approval(incident, event),
        # where the person of the event answered: " in Slack", " through the API", or ""
        "via": _VIA.get(str(event.data.get("via", "")), "") if event is not None else "",
        "note": note,
        "now": _clock(now),
    }


def public_context(
    incident: Incident, public: PublicInfo, *, now: datetime
) -> dict[str, JsonValue]:
    """For the status page: the pack's public words, the status and the times; no more."""
    return {
        "service": public.name,
        "impact": public.impact_of(incident.error_type.value if incident.error_type else None),
        "status": statuspage_status(comms_status(incident)),
        "started_at": _clock(incident.opened_at),
        "updated_at": _clock(now),
    }
