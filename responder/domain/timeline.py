"""Timeline events: the incident's story, one line per step, in order."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, JsonValue

from responder.domain.model import Frozen


class EventKind(StrEnum):
    """What a timeline event records: ``family.what``. The value is what is stored, served
    and counted (a plain string in JSON and metric labels); every kind an incident's
    timeline has ever been given is one, so any stored document reads back.

    Renaming a value breaks stored timelines, the Slack event template (which compares
    the strings) and dashboards: add a kind rather than rename one.
    """

    # The incident itself
    INCIDENT_OPENED = "incident.opened"
    INCIDENT_CLASSIFIED = "incident.classified"  # a rule (or its pack) read the first alert
    INCIDENT_UNCLASSIFIED = "incident.unclassified"  # no rule matched: default severity
    INCIDENT_RECLASSIFIED = "incident.reclassified"  # an unknown error type became known
    INCIDENT_ESCALATED = "incident.escalated"  # severity raised (it never drops while open)
    INCIDENT_PAGE_REQUESTED = "incident.page_requested"  # a rule asks to page the on-call
    INCIDENT_DECIDED = "incident.decided"  # a branch of the decision tree, its planned actions
    INCIDENT_UNDECIDED = "incident.undecided"  # no branch of the decision tree matched
    INCIDENT_NEEDS_HUMAN = "incident.needs_human"  # the automation hands over, and says why
    INCIDENT_ACKNOWLEDGED = "incident.acknowledged"  # a human took it: automation only reports
    INCIDENT_RESOLVED = "incident.resolved"
    INCIDENT_STORM = "incident.storm"  # opened as its pack's alert storm incident

    # Its alerts
    ALERT_JOINED = "alert.joined"  # another alert of the group fired
    ALERT_REFIRED = "alert.refired"  # a known alert fired again
    ALERT_RESOLVED = "alert.resolved"
    STORM_COLLECTED = "storm.collected"  # one more group collected into the storm incident

    # Triage
    TRIAGE_COMPLETED = "triage.completed"  # every planned probe's outcome and evidence

    # Mitigation: one step of the plan (the step's record is in ``data``)
    ACTION_APPLIED = "action.applied"
    ACTION_IN_PLACE = "action.in_place"  # the target already was as the action would make it
    ACTION_DRY_RUN = "action.dry_run"  # what it would have sent, sent nowhere
    ACTION_SKIPPED = "action.skipped"  # its precondition does not hold (e.g. Secret not rotated)
    ACTION_REFUSED = "action.refused"  # a guard said no
    ACTION_FAILED = "action.failed"
    ACTION_NEEDS_HUMAN = "action.needs_human"  # a page_human step: the plan asks for a person
    ACTION_VERIFIED = "action.verified"  # applied, and the check after it says it helped
    ACTION_UNHELPFUL = "action.unhelpful"  # applied, and the check after it says it did not
    ACTION_REVERTED = "action.reverted"  # undone (it did not help, or on resolve)
    ACTION_REVERT_REFUSED = "action.revert_refused"  # a guard said no to the undo
    ACTION_REVERT_FAILED = "action.revert_failed"
    # the revert policy and the misfires of late verifications
    ACTION_VERIFY_DROPPED = "action.verify_dropped"  # due after resolve or revert: not run
    ACTION_REVERT_DUE = "action.revert_due"  # left in place by its policy: the undo, for a human
    # humans in the loop: a step a rule says needs a person's approval (``approval:``)
    ACTION_APPROVAL_REQUESTED = "action.approval_requested"  # the plan, waiting for a yes or no
    ACTION_APPROVED = "action.approved"  # a person approved it: it runs through the guards
    ACTION_REJECTED = "action.rejected"  # a person said no: it does not run
    ACTION_APPROVAL_EXPIRED = "action.approval_expired"  # nobody answered in time: a human paged
    # a person paused (or resumed) the automation of this one incident
    AUTOMATION_PAUSED = "automation.paused"
    AUTOMATION_RESUMED = "automation.resumed"

    # Notifications: what a sink (Slack, status page, PagerDuty) did; ``data["sink"]``
    NOTIFICATION_POSTED = "notification.posted"  # posted or updated (refs kept on the incident)
    NOTIFICATION_DELAYED = "notification.delayed"  # failed, tried again later
    NOTIFICATION_FAILED = "notification.failed"  # given up on, or a message does not render
    NOTIFICATION_RECOVERED = "notification.recovered"  # delivering again after failures
    NOTIFICATION_ADOPTED = "notification.adopted"  # took over what was posted for a lost record

    # PagerDuty, from its webhooks
    PAGERDUTY_LINKED = "pagerduty.linked"  # linked to a PagerDuty incident
    PAGERDUTY_NOTE = "pagerduty.note"  # a note a person added there
    PAGERDUTY_EVENT = "pagerduty.event"  # any other PagerDuty event, told as it came

    # Watching and reminding after the first response (responder/watch/)
    VENDOR_STATUS_CHANGED = "vendor.status_changed"  # the vendor's status page says otherwise
    VENDOR_RESOLVED = "vendor.resolved"  # the vendor's incident is over
    UPDATE_DUE = "incident.update_due"  # the promised update fell due with none posted since
    ACK_OVERDUE = "incident.ack_overdue"  # not acknowledged within the response time: paged

    # One incident in turn, its commander, flapping
    PAGERDUTY_ASSIGNED = "pagerduty.assigned"  # PagerDuty named who has it: the commander
    INCIDENT_FLAPPING = "incident.flapping"  # its alerts fire and resolve on and off
    INCIDENT_STEADY = "incident.steady"  # no flap for the quiet period: flapping no more

    # The postmortem draft and evidence bundle
    REPORT_WRITTEN = "report.written"
    REPORT_FAILED = "report.failed"


class TimelineEvent(Frozen):
    """One step of an incident's life.

    ``seq`` numbers the events of one incident from 0 with no gaps; later stages use
    ``(incident id, seq)`` as the idempotency key of whatever the event triggers.
    """

    seq: int
    at: datetime
    kind: EventKind
    detail: str
    data: dict[str, JsonValue] = Field(default_factory=dict)
