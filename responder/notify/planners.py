"""Planners: from an incident, its new timeline events and what a sink already shows, the
messages that sink must get, in order. Pure: no I/O, the same input plans the same steps,
which is what makes a redelivery find its messages already sent.

- Slack: one root message (the runbook's internal template), one thread reply per event
  worth telling, and an edit of the root when the status, the severity or the commander
  changes. Incoming-webhook mode has neither threads nor edits: replies and status changes
  are messages of their own.
- Status page: an incident for the severities configured (or a rule naming
  ``statuspage``), from the external template; updated on status and severity changes,
  resolved with its components operational.
- PagerDuty: notes on the linked PagerDuty incident (triage, each action, the handoff when
  a human acknowledges), and an Events API trigger/resolve when a rule says ``page``.
- Console: every event as a line, and the root message, as Slack would get it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import JsonValue

from responder.domain.incident import Incident
from responder.domain.notification import (
    DeliveryState,
    Outbound,
    comms_status,
    page_dedup_key,
    statuspage_status,
)
from responder.domain.severity import Severity
from responder.domain.timeline import EventKind, TimelineEvent
from responder.notify.context import internal_context, public_context
from responder.render.templates import Templates
from responder.rules.engine import RuleSet

SLACK_ROOT = "slack_root.mrkdwn.j2"
SLACK_EVENT = "slack_event.mrkdwn.j2"
STATUSPAGE_NAME = "statuspage_name.txt.j2"
STATUSPAGE_BODY = "statuspage_body.txt.j2"
PAGERDUTY_NOTE = "pagerduty_note.txt.j2"
PAGERDUTY_SUMMARY = "pagerduty_summary.txt.j2"
TEMPLATE_NAMES = (
    SLACK_ROOT,
    SLACK_EVENT,
    STATUSPAGE_NAME,
    STATUSPAGE_BODY,
    PAGERDUTY_NOTE,
    PAGERDUTY_SUMMARY,
)

# Events told in the Slack thread. Alert joins and resolves are not (an alert storm would
# flood the thread): the root message counts the alerts instead.
SLACK_REPLY_KINDS = frozenset(
    {
        EventKind.TRIAGE_COMPLETED,
        EventKind.INCIDENT_DECIDED,
        EventKind.INCIDENT_UNDECIDED,
        EventKind.INCIDENT_ESCALATED,
        EventKind.INCIDENT_NEEDS_HUMAN,
        EventKind.INCIDENT_ACKNOWLEDGED,
        EventKind.INCIDENT_RESOLVED,
        EventKind.INCIDENT_PAGE_REQUESTED,
        EventKind.PAGERDUTY_LINKED,
        EventKind.PAGERDUTY_NOTE,
        EventKind.REPORT_WRITTEN,
        EventKind.REPORT_FAILED,
        EventKind.NOTIFICATION_ADOPTED,
        # watching and reminding (responder/watch/)
        EventKind.VENDOR_STATUS_CHANGED,
        EventKind.VENDOR_RESOLVED,
        EventKind.UPDATE_DUE,
        EventKind.ACK_OVERDUE,
        # flapping: the notice (not each flap, see ``tells``) and the end of it
        EventKind.INCIDENT_FLAPPING,
        EventKind.INCIDENT_STEADY,
    }
)
# Action events kept off the thread and PagerDuty notes: a verification dropped because the
# incident resolved (or its action was undone) would land below the postmortem, for nothing.
_UNTOLD_ACTION_KINDS = frozenset({EventKind.ACTION_VERIFY_DROPPED})
# Another sink's trouble is worth a line in the thread (never the sink's own: a reply
# about Slack failing could only fail in turn).
_NOTIFICATION_TROUBLE = frozenset({EventKind.NOTIFICATION_DELAYED, EventKind.NOTIFICATION_FAILED})

SECTION_MAX = 3000  # Block Kit section text limit
TEXT_MAX = 39_000  # chat.postMessage text limit is 40,000

PAGERDUTY_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
STATUSPAGE_IMPACT = {"P1": "critical", "P2": "major", "P3": "minor", "P4": "minor"}


class Planner(Protocol):
    sink: str

    def plan(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        now: datetime,
    ) -> list[Outbound]: ...


@dataclass
class Renderer:
    """Renders the named templates with the contexts of ``notify.context``."""

    templates: Templates
    rules: Callable[[], RuleSet] = RuleSet
    commander: str | None = None
    # the update cadence promised by severity (the root's "Next update")
    update_intervals_s: Mapping[str, float] = field(default_factory=dict)

    def internal(
        self,
        name: str,
        incident: Incident,
        now: datetime,
        *,
        event: TimelineEvent | None = None,
        note: str | None = None,
    ) -> str:
        return self.templates.get(name).render(self.internal_context(incident, now, event, note))

    def internal_context(
        self,
        incident: Incident,
        now: datetime,
        event: TimelineEvent | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        level = self.rules().severity_level(incident.pack, incident.severity or Severity.P3)
        return internal_context(
            incident,
            level=level,
            now=now,
            commander=self.commander,
            event=event,
            note=note,
            update_every_s=self.update_intervals_s.get(
                incident.severity.value if incident.severity else ""
            ),
        )

    def public(self, name: str, incident: Incident, now: datetime) -> str:
        context = public_context(incident, self.rules().public(incident.pack), now=now)
        return self.templates.get(name).render(context)


def _section(text: str) -> dict[str, JsonValue]:
    if len(text) > SECTION_MAX:
        text = text[: SECTION_MAX - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _safe_link(url: str | None, label: str) -> str:
    """A link built by us, from a URL we trust the shape of; nothing else becomes one."""
    if not url or not url.startswith("https://") or any(c in url for c in "<>| \n"):
        return ""
    return f"<{url}|{label}>"


@dataclass
class SlackPlanner:
    """``threads``/``edits``: what the Slack mode can do (the Web API both, an incoming
    webhook neither). ``channels``: by severity; else the rule's ``slack:`` target; else
    ``default_channel``."""

    renderer: Renderer
    sink: str = "slack"
    threads: bool = True
    edits: bool = True
    channels: Mapping[str, str] = field(default_factory=dict)
    default_channel: str = "#incidents"
    every_event: bool = False  # the console: every event, as a line

    def channel_for(self, incident: Incident) -> str:
        by_severity = self.channels.get(incident.severity.value if incident.severity else "")
        if by_severity:
            return by_severity
        named = next((n[6:] for n in incident.notify if n.startswith("slack:")), None)
        return named or self.default_channel

    def shows(self, incident: Incident) -> dict[str, JsonValue]:
        return {
            "status": comms_status(incident).value,
            "severity": incident.severity.value if incident.severity else None,
            "acked_by": incident.acked_by,
            # only once named: roots shown before the commander existed stay as they are
            **({"commander": incident.commander} if incident.commander else {}),
        }

    def root(self, incident: Incident, now: datetime) -> tuple[str, list[dict[str, JsonValue]]]:
        text = self.renderer.internal(SLACK_ROOT, incident, now)
        opened = incident.opened_at.strftime("%Y-%m-%d %H:%M UTC")
        context = f"Incident `{incident.id}` · opened {opened}"
        link = _safe_link(incident.pagerduty_url, "PagerDuty")
        if link:
            context += f" · {link}"
        blocks: list[dict[str, JsonValue]] = [
            _section(text),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ]
        return text[:TEXT_MAX], blocks

    def tells(self, event: TimelineEvent) -> bool:
        if self.every_event:
            return True
        if event.kind in _NOTIFICATION_TROUBLE:
            return event.data.get("sink") != self.sink
        if event.kind is EventKind.INCIDENT_FLAPPING:
            return event.data.get("notice") is True  # a quiet thread: one notice per flapping
        return event.kind in SLACK_REPLY_KINDS or (
            event.kind.startswith("action.") and event.kind not in _UNTOLD_ACTION_KINDS
        )

    def reply(self, incident: Incident, event: TimelineEvent, now: datetime) -> str:
        if self.every_event:
            # the time as %H:%M:%S would print it, at a third of strftime's cost (the
            # console gets a line for every event of an alert storm)
            at = event.at
            return f"{at.hour:02d}:{at.minute:02d}:{at.second:02d} {event.kind:<22} {event.detail}"
        return self.renderer.internal(SLACK_EVENT, incident, now, event=event)

    def plan(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        now: datetime,
    ) -> list[Outbound]:
        out: list[Outbound] = []
        wanted = self.shows(incident)
        shown = state.shows
        if not state.refs.get("root"):
            text, blocks = self.root(incident, now)
            out.append(
                Outbound(
                    sink=self.sink,
                    step="root",
                    op="post",
                    marks="root",
                    text=text,
                    blocks=blocks,
                    fields={"channel": self.channel_for(incident)},
                    shows=wanted,
                )
            )
            shown = wanted
        for event in events:
            if not self.tells(event):
                continue
            text = self.reply(incident, event, now)
            out.append(
                Outbound(
                    sink=self.sink,
                    step=f"e{event.seq}",
                    op="reply" if self.threads else "post",
                    text=text[:TEXT_MAX],
                    blocks=[] if self.every_event else [_section(text)],
                    # where it goes when the root was refused (no thread to reply in)
                    fields={"channel": self.channel_for(incident)},
                )
            )
        # a reminder that an update is due moves the root's "Next update" on with it
        reminded = self.edits and any(e.kind is EventKind.UPDATE_DUE for e in events)
        if shown != wanted or reminded:
            text, blocks = self.root(incident, now)
            out.append(
                Outbound(
                    sink=self.sink,
                    step=f"update{state.updates + 1}",
                    counts_as_update=True,
                    # without edits, the new state of the root is a message of its own
                    op="update" if self.edits else "post",
                    text=text,
                    blocks=blocks,
                    fields={"channel": self.channel_for(incident)},
                    shows=wanted,
                )
            )
        return out


@dataclass
class StatuspagePlanner:
    """``severities``: which incidents get a public status page incident (a rule naming
    ``statuspage`` adds its own); ``component_status``: the components' status by
    severity."""

    renderer: Renderer
    components: Sequence[str] = ()
    severities: frozenset[str] = frozenset({"P1", "P2"})
    component_status: Mapping[str, str] = field(
        default_factory=lambda: {
            "P1": "major_outage",
            "P2": "partial_outage",
            "P3": "degraded_performance",
            "P4": "degraded_performance",
        }
    )
    sink: str = "statuspage"

    def shared_key(self, incident: Incident) -> str:
        """What one public incident is about: the components it sets and the service it
        names (the pack's public name); the incidents of the same share it."""
        service = self.renderer.rules().public(incident.pack).name
        about = json.dumps([sorted(self.components), service])
        return "statuspage:component:" + hashlib.sha256(about.encode()).hexdigest()[:32]

    def engaged(self, incident: Incident) -> bool:
        severity = incident.severity.value if incident.severity else ""
        return severity in self.severities or "statuspage" in incident.notify

    def shows(self, incident: Incident) -> dict[str, JsonValue]:
        severity = incident.severity.value if incident.severity else "P3"
        components = (
            "operational"
            if not incident.is_active
            else self.component_status.get(severity, "degraded_performance")
        )
        return {
            "status": statuspage_status(comms_status(incident)),
            "components": components,
            "impact": STATUSPAGE_IMPACT.get(severity, "minor"),
        }

    def plan(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        now: datetime,
    ) -> list[Outbound]:
        wanted = self.shows(incident)
        created = state.refs.get("id")
        if created is None and (
            state.refs.get("create") or not (incident.is_active and self.engaged(incident))
        ):
            return []  # not wanted (yet), or its creation was refused for good
        if created is not None and wanted == state.shows:
            return []
        fields: dict[str, JsonValue] = {
            "status": wanted["status"],
            "components": {c: wanted["components"] for c in self.components},
            "impact_override": wanted["impact"],
        }
        name = self.renderer.public(STATUSPAGE_NAME, incident, now).strip()
        body = self.renderer.public(STATUSPAGE_BODY, incident, now).strip()
        marks = None
        counts_as_update = leaves = False
        if created is None:
            step, op, marks = "create", "create", "create"
        elif not incident.is_active:
            step, op, leaves = "resolve", "update", True
        else:
            step, op = f"update{state.updates + 1}", "update"
            counts_as_update = True
        return [
            Outbound(
                sink=self.sink,
                step=step,
                counts_as_update=counts_as_update,
                op=op,
                title=name,
                text=body,
                fields=fields,
                shows=wanted,
                marks=marks,
                shared=self.shared_key(incident),
                leaves_shared=leaves,
            )
        ]


# Events that make a note on the linked PagerDuty incident, and which note.
_PAGERDUTY_NOTES = {
    EventKind.TRIAGE_COMPLETED: "triage",
    EventKind.INCIDENT_ACKNOWLEDGED: "handoff",
    EventKind.PAGERDUTY_LINKED: "summary",
}


def dedup_key(incident: Incident) -> str:
    return page_dedup_key(incident.id)


def _paged_key(state: DeliveryState, key: str) -> str:
    """The key the incident's page went out under (the sink says), not a re-page's."""
    paged = str(state.refs.get("dedup_key") or key)
    return key if paged.startswith(f"{key}:repage") else paged


@dataclass
class PagerDutyPlanner:
    """``notes``: an API key is configured (notes on linked incidents); ``events``: a
    routing key is (trigger/resolve). ``paged_label``: an alert with this label set to
    ``true`` already pages through Alertmanager, so responder does not page again."""

    renderer: Renderer
    notes: bool = True
    events: bool = True
    paged_label: str = "paged"
    source: str = "responder"
    sink: str = "pagerduty"

    def already_paged(self, incident: Incident) -> bool:
        return (
            incident.pagerduty_incident_id is not None
            or incident.labels.get(self.paged_label, "").lower() == "true"
        )

    def plan(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        now: datetime,
    ) -> list[Outbound]:
        out: list[Outbound] = []
        key = dedup_key(incident)
        severity = incident.severity.value if incident.severity else "P3"
        triggered = state.refs.get("triggered") is True
        if (
            self.events
            and incident.page
            and incident.is_active
            and "triggered" not in state.refs
            and not self.already_paged(incident)
        ):
            summary = self.renderer.internal(PAGERDUTY_SUMMARY, incident, now).strip()
            out.append(
                Outbound(
                    sink=self.sink,
                    step="trigger",
                    op="trigger",
                    marks="triggered",
                    text=summary[:1024],
                    fields={
                        "dedup_key": key,
                        "severity": PAGERDUTY_SEVERITY.get(severity, "error"),
                        "source": self.source,
                        "component": incident.labels.get("service", ""),
                        "group": incident.labels.get("namespace", ""),
                        "class": incident.error_type.value if incident.error_type else "",
                        "custom_details": {
                            "incident": incident.id,
                            "rule": incident.rule,
                            "group_key": incident.group_key,
                        },
                    },
                )
            )
        out.extend(self._pages_overdue(incident, events, state, now, planned=bool(out)))
        linked = incident.pagerduty_incident_id
        if self.notes and linked:
            for event in events:
                note = _PAGERDUTY_NOTES.get(event.kind)
                if (
                    note is None
                    and event.kind.startswith("action.")
                    and event.kind not in _UNTOLD_ACTION_KINDS
                ):
                    note = "action"
                if note is None or (note == "summary" and not incident.triaged_at):
                    continue
                text = self.renderer.internal(PAGERDUTY_NOTE, incident, now, event=event, note=note)
                out.append(
                    Outbound(
                        sink=self.sink,
                        step=f"e{event.seq}",
                        op="note",
                        text=text,
                        fields={"incident_id": linked},
                    )
                )
        if self.events and triggered and not incident.is_active and not state.refs.get("resolved"):
            out.append(
                Outbound(
                    sink=self.sink,
                    step="resolve",
                    op="resolve",
                    marks="resolved",
                    fields={"dedup_key": _paged_key(state, key)},
                )
            )
        out.extend(self._repages_resolved(incident, state, key))
        return out

    def _pages_overdue(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        now: datetime,
        *,
        planned: bool,
    ) -> list[Outbound]:
        """``incident.ack_overdue``: nobody acknowledged within the response time; or
        ``action.approval_expired``: nobody answered a step's approval request in time (and
        nobody has taken the incident, who would decide it). Not paged yet: the page (the
        incident's own dedup key, resolved with it). Paged already (by us or by
        Alertmanager): a new alert under a key of its own, so that PagerDuty notifies again
        rather than folding it into the open one."""
        if not self.events or not incident.is_active:
            return []
        out: list[Outbound] = []
        key = dedup_key(incident)
        first = not planned and "triggered" not in state.refs and not self.already_paged(incident)
        for event in events:
            if event.kind is EventKind.ACK_OVERDUE:
                why = "not acknowledged"
            elif (
                # a step waited for a person's approval and no one answered: the on-call
                # decides (one that lapsed at resolve pages no one: the incident is over)
                event.kind is EventKind.ACTION_APPROVAL_EXPIRED
                and not event.data.get("lapsed")
                and incident.acked_by is None
            ):
                why = "approval expired"
            else:
                continue
            mark, page_key = ("triggered", key) if first else (f"repage{event.seq}", "")
            page_key = page_key or f"{key}:{mark}"
            first = False
            summary = self.renderer.internal(PAGERDUTY_SUMMARY, incident, now).strip()
            out.append(
                Outbound(
                    sink=self.sink,
                    step=f"page{event.seq}",
                    op="trigger",
                    marks=mark,
                    text=f"[{why}] {summary}"[:1024],
                    fields={
                        "dedup_key": page_key,
                        "severity": "critical",
                        "source": self.source,
                        "component": incident.labels.get("service", ""),
                        "group": incident.labels.get("namespace", ""),
                        "class": incident.error_type.value if incident.error_type else "",
                        "custom_details": {
                            "incident": incident.id,
                            "rule": incident.rule,
                            "group_key": incident.group_key,
                            "overdue": event.detail,
                        },
                    },
                )
            )
        return out

    def _repages_resolved(
        self, incident: Incident, state: DeliveryState, key: str
    ) -> list[Outbound]:
        """The alerts of the re-pages resolve with the incident, as its page does."""
        if not self.events or incident.is_active:
            return []
        return [
            Outbound(
                sink=self.sink,
                step=f"resolve_{mark}",
                op="resolve",
                marks=f"{mark}_resolved",
                fields={"dedup_key": f"{key}:{mark}"},
            )
            for mark, done in state.refs.items()
            if mark.startswith("repage")
            and not mark.endswith("_resolved")
            and done is True
            and not state.refs.get(f"{mark}_resolved")
        ]


def console_planner(renderer: Renderer) -> SlackPlanner:
    """The console: the Slack root message and every event as a line."""
    return SlackPlanner(renderer=renderer, sink="console", every_event=True)
