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
from dataclasses import dataclass
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
from responder.report.graph import Graph, branch_conditions, graph_from_files, graph_svg
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


@dataclass(frozen=True)
class WrittenReport:
    """What the report stage writes for one resolve: the draft (its graph ``<stem>.svg``
    beside it), the bundle, and the graph (``None``: none, ``graph_note`` says why)."""

    draft: str
    bundle: bytes
    graph: Graph | None
    graph_note: str


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
        public_url: str | None = None,
    ) -> None:
        self._templates = templates  # the postmortem's, with the message templates
        self._recap = recap
        self._rules = rules
        self._redact = redact
        self._collector = collector
        self._directory = directory  # where the report stage writes (RESPONDER_REPORTS_DIR)
        self._cache = cache
        # where the incident page is (its graph), for the postmortem served by the API
        self._public_url = public_url.rstrip("/") if public_url else None

    def postmortem(
        self,
        view: IncidentView,
        now: datetime,
        *,
        graph: str | None = None,
        graph_note: str | None = None,
    ) -> Postmortem:
        """``graph``: the graph's image relative to the draft; without one, ``graph_note``
        says where it is (by default: the incident page, or the files written at resolve)."""
        incident = view.incident
        rules = self._rules()
        level = rules.severity_level(incident.pack, incident.severity or Severity.P3)
        public = rules.public(incident.pack)
        branch = rules.rule(incident.pack, incident.branch)
        if graph_note is None:
            graph_note = (
                f"The error-rate graph: {self._public_url}/incidents/{incident.id}"
                if self._public_url
                else "The error-rate graph is in the evidence bundle (`graph.svg`) and, once "
                "resolved, beside the draft written then (`<incident>-<seq>.svg`)."
            )
        drafted = build_postmortem(
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
        return drafted.model_copy(update={"graph": graph, "graph_note": graph_note})

    def postmortem_text(
        self,
        view: IncidentView,
        now: datetime,
        *,
        graph: str | None = None,
        graph_note: str | None = None,
    ) -> str:
        # a postmortem is shared widely: the same redaction as the bundle
        drafted = self.postmortem(view, now, graph=graph, graph_note=graph_note)
        return self._redact(render_postmortem(self._templates, drafted))

    def messages(self, view: IncidentView, now: datetime) -> dict[str, str]:
        """The messages people got (the Slack root and thread, the status page) as the
        evidence bundle keeps them, redacted as it is: for the incident page."""
        messages = self._recap.messages(view, now)
        return {where: self._redact(text) for where, text in messages.items()}

    async def bundle(self, view: IncidentView, now: datetime) -> bytes:
        """A bundle built now: the window's outside evidence collected, then packed in a
        thread."""
        return (await self.report(view, now, stem=None)).bundle

    async def report(self, view: IncidentView, now: datetime, *, stem: str | None) -> WrittenReport:
        """The bundle, and the draft whose graph is ``<stem>.svg`` beside it (``stem``:
        the name the report stage writes it under), with the error-rate graph drawn from
        the range data the bundle collected (no query of its own)."""
        messages = self._recap.messages(view, now)
        outside: dict[str, bytes] = {}
        if self._collector is not None:
            outside = await self._collector.collect(view.incident, now, pods=erroring_pods(view))
        graph, note = graph_from_files(
            view, outside, conditions=branch_conditions(self._rules(), view.incident)
        )
        if graph is not None:
            graph = graph.texts_mapped(self._redact)
        # the bundle's postmortem.md shows graph.svg beside it in the bundle
        in_bundle = render_postmortem(
            self._templates,
            self.postmortem(view, now, graph="graph.svg" if graph else None, graph_note=note),
        )
        draft = self.postmortem_text(
            view,
            now,
            graph=f"{stem}.svg" if graph is not None and stem is not None else None,
            graph_note=note,
        )

        def packed() -> bytes:
            files = incident_files(view, messages=messages, postmortem=in_bundle)
            files.update(outside)
            if graph is not None:
                files["graph.svg"] = graph_svg(graph).encode()
            return pack(files, incident_id=view.incident.id, created_at=now, redact=self._redact)

        return WrittenReport(
            draft=draft, bundle=await asyncio.to_thread(packed), graph=graph, graph_note=note
        )

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
