"""Incidents and the pure transitions that signals cause.

Every transition takes the current incident (or none) and one signal and returns an
``IncidentChange`` with the new incident and the timeline events it adds, or ``None`` when
the signal changes nothing. Transitions are idempotent: handling the same signal twice (a
redelivered queue entry) changes nothing the second time, which is what makes at-least-once
delivery safe.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, JsonValue

from responder.domain.action import ActionRecord
from responder.domain.decision import Decision, PlannedAction, PlannedProbe
from responder.domain.facts import ProbeResult, merge_facts
from responder.domain.model import Frozen
from responder.domain.severity import ErrorType, Severity, SeverityLevel
from responder.domain.signal import (
    AlertSignal,
    AlertStatus,
    PagerDutySignal,
    alertmanager_pagerduty_key,
    epoch_ms,
)
from responder.domain.timeline import EventKind, TimelineEvent

# PagerDuty delivers per incident in order; remembering the last events applied is enough
# to recognise a redelivery.
MAX_REMEMBERED_PAGERDUTY_EVENTS = 200


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKED = "acked"
    RESOLVED = "resolved"


class IncidentAlert(Frozen):
    fingerprint: str
    number: int = 1  # order of joining the incident, from 1
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""

    @property
    def order_ms(self) -> int:
        return epoch_ms(self.starts_at) if self.starts_at is not None else 0


# ``settled``: the group's incident resolved last (a firing within the pack's flapping
# window may find it again, see ``reopen_flapping``)
LookupKind = Literal["id", "group", "pagerduty_id", "pagerduty_key", "settled"]


@dataclass(frozen=True, slots=True)
class IncidentLookup:
    """One way of finding an incident: by id, by open group, or by a PagerDuty link.

    A plain value (several are made per signal handled), never serialized."""

    kind: LookupKind
    key: str


ApprovalState = Literal["requested", "approved", "rejected", "expired"]


class Approval(Frozen):
    """A step of the plan a rule says needs a person's yes (``approval: required``): what
    it would change, until when it waits, and who decided."""

    step: str
    action: str  # the action's type
    target: str
    change: str  # the exact change, as the timeline tells it (its dry-run patch)
    state: ApprovalState = "requested"
    requested_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    via: str | None = None  # "slack", "api", or None when it expired


class Incident(Frozen):
    id: str
    status: IncidentStatus = IncidentStatus.OPEN
    group_key: str
    title: str
    severity: Severity | None = None
    error_type: ErrorType | None = None
    rule: str | None = None  # the rule that classified it
    pack: str | None = None
    branch: str | None = None  # the decision tree's branch, once triage facts are known
    planned_probes: tuple[PlannedProbe, ...] = ()
    planned_actions: tuple[PlannedAction, ...] = ()
    notify: tuple[str, ...] = ()
    page: bool = False  # a rule asks to page the on-call (PagerDuty Events API)
    # The alerts themselves are kept beside the incident (one record each), so that an
    # alert storm does not make every update rewrite them all; the incident counts them.
    alerts_total: int = 0
    alerts_firing: int = 0
    # the labels and annotations of the alert that opened it: what rules and templates read
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    facts: dict[str, JsonValue] = Field(default_factory=dict)
    triaged_at: datetime | None = None
    actions: tuple[ActionRecord, ...] = ()
    needs_human: str | None = None  # why the automation hands over, when it does
    opened_at: datetime
    # when the earliest of its alerts started firing, by the alerts' own startsAt: a
    # record of it may predate a store that lost its writes (see notify/adoption.py)
    started_at: datetime | None = None
    updated_at: datetime
    acked_at: datetime | None = None
    acked_by: str | None = None
    # the incident commander once PagerDuty says who has the incident (its assignee, or
    # who acknowledged it there): the root message names them
    commander: str | None = None
    # a person paused the automation of this incident (Slack's "Pause automation"): its
    # steps are refused by the pause guard as a global pause would, until resumed
    paused_by: str | None = None
    paused_at: datetime | None = None
    # the steps that wait (or waited) for a person's approval, one per step
    approvals: tuple[Approval, ...] = ()
    # when it opened and when an alert of it that had resolved fired again, the latest
    # few, carried over from the incident of its group resolved just before: what tells
    # it flaps
    fired_at: tuple[datetime, ...] = ()
    # flapping since then (see ``note_fire``): a resolve does not close it, a firing is
    # not news, until a quiet period passes (``settle_flapping``)
    flapping_since: datetime | None = None
    resolved_at: datetime | None = None
    pagerduty_incident_id: str | None = None
    pagerduty_keys: tuple[str, ...] = ()
    pagerduty_url: str | None = None
    pagerduty_events: tuple[str, ...] = ()  # ids of the PagerDuty events already applied
    # per sink, the handles of what was posted (Slack channel and ts, status page id...)
    deliveries: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    events_count: int = 0
    # An alert storm's incident (see ``open_storm``): it collects the groups that would
    # have opened incidents beyond the pack's cap of new incidents per minute, and answers
    # to each of them (``groups``) while active, so their later signals land on it too.
    storm: bool = False
    groups: tuple[str, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status is not IncidentStatus.RESOLVED

    def lookups(self) -> list[IncidentLookup]:
        """Every index entry that should point at this incident now."""
        found = [IncidentLookup(kind="id", key=self.id)]
        if self.is_active:
            found.append(IncidentLookup(kind="group", key=self.group_key))
            found.extend(IncidentLookup(kind="group", key=g) for g in self.groups)
        else:
            found.append(IncidentLookup(kind="settled", key=self.group_key))
        if self.pagerduty_incident_id:
            found.append(IncidentLookup(kind="pagerduty_id", key=self.pagerduty_incident_id))
        found.extend(IncidentLookup(kind="pagerduty_key", key=k) for k in self.pagerduty_keys)
        return found

    def answers(self, lookup: IncidentLookup) -> bool:
        """Whether ``lookup`` finds this incident now (``lookups`` without building them
        all: an alert storm's incident answers to hundreds of groups)."""
        if lookup.kind == "id":
            return lookup.key == self.id
        if lookup.kind == "group":
            return self.is_active and (lookup.key == self.group_key or lookup.key in self.groups)
        if lookup.kind == "pagerduty_id":
            return lookup.key == self.pagerduty_incident_id
        if lookup.kind == "settled":
            return not self.is_active and lookup.key == self.group_key
        return lookup.key in self.pagerduty_keys


class IncidentChange(Frozen):
    """The outcome of one transition: the incident after it, the alerts it added or
    changed, and the timeline events it added."""

    incident: Incident
    events: tuple[TimelineEvent, ...]
    alerts: tuple[IncidentAlert, ...] = ()
    opened: bool = False


def combine(first: IncidentChange, then: IncidentChange | None) -> IncidentChange:
    """Two successive changes of one incident as one."""
    if then is None:
        return first
    alerts = {a.fingerprint: a for a in (*first.alerts, *then.alerts)}
    return IncidentChange(
        incident=then.incident,
        events=(*first.events, *then.events),
        alerts=tuple(alerts.values()),
        opened=first.opened or then.opened,
    )


def _escalate(
    incident: Incident, decision: Decision, changes: _Changes, level: SeverityLevel
) -> dict[str, object]:
    """Raise the severity when the decision says worse; it never drops while open."""
    update: dict[str, object] = {}
    if incident.severity is None or not incident.is_active:
        return update
    if decision.severity.worse_than(incident.severity):
        update["severity"] = decision.severity
        changes.add(
            EventKind.INCIDENT_ESCALATED,
            f"{incident.severity.value} → {decision.severity.value} "
            f"({level.definition}, respond {level.response_time}) by rule {decision.rule}",
            previous=incident.severity.value,
            severity=decision.severity.value,
            rule=decision.rule,
        )
    if decision.page and not incident.page:
        update["page"] = True
        changes.add(
            EventKind.INCIDENT_PAGE_REQUESTED,
            f"Rule {decision.rule or decision.branch} asks to page the on-call",
            rule=decision.rule or decision.branch,
        )
    if (
        not incident.storm
        and incident.error_type in (None, ErrorType.UNKNOWN)
        and (decision.error_type is not ErrorType.UNKNOWN)
    ):
        update["error_type"] = decision.error_type
        changes.add(
            EventKind.INCIDENT_RECLASSIFIED,
            f"Error type now {decision.error_type.value} (rule {decision.rule})",
            error_type=decision.error_type.value,
            rule=decision.rule,
        )
    return update


def classify(
    incident: Incident, decision: Decision, now: datetime, *, level: SeverityLevel
) -> IncidentChange | None:
    """Record what the rules say of an alert, before triage; ``None`` when nothing changes.

    The first decision sets severity, error type, rule, title and the planned probes.
    Later ones (more alerts) only raise the severity, never lower it while it is open.
    """
    changes = _Changes(incident, now)
    if incident.severity is not None:
        return changes.done(incident, update=_escalate(incident, decision, changes, level))
    update: dict[str, object] = {
        "severity": decision.severity,
        "error_type": decision.error_type,
        "rule": decision.rule,
        "pack": decision.pack,
        "title": decision.title or incident.title,
        "planned_probes": decision.probes,
        "planned_actions": decision.actions,
        "notify": decision.notify,
        "page": decision.page,
    }
    if decision.pack is None:
        changes.add(
            EventKind.INCIDENT_UNCLASSIFIED,
            f"No rule matched: {decision.severity.value} ({level.definition}) by default",
            severity=decision.severity.value,
        )
    else:
        # a rule classified it, or the pack whose scope took it read it from the alert
        how = f"by rule {decision.rule}" if decision.rule else f"by pack {decision.pack}"
        said = decision.reasons.get("error_type", "")
        if said and not said.startswith("rule "):
            how += f" (error type from {said})"
        changes.add(
            EventKind.INCIDENT_CLASSIFIED,
            f"{decision.severity.value} ({level.definition}, respond {level.response_time})"
            f", {decision.error_type.value}, {how}",
            reasons=dict(decision.reasons),
            severity=decision.severity.value,
            error_type=decision.error_type.value,
            rule=decision.rule,
            pack=decision.pack,
            matched=list(decision.matched),
            respond_within_s=level.respond_within_s,
            planned_actions=[a.spec.type for a in decision.actions],
            probes=[p.spec.type for p in decision.probes],
        )
    return changes.done(incident, update=update)


def apply_triage(
    incident: Incident, results: Sequence[ProbeResult], now: datetime
) -> IncidentChange:
    """Record what triage found: the facts, and one timeline event with each probe's
    outcome and evidence."""
    facts = merge_facts(list(results))
    changes = _Changes(incident, now)
    failed = [r.probe for r in results if not r.ok]
    summary = "; ".join(r.summary or (r.error or r.probe) for r in results)
    changes.add(
        EventKind.TRIAGE_COMPLETED,
        f"Triage: {summary}" + (f" (failed: {', '.join(failed)})" if failed else ""),
        probes=[r.model_dump(mode="json") for r in results],
    )
    change = changes.done(incident, update={"facts": facts, "triaged_at": now})
    assert change is not None
    return change


def decide(
    incident: Incident, decision: Decision, now: datetime, *, level: SeverityLevel
) -> IncidentChange | None:
    """Record the decision taken on triage facts: the branch of the decision tree, the
    facts it used and the planned actions (or that no branch could be chosen), and any
    escalation. ``None`` when nothing changes."""
    changes = _Changes(incident, now)
    update = _escalate(incident, decision, changes, level)
    if decision.branch is not None and decision.branch != incident.branch:
        planned = ", ".join(
            f"{a.spec.type}{' (dry-run)' if a.dry_run else ''}" for a in decision.actions
        )
        update.update(
            branch=decision.branch,
            planned_actions=decision.actions,
            notify=decision.notify or incident.notify,
        )
        changes.add(
            EventKind.INCIDENT_DECIDED,
            f"Decision tree: {decision.branch}; "
            + (f"planned: {planned}" if planned else "no action"),
            branch=decision.branch,
            facts=dict(decision.facts_used),
            planned_actions=[a.model_dump(mode="json") for a in decision.actions],
        )
    elif decision.branch is None and incident.branch is None:
        missing = sorted(
            k for k, v in incident.facts.items() if isinstance(v, dict) and "error" in v
        )
        changes.add(
            EventKind.INCIDENT_UNDECIDED,
            "No branch of the decision tree matched"
            + (f" (no facts from: {', '.join(missing)})" if missing else ""),
            facts=dict(decision.facts_used),
        )
    return changes.done(incident, update=update)


def call_human(incident: Incident, reason: str, now: datetime) -> IncidentChange | None:
    """The automation hands over to a person, and says why (triage's runbook rows: a
    status page or a cluster it could not read). Idempotent: the same reason again, or an
    incident resolved meanwhile, changes nothing."""
    if not incident.is_active or incident.needs_human == reason:
        return None
    changes = _Changes(incident, now)
    changes.add(EventKind.INCIDENT_NEEDS_HUMAN, f"A human is needed: {reason}", reason=reason)
    return changes.done(incident, update={"needs_human": reason})


def record_action(
    incident: Incident,
    record: ActionRecord,
    now: datetime,
    *,
    kind: EventKind,
    detail: str,
    human: str | None = None,
    replace: bool = False,
    **data: JsonValue,
) -> IncidentChange | None:
    """Record what one step of the plan did, once: the first record of a step stands (a
    redelivery finds it and changes nothing), unless ``replace`` (verification, revert
    update the step's record). ``human``: the automation hands over, and says why.

    ``kind`` is an ``action.*`` kind (a plain string is taken while mitigate still
    names its kinds so; one not an ``EventKind`` raises ``ValueError``)."""
    existing = next((a for a in incident.actions if a.step == record.step), None)
    if existing is not None and not replace:
        return None
    if existing is None:
        actions = [*incident.actions, record]
    else:  # in its place
        actions = [record if a.step == record.step else a for a in incident.actions]
    changes = _Changes(incident, now)
    changes.add(
        kind,
        detail,
        step=record.step,
        action=record.action,
        target=record.target,
        verdict=record.verdict.value,
        **data,
    )
    update: dict[str, object] = {"actions": tuple(actions)}
    if human is not None and incident.is_active:
        update["needs_human"] = human
        changes.add(EventKind.INCIDENT_NEEDS_HUMAN, f"A human is needed: {human}", reason=human)
    return changes.done(incident, update=update)


def hand_over(incident: Incident, reason: str, now: datetime) -> IncidentChange | None:
    """The automation hands an open incident to a human, and says why (once: an incident
    that already needs one keeps its first reason)."""
    if not incident.is_active or incident.needs_human is not None:
        return None
    changes = _Changes(incident, now)
    changes.add(EventKind.INCIDENT_NEEDS_HUMAN, f"A human is needed: {reason}", reason=reason)
    return changes.done(incident, update={"needs_human": reason})


def record_delivery(
    incident: Incident,
    sink: str,
    now: datetime,
    *,
    kind: EventKind,
    detail: str,
    refs: dict[str, JsonValue] | None = None,
    **data: JsonValue,
) -> IncidentChange | None:
    """Record what a notification sink did (posted the root message, created the status
    page incident) or could not do; ``refs`` are the handles to keep on the incident."""
    changes = _Changes(incident, now)
    changes.add(kind, detail, sink=sink, **data)
    update: dict[str, object] = {}
    if refs:
        update["deliveries"] = {
            **incident.deliveries,
            sink: {**incident.deliveries.get(sink, {}), **refs},
        }
    return changes.done(incident, update=update)


def record_report(
    incident: Incident, now: datetime, *, kind: EventKind, detail: str, **data: JsonValue
) -> IncidentChange | None:
    """Record that the postmortem draft and evidence bundle were written (or could not
    be), with where to find them."""
    changes = _Changes(incident, now)
    changes.add(kind, detail, **data)
    return changes.done(incident)


def acknowledge(
    incident: Incident,
    *,
    by: str,
    at: datetime,
    now: datetime,
    via: str,
    commander: bool = False,
    source: str | None = None,
    **data: JsonValue,
) -> IncidentChange | None:
    """A human took the incident: from now on the automation only reports. ``via`` says
    where, in words; ``source`` ("slack", "api"), when given, is recorded as the event's
    ``via``. ``commander``: who acknowledged it becomes the incident commander (an ack
    from Slack's button, as PagerDuty names who acknowledged there)."""
    if incident.status is not IncidentStatus.OPEN:
        return None
    changes = _Changes(incident, now)
    if source is not None:
        data["via"] = source
    changes.add(EventKind.INCIDENT_ACKNOWLEDGED, f"Acknowledged by {by} {via}", by=by, **data)
    update: dict[str, object] = {"status": IncidentStatus.ACKED, "acked_at": at, "acked_by": by}
    if commander:
        update["commander"] = by
    return changes.done(incident, update=update)


def pause_automation(
    incident: Incident, *, by: str, now: datetime, via: str, **data: JsonValue
) -> IncidentChange | None:
    """A person paused this incident's automation: its steps are refused from now on (the
    pause guard), until resumed. Pausing a paused or resolved incident changes nothing.
    ``via``: where the person pressed it ("slack", "api"), recorded as such."""
    if not incident.is_active or incident.paused_by is not None:
        return None
    changes = _Changes(incident, now)
    changes.add(
        EventKind.AUTOMATION_PAUSED,
        f"Automation paused for this incident by {by} {_VIA.get(via, via)}",
        by=by,
        via=via,
        **data,
    )
    return changes.done(incident, update={"paused_by": by, "paused_at": changes.now})


def resume_automation(
    incident: Incident, *, by: str, now: datetime, via: str, **data: JsonValue
) -> IncidentChange | None:
    """The pause lifted: the automation acts again on what comes next."""
    if not incident.is_active or incident.paused_by is None:
        return None
    changes = _Changes(incident, now)
    changes.add(
        EventKind.AUTOMATION_RESUMED,
        f"Automation resumed for this incident by {by} {_VIA.get(via, via)}",
        by=by,
        via=via,
        paused_by=incident.paused_by,
        **data,
    )
    return changes.done(incident, update={"paused_by": None, "paused_at": None})


def approval_of(incident: Incident, step: str) -> Approval | None:
    return next((a for a in incident.approvals if a.step == step), None)


def _with_approval(incident: Incident, approval: Approval) -> tuple[Approval, ...]:
    kept = tuple(a for a in incident.approvals if a.step != approval.step)
    return (*kept, approval)


def request_approval(
    incident: Incident, approval: Approval, now: datetime, **data: JsonValue
) -> IncidentChange | None:
    """A step waits for a person's approval (once per step: asking again changes nothing)."""
    if not incident.is_active or approval_of(incident, approval.step) is not None:
        return None
    changes = _Changes(incident, now)
    changes.add(
        EventKind.ACTION_APPROVAL_REQUESTED,
        f"Approval needed for {approval.action} on {approval.target}: {approval.change} "
        f"(expires {approval.expires_at:%H:%M:%S} UTC)",
        step=approval.step,
        action=approval.action,
        target=approval.target,
        change=approval.change,
        expires_at=approval.expires_at.isoformat(),
        **data,
    )
    return changes.done(incident, update={"approvals": _with_approval(incident, approval)})


def decide_approval(
    incident: Incident,
    step: str,
    *,
    approve: bool,
    by: str,
    now: datetime,
    via: str,
    **data: JsonValue,
) -> IncidentChange | None:
    """A person's yes or no to a step waiting for approval: the first answer counts (two
    people pressing at once: the one applied first), later ones change nothing, as does an
    answer after the step expired or the incident resolved."""
    approval = approval_of(incident, step)
    if not incident.is_active or approval is None or approval.state != "requested":
        return None
    changes = _Changes(incident, now)
    verb = "approved" if approve else "rejected"
    changes.add(
        EventKind.ACTION_APPROVED if approve else EventKind.ACTION_REJECTED,
        f"{approval.action} on {approval.target} {verb} by {by} {_VIA.get(via, via)}",
        step=step,
        action=approval.action,
        target=approval.target,
        by=by,
        via=via,
        **data,
    )
    decided = approval.model_copy(
        update={
            "state": "approved" if approve else "rejected",
            "decided_by": by,
            "decided_at": changes.now,
            "via": via,
        }
    )
    return changes.done(incident, update={"approvals": _with_approval(incident, decided)})


def expire_approval(incident: Incident, step: str, now: datetime) -> IncidentChange | None:
    """Nobody answered before the deadline: the step does not run (a human is called by
    the stage that records this)."""
    approval = approval_of(incident, step)
    if approval is None or approval.state != "requested" or now < approval.expires_at:
        return None
    changes = _Changes(incident, now)
    changes.add(
        EventKind.ACTION_APPROVAL_EXPIRED,
        f"No one approved {approval.action} on {approval.target} by "
        f"{approval.expires_at:%H:%M:%S} UTC: it does not run",
        step=step,
        action=approval.action,
        target=approval.target,
    )
    expired = approval.model_copy(update={"state": "expired", "decided_at": changes.now})
    return changes.done(incident, update={"approvals": _with_approval(incident, expired)})


def lapse_approvals(incident: Incident, now: datetime) -> IncidentChange | None:
    """The incident resolved while steps still waited for a person's approval: they will
    not run (an answer after resolve changes nothing), and each is marked so, once, so
    that neither the incident page nor the postmortem shows it as still waiting. No human
    is called: the incident is over."""
    waiting = [a for a in incident.approvals if a.state == "requested"]
    if incident.is_active or not waiting:
        return None
    changes = _Changes(incident, now)
    approvals = incident.approvals
    for approval in waiting:
        changes.add(
            EventKind.ACTION_APPROVAL_EXPIRED,
            f"The approval asked for {approval.action} on {approval.target} lapsed: the "
            "incident resolved before anyone answered; it does not run",
            step=approval.step,
            action=approval.action,
            target=approval.target,
            lapsed=True,
        )
        lapsed = approval.model_copy(update={"state": "expired", "decided_at": changes.now})
        approvals = tuple(lapsed if a.step == approval.step else a for a in approvals)
    return changes.done(incident, update={"approvals": approvals})


# how the timeline says where a person's answer came from
_VIA = {"slack": "in Slack", "api": "through the API"}


def new_incident_id(now: datetime) -> str:
    """Time-ordered, unguessable id: ``inc-`` + 12 hex digits of epoch ms + 6 random hex."""
    return f"inc-{epoch_ms(now):012x}{secrets.token_hex(3)}"


class _Changes:
    """Collects the events of one transition and numbers them after the incident's last."""

    def __init__(self, incident: Incident, now: datetime) -> None:
        self.incident = incident
        # A worker's "now" is its batch's start, and replicas' clocks differ a little: an
        # incident's timeline never goes back in time all the same.
        self.now = max(now, incident.updated_at)
        self.events: list[TimelineEvent] = []

    def add(self, kind: EventKind, detail: str, **data: JsonValue) -> None:
        seq = self.incident.events_count + len(self.events)
        self.events.append(
            TimelineEvent(seq=seq, at=self.now, kind=kind, detail=detail, data=dict(data))
        )

    def done(
        self,
        incident: Incident,
        *,
        update: Mapping[str, object] | None = None,
        opened: bool = False,
        alerts: tuple[IncidentAlert, ...] = (),
    ) -> IncidentChange | None:
        """The change: ``incident`` with ``update`` and the new events counted, in one copy
        (a copy of the incident is most of what a transition costs; none without events)."""
        if not self.events:
            return None
        final = incident.model_copy(
            update={
                **(update or {}),
                "events_count": self.incident.events_count + len(self.events),
                "updated_at": self.now,
            }
        )
        return IncidentChange(
            incident=final, events=tuple(self.events), alerts=alerts, opened=opened
        )


def _alert_from(signal: AlertSignal, number: int) -> IncidentAlert:
    return IncidentAlert(
        fingerprint=signal.fingerprint,
        number=number,
        status=signal.status,
        labels=signal.labels,
        annotations=signal.annotations,
        starts_at=signal.starts_at,
        ends_at=signal.ends_at,
        generator_url=signal.generator_url,
    )


def _alert_name(signal: AlertSignal) -> str:
    return signal.labels.get("alertname", signal.fingerprint)


def default_title(signal: AlertSignal) -> str:
    summary = signal.annotations.get("summary")
    name = _alert_name(signal)
    return f"{name}: {summary}" if summary else name


def _pagerduty_keys(signal: AlertSignal, existing: Sequence[str]) -> tuple[str, ...]:
    keys = list(existing)
    candidates = []
    if signal.am_group_key:
        candidates.append(alertmanager_pagerduty_key(signal.am_group_key))
    # An alert may name the PagerDuty incident it belongs to (for example when the app
    # pages PagerDuty itself and Alertmanager only informs us).
    for label in ("pagerduty_incident_key", "incident_key"):
        if signal.labels.get(label):
            candidates.append(signal.labels[label])
    for key in candidates:
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def open_incident(
    *,
    incident_id: str,
    group_key: str,
    signal: AlertSignal,
    now: datetime,
    fired_before: tuple[datetime, ...] = (),
) -> IncidentChange:
    """A firing alert with no open incident in its group opens one. ``fired_before``: when
    the group's alerts fired lately (its incident resolved just before), to tell flapping."""
    base = Incident(
        fired_at=(*fired_before, now)[-MAX_FIRES_KEPT:],
        id=incident_id,
        group_key=group_key,
        title=default_title(signal),
        alerts_total=1,
        alerts_firing=1,
        labels=signal.labels,
        annotations=signal.annotations,
        opened_at=now,
        started_at=signal.starts_at,
        updated_at=now,
        pagerduty_keys=_pagerduty_keys(signal, ()),
        pagerduty_incident_id=signal.labels.get("pagerduty_incident_id") or None,
    )
    changes = _Changes(base, now)
    changes.add(
        EventKind.INCIDENT_OPENED,
        f"Opened by {_alert_name(signal)} firing",
        group_key=group_key,
        fingerprint=signal.fingerprint,
    )
    change = changes.done(base, opened=True, alerts=(_alert_from(signal, 1),))
    assert change is not None
    return change


STORM_GROUP_PREFIX = "storm:"


def storm_group_key(pack: str | None) -> str:
    """The group of a pack's alert storm incident: one active at a time per pack (alerts
    no pack classified share one)."""
    return STORM_GROUP_PREFIX + (pack or "-")


def _storm_title(pack: str | None, cap: int) -> str:
    # fixed: the Slack root is not edited for a title (the alert count it shows grows)
    return (
        f"Alert storm: more than {cap} new incident groups in pack {pack or '(none)'} in a minute"
    )


def open_storm(
    *,
    incident_id: str,
    pack: str | None,
    cap: int,
    group_key: str,
    signal: AlertSignal,
    severity: Severity,
    now: datetime,
) -> IncidentChange:
    """The pack opened ``cap`` incidents within a minute and ``signal`` would open one
    more: it opens the pack's alert storm incident instead, which collects its group and
    those after it. No rule classifies it, so no probe or action is planned for it: a
    human is told, at P2 at least (worse when a collected alert is)."""
    level = severity if severity.worse_than(Severity.P2) else Severity.P2
    base = Incident(
        id=incident_id,
        group_key=storm_group_key(pack),
        title=_storm_title(pack, cap),
        severity=level,
        error_type=ErrorType.UNKNOWN,
        pack=pack,
        storm=True,
        groups=(group_key,),
        alerts_total=1,
        alerts_firing=1,
        opened_at=now,
        started_at=signal.starts_at,
        updated_at=now,
    )
    reason = (
        f"alert storm: pack {pack or '(none)'} opened {cap} incidents within a minute; "
        "further groups are collected here, with no triage or automatic action"
    )
    changes = _Changes(base, now)
    changes.add(
        EventKind.INCIDENT_OPENED,
        f"Opened as the alert storm of pack {pack or '(none)'} by {_alert_name(signal)} firing",
        group_key=base.group_key,
        fingerprint=signal.fingerprint,
    )
    changes.add(
        EventKind.INCIDENT_STORM,
        f"More than {cap} new incident groups in pack {pack or '(none)'} within a minute: "
        "the next ones are collected in this incident",
        pack=pack,
        cap=cap,
        group=group_key,
    )
    changes.add(EventKind.INCIDENT_NEEDS_HUMAN, f"A human is needed: {reason}", reason=reason)
    change = changes.done(
        base, update={"needs_human": reason}, opened=True, alerts=(_alert_from(signal, 1),)
    )
    assert change is not None
    return change


def collect_into_storm(
    storm: Incident,
    current: IncidentAlert | None,
    *,
    group_key: str,
    signal: AlertSignal,
    now: datetime,
) -> IncidentChange | None:
    """One more group beyond the cap joins the pack's active storm incident, which
    answers to it from now on; ``None`` when it is collected already."""
    if group_key in storm.groups or not storm.is_active:
        return None
    groups = (*storm.groups, group_key)
    collected = storm.model_copy(update={"groups": groups})
    changes = _Changes(storm, now)
    changes.add(
        EventKind.STORM_COLLECTED,
        f"Group {len(groups)} collected: {_alert_name(signal)}",
        pack=storm.pack,
        group=group_key,
    )
    first = changes.done(collected)
    assert first is not None
    return combine(first, apply_alert(first.incident, current, signal, now))


def apply_alert(
    incident: Incident, current: IncidentAlert | None, signal: AlertSignal, now: datetime
) -> IncidentChange | None:
    """Join, refire or resolve one alert of an active incident; ``None`` when nothing changes.

    ``current`` is the incident's record of this alert, if it has one.
    """
    changes = _Changes(incident, now)
    name = _alert_name(signal)
    total, firing = incident.alerts_total, incident.alerts_firing
    if signal.status is AlertStatus.FIRING:
        if current is None:
            total, firing = total + 1, firing + 1
            changes.add(
                EventKind.ALERT_JOINED,
                f"{name} firing joined the incident",
                fingerprint=signal.fingerprint,
            )
        elif signal.order_ms > current.order_ms:
            if current.status is AlertStatus.RESOLVED:
                firing += 1
            if incident.flapping_since is not None:
                # one more flap: on the timeline, not news (no triage, no reply)
                changes.add(
                    EventKind.INCIDENT_FLAPPING,
                    f"{name} fired again while flapping",
                    fingerprint=signal.fingerprint,
                    notice=False,
                )
            else:
                changes.add(
                    EventKind.ALERT_REFIRED, f"{name} fired again", fingerprint=signal.fingerprint
                )
        else:
            return None  # the same firing again, or an older one: nothing new
    else:
        if current is None or current.status is AlertStatus.RESOLVED:
            return None
        if signal.order_ms < current.order_ms:
            return None  # resolution of an earlier firing, already superseded
        firing -= 1
        changes.add(EventKind.ALERT_RESOLVED, f"{name} resolved", fingerprint=signal.fingerprint)
    update: dict[str, object] = {
        "alerts_total": total,
        "alerts_firing": firing,
        "pagerduty_keys": _pagerduty_keys(signal, incident.pagerduty_keys),
    }
    if (
        current is not None
        and current.status is AlertStatus.RESOLVED
        and firing > (incident.alerts_firing)
    ):
        # an alert that resolved fires again: a flap (other alerts joining are not)
        update["fired_at"] = (*incident.fired_at, changes.now)[-MAX_FIRES_KEPT:]
    started = signal.starts_at
    if (
        signal.status is AlertStatus.FIRING
        and started is not None
        and (incident.started_at is None or started < incident.started_at)
    ):
        update["started_at"] = started
    if firing == 0 and incident.is_active and incident.flapping_since is None:
        # (while flapping, the quiet period closes it: ``settle_flapping``)
        update |= {"status": IncidentStatus.RESOLVED, "resolved_at": now}
        changes.add(EventKind.INCIDENT_RESOLVED, "All alerts resolved")
    number = current.number if current is not None else total
    return changes.done(incident, update=update, alerts=(_alert_from(signal, number),))


# Enough firing times to tell flapping by any pack's count.
MAX_FIRES_KEPT = 50


def recent_fires(
    fired_at: Sequence[datetime], now: datetime, *, window_s: float
) -> tuple[datetime, ...]:
    return tuple(t for t in fired_at if (now - t).total_seconds() <= window_s)


def note_fire(
    incident: Incident, now: datetime, *, fires: int, window_s: float, quiet_s: float
) -> IncidentChange | None:
    """An active incident whose alerts fired ``fires`` times within ``window_s`` flaps:
    the one notice (``incident.flapping``); ``None`` when it does not, or already did."""
    if not incident.is_active or incident.flapping_since is not None or fires < 2:
        return None
    count = len(recent_fires(incident.fired_at, now, window_s=window_s))
    if count < fires:
        return None
    changes = _Changes(incident, now)
    changes.add(
        EventKind.INCIDENT_FLAPPING,
        f"Fired {count} times within {_minutes(window_s)}; the thread stays quiet "
        f"and no action repeats until it is steady for {_minutes(quiet_s)}",
        fires=count,
        window_s=window_s,
        quiet_s=quiet_s,
        notice=True,
    )
    return changes.done(incident, update={"flapping_since": changes.now})


def reopen_flapping(
    settled: Incident,
    current: IncidentAlert | None,
    signal: AlertSignal,
    now: datetime,
    *,
    fires: int,
    window_s: float,
    quiet_s: float,
) -> IncidentChange | None:
    """A firing that finds its group's incident resolved within the flapping window, and
    makes the count: the incident opens again, flapping, rather than a new one per flap.
    ``None``: not flapping (a new incident opens, ``fired_before`` the settled one's)."""
    if settled.is_active or settled.resolved_at is None or fires < 2:
        return None
    fired = (*recent_fires(settled.fired_at, now, window_s=window_s), now)
    if len(fired) < fires:
        return None
    changes = _Changes(settled, now)
    changes.add(
        EventKind.INCIDENT_FLAPPING,
        f"{_alert_name(signal)} fired {len(fired)} times within "
        f"{_minutes(window_s)}; this incident stays open, the thread quiet and no action "
        f"repeats until it is steady for {_minutes(quiet_s)}",
        fires=len(fired),
        window_s=window_s,
        quiet_s=quiet_s,
        fingerprint=signal.fingerprint,
        notice=True,
    )
    number = current.number if current is not None else settled.alerts_total + 1
    return changes.done(
        settled,
        update={
            "status": IncidentStatus.ACKED if settled.acked_at else IncidentStatus.OPEN,
            "resolved_at": None,
            "flapping_since": changes.now,
            "fired_at": fired[-MAX_FIRES_KEPT:],
            "alerts_firing": settled.alerts_firing + 1,
            "alerts_total": settled.alerts_total + (0 if current is not None else 1),
        },
        alerts=(_alert_from(signal, number),),
    )


def settle_flapping(incident: Incident, now: datetime, *, quiet_s: float) -> IncidentChange | None:
    """No alert fired for ``quiet_s``: the incident is steady again (``incident.steady``),
    and resolved if none of its alerts fires. ``None`` while it is not quiet yet."""
    if incident.flapping_since is None or not incident.is_active:
        return None
    last = max(incident.fired_at, default=incident.flapping_since)
    if (now - last).total_seconds() < quiet_s:
        return None
    changes = _Changes(incident, now)
    changes.add(
        EventKind.INCIDENT_STEADY,
        f"Steady: no flap for {_minutes(quiet_s)}",
        since=last.isoformat(),
    )
    update: dict[str, object] = {"flapping_since": None}
    if incident.alerts_firing == 0:
        update |= {"status": IncidentStatus.RESOLVED, "resolved_at": changes.now}
        changes.add(EventKind.INCIDENT_RESOLVED, "All alerts resolved (steady after flapping)")
    return changes.done(incident, update=update)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def open_from_pagerduty(
    *, incident_id: str, signal: PagerDutySignal, now: datetime
) -> IncidentChange:
    """A PagerDuty incident that matches none of ours becomes an incident of its own."""
    key = signal.incident_key or signal.incident_id or signal.event_id
    priority = signal.priority if signal.priority in Severity.__members__ else None
    base = Incident(
        id=incident_id,
        group_key=f"pagerduty:{key}",
        title=signal.incident_title or f"PagerDuty incident {signal.incident_id}",
        # PagerDuty priorities P1-P4 are our severities; no rule decides for these
        severity=Severity(priority) if priority else None,
        opened_at=now,
        updated_at=now,
        pagerduty_incident_id=signal.incident_id,
        pagerduty_keys=(signal.incident_key,) if signal.incident_key else (),
        pagerduty_url=signal.html_url,
        pagerduty_events=(signal.event_id,),
    )
    changes = _Changes(base, now)
    changes.add(
        EventKind.INCIDENT_OPENED,
        f"Opened by PagerDuty incident {signal.incident_number or signal.incident_id}",
        pagerduty_incident_id=signal.incident_id,
        url=signal.html_url,
    )
    base = _take_command(base, signal, changes)
    change = changes.done(base, opened=True)
    assert change is not None
    return change


def apply_pagerduty(
    incident: Incident, signal: PagerDutySignal, now: datetime
) -> IncidentChange | None:
    """What a PagerDuty event means for an incident we already have."""
    if signal.event_id in incident.pagerduty_events:
        return None  # a redelivered queue entry: applied already
    changes = _Changes(incident, now)
    updated = incident.model_copy(
        update={
            "pagerduty_events": (*incident.pagerduty_events, signal.event_id)[
                -MAX_REMEMBERED_PAGERDUTY_EVENTS:
            ]
        }
    )
    if signal.incident_id and incident.pagerduty_incident_id != signal.incident_id:
        updated = updated.model_copy(
            update={
                "pagerduty_incident_id": signal.incident_id,
                "pagerduty_url": signal.html_url or incident.pagerduty_url,
            }
        )
        changes.add(
            EventKind.PAGERDUTY_LINKED,
            f"Linked to PagerDuty incident {signal.incident_number or signal.incident_id}",
            pagerduty_incident_id=signal.incident_id,
            url=signal.html_url,
        )
    # PagerDuty's own event types (webhook v3), not our timeline's kinds
    event_type = signal.event_type
    if event_type == "incident.acknowledged":
        if updated.status is IncidentStatus.OPEN:
            updated = updated.model_copy(
                update={
                    "status": IncidentStatus.ACKED,
                    "acked_at": signal.occurred_at,
                    "acked_by": signal.agent_name,
                }
            )
            changes.add(
                EventKind.INCIDENT_ACKNOWLEDGED,
                f"Acknowledged by {signal.agent_name} in PagerDuty",
                by=signal.agent_name,
                event_id=signal.event_id,
                via="pagerduty",
            )
    elif event_type == "incident.resolved":
        if updated.is_active:
            updated = updated.model_copy(
                update={"status": IncidentStatus.RESOLVED, "resolved_at": signal.occurred_at}
            )
            changes.add(
                EventKind.INCIDENT_RESOLVED,
                f"Resolved by {signal.agent_name} in PagerDuty",
                by=signal.agent_name,
                event_id=signal.event_id,
            )
    elif event_type == "incident.annotated":
        changes.add(
            EventKind.PAGERDUTY_NOTE,
            f"Note by {signal.agent_name}: {signal.note or ''}",
            by=signal.agent_name,
            note_id=signal.note_id,
            event_id=signal.event_id,
        )
    elif event_type != "incident.triggered" and not (
        event_type in _TOLD_AS_ASSIGNED and _commander_named(signal)
    ):
        changes.add(
            EventKind.PAGERDUTY_EVENT,
            f"PagerDuty {event_type} by {signal.agent_name}",
            event_type=event_type,
            event_id=signal.event_id,
        )
    if event_type == "incident.acknowledged" and incident.status is not IncidentStatus.OPEN:
        # acknowledged here already: whoever took it first keeps it. This is above all
        # the answer to our own REST ack (after a press in Slack), whose agent is
        # responder's PagerDuty user (RESPONDER_PAGERDUTY_FROM): it changes nothing
        return changes.done(updated)
    return changes.done(_take_command(updated, signal, changes))


# PagerDuty events that say no more than who has the incident: told as
# ``pagerduty.assigned`` when they name someone
_TOLD_AS_ASSIGNED = frozenset({"incident.assigned", "incident.reassigned", "incident.delegated"})


def _commander_named(signal: PagerDutySignal) -> str | None:
    """Who has the incident, when the event says: the person who acknowledged it, else
    its assignees (a trigger, reassignment, delegation or escalation)."""
    agent = signal.agent
    person = agent.summary if agent and (agent.type or "").startswith("user") else None
    if signal.event_type == "incident.acknowledged" and person:
        return person
    if signal.event_type in ("incident.resolved", "incident.annotated"):
        return None  # its assignees say nothing of who has it now
    return ", ".join(signal.assignees) or None


def _take_command(incident: Incident, signal: PagerDutySignal, changes: _Changes) -> Incident:
    """The commander PagerDuty names, while the incident is open and when they change."""
    commander = _commander_named(signal)
    if commander is None or commander == incident.commander or not incident.is_active:
        return incident
    changes.add(
        EventKind.PAGERDUTY_ASSIGNED,
        f"Incident commander: {commander} (PagerDuty {signal.event_type})",
        commander=commander,
        event_type=signal.event_type,
        event_id=signal.event_id,
    )
    return incident.model_copy(update={"commander": commander})
