"""PagerDuty V3 webhooks: signature verification and the event model.

The body always holds one event. ``data`` depends on the event type: an incident object
for ``incident.*`` events, an ``incident_note`` (with the incident as a reference) for
``incident.annotated``; anything else is kept only as far as the signal needs it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from responder.domain.signal import PagerDutyAgent, PagerDutySignal


def signature_valid(raw_body: bytes, header: str, secrets: Iterable[str]) -> bool:
    """True when any ``v1=<hex>`` entry of the header is HMAC-SHA256(secret, raw body).

    During a rotation PagerDuty sends one entry per secret, and we may hold several secrets;
    any pair matching is enough. Every comparison is constant-time. A header that is not
    ASCII (or entries padded with Unicode spaces) verifies nothing: it is never an error.
    """
    if not header.isascii():
        return False
    entries = (part.strip(" \t") for part in header.split(","))
    offered = [entry[3:].lower().encode() for entry in entries if entry.startswith("v1=")]
    if not offered:
        return False
    ok = False
    for secret in secrets:
        want = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest().encode()
        for candidate in offered:
            # no early exit: the time taken does not tell which entry or secret matched
            ok |= hmac.compare_digest(candidate, want)
    return ok


def sign(raw_body: bytes, secret: str) -> str:
    """The ``X-PagerDuty-Signature`` value PagerDuty would send for this body."""
    return "v1=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Reference(_Lenient):
    id: str | None = None
    type: str | None = None
    summary: str | None = None
    html_url: str | None = None


class EventData(_Lenient):
    """Union of the incident object and the incident_note fields we use."""

    id: str | None = None
    type: str | None = None
    number: int | None = None
    title: str | None = None
    status: str | None = None
    incident_key: str | None = None
    html_url: str | None = None
    urgency: str | None = None
    priority: Reference | None = None
    service: Reference | None = None
    assignees: list[Reference] | None = None
    # incident_note
    content: str | None = None
    incident: Reference | None = None


class PagerDutyEvent(_Lenient):
    id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    resource_type: str | None = None
    occurred_at: datetime
    agent: Reference | None = None
    data: EventData | None = None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class PagerDutyWebhook(_Lenient):
    """The body of a PagerDuty V3 webhook delivery."""

    event: PagerDutyEvent

    def signal(self, *, received_at: datetime) -> PagerDutySignal:
        ev = self.event
        data = ev.data or EventData()
        is_note = data.type == "incident_note"
        incident_ref = data.incident if is_note else None
        agent = (
            PagerDutyAgent(id=ev.agent.id, summary=ev.agent.summary, type=ev.agent.type)
            if ev.agent
            else None
        )
        incident_id: str | None
        if is_note:
            incident_id = incident_ref.id if incident_ref else None
        elif ev.event_type.startswith("incident."):
            incident_id = data.id
        else:
            incident_id = None
        return PagerDutySignal(
            event_id=ev.id,
            event_type=ev.event_type,
            occurred_at=ev.occurred_at,
            incident_id=incident_id,
            incident_key=None if is_note else data.incident_key,
            incident_title=None if is_note else data.title,
            incident_status=None if is_note else data.status,
            incident_number=None if is_note else data.number,
            html_url=(incident_ref.html_url if incident_ref else None)
            if is_note
            else data.html_url,
            urgency=data.urgency,
            priority=data.priority.summary if data.priority else None,
            service=data.service.summary if data.service else None,
            agent=agent,
            assignees=()
            if is_note
            else tuple(a.summary for a in data.assignees or () if a.summary),
            note_id=data.id if is_note else None,
            note=data.content if is_note else None,
            received_at=received_at,
        )
