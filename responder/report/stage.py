"""On resolve, write the postmortem draft and the evidence bundle, once; and once more
when the evidence window (30 minutes after resolve) has passed (an ``evidence`` timer).

Runs after the mitigation stage, so the reverts made on resolve are in both. The files go
to ``RESPONDER_REPORTS_DIR`` as ``<incident>-<seq>.md`` and ``<incident>-<seq>.tar.gz``
(``seq``: the resolve's event, so an incident that fires again and resolves again gets a
second pair); the API serves that bundle as it is, with no outside call. Writing is
claimed in the action ledger like every side effect, so one worker of one replica writes
and records it; a worker that died half-way leaves the claim to the next, which finds the
``report.written`` event if it was recorded and otherwise writes the same files again
(overwriting is harmless).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from pydantic import JsonValue

from responder.domain.incident import IncidentChange, record_report
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.ports import (
    Clock,
    DurableTimers,
    EffectLedger,
    IncidentState,
    IncidentView,
    StageResult,
    Store,
)
from responder.report.bundle import EVIDENCE_WINDOW, report_stem
from responder.report.graph import graph_png, graph_query, graph_svg
from responder.report.reports import Reports, WrittenReport

log = structlog.get_logger("responder.report")


def _write(directory: Path, stem: str, report: WrittenReport) -> dict[str, Path]:
    """The files of one report, each written whole: the draft, the bundle, and the graph
    beside the draft (the SVG it shows; the PNG for Slack's thread, drawn here, off the
    event loop, from the same data)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "postmortem": (directory / f"{stem}.md", report.draft.encode()),
        "evidence": (directory / f"{stem}.tar.gz", report.bundle),
    }
    if report.graph is not None:
        files["graph"] = (directory / f"{stem}.svg", graph_svg(report.graph).encode())
        files["graph_png"] = (directory / f"{stem}.png", graph_png(report.graph))
    for path, data in files.values():
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # readers never see half a file
    return {name: path for name, (path, _) in files.items()}


