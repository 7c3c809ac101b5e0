"""The record of an automatic action on an incident (filled by the mitigation stage)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, JsonValue

from responder.domain.model import Frozen


class ActionRecord(Frozen):
    action: str
    target: str
    verdict: str
    reason: str
    at: datetime
    before: dict[str, JsonValue] = Field(default_factory=dict)
    after: dict[str, JsonValue] = Field(default_factory=dict)
