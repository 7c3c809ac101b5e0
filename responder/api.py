"""The bodies the HTTP API answers with; the OpenAPI document is built from them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

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
    """One page of ``GET /v1/incidents``, newest first."""

    incidents: list[IncidentDocument] = Field(
        description="At most `limit` incidents; a page may hold fewer, even none, and "
        "still have a `next_cursor`."
    )
    next_cursor: str | None = Field(
        None,
        description="Pass as `cursor` (with the same filters) for the next page; null when "
        "nothing follows. A position, not an offset: incidents opened meanwhile do not "
        "shift later pages.",
    )


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """``/readyz``: ``ready`` or ``not ready``, what each check found, and which failed."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)


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


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field("admin API", min_length=1, max_length=200)
    reason: str = Field("paused by hand", min_length=1, max_length=1000)


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200, description="Who takes the incident.")


class HumanActRequest(BaseModel):
    """Who pauses or resumes an incident's automation, or approves or rejects one of its
    steps, through the API (as Slack's buttons do)."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200, description="Who acts, as the timeline says.")


class KubeAccessFinding(BaseModel):
    problem: str
    access: str | None = Field(
        None,
        description="The permission, e.g. patch "
        "deployments.apps web in production; none: the check's own.",
    )


class KubeAccess(BaseModel):
    """The start-up check of what the allowlist needs of Kubernetes."""

    checked_at: datetime | None = Field(None, description="None: not made (yet), see skipped.")
    checked: int = Field(description="Permissions asked (SelfSubjectAccessReview).")
    missing: list[KubeAccessFinding] = Field(description="Not granted, or not asked.")
    skipped: str | None = None


class Automation(BaseModel):
    paused: bool
    paused_by: str | None = None
    paused_reason: str | None = None
    paused_at: datetime | None = None
    allowlist: list[str]
    budget: int
    budget_used: int
    budget_window_s: float
    cooldown_s: float
    dry_run_forced: bool
    kube_access: KubeAccess
