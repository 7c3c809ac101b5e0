"""Start-up check of the message templates: each one is compiled and rendered against
sample incidents in every state a message can be planned in, so that a broken override
(a typo in a variable name, a syntax error) stops the service at start-up, with the file
and the reason, and not at 03:00 on the first incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from responder.domain.action import ActionRecord, Outcome
from responder.domain.incident import Incident, IncidentStatus
from responder.domain.severity import ErrorType, Severity
from responder.domain.timeline import TimelineEvent
from responder.notify.planners import (
    PAGERDUTY_NOTE,
    PAGERDUTY_SUMMARY,
    SLACK_EVENT,
    SLACK_ROOT,
    STATUSPAGE_BODY,
    STATUSPAGE_NAME,
    Renderer,
)
from responder.render.templates import TemplateProblem
from responder.report.postmortem import (
    POSTMORTEM_TEMPLATE,
    build_postmortem,
    render_postmortem,
)

_T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def sample_incidents() -> list[Incident]:
    """An incident just opened, one mitigating, one acknowledged, one resolved."""
    opened = Incident(
        id="inc-sample",
        group_key='{alertname="PostHogRateLimited",service="posthog-integration"}',
        title="PostHog rate-limits posthog-integration (HTTP 429)",
        severity=Severity.P2,
        error_type=ErrorType.RATE_LIMIT,
        rule="rate-limited",
        pack="posthog",
        alerts_total=1,
        alerts_firing=1,
        labels={"alertname": "PostHogRateLimited", "service": "posthog-integration"},
        annotations={"summary": "429 from PostHog"},
        opened_at=_T0,
        updated_at=_T0,
    )
    action = ActionRecord(
        step="our-integration-rate-limit#0:set_env",
        action="set_env",
        target="production/posthog-integration",
        verdict=Outcome.APPLIED,
        reason="applied",
        at=_T0 + timedelta(minutes=1),
    )
    mitigating = opened.model_copy(
        update={
            "branch": "our-integration-rate-limit",
            "facts": {"vendor": {"incident": False}, "prometheus": {"error_ratio": 0.2}},
            "triaged_at": _T0 + timedelta(seconds=30),
            "actions": (action,),
            "pagerduty_incident_id": "PSAMPLE",
        }
    )
    acked = mitigating.model_copy(
        update={
            "status": IncidentStatus.ACKED,
            "acked_by": "Jane Doe",
            "acked_at": _T0 + timedelta(minutes=5),
            "needs_human": "set_env did not help",
        }
    )
    resolved = acked.model_copy(
        update={"status": IncidentStatus.RESOLVED, "resolved_at": _T0 + timedelta(minutes=40)}
    )
    return [opened, mitigating, acked, resolved]


def sample_events() -> list[TimelineEvent]:
    at = _T0 + timedelta(minutes=1)
    probe = {"probe": "vendor_status", "ok": True, "summary": "no incident", "error": None}
    kinds: list[tuple[str, dict[str, object]]] = [
        ("incident.opened", {}),
        ("triage.completed", {"probes": [probe]}),
        ("incident.decided", {"branch": "our-integration-rate-limit"}),
        ("action.applied", {"action": "set_env", "target": "production/x", "verdict": "applied"}),
        ("action.refused", {"action": "set_env", "target": "production/x", "verdict": "refused"}),
        ("incident.needs_human", {"reason": "set_env did not help"}),
        ("incident.acknowledged", {"by": "Jane Doe"}),
        ("incident.resolved", {}),
        ("notification.delayed", {"sink": "statuspage"}),
        ("report.written", {"link": "/var/lib/responder/reports/inc-sample-8.md"}),
    ]
    return [
        TimelineEvent.model_validate(
            {"seq": i, "at": at, "kind": kind, "detail": f"sample {kind}", "data": data}
        )
        for i, (kind, data) in enumerate(kinds)
    ]


# the note each event kind makes on PagerDuty (as the planner does)
_NOTE_FOR = {
    "triage.completed": "triage",
    "action.applied": "action",
    "action.refused": "action",
    "incident.acknowledged": "handoff",
}


def check_templates(renderer: Renderer) -> list[str]:
    """Every problem found, as ``template: reason`` lines; empty when all render."""
    problems: dict[str, str] = {}
    now = _T0 + timedelta(minutes=10)

    def attempt(name: str, render: object) -> None:
        if name in problems:
            return
        try:
            assert callable(render)
            render()
        except TemplateProblem as exc:
            problems[name] = str(exc)

    for incident in sample_incidents():
        attempt(SLACK_ROOT, lambda i=incident: renderer.internal(SLACK_ROOT, i, now))
        attempt(PAGERDUTY_SUMMARY, lambda i=incident: renderer.internal(PAGERDUTY_SUMMARY, i, now))
        attempt(STATUSPAGE_NAME, lambda i=incident: renderer.public(STATUSPAGE_NAME, i, now))
        attempt(STATUSPAGE_BODY, lambda i=incident: renderer.public(STATUSPAGE_BODY, i, now))
        for event in sample_events():
            attempt(
                SLACK_EVENT,
                lambda i=incident, e=event: renderer.internal(SLACK_EVENT, i, now, event=e),
            )
            note = _NOTE_FOR.get(event.kind)
            if note is not None:
                attempt(
                    PAGERDUTY_NOTE,
                    lambda i=incident, e=event, n=note: renderer.internal(
                        PAGERDUTY_NOTE, i, now, event=e, note=n
                    ),
                )
    for incident in sample_incidents():  # the summary note goes with a link event
        link = sample_events()[0].model_copy(update={"kind": "pagerduty.linked"})
        attempt(
            PAGERDUTY_NOTE,
            lambda i=incident, e=link: renderer.internal(
                PAGERDUTY_NOTE, i, now, event=e, note="summary"
            ),
        )
    for incident in sample_incidents():
        attempt(
            POSTMORTEM_TEMPLATE,
            lambda i=incident: render_postmortem(
                renderer.templates,
                build_postmortem(
                    i,
                    sample_events(),
                    service="PostHog integration",
                    impact="delays in analytics data",
                    branch_description="Sample branch. More words.",
                    severity_definition="Degraded service",
                    response_time="< 1 hour",
                    response_time_s=3600,
                    now=now,
                ),
            ),
        )
    return [problems[name] for name in sorted(problems)]
