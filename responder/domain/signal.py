"""Signals: one observation from outside (an alert's state, a PagerDuty event).

A webhook carries one or more signals. Each has a dedupe key and a status; the store's
``observe`` compares them with what it saw before and queues only what is new or changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from responder.domain.model import Frozen, to_json


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class ObserveOutcome(StrEnum):
    """What the store made of one signal."""

    NEW = "new"  # first time seen: queued
    CHANGED = "changed"  # status flipped or the alert fired anew: queued
    REPEAT = "repeat"  # same as last time (or stale): counters only, nothing queued


def dedupe_outcome(
    *, previous: tuple[str, int] | None, status: str, order_ms: int
) -> ObserveOutcome:
    """Compare a signal with the last one seen under its dedupe key.

    ``previous`` is ``(status, order_ms)`` of the last recorded signal. ``order_ms`` tells
    occurrences apart (an alert's ``startsAt``): a firing with a later ``startsAt`` is a new
    firing; a status belonging to an older occurrence is stale and counts as a repeat, so
    a late retry cannot reopen what was resolved. The Redis adapter runs the same decision
    in Lua (``observe.lua``); the contract tests hold both to it.
    """
    if previous is None:
        return ObserveOutcome.NEW
    prev_status, prev_order = previous
    if prev_status == status:
        if status == AlertStatus.FIRING and order_ms > prev_order:
            return ObserveOutcome.CHANGED
        return ObserveOutcome.REPEAT
    if order_ms < prev_order:
        return ObserveOutcome.REPEAT
    if status == AlertStatus.FIRING and order_ms == prev_order:
        return ObserveOutcome.REPEAT  # a late copy of a firing that was since resolved
    return ObserveOutcome.CHANGED


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex fingerprint of a label set, for payloads that carry none."""
    canon = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def alertmanager_dedupe_key(fingerprint: str) -> str:
    return "alertmanager:" + fingerprint


def occurrence_ms(starts_at: datetime | None) -> int:
    """Which occurrence of an alert this is: a new ``startsAt`` is a new firing.

    An alert without ``startsAt`` counts as one occurrence (0) for as long as its dedupe
    record lives.
    """
    return epoch_ms(starts_at) if starts_at is not None else 0


class AlertSignal(Frozen):
    """One alert of an Alertmanager notification, at the moment it was received."""

    source: Literal["alertmanager"] = "alertmanager"
    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""
    am_group_key: str = ""
    receiver: str = ""
    external_url: str = ""
    received_at: datetime

    @property
    def dedupe_key(self) -> str:
        return alertmanager_dedupe_key(self.fingerprint)

    @property
    def dedupe_status(self) -> str:
        return self.status.value

    @property
    def order_ms(self) -> int:
        return occurrence_ms(self.starts_at)


class PagerDutyAgent(Frozen):
    id: str | None = None
    summary: str | None = None
    type: str | None = None


class PagerDutySignal(Frozen):
    """One PagerDuty V3 webhook event, reduced to what incidents need."""

    source: Literal["pagerduty"] = "pagerduty"
    event_id: str
    event_type: str
    occurred_at: datetime
    incident_id: str | None = None
    incident_key: str | None = None
    incident_title: str | None = None
    incident_status: str | None = None
    incident_number: int | None = None
    html_url: str | None = None
    urgency: str | None = None
    priority: str | None = None
    service: str | None = None
    agent: PagerDutyAgent | None = None
    # who PagerDuty has the incident assigned to (their names), as the event says
    assignees: tuple[str, ...] = ()
    note_id: str | None = None
    note: str | None = None
    received_at: datetime

    @property
    def dedupe_key(self) -> str:
        return f"pagerduty:{self.event_id}"

    @property
    def dedupe_status(self) -> str:
        return self.event_type

    @property
    def order_ms(self) -> int:
        return epoch_ms(self.occurred_at)

    @property
    def agent_name(self) -> str:
        if self.agent is None:
            return "PagerDuty automation"
        return self.agent.summary or self.agent.id or "unknown user"


class TimerSignal(Frozen):
    """Work the service itself scheduled for later, put on the queue when due: an action's
    verification after its settle time (``verify``), the follow-up of an incident whose
    worker died before following it up (``follow_up``, queued by the store's check),
    another try at telling a notification sink (``deliver``: ``step`` names the sink), the
    check before undoing an action once the vendor's incident is over (``revert_check``:
    ``step`` is the action's step, ``@``, the vendor event's number and the check's), the
    watchers' rounds (``vendor_watch``, ``update_due``, ``ack_due``: ``step`` numbers the
    round of the incident's one chain, see ``responder.watch``), the end of a flapping
    incident's quiet period (``flap_quiet``), and the evidence bundle written again once
    its window (30 minutes after resolve) has passed (``evidence``: ``step`` is
    ``report:<resolve seq>``), and the deadline of a step waiting for a person's approval
    (``approval_expiry``: ``step`` is the action's step)."""

    source: Literal["timer"] = "timer"
    kind: Literal[
        "verify",
        "follow_up",
        "deliver",
        "revert_check",
        "vendor_watch",
        "update_due",
        "ack_due",
        "flap_quiet",
        "evidence",
        "approval_expiry",
    ]
    incident_id: str
    step: str
    due_at: datetime
    received_at: datetime

    @property
    def dedupe_key(self) -> str:
        return f"timer:{self.incident_id}:{self.step}:{self.kind}"

    @classmethod
    def follow_up_now(cls, incident_id: str, step: str, now: datetime) -> TimerSignal:
        """Follow the incident up on a worker at once (as the store's check does)."""
        return cls(
            kind="follow_up", incident_id=incident_id, step=step, due_at=now, received_at=now
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """A signal as intake hands it to the store: what dedupe compares (key, status and
    occurrence), the queue payload (the signal's JSON as the workers will read it), and
    its ordering key: the signals queued under one key take effect in the order they were
    queued (an alert's incident group; a PagerDuty incident). ``None``: no order."""

    dedupe_key: str
    dedupe_status: str
    order_ms: int
    payload: bytes
    order_key: str | None = None

    @classmethod
    def of(cls, signal: AlertSignal | PagerDutySignal, order_key: str | None = None) -> Observation:
        if order_key is None and isinstance(signal, PagerDutySignal):
            order_key = pagerduty_order_key(signal)
        return cls(
            signal.dedupe_key, signal.dedupe_status, signal.order_ms, to_json(signal), order_key
        )


def pagerduty_order_key(signal: PagerDutySignal) -> str:
    """The events of one PagerDuty incident take effect in the order they came."""
    return "pagerduty:" + (signal.incident_id or signal.incident_key or signal.event_id)


class _PersonsAct(Frozen):
    """What a person asks of one incident (an ack through the API, a Slack button):
    queued under the incident's own order key, so two requests take effect in the order
    they came, each request its own signal (``request_id``: the acts are idempotent)."""

    incident_id: str
    by: str
    request_id: str
    received_at: datetime

    @property
    def dedupe_key(self) -> str:
        raise NotImplementedError

    @property
    def dedupe_status(self) -> str:
        raise NotImplementedError

    @property
    def order_ms(self) -> int:
        return int(self.received_at.timestamp() * 1000)

    def observation(self) -> Observation:
        """As the store queues it: under the incident's own order key."""
        return Observation(
            self.dedupe_key,
            self.dedupe_status,
            self.order_ms,
            to_json(self),
            f"incident:{self.incident_id}",
        )


class AckSignal(_PersonsAct):
    """A human took an incident through the API (``POST /v1/incidents/{id}/ack``): queued
    like a PagerDuty acknowledgement, and applied and followed up by a worker like it."""

    source: Literal["api"] = "api"

    @property
    def dedupe_key(self) -> str:
        return f"api:ack:{self.incident_id}:{self.request_id}"

    @property
    def dedupe_status(self) -> str:
        return "acknowledged"


# What a person can do to one incident from Slack's buttons (or the admin API): take it,
# pause or resume its automation, approve or reject a step waiting for approval.
HumanAct = Literal["acknowledge", "pause", "resume", "approve", "reject"]


class HumanSignal(_PersonsAct):
    """A person pressed a button of an incident's Slack messages (or asked the admin API):
    applied once by a worker (the transitions are idempotent: a second press, a replay or
    a second replica changes nothing), and followed up like every event; presses take
    effect in the order they came. ``step`` names the step an approval is for. ``by`` is
    the person as shown on the timeline; ``user_id`` their Slack id, when the press came
    from Slack."""

    source: Literal["human"] = "human"
    act: HumanAct
    step: str | None = None
    user_id: str | None = None
    via: Literal["slack", "api"]

    @property
    def dedupe_key(self) -> str:
        return f"human:{self.act}:{self.incident_id}:{self.request_id}"

    @property
    def dedupe_status(self) -> str:
        return self.act


QueuedSignal = AlertSignal | PagerDutySignal | TimerSignal | AckSignal | HumanSignal
Signal = Annotated[QueuedSignal, Field(discriminator="source")]
SIGNAL_ADAPTER: TypeAdapter[QueuedSignal] = TypeAdapter(Signal)


def group_key_for(labels: dict[str, str], group_by: tuple[str, ...]) -> str:
    """The incident group of an alert, written as Alertmanager writes group labels.

    A label missing from the alert groups as empty, as in Alertmanager's ``group_by``.
    """
    parts = ",".join(f'{name}="{labels.get(name, "")}"' for name in group_by)
    return "{" + parts + "}"


def alertmanager_pagerduty_key(am_group_key: str) -> str:
    """The PagerDuty ``incident_key`` Alertmanager's pagerduty receiver uses for a group.

    Alertmanager sends ``sha256(groupKey)`` as the Events API dedup_key, so a PagerDuty
    incident raised by Alertmanager can be linked to the incident of the same group here.
    """
    return hashlib.sha256(am_group_key.encode()).hexdigest()