class ReportStage:
    # it reads the incident from the store: the reverts the mitigation stage made on resolve
    # in the same round must be written first, to be in the draft and the bundle
    reads_store = True

    def __init__(
        self,
        *,
        store: Store,
        ledger: EffectLedger,
        clock: Clock,
        reports: Reports,
        directory: Path | None,
        public_url: str | None,
        owner: str,
        lease_s: float,
        timers: DurableTimers | None = None,
    ) -> None:
        """``timers``: where the bundle's rewrite at the window's end is scheduled
        (``None``: the bundle written at resolve stays as it is)."""
        self._timers = timers
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._reports = reports
        self._directory = directory
        self._public_url = public_url.rstrip("/") if public_url else None
        self._owner = owner
        self._lease_s = lease_s

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        if self._directory is None:
            return None
        resolved = [e for e in change.events if e.kind == EventKind.INCIDENT_RESOLVED]
        if not resolved:
            return None
        incident_id = change.incident.id
        seq = resolved[-1].seq
        key = f"{incident_id}:report:{seq}"
        claim = await self._ledger.claim_effect(key, owner=self._owner, lease_s=self._lease_s)
        if claim.status in ("done", "busy"):
            return None
        view = await self._store.get_incident(incident_id)
        if view is None:
            return None
        if any(
            e.kind in (EventKind.REPORT_WRITTEN, EventKind.REPORT_FAILED)
            and e.data.get("resolved_seq") == seq
            for e in view.timeline
        ):
            await self._ledger.finish_effect(key, data={"recovered": True})
            return None
        now = self._clock.now()
        kind, detail, data = await self._write(view, seq, now, directory=self._directory)
        resolved_at = view.incident.resolved_at or now

        def mutate(state: IncidentState) -> IncidentChange | None:
            if state.incident is None:
                return None
            return record_report(state.incident, now, kind=kind, detail=detail, **data)

        async def finish() -> None:
            # only once the event is written: a crash before leaves the claim unfinished,
            # and the next worker writes and records the report again
            await self._ledger.finish_effect(key, data=data)
            if kind == EventKind.REPORT_WRITTEN and self._timers is not None:
                # the metrics of the 30 minutes after resolve are not there yet: the
                # bundle is written again when they are (``window_ended``)
                await self._timers.schedule(
                    TimerSignal(
                        kind="evidence",
                        incident_id=incident_id,
                        step=f"report:{seq}",
                        due_at=resolved_at + EVIDENCE_WINDOW,
                        received_at=now,
                    )
                )

        return StageResult(mutators=(mutate,), after_write=(finish,))

    async def _write(
        self, view: IncidentView, seq: int, now: datetime, *, directory: Path
    ) -> tuple[EventKind, str, dict[str, JsonValue]]:
        """Write the draft and the bundle of the resolve ``seq``: what to record."""
        incident_id = view.incident.id
        stem = report_stem(incident_id, seq)
        data: dict[str, JsonValue] = {"resolved_seq": seq}
        try:
            if stem is None:
                raise ValueError("the incident id cannot name a file")
            report = await self._reports.report(view, now, stem=stem)
            written = await asyncio.to_thread(_write, directory, stem, report)
        except Exception as exc:  # noqa: BLE001 - said on the timeline, never retried forever
            log.warning("report not written", error=str(exc))
            return (
                EventKind.REPORT_FAILED,
                f"Postmortem draft and evidence bundle not written: {exc}"[:500],
                data,
            )
        draft, evidence = written["postmortem"], written["evidence"]
        data |= {name: str(path) for name, path in written.items()}
        if report.graph is None:
            data["graph_note"] = report.graph_note
        if self._public_url:
            # where the graph is shown when the Slack bot may not upload it
            data["page"] = f"{self._public_url}/incidents/{incident_id}"
        link = (
            f"{self._public_url}/v1/incidents/{incident_id}/postmortem"
            if self._public_url
            else str(draft)
        )
        data["link"] = link
        detail = f"Postmortem draft: {link} (evidence bundle: {evidence.name})"
        if report.graph is None and graph_query(view.incident) is not None:
            # the thread, where the graph would have gone, says why it did not
            detail += f". {report.graph_note}"
        return EventKind.REPORT_WRITTEN, detail, data

    async def window_ended(self, timer: TimerSignal) -> StageResult | None:
        """The ``evidence`` timer: the window after a resolve has passed, so the bundle
        (and the draft) of that resolve are written again, their metrics now reaching 30
        minutes after it, as README promises. Once, across replicas (claimed); skipped
        when the incident fired again since (its next resolve writes its own)."""
        if self._directory is None or not timer.step.startswith("report:"):
            return None
        seq = int(timer.step.split(":", 1)[1])
        key = f"{timer.incident_id}:report-window:{seq}"
        claim = await self._ledger.claim_effect(key, owner=self._owner, lease_s=self._lease_s)
        if claim.status in ("done", "busy"):
            return None
        view = await self._store.get_incident(timer.incident_id)
        resolves = (
            [e.seq for e in view.timeline if e.kind == EventKind.INCIDENT_RESOLVED] if view else []
        )
        if (
            view is None
            or view.incident.is_active
            or not resolves
            or resolves[-1] != seq
            or any(
                e.kind == EventKind.REPORT_WRITTEN
                and e.data.get("resolved_seq") == seq
                and e.data.get("window_complete")
                for e in view.timeline
            )
        ):
            await self._ledger.finish_effect(key, data={"skipped": True})
            return None
        now = self._clock.now()
        kind, detail, data = await self._write(view, seq, now, directory=self._directory)
        if kind == EventKind.REPORT_WRITTEN:
            data["window_complete"] = True
            detail = f"{detail}, written again with the {_minutes(EVIDENCE_WINDOW)} after resolve"

        def mutate(state: IncidentState) -> IncidentChange | None:
            if state.incident is None:
                return None
            return record_report(state.incident, now, kind=kind, detail=detail, **data)

        async def finish() -> None:
            await self._ledger.finish_effect(key, data=data)

        return StageResult(mutators=(mutate,), after_write=(finish,))


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} minutes"
