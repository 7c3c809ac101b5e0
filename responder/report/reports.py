"""The postmortem draft and the evidence bundle of one incident, on demand (API, CLI)
and on resolve (``ReportStage``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from responder.domain.incident import Incident
from responder.domain.notification import DeliveryState
from responder.domain.severity import Severity
from responder.notify.planners import (
    STATUSPAGE_BODY,
    STATUSPAGE_NAME,
    Renderer,
    SlackPlanner,
)
from responder.ports import IncidentView
from responder.redaction import Redactor
from responder.report.bundle import incident_files, pack
from responder.report.postmortem import Postmortem, build_postmortem, render_postmortem
from responder.rules.engine import RuleSet


class WindowCollector(Protocol):
    """Evidence from outside the responder over the incident's window (pod logs,
    Prometheus ranges), by path inside the bundle."""

    async def collect(self, incident: Incident, now: datetime) -> dict[str, bytes]: ...


class Reports:
    def __init__(
        self,
        *,
        renderer: Renderer,
        rules: Callable[[], RuleSet],
        redact: Redactor,
        collector: WindowCollector | None = None,
    ) -> None:
        self._renderer = renderer
        self._rules = rules
        self._redact = redact
        self._collector = collector

    def postmortem(self, view: IncidentView, now: datetime) -> Postmortem:
        incident = view.incident
        rules = self._rules()
        level = rules.severity_level(incident.pack, incident.severity or Severity.P3)
        public = rules.public(incident.pack)
        branch = rules.rule(incident.pack, incident.branch)
        return build_postmortem(
            incident,
            view.timeline,
            service=public.name,
            impact=public.impact_of(incident.error_type.value if incident.error_type else None),
            branch_description=branch.spec.description if branch is not None else None,
            severity_definition=level.definition,
            response_time=level.response_time,
            response_time_s=level.respond_within_s,
            now=now,
        )

    def postmortem_text(self, view: IncidentView, now: datetime) -> str:
        # a postmortem is shared widely: the same redaction as the bundle
        return self._redact(render_postmortem(self._renderer.templates, self.postmortem(view, now)))

    def messages(self, view: IncidentView, now: datetime) -> dict[str, str]:
        """The messages as people got them: the Slack root and thread, the status page."""
        incident = view.incident
        slack = SlackPlanner(renderer=self._renderer)
        thread = slack.plan(incident, view.timeline, DeliveryState(), now)
        status_page = "\n\n".join(
            (
                self._renderer.public(STATUSPAGE_NAME, incident, now).strip(),
                self._renderer.public(STATUSPAGE_BODY, incident, now).strip(),
            )
        )
        return {
            "slack": "\n\n---\n\n".join(m.text for m in thread),
            "statuspage": status_page,
        }

    async def bundle(self, view: IncidentView, now: datetime) -> bytes:
        files = incident_files(
            view,
            messages=self.messages(view, now),
            postmortem=render_postmortem(self._renderer.templates, self.postmortem(view, now)),
        )
        if self._collector is not None:
            files.update(await self._collector.collect(view.incident, now))
        return pack(files, incident_id=view.incident.id, created_at=now, redact=self._redact)
