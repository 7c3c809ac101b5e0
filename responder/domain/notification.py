"""Telling people: what an incident's messages say, and what each sink already shows.

Messages are planned from the incident and its new timeline events by pure planners
(``responder.notify.planners``); a sink adapter only carries out an ``Outbound``. Every
outbound message has a step, unique per incident and sink, that makes its idempotency key:
a redelivered signal or a second replica finds it sent and sends nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, JsonValue

from responder.domain.action import Outcome
from responder.domain.incident import Incident
from responder.domain.model import Frozen

# The Events API dedup key of the alert responder triggers for an incident is this prefix
# and the incident id: stable, so a retry or a second replica adds to the same alert and
# the resolve finds it; the PagerDuty incident it opens comes back (webhook) with this key
# as its incident_key and links to ours.
PAGE_KEY_PREFIX = "responder-"


def page_dedup_key(incident_id: str) -> str:
    return f"{PAGE_KEY_PREFIX}{incident_id}"


class CommsStatus(StrEnum):
    """Where the response stands, as the runbook's templates say it (and the status page's
    realtime statuses, see ``statuspage_status``)."""

    INVESTIGATING = "INVESTIGATING"  # no mitigation in place yet
    MITIGATING = "MITIGATING"  # a mitigation is applied, not yet shown to help
    MONITORING = "MONITORING"  # it helped (or nothing to do): watching
    RESOLVED = "RESOLVED"


def comms_status(incident: Incident) -> CommsStatus:
    if not incident.is_active:
        return CommsStatus.RESOLVED
    applied = [a for a in incident.actions if a.verdict is Outcome.APPLIED and not a.reverted]
    if applied:
        if all(a.verified is True for a in applied):
            return CommsStatus.MONITORING
        return CommsStatus.MITIGATING
    if (
        incident.branch is not None
        and not incident.planned_actions
        and incident.needs_human is None
    ):
        # the decision tree's "likely resolved or intermittent: monitor"
        return CommsStatus.MONITORING
    return CommsStatus.INVESTIGATING


def statuspage_status(status: CommsStatus) -> str:
    """The Statuspage realtime status for ours."""
    return {
        CommsStatus.INVESTIGATING: "investigating",
        CommsStatus.MITIGATING: "identified",
        CommsStatus.MONITORING: "monitoring",
        CommsStatus.RESOLVED: "resolved",
    }[status]


def current_action(incident: Incident) -> str:
    """One line: what is being done about the incident right now."""
    if not incident.is_active:
        return "None: resolved"
    if incident.acked_by:
        return f"{incident.acked_by} has it; the automation only reports from here"
    if incident.needs_human:
        return f"Waiting for a human: {incident.needs_human}"
    applied = [a for a in incident.actions if a.verdict is Outcome.APPLIED and not a.reverted]
    if applied:
        parts = []
        for a in applied:
            state = {True: "helped", False: "did not help", None: "checking it helps"}[a.verified]
            parts.append(f"{a.action} on {a.target} ({state})")
        return "Mitigation applied: " + "; ".join(parts)
    dry = [a for a in incident.actions if a.verdict is Outcome.DRY_RUN]
    if dry:
        return (
            "Dry-run: recorded what it would change ("
            + ", ".join(f"{a.action} on {a.target}" for a in dry)
            + "); a human applies it"
        )
    if incident.branch is not None:
        if incident.planned_actions:
            planned = ", ".join(a.spec.type for a in incident.planned_actions)
            return f"Decision tree: {incident.branch}; applying {planned}"
        return f"Decision tree: {incident.branch}; monitoring"
    if incident.triaged_at is not None:
        return "Triage done; no branch of the decision tree matched: a human should look"
    if incident.planned_probes:
        probes = ", ".join(dict.fromkeys(p.spec.type for p in incident.planned_probes))
        return f"Gathering triage evidence ({probes})"
    return "Recording the alerts"


class Outbound(Frozen):
    """One message for one sink: what to send, and under which step it is sent once."""

    sink: str
    step: str = Field(description="Unique per incident and sink: the idempotency key's end.")
    op: str = Field(description="What the sink does: post, reply, update, create, note, ...")
    text: str = ""
    title: str = ""
    blocks: list[dict[str, JsonValue]] = Field(default_factory=list)
    fields: dict[str, JsonValue] = Field(default_factory=dict)
    # the ref set once this is done (True, or "failed" when given up): one-off steps such
    # as the root message or the status page incident's creation are planned until then
    marks: str | None = None
    # what the sink shows once this is sent (the root message's status, the status page
    # incident's status...): the planner compares it with the next state
    shows: dict[str, JsonValue] = Field(default_factory=dict)
    # the key of a thread several incidents share (the status page incident of a set of
    # components): the message goes to that one thread (``notify.shared_threads``)
    shared: str | None = None
    # the incident leaves that shared thread with this message (it resolved): the thread
    # resolves once no incident is left in it
    leaves_shared: bool = False
    # sending it makes the sink's next edit the next one (``DeliveryState.updates``): the
    # planner numbers an edit's step from that count, so delivery counts it, never the step
    counts_as_update: bool = False


class DeliveryState(Frozen):
    """What one sink has been told of one incident. Kept in the action ledger, written
    only by the worker holding the (incident, sink) delivery lock."""

    cursor: int = 0  # the first timeline event not yet planned for this sink
    refs: dict[str, JsonValue] = Field(default_factory=dict)  # Slack ts, status page id...
    shows: dict[str, JsonValue] = Field(default_factory=dict)
    updates: int = 0  # edits made so far; numbers the steps of the next ones
    attempts: int = 0  # failed attempts since the last delivery
    failing_since: datetime | None = None
    retry_at: datetime | None = None
    last_error: str | None = None
    # the key of a message whose last try may have been carried out (it timed out): the
    # next try asks the sink before sending it again
    uncertain: str | None = None
    # no try of the ``uncertain`` message is older than this (the sink's history is read
    # from then on); None with ``uncertain`` set: unknown, read as far back as it goes
    uncertain_since: datetime | None = None


# What makes one attached incident's message "worse" than another's, for the public
# incident several incidents share: the impact, then the components' status, then the
# response status (the public incident says "monitoring" only once every attached incident
# does).
_IMPACT_RANK = {"none": 0, "minor": 1, "major": 2, "critical": 3}
_COMPONENT_RANK = {
    "operational": 0,
    "under_maintenance": 1,
    "degraded_performance": 2,
    "partial_outage": 3,
    "major_outage": 4,
}
_STATUS_RANK = {"resolved": 0, "monitoring": 1, "identified": 2, "investigating": 3}


def _worse_first(shows: dict[str, JsonValue]) -> tuple[int, int, int]:
    return (
        _IMPACT_RANK.get(str(shows.get("impact")), 0),
        _COMPONENT_RANK.get(str(shows.get("components")), 0),
        _STATUS_RANK.get(str(shows.get("status")), 0),
    )


def shared_lead(members: dict[str, Outbound]) -> Outbound | None:
    """The message a thread shared by several incidents shows (the status page incident
    of a set of components): the worst of its attached incidents' own messages; among
    equals, the one of the lowest incident id, so every replica picks the same."""
    if not members:
        return None
    return max(sorted(members.items()), key=lambda kv: _worse_first(kv[1].shows))[1]
