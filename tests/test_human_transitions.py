"""A person's acts on one incident (issue 21's core): acknowledge from Slack, pause and
resume its automation, approve or reject a step; each an idempotent transition, applied
through the pipeline's one mutator for ``HumanSignal``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from responder.domain.incident import (
    Approval,
    Incident,
    IncidentChange,
    IncidentStatus,
    approval_of,
    decide_approval,
    expire_approval,
    open_incident,
    pause_automation,
    request_approval,
    resume_automation,
)
from responder.domain.signal import (
    SIGNAL_ADAPTER,
    AlertSignal,
    AlertStatus,
    HumanAct,
    HumanSignal,
)
from responder.pipeline import _human_mutator
from responder.ports import IncidentState

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
STEP = "our-integration-upstream-5xx#0:set_env"


def opened() -> Incident:
    signal = AlertSignal(
        fingerprint="f1",
        status=AlertStatus.FIRING,
        labels={"alertname": "PostHog5xx", "service": "posthog-integration"},
        starts_at=T0,
        am_group_key="{}",
        received_at=T0,
    )
    return open_incident(incident_id="inc-1", group_key="g", signal=signal, now=T0).incident


def waiting(incident: Incident) -> Incident:
    approval = Approval(
        step=STEP,
        action="set_env",
        target="prod/posthog-integration",
        change="POSTHOG_FALLBACK=true",
        requested_at=T0,
        expires_at=T0 + timedelta(minutes=15),
    )
    change = request_approval(incident, approval, T0)
    assert change is not None
    assert [e.kind for e in change.events] == ["action.approval_requested"]
    assert change.events[0].data["change"] == "POSTHOG_FALLBACK=true"
    return change.incident


def press(
    incident: Incident, act: HumanAct, by: str = "alice", step: str | None = None
) -> IncidentChange | None:
    signal = HumanSignal(
        incident_id=incident.id,
        act=act,
        step=step,
        by=by,
        user_id="U1" if by == "alice" else "U2",
        via="slack",
        request_id=f"{act}-{by}",
        received_at=T0 + timedelta(seconds=5),
    )
    # it travels as JSON through the queue: what the worker reads back is what it applies
    queued = SIGNAL_ADAPTER.validate_json(signal.observation().payload)
    assert queued == signal
    return _human_mutator(signal, T0 + timedelta(seconds=6))(IncidentState(incident))


def test_ack_from_slack_makes_the_presser_commander_once() -> None:
    change = press(opened(), "acknowledge")
    assert change is not None
    assert change.incident.status is IncidentStatus.ACKED
    assert change.incident.commander == "alice"
    [event] = change.events
    assert event.kind == "incident.acknowledged"
    assert event.data["via"] == "slack"
    assert event.data["user_id"] == "U1"
    assert "in Slack" in event.detail
    assert press(change.incident, "acknowledge", by="bob") is None


def test_pause_and_resume_each_once() -> None:
    paused = press(opened(), "pause")
    assert paused is not None
    assert paused.incident.paused_by == "alice"
    assert [e.kind for e in paused.events] == ["automation.paused"]
    assert press(paused.incident, "pause", by="bob") is None
    resumed = press(paused.incident, "resume", by="bob")
    assert resumed is not None
    assert resumed.incident.paused_by is None
    assert resumed.events[0].data["paused_by"] == "alice"
    assert press(resumed.incident, "resume") is None


def test_first_answer_to_an_approval_wins() -> None:
    incident = waiting(opened())
    asked = approval_of(incident, STEP)
    assert asked is not None
    assert request_approval(incident, asked, T0) is None  # asked once
    approved = press(incident, "approve", step=STEP)
    assert approved is not None
    assert [e.kind for e in approved.events] == ["action.approved"]
    decided = approval_of(approved.incident, STEP)
    assert decided is not None
    assert (decided.state, decided.decided_by) == ("approved", "alice")
    # bob pressed Reject at the same moment: applied second, it changes nothing
    assert press(approved.incident, "reject", by="bob", step=STEP) is None
    # nor does an answer for a step that waits for nothing
    assert press(approved.incident, "approve", step="other#0:scale") is None


def test_rejected_expired_or_resolved_approvals_take_no_answer() -> None:
    incident = waiting(opened())
    rejected = press(incident, "reject", by="bob", step=STEP)
    assert rejected is not None
    assert rejected.events[0].kind == "action.rejected"
    assert approval_of(rejected.incident, STEP).state == "rejected"  # type: ignore[union-attr]

    assert expire_approval(incident, STEP, T0 + timedelta(minutes=14)) is None  # not yet
    expired = expire_approval(incident, STEP, T0 + timedelta(minutes=15))
    assert expired is not None
    assert expired.events[0].kind == "action.approval_expired"
    assert press(expired.incident, "approve", step=STEP) is None
    assert expire_approval(expired.incident, STEP, T0 + timedelta(hours=1)) is None

    gone = incident.model_copy(update={"status": IncidentStatus.RESOLVED})
    assert press(gone, "approve", step=STEP) is None
    assert pause_automation(gone, by="a", now=T0, via="in Slack") is None
    assert resume_automation(gone, by="a", now=T0, via="in Slack") is None
    assert decide_approval(gone, STEP, approve=True, by="a", now=T0, via="api") is None
