"""The sample incidents and timeline every named template (the messages, the postmortem)
is rendered against at start-up: an incident in each state a message can be planned in,
and one event of each kind a message tells. Here, below ``notify`` and ``report``, so that
each checks its own templates on the same samples without importing the other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from responder.domain.action import ActionRecord, Outcome
from responder.domain.incident import Approval, Incident, IncidentStatus
from responder.domain.severity import ErrorType, Severity
from responder.domain.timeline import EventKind, TimelineEvent

_T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
_APPROVAL_STEP = "our-integration-rate-limit#1:scale"
SAMPLE_NOW = _T0 + timedelta(minutes=10)  # when the samples are rendered


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
    approval = Approval(
        step=_APPROVAL_STEP,
        action="scale",
        target="production/posthog-integration",
        change="scale replicas=4",
        requested_at=_T0 + timedelta(minutes=2),
        expires_at=_T0 + timedelta(minutes=17),
    )
    mitigating = opened.model_copy(
        update={
            "branch": "our-integration-rate-limit",
            "facts": {"vendor": {"incident": False}, "prometheus": {"error_ratio": 0.2}},
            "triaged_at": _T0 + timedelta(seconds=30),
            "actions": (action,),
            "pagerduty_incident_id": "PSAMPLE",
            "paused_by": "Jane Doe",
            "paused_at": _T0 + timedelta(minutes=3),
            "approvals": (approval,),
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
    # a step a person approved: what the postmortem's approvals section tells
    approved = Approval(
        step=action.step,
        action=action.action,
        target=action.target,
        change="container app: RATE_LIMIT_MODE: None → 'queue'",
        state="approved",
        requested_at=_T0 + timedelta(seconds=40),
        expires_at=_T0 + timedelta(minutes=15, seconds=40),
        decided_by="Jane Doe",
        decided_at=_T0 + timedelta(minutes=1),
        via="slack",
    )
    resolved = acked.model_copy(
        update={
            "status": IncidentStatus.RESOLVED,
            "resolved_at": _T0 + timedelta(minutes=40),
            "approvals": (approved,),
        }
    )
    return [opened, mitigating, acked, resolved]


def sample_events() -> list[TimelineEvent]:
    at = _T0 + timedelta(minutes=1)
    probe = {"probe": "vendor_status", "ok": True, "summary": "no incident", "error": None}
    approval: dict[str, object] = {
        "step": _APPROVAL_STEP,
        "action": "scale",
        "target": "production/posthog-integration",
        "change": "scale replicas=4",
    }
    expires = (_T0 + timedelta(minutes=17)).isoformat()
    kinds: list[tuple[EventKind, dict[str, object]]] = [
        (EventKind.INCIDENT_OPENED, {}),
        (EventKind.TRIAGE_COMPLETED, {"probes": [probe]}),
        (EventKind.INCIDENT_DECIDED, {"branch": "our-integration-rate-limit"}),
        (
            EventKind.ACTION_APPLIED,
            {"action": "set_env", "target": "production/x", "verdict": "applied"},
        ),
        (
            EventKind.ACTION_REFUSED,
            {"action": "set_env", "target": "production/x", "verdict": "refused"},
        ),
        (EventKind.INCIDENT_NEEDS_HUMAN, {"reason": "set_env did not help"}),
        (EventKind.ACTION_APPROVAL_REQUESTED, {**approval, "expires_at": expires}),
        (EventKind.ACTION_APPROVED, {**approval, "by": "Jane Doe", "via": "slack"}),
        (EventKind.ACTION_REJECTED, {**approval, "by": "Jane Doe", "via": "api"}),
        (EventKind.ACTION_APPROVAL_EXPIRED, {**approval}),
        (EventKind.AUTOMATION_PAUSED, {"by": "Jane Doe", "via": "slack"}),
        (EventKind.AUTOMATION_RESUMED, {"by": "Jane Doe", "via": "slack"}),
        (EventKind.INCIDENT_ACKNOWLEDGED, {"by": "Jane Doe"}),
        (EventKind.INCIDENT_RESOLVED, {}),
        (EventKind.NOTIFICATION_DELAYED, {"sink": "statuspage"}),
        (EventKind.REPORT_WRITTEN, {"link": "/var/lib/responder/reports/inc-sample-8.md"}),
    ]
    return [
        TimelineEvent.model_validate(
            {"seq": i, "at": at, "kind": kind, "detail": f"sample {kind}", "data": data}
        )
        for i, (kind, data) in enumerate(kinds)
    ]
