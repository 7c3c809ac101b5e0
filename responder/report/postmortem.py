"""The runbook's postmortem template, filled from what the incident recorded.

Pure: the same incident and timeline give the same draft. What the facts cannot tell
(users affected, revenue) is left as fields to fill; the root cause is the decision tree's
branch and the facts it used, marked as a hypothesis for people to confirm.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from responder.domain.incident import Incident
from responder.domain.model import Frozen
from responder.domain.severity import ErrorType
from responder.domain.timeline import EventKind, TimelineEvent
from responder.render.samples import SAMPLE_NOW, sample_events, sample_incidents
from responder.render.templates import TemplateProblem, Templates
from responder.render.words import plural

POSTMORTEM_TEMPLATE = "postmortem.md.j2"
POSTMORTEM_MAX_CHARS = 500_000

ERROR_TYPE_NAMES = {
    ErrorType.AUTH: "Authentication failure (401/403)",
    ErrorType.RATE_LIMIT: "Rate limiting (429)",
    ErrorType.UPSTREAM_5XX: "Upstream errors (5xx)",
    ErrorType.UNREACHABLE: "API unreachable",
    ErrorType.LATENCY: "High latency",
    ErrorType.WEBHOOK_DELAY: "Webhook delays",
    ErrorType.MONITORING_GAP: "Monitoring gap",
    ErrorType.UNKNOWN: "Unknown error",
}

# What the timeline of a postmortem tells, and how each step reads there. Alert joins,
# repeats and notification bookkeeping stay in the evidence bundle.
_TOLD = {
    EventKind.INCIDENT_OPENED: "Detected: {detail}",
    EventKind.INCIDENT_CLASSIFIED: "Classified: {detail}",
    EventKind.INCIDENT_ESCALATED: "Escalated: {detail}",
    EventKind.TRIAGE_COMPLETED: "Triage: {detail}",
    EventKind.INCIDENT_DECIDED: "{detail}",
    EventKind.INCIDENT_UNDECIDED: "{detail}",
    EventKind.INCIDENT_NEEDS_HUMAN: "Human needed: {detail}",
    EventKind.INCIDENT_PAGE_REQUESTED: "{detail}",
    EventKind.PAGERDUTY_LINKED: "{detail}",
    EventKind.INCIDENT_ACKNOWLEDGED: "{detail}",
    EventKind.NOTIFICATION_FAILED: "{detail}",
    EventKind.INCIDENT_RESOLVED: "Resolved: {detail}",
    # after the first response: the vendor watched, updates and acknowledgement deadlines,
    # who has it, flapping
    EventKind.VENDOR_STATUS_CHANGED: "Vendor: {detail}",
    EventKind.VENDOR_RESOLVED: "Vendor resolved: {detail}",
    EventKind.UPDATE_DUE: "{detail}",
    EventKind.ACK_OVERDUE: "{detail}",
    EventKind.PAGERDUTY_ASSIGNED: "{detail}",
    EventKind.INCIDENT_FLAPPING: "Flapping: {detail}",
    EventKind.INCIDENT_STEADY: "Steady again: {detail}",
}
_MITIGATED = frozenset({EventKind.ACTION_APPLIED, EventKind.ACTION_IN_PLACE})


class TimelineLine(Frozen):
    at: datetime
    text: str


class Postmortem(Frozen):
    """Everything the template shows; also served as JSON for tools."""

    incident_id: str
    service: str
    title: str
    error_type: str
    severity: str
    severity_definition: str
    date: str
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    duration: str
    summary: str
    timeline: tuple[TimelineLine, ...]
    root_cause: str
    facts_used: dict[str, JsonValue]
    impact: str
    time_to_acknowledge: str | None
    time_to_mitigate: str | None
    time_to_resolve: str | None
    # the steps that waited for a person's approval: who answered what, when, what then ran
    approvals: tuple[str, ...] = ()
    action_items: tuple[str, ...]
    # the error-rate graph (``report/graph.py``): where the image is, relative to the
    # draft (``<stem>.svg`` beside it, ``graph.svg`` in the bundle), or what to say instead
    graph: str | None = None
    graph_note: str = ""


def span(seconds: float) -> str:
    """The runbook's "X hours Y minutes"; seconds only under a minute."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if not hours and not minutes:
        return plural(secs, "second")
    if not hours:
        return plural(minutes, "minute")
    return f"{plural(hours, 'hour')} {plural(minutes, 'minute')}"


