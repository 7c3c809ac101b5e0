"""Timeline events: the incident's story, one line per step, in order."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, JsonValue

from responder.domain.model import Frozen


class TimelineEvent(Frozen):
    """One step of an incident's life.

    ``seq`` numbers the events of one incident from 0 with no gaps; later stages use
    ``(incident id, seq)`` as the idempotency key of whatever the event triggers.
    """

    seq: int
    at: datetime
    kind: str
    detail: str
    data: dict[str, JsonValue] = Field(default_factory=dict)
