"""The bodies the HTTP API answers with; the OpenAPI document is built from them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from responder.domain.incident import Incident, IncidentAlert
from responder.domain.timeline import TimelineEvent
from responder.ports import IncidentView


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in a few words.")
    detail: str = Field("", description="What exactly, and what to do about it.")
    field: str | None = Field(None, description="The offending payload field, when one is.")


class IntakeResult(BaseModel):
    accepted: int = Field(description="Signals seen for the first time, now queued.")
    changed: int = Field(description="Signals whose status changed (or that fired anew), queued.")
    repeated: int = Field(description="Repeats of a known status: counted, not queued.")
    truncated_alerts: int = Field(0, description="Alerts Alertmanager cut (max_alerts).")


class IncidentDocument(Incident):
    """An incident with its alerts and timeline, as ``GET /v1/incidents/{id}`` shows it."""

    alerts: tuple[IncidentAlert, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()

    @classmethod
    def of(cls, view: IncidentView) -> IncidentDocument:
        return cls(**dict(view.incident), alerts=view.alerts, timeline=view.timeline)


class IncidentList(BaseModel):
    incidents: list[IncidentDocument]


class Health(BaseModel):
    status: str


class PackInfo(BaseModel):
    name: str
    version: str
    source: str
    rules: list[str]


class RulesInForce(BaseModel):
    packs: list[PackInfo]


class ReloadOutcome(BaseModel):
    ok: bool = Field(description="True when the new rules are in force.")
    packs: list[PackInfo] = Field(description="The packs in force after the reload.")
    problems: list[str] = Field(
        default_factory=list, description="Why the reload was refused (file:line: rule: ...)."
    )