def _since(start: datetime, end: datetime | None) -> str | None:
    return None if end is None else span((end - start).total_seconds())


# How the steps of a person's approval read on the timeline (each event's detail names
# the action, its target and, for an answer, who gave it)
_APPROVAL_TOLD = {
    EventKind.ACTION_APPROVAL_REQUESTED: "Approval asked: {detail}",
    EventKind.ACTION_APPROVED: "Approved: {detail}",
    EventKind.ACTION_REJECTED: "Rejected: {detail}; it did not run",
    EventKind.ACTION_APPROVAL_EXPIRED: "Approval expired: {detail}",
}


def _line(event: TimelineEvent) -> TimelineLine | None:
    if event.kind is EventKind.INCIDENT_FLAPPING and event.data.get("notice") is not True:
        return None  # a flap while flapping: the notice told it, as the thread did
    if event.kind in _APPROVAL_TOLD:
        text = _APPROVAL_TOLD[event.kind].format(detail=event.detail)
        return TimelineLine(at=event.at, text=text)
    if event.kind.startswith("action."):
        by = event.data.get("approved_by")
        approved = f" (approved by {by})" if by else ""
        return TimelineLine(at=event.at, text=f"Action {event.kind[7:]}: {event.detail}{approved}")
    if event.kind == EventKind.NOTIFICATION_POSTED:  # the first to people: _timeline picks it
        return TimelineLine(at=event.at, text=f"First message: {event.detail}")
    shape = _TOLD.get(event.kind)
    return (
        None if shape is None else TimelineLine(at=event.at, text=shape.format(detail=event.detail))
    )


def _timeline(events: Sequence[TimelineEvent]) -> list[TimelineLine]:
    lines: list[TimelineLine] = []
    first_message = False
    for event in events:
        if event.kind == EventKind.NOTIFICATION_POSTED:
            # only the first message people got: the rest are the thread it started
            if first_message or event.data.get("sink") not in ("slack", "console"):
                continue
            first_message = True
        line = _line(event)
        if line is not None:
            lines.append(line)
    return lines


def _first_sentence(text: str) -> str:
    head, dot, _ = text.strip().partition(". ")
    return head + ("." if dot or not head.endswith(".") else "")


def _root_cause(
    incident: Incident, description: str | None, facts_used: dict[str, JsonValue]
) -> str:
    if incident.branch is None:
        failed = sorted(
            k for k, v in incident.facts.items() if isinstance(v, dict) and "error" in v
        )
        why = f" (no facts from: {', '.join(failed)})" if failed else ""
        return (
            "Unknown: the triage facts picked no branch of the decision tree"
            + why
            + ". To be established by the responders."
        )
    said = description.strip() if description else f"branch {incident.branch}"
    return f"Hypothesis (decision tree branch `{incident.branch}`, to be confirmed): {said}"


def _limit_increase(http: JsonValue) -> str:
    """The runbook's 429 "long-term" step, with the figures the rate limit headers gave at
    triage (``http.rate_limit``), so the request to the vendor says what we have."""
    figures = http.get("rate_limit") if isinstance(http, dict) else None
    said = []
    if isinstance(figures, dict):
        for name, shown in (
            ("limit", "limit {}"),
            ("remaining", "remaining {}"),
            ("reset", "reset {}"),
            ("retry_after_s", "Retry-After {} s"),
        ):
            if figures.get(name) is not None:
                said.append(shown.format(figures[name]))
    if said:
        return "Request a limit increase from the vendor: " + ", ".join(said) + " (at triage)"
    return "Request a limit increase from the vendor (no rate limit headers were read at triage)"


