"""The postmortem draft and the evidence bundle of one incident, on demand (API, CLI)
and on resolve (``ReportStage``).

Served evidence (``evidence``) costs no outside call when it can: a resolved incident's
bundle is the file the report stage wrote at resolve; any other is built once and kept a
short while (``BundleCache``: single-flight, a few builds at once, bounded). Packing
(JSON, redaction, gzip, sha256) runs in a thread, so the event loop keeps answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from responder.domain.incident import Incident, IncidentStatus
from responder.domain.severity import Severity
from responder.domain.timeline import EventKind
from responder.ports import IncidentView
from responder.redaction import Redactor
from responder.render.templates import Templates
from responder.report.bundle import ErroringPod, erroring_pods, incident_files, pack, report_stem
from responder.report.bundle_cache import BundleCache
from responder.report.postmortem import Postmortem, build_postmortem, render_postmortem
from responder.rules.engine import RuleSet


class WindowCollector(Protocol):
    """Evidence from outside the responder over the incident's window (pod logs,
    Prometheus ranges), by path inside the bundle."""

    async def collect(
        self, incident: Incident, now: datetime, *, pods: Sequence[ErroringPod] = ()
    ) -> dict[str, bytes]:
        """``pods``: the pods that logged the errors at triage, whose logs to read (else
        the pods the incident's ``pod_logs`` probes select now)."""
        ...


class MessageRecap(Protocol):
    """The messages people got about an incident, as text by where they went (``slack``,
    ``statuspage``): ``notify.recap.Recap``, wired in by ``app``; ``report`` and
    ``notify`` do not import each other."""

    def messages(self, view: IncidentView, now: datetime) -> dict[str, str]: ...


class Reports:
    def __init__(
        self,
        *,
        templates: Templates,
        recap: MessageRecap,
        rules: Callable[[], RuleSet],
        redact: Redactor,
        collector: WindowCollector | None = None,
        directory: Path | None = None,
        cache: BundleCache | None = None,
    ) -> None:
        self._templates = templates  # the postmortem's, with the message templates
        self._recap = recap
        self._rules = rules
        self._redact = redact
        self._collector = collector
        self._directory = directory  # where the report stage writes (RESPONDER_REPORTS_DIR)
        self._cache = cache

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
        return self._redact(render_postmortem(self._templates, self.postmortem(view, now)))

    def messages(self, view: IncidentView, now: datetime) -> dict[str, str]:
        """The messages people got (the Slack root and thread, the status page) as the
        evidence bundle keeps them, redacted as it is: for the incident page."""
        messages = self._recap.messages(view, now)
        return {where: self._redact(text) for where, text in messages.items()}

    async def bundle(self, view: IncidentView, now: datetime) -> bytes:
        """A bundle built now: the window's outside evidence collected, then packed in a
        thread."""
        messages = self._recap.messages(view, now)
        postmortem = render_postmortem(self._templates, self.postmortem(view, now))
        outside: dict[str, bytes] = {}
        if self._collector is not None:
            outside = await self._collector.collect(view.incident, now, pods=erroring_pods(view))

        def packed() -> bytes:
            files = incident_files(view, messages=messages, postmortem=postmortem)
            files.update(outside)
            return pack(files, incident_id=view.incident.id, created_at=now, redact=self._redact)

        return await asyncio.to_thread(packed)

    async def evidence(self, view: IncidentView, now: datetime) -> Path | bytes:
        """The bundle to serve: the file written at resolve (its path) when there is one,
        else a cached build (or a build, without a cache)."""
        if self._directory is not None and view.incident.status is IncidentStatus.RESOLVED:
            written = await asyncio.to_thread(self.written_bundle, view)  # a stat: off the loop
            if written is not None:
                return written
        if self._cache is None:
            return await self.bundle(view, now)
        version = view.timeline[-1].seq if view.timeline else -1
        return await self._cache.get(
            view.incident.id,
            version,
            lambda: self.bundle(view, now),
            expires=view.incident.status is not IncidentStatus.RESOLVED,
        )

    def written_bundle(self, view: IncidentView) -> Path | None:
        """The bundle the report stage wrote at the incident's last resolve, if it is
        resolved and the file is there (the stage writes it whole or not at all)."""
        if self._directory is None or view.incident.status is not IncidentStatus.RESOLVED:
            return None
        resolves = [e.seq for e in view.timeline if e.kind == EventKind.INCIDENT_RESOLVED]
        stem = report_stem(view.incident.id, resolves[-1]) if resolves else None
        if stem is None:
            return None
        path = self._directory / f"{stem}.tar.gz"
        return path if path.is_file() else None