def _approvals(incident: Incident, events: Sequence[TimelineEvent]) -> list[str]:
    """One line per step that waited for approval: what was asked, who answered and
    when (or that no one did, and who was called), and what then ran."""
    lines: list[str] = []
    for approval in incident.approvals:
        what = f"{approval.action} on {approval.target}"
        asked = f"{what} (asked {approval.requested_at:%H:%M})"
        decided = f"{approval.decided_at:%H:%M}" if approval.decided_at else "?"
        via = {"slack": " in Slack", "api": " through the API"}.get(approval.via or "", "")
        if approval.state == "approved":
            record = next((a for a in incident.actions if a.step == approval.step), None)
            ran = (
                f"then {record.verdict.value} at {record.at:%H:%M}: {record.reason}"
                if record is not None
                else "it has not run"
            )
            lines.append(f"{asked}: approved by {approval.decided_by}{via} at {decided}; {ran}")
        elif approval.state == "rejected":
            lines.append(
                f"{asked}: rejected by {approval.decided_by}{via} at {decided}; it did not run"
            )
        elif approval.state == "expired":
            event = next(
                (
                    e
                    for e in events
                    if e.kind is EventKind.ACTION_APPROVAL_EXPIRED
                    and e.data.get("step") == approval.step
                ),
                None,
            )
            if event is not None and event.data.get("lapsed"):
                lines.append(f"{asked}: unanswered when the incident resolved; it did not run")
            else:
                called = (
                    f"left to {incident.acked_by}, who had the incident"
                    if incident.acked_by
                    else "a human was called and the on-call paged"
                )
                lines.append(
                    f"{asked}: no one answered by {approval.expires_at:%H:%M}; it did not "
                    f"run, {called}"
                )
        else:
            lines.append(f"{asked}: still waiting for an answer")
    return lines


def _action_items(
    incident: Incident,
    events: Sequence[TimelineEvent],
    *,
    response_time_s: float | None,
    response_time: str,
) -> list[str]:
    items: list[str] = []
    for event in events:
        data: dict[str, Any] = dict(event.data)
        what = f"{data.get('action', 'the action')} on {data.get('target', 'its target')}"
        if event.kind == EventKind.ACTION_FAILED:
            items.append(f"Find out why {what} failed: {event.detail}")
        elif event.kind == EventKind.ACTION_REFUSED:
            items.append(
                f"Review the refusal of {what} ({event.detail}): pre-approve it, or keep it a "
                "manual step of the runbook"
            )
        elif event.kind == EventKind.ACTION_UNHELPFUL:
            items.append(f"{what} did not help ({event.detail}): revise this mitigation")
        elif event.kind == EventKind.ACTION_DRY_RUN:
            items.append(f"Decide whether {what} may run for real (it ran in dry-run)")
        elif event.kind in (EventKind.ACTION_REVERT_FAILED, EventKind.ACTION_REVERT_REFUSED):
            items.append(f"Check that {what} was undone by hand: {event.detail}")
        elif event.kind == EventKind.INCIDENT_NEEDS_HUMAN:
            items.append(f"A human was needed ({event.detail}): automate or document the step")
        elif event.kind == EventKind.NOTIFICATION_FAILED:
            items.append(f"Fix the notification path: {event.detail}")
        elif event.kind == EventKind.ACTION_REJECTED:
            items.append(
                f"{what} was rejected ({event.detail}): keep it a manual step, or revise "
                "when the rule offers it"
            )
        elif event.kind == EventKind.ACTION_APPROVAL_EXPIRED and not data.get("lapsed"):
            items.append(
                f"No one answered the approval of {what} in time: review who is asked and "
                "the approval timeout"
            )
    if incident.error_type == ErrorType.RATE_LIMIT:
        items.append(_limit_increase(incident.facts.get("http")))
    for name, value in sorted(incident.facts.items()):
        if isinstance(value, dict) and "error" in value:
            items.append(f"Triage could not read `{name}` ({value['error']}): fix its access")
    if incident.acked_at is not None and response_time_s is not None:
        taken = (incident.acked_at - incident.opened_at).total_seconds()
        if taken > response_time_s:
            items.append(
                f"Acknowledged after {span(taken)}, beyond the {incident.severity} response "
                f"time ({response_time}): review paging and escalation"
            )
    items.append("Preventive measure for this failure mode")
    # the same step seen twice (e.g. refused on two alerts) is one item
    return list(dict.fromkeys(items))


def build_postmortem(
    incident: Incident,
    timeline: Sequence[TimelineEvent],
    *,
    service: str,
    impact: str,
    branch_description: str | None,
    severity_definition: str,
    response_time: str,
    response_time_s: float | None,
    now: datetime,
) -> Postmortem:
    """``service``, ``impact``: the pack's public name and impact for the error type;
    ``branch_description``: the description of the rule that is the incident's branch."""
    error_type = ERROR_TYPE_NAMES[incident.error_type or ErrorType.UNKNOWN]
    severity = incident.severity.value if incident.severity else "unclassified"
    end = incident.resolved_at or now
    decided = [e for e in timeline if e.kind == EventKind.INCIDENT_DECIDED]
    facts_used: dict[str, JsonValue] = {}
    if decided and isinstance(decided[-1].data.get("facts"), dict):
        facts_used = dict(decided[-1].data["facts"])  # type: ignore[arg-type]
    mitigated = next((e.at for e in timeline if e.kind in _MITIGATED), None)
    applied = sum(1 for e in timeline if e.kind in _MITIGATED)
    branch = (
        _first_sentence(branch_description)
        if branch_description
        else ("no branch of the decision tree matched" if incident.branch is None else "")
    )
    summary = (
        f"{incident.title}: {severity} ({severity_definition.lower()}), "
        f"{incident.alerts_total} alert{'s' if incident.alerts_total != 1 else ''}"
        + (f"; {branch}" if branch else "")
        + f"; {applied} automatic action{'s' if applied != 1 else ''} applied"
        + (f"; acknowledged by {incident.acked_by}" if incident.acked_by else "")
        + (
            f"; resolved after {span((end - incident.opened_at).total_seconds())}."
            if incident.resolved_at
            else "; still open."
        )
    )
    return Postmortem(
        incident_id=incident.id,
        service=service,
        title=incident.title,
        error_type=error_type,
        severity=severity,
        severity_definition=severity_definition,
        date=incident.opened_at.strftime("%Y-%m-%d"),
        status=incident.status.value,
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at,
        duration=span((end - incident.opened_at).total_seconds())
        + ("" if incident.resolved_at else " so far"),
        summary=summary,
        timeline=tuple(_timeline(timeline)),
        root_cause=_root_cause(incident, branch_description, facts_used),
        facts_used=facts_used,
        impact=impact,
        time_to_acknowledge=_since(incident.opened_at, incident.acked_at),
        time_to_mitigate=_since(incident.opened_at, mitigated),
        time_to_resolve=_since(incident.opened_at, incident.resolved_at),
        approvals=tuple(_approvals(incident, timeline)),
        action_items=tuple(
            _action_items(
                incident, timeline, response_time_s=response_time_s, response_time=response_time
            )
        ),
    )


def render_postmortem(templates: Templates, postmortem: Postmortem) -> str:
    return templates.get(POSTMORTEM_TEMPLATE).render(
        postmortem.model_dump(mode="python"), limit=POSTMORTEM_MAX_CHARS
    )


def check_postmortem(templates: Templates) -> list[str]:
    """The start-up check of the postmortem's template (as ``notify.checks`` does for the
    messages): rendered for each sample incident; its problem as a ``template: reason``
    line, or none."""
    for incident in sample_incidents():
        postmortem = build_postmortem(
            incident,
            sample_events(),
            service="PostHog integration",
            impact="delays in analytics data",
            branch_description="Sample branch. More words.",
            severity_definition="Degraded service",
            response_time="< 1 hour",
            response_time_s=3600,
            now=SAMPLE_NOW,
        )
        try:
            render_postmortem(templates, postmortem)
        except TemplateProblem as exc:
            return [str(exc)]
    return []
