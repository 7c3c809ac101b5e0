"""Planners: from an incident, its new timeline events and what a sink already shows, the
messages that sink must get, in order. Pure: no I/O, the same input plans the same steps,
which is what makes a redelivery find its messages already sent.

- Slack: one root message (the runbook's internal template), one thread reply per event
  worth telling, and an edit of the root when the status, the severity, the commander or
  the pause changes. With interactivity (a bot token and Slack's signing secret), the root
  carries the buttons its state calls for (Acknowledge, Pause or Resume automation) and an
  approval request Approve and Reject, edited away once the step is decided; without,
  the messages say why there are none and how to answer otherwise. Incoming-webhook mode
  has neither threads nor edits: replies and status changes are messages of their own.
- Status page: an incident for the severities configured (or a rule naming
  ``statuspage``), from the external template; updated on status and severity changes,
  resolved with its components operational.
- PagerDuty: notes on the linked PagerDuty incident (triage, each action, the handoff when
  a human acknowledges), and an Events API trigger/resolve when a rule says ``page``; a
  person's ack here acknowledges responder's pages (Events API) and the linked incident
  (REST API) at PagerDuty too.
- Console: every event as a line, and the root message, as Slack would get it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from pydantic import JsonValue

from responder.domain.incident import Approval, Incident, IncidentStatus, approval_of
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
from responder.render.inert import one_line
from responder.render.templates import Templates, mrkdwn_escape
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
        # humans in the loop: a step waiting for a person's yes, the answer (or none), and
        # a person pausing or resuming this incident's automation
        EventKind.ACTION_APPROVAL_REQUESTED,
        EventKind.ACTION_APPROVED,
        EventKind.ACTION_REJECTED,
        EventKind.ACTION_APPROVAL_EXPIRED,
        EventKind.AUTOMATION_PAUSED,
        EventKind.AUTOMATION_RESUMED,
    }
)
# What ends an approval request: its message loses its buttons and says the outcome.
_APPROVAL_ENDS = frozenset(
    {EventKind.ACTION_APPROVED, EventKind.ACTION_REJECTED, EventKind.ACTION_APPROVAL_EXPIRED}
)
# Action events kept off the thread and PagerDuty notes: a verification dropped because the
# incident resolved (or its action was undone) would land below the postmortem, for nothing.
_UNTOLD_ACTION_KINDS = frozenset({EventKind.ACTION_VERIFY_DROPPED})
# Another sink's trouble is worth a line in the thread (never the sink's own: a reply
# about Slack failing could only fail in turn).
_NOTIFICATION_TROUBLE = frozenset({EventKind.NOTIFICATION_DELAYED, EventKind.NOTIFICATION_FAILED})

SECTION_MAX = 3000  # Block Kit section text limit
TEXT_MAX = 39_000  # chat.postMessage text limit is 40,000
# Block Kit's limits on a button: what it carries back (its value), its label, the texts of
# its confirm dialog
BUTTON_VALUE_MAX = 2000
BUTTON_TEXT_MAX = 75
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
# The exact change an approval request shows, cut beyond this (visibly): a person reads it
# before saying yes, and Slack refuses a message whose blocks are too large
PATCH_MAX = 2500

# The buttons' action ids, what the interactions endpoint (POST /v1/slack/interactions)
# reads a press by; their value is ``button_value``'s JSON.
ACK_BUTTON = "incident.acknowledge"
PAUSE_BUTTON = "incident.pause"
RESUME_BUTTON = "incident.resume"
APPROVE_BUTTON = "action.approve"
REJECT_BUTTON = "action.reject"

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


def _safe_link(url: str | None, label: str, *, schemes: tuple[str, ...] = ("https://",)) -> str:
    """A link built by us, from a URL we trust the shape of; nothing else becomes one."""
    if not url or not url.startswith(schemes) or any(c in url for c in "<>| \n"):
        return ""
    return f"<{url}|{label}>"


def _context(text: str) -> dict[str, JsonValue]:
    if len(text) > SECTION_MAX:
        text = text[: SECTION_MAX - 1] + "…"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _shown(value: str) -> str:
    """A value from a rule or an alert (a step, a person's name) inside mrkdwn of ours:
    one line, no mention, no link."""
    return mrkdwn_escape(one_line(value))


def button_value(incident_id: str, step: str | None = None) -> str:
    """What a button carries back when pressed: compact JSON naming the incident, and the
    step an approval is for. ASCII-escaped: a step's control or bidi characters travel as
    ``\\u`` escapes, so the cleaning of what leaves for Slack (``CleanSink``) cannot change
    the value, and the press names the step exactly."""
    value = {"incident": incident_id} if step is None else {"incident": incident_id, "step": step}
    text = json.dumps(value, separators=(",", ":"))
    # and Slack's three as escapes too: the same JSON, inert wherever it is shown or logged
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _plain(text: str, limit: int) -> dict[str, JsonValue]:
    # plain_text: Slack parses no markup, mention or link in it; escaped all the same, as
    # everywhere we print outside text (a client that decodes entities shows it as it was)
    text = mrkdwn_escape(one_line(text))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text}


def _button(
    action_id: str,
    label: str,
    value: str,
    *,
    style: str | None = None,
    confirm: dict[str, JsonValue] | None = None,
) -> dict[str, JsonValue]:
    button: dict[str, JsonValue] = {
        "type": "button",
        "action_id": action_id,
        "text": _plain(label, BUTTON_TEXT_MAX),
        "value": value,
    }
    if style is not None:
        button["style"] = style
    if confirm is not None:
        button["confirm"] = confirm
    return button


def _confirm(*, title: str, text: str, yes: str) -> dict[str, JsonValue]:
    """Block Kit's confirm dialog: the press goes only once the person says yes to it."""
    return {
        "title": _plain(title, CONFIRM_TITLE_MAX),
        "text": _plain(text, CONFIRM_TEXT_MAX),
        "confirm": _plain(yes, CONFIRM_BUTTON_MAX),
        "deny": _plain("Cancel", CONFIRM_BUTTON_MAX),
    }


def root_buttons(incident: Incident) -> list[dict[str, JsonValue]]:
    """The buttons the root shows in the incident's state: Acknowledge until someone has
    it, Pause automation or Resume automation; none once resolved."""
    if not incident.is_active:
        return []
    value = button_value(incident.id)
    buttons: list[dict[str, JsonValue]] = []
    if incident.status is IncidentStatus.OPEN:
        buttons.append(_button(ACK_BUTTON, "Acknowledge", value))
    if incident.paused_by is None:
        pause = _confirm(
            title="Pause automation?",
            text=f"No automatic action on incident {incident.id} until someone resumes it. "
            "Alerts, triage and messages go on.",
            yes="Pause",
        )
        buttons.append(_button(PAUSE_BUTTON, "Pause automation", value, confirm=pause))
    else:
        buttons.append(_button(RESUME_BUTTON, "Resume automation", value))
    return buttons


def approval_buttons(
    incident_id: str, approval: Approval | None, step: str
) -> list[dict[str, JsonValue]]:
    """Approve (with a dialog naming the change and its target) and Reject; none when the
    step's name makes a value longer than a button carries (the request says so)."""
    value = button_value(incident_id, step)
    if len(value) > BUTTON_VALUE_MAX:
        return []
    what = f"{approval.action} on {approval.target}" if approval else step
    confirm = _confirm(
        title="Approve this change?",
        text=f"Apply {what}? It runs at once, through the usual guards.",
        yes="Approve",
    )
    return [
        _button(APPROVE_BUTTON, "Approve", value, style="primary", confirm=confirm),
        _button(REJECT_BUTTON, "Reject", value, style="danger"),
    ]


def approval_ref(step: str) -> str:
    """Under which name the delivery state keeps an approval request's message (its ts),
    to edit it once decided: a digest, as a step's name is a rule's."""
    return "approval:" + hashlib.sha256(step.encode()).hexdigest()[:16]


def _patch_text(data: Mapping[str, JsonValue]) -> str:
    """The exact change as a person checks it: the patch (JSON as Kubernetes gets it),
    else the change's words; cut visibly beyond ``PATCH_MAX``."""
    patch = data.get("patch")
    if isinstance(patch, dict | list):
        text = json.dumps(patch, indent=2, ensure_ascii=False)
    elif isinstance(patch, str) and patch:
        text = patch
    else:
        text = str(data.get("change") or "")
    if len(text) > PATCH_MAX:
        more = len(text) - PATCH_MAX
        text = f"{text[:PATCH_MAX]}\n… ({more} more characters: the whole patch is on the timeline)"
    return text or "(no change recorded)"


def _code_block(text: str) -> dict[str, JsonValue]:
    # rich text, preformatted: Slack reads its text as it is (no markup, mention or link),
    # so a patch with backticks cannot close the block and write mrkdwn of its own
    return {
        "type": "rich_text",
        "elements": [
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": text}]}
        ],
    }


def _outcome(approval: Approval | None, incident: Incident) -> str:
    """One line: how an approval request ended (or that it no longer waits)."""
    if approval is None:
        return ":grey_question: This request is no longer on the incident."
    by = _shown(approval.decided_by or "")
    via = {"slack": " in Slack", "api": " through the API"}.get(approval.via or "", "")
    at = f" at {approval.decided_at:%H:%M} UTC" if approval.decided_at else ""
    if approval.state == "approved":
        return f":white_check_mark: *Approved* by {by}{via}{at}."
    if approval.state == "rejected":
        return f":no_entry_sign: *Rejected* by {by}{via}{at}: it does not run."
    if approval.state == "expired":
        return (
            f":hourglass: *Nobody approved* by {approval.expires_at:%H:%M} UTC: it does not "
            "run; the on-call is paged."
        )
    if not incident.is_active:
        return ":large_green_circle: No answer needed any more: the incident resolved."
    return ""


def _answer_without_buttons(incident_id: str, step: str) -> str:
    """How to answer an approval request where there is no button to press."""
    command = _shown(f"responder incidents approve {incident_id} {shlex.quote(step)}")
    path = _shown(f"/v1/incidents/{incident_id}/approvals/{quote(step, safe='')}/approve")
    return (
        f"To answer: `{command}` (or `reject`), or `POST {path}` (or `/reject`) with the "
        "admin token."
    )


@dataclass
class SlackPlanner:
    """``threads``/``edits``: what the Slack mode can do (the Web API both, an incoming
    webhook neither). ``channels``: by severity; else the rule's ``slack:`` target; else
    ``default_channel``. ``buttons``: the messages carry buttons (the Web API, and Slack's
    signed presses taken); else ``no_buttons`` says why not where they would be (``None``:
    nothing said, the console). ``public_url``: the incident page is linked from there."""

    renderer: Renderer
    sink: str = "slack"
    threads: bool = True
    edits: bool = True
    channels: Mapping[str, str] = field(default_factory=dict)
    default_channel: str = "#incidents"
    every_event: bool = False  # the console: every event, as a line
    # the bot may upload files into the thread (the Web API): the error-rate graph
    uploads: bool = False
    buttons: bool = False
    no_buttons: str | None = None
    public_url: str | None = None

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
            # the same: who paused it (its line, and Resume in place of Pause)
            **({"paused_by": incident.paused_by} if incident.paused_by else {}),
        }

    def incident_page(self, incident: Incident) -> str:
        """A link to the incident's page (``public_url`` is the operator's, the id ours)."""
        if not self.public_url:
            return ""
        url = f"{self.public_url.rstrip('/')}/incidents/{incident.id}"
        return _safe_link(url, "Incident page", schemes=("https://", "http://"))

    def root_controls(self, incident: Incident) -> tuple[list[dict[str, JsonValue]], str]:
        """The root's buttons for the incident's state, as an actions block; or, without
        buttons, the line that says why (none once resolved: nothing to press any more)."""
        if not incident.is_active:
            return [], ""
        if self.buttons:
            return [{"type": "actions", "elements": list(root_buttons(incident))}], ""
        return [], f"No buttons: {self.no_buttons}" if self.no_buttons else ""

    def root(self, incident: Incident, now: datetime) -> tuple[str, list[dict[str, JsonValue]]]:
        text = self.renderer.internal(SLACK_ROOT, incident, now)
        opened = incident.opened_at.strftime("%Y-%m-%d %H:%M UTC")
        context = f"Incident `{incident.id}` · opened {opened}"
        link = _safe_link(incident.pagerduty_url, "PagerDuty")
        if link:
            context += f" · {link}"
        page = self.incident_page(incident)
        if page:
            context += f" · {page}"
        controls, why_none = self.root_controls(incident)
        if why_none:
            context += f" · {why_none}"
        blocks: list[dict[str, JsonValue]] = [
            _section(text),
            *controls,
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
            line = f"{at.hour:02d}:{at.minute:02d}:{at.second:02d} {event.kind:<22} {event.detail}"
            if event.kind is EventKind.ACTION_APPROVAL_REQUESTED:
                step = shlex.quote(str(event.data.get("step", "")))
                line += f" (answer: responder incidents approve {incident.id} {step}, or reject)"
            return line
        return self.renderer.internal(SLACK_EVENT, incident, now, event=event)

    def graph_upload(self, incident: Incident, event: TimelineEvent) -> Outbound | None:
        """The error-rate graph into the thread, once per resolve, under the report's line:
        the PNG the report stage drew beside the draft from the bundle's range data (the
        sink reads that file: no second query; the rewrite at the window's end is not
        shown again). Only where the bot can upload (the Web API), and only when there is
        a graph (the report's line says why there is none)."""
        if not (self.uploads and self.threads) or event.kind is not EventKind.REPORT_WRITTEN:
            return None
        png, seq = event.data.get("graph_png"), event.data.get("resolved_seq")
        if event.data.get("window_complete") or not isinstance(png, str) or type(seq) is not int:
            return None
        page = event.data.get("page")
        return Outbound(
            sink=self.sink,
            step=f"graph{seq}",
            op="upload",
            title=f"Error rate of {incident.id} over its window",
            fields={
                "channel": self.channel_for(incident),
                "file": png,
                # unique per upload, as its step: what finds it in the thread again
                "filename": f"{incident.id}-{seq}-error-rate.png",
                "alt": "Error rate over the incident's window, with the alert, each action "
                "and the resolve marked",
                "page": page if isinstance(page, str) else None,
                "draft_graph": event.data.get("graph"),
            },
        )

    def approval_request(
        self, incident: Incident, event: TimelineEvent
    ) -> tuple[list[dict[str, JsonValue]], bool]:
        """What goes under an approval request's text: the exact change, then Approve and
        Reject (or how to answer without them, or the outcome if it is already decided);
        and whether its message is to be edited once decided (the sink can, and it asks
        for an answer)."""
        step = str(event.data.get("step", ""))
        approval = approval_of(incident, step)
        blocks = [_code_block(_patch_text(event.data))]
        waiting = incident.is_active and approval is not None and approval.state == "requested"
        if not waiting:
            # decided before its message went out (a delivery that waited): said at once
            blocks.append(_context(_outcome(approval, incident)))
            return blocks, False
        buttons = approval_buttons(incident.id, approval, step) if self.buttons else []
        page = self.incident_page(incident)
        if buttons:
            blocks.append({"type": "actions", "elements": list(buttons)})
            if page:
                blocks.append(_context(page))
        else:
            if self.buttons:  # on, but this step's name does not fit in a button
                why = (
                    "the Approve and Reject buttons are left off: this step's name is too "
                    f"long for a Slack button ({len(step)} characters)"
                )
            else:
                why = self.no_buttons or ""
            said = [
                f"No buttons: {why}." if why else "",
                _answer_without_buttons(incident.id, step),
            ]
            if page:
                said.append(page)
            blocks.append(_context(" ".join(p for p in said if p)))
        return blocks, self.threads and self.edits

    def approvals_settled(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        now: datetime,
    ) -> list[Outbound]:
        """Edits of the approval requests sent with buttons (or the way to answer) that
        the events end: decided, expired, or the incident resolved before anyone answered.
        The message says the outcome and keeps no button; the thread tells the answer too."""
        if self.every_event or not (self.threads and self.edits):
            return []
        out: list[Outbound] = []
        for event in events:
            if event.kind in _APPROVAL_ENDS:
                steps = [str(event.data.get("step", ""))]
            elif event.kind is EventKind.INCIDENT_RESOLVED:
                steps = [a.step for a in incident.approvals if a.state == "requested"]
            else:
                continue
            for n, step in enumerate(steps):
                ref = approval_ref(step)
                approval = approval_of(incident, step)
                if approval is None or not isinstance(state.refs.get(ref), dict):
                    continue  # not kept: sent already settled, or by a webhook
                text = self.renderer.internal(
                    SLACK_EVENT, incident, now, event=_request_event(approval, event.seq)
                )
                outcome = _outcome(approval, incident)
                out.append(
                    Outbound(
                        sink=self.sink,
                        step=f"settle{event.seq}.{n}",
                        op="update",
                        text=f"{text}\n{outcome}"[:TEXT_MAX],
                        # the request's words and the outcome: its patch stays on the
                        # timeline (the approval keeps the change's words, not the patch)
                        blocks=[_section(text), _context(outcome)],
                        fields={"channel": self.channel_for(incident), "edits": ref},
                    )
                )
        return out

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
            blocks = [] if self.every_event else [_section(text)]
            # where it goes when the root was refused (no thread to reply in)
            fields: dict[str, JsonValue] = {"channel": self.channel_for(incident)}
            if event.kind is EventKind.ACTION_APPROVAL_REQUESTED and not self.every_event:
                more, edited_later = self.approval_request(incident, event)
                blocks += more
                if edited_later:
                    # the sink keeps its ts under this name, for the edit once decided
                    fields["keeps"] = approval_ref(str(event.data.get("step", "")))
            out.append(
                Outbound(
                    sink=self.sink,
                    step=f"e{event.seq}",
                    op="reply" if self.threads else "post",
                    text=text[:TEXT_MAX],
                    blocks=blocks,
                    fields=fields,
                )
            )
            graph = self.graph_upload(incident, event)
            if graph is not None:
                out.append(graph)
        out.extend(self.approvals_settled(incident, events, state, now))
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


def _request_event(approval: Approval, seq: int) -> TimelineEvent:
    """An approval request's event as its message told it, made again from the approval
    (the planner of the edit has the incident, not the request's event)."""
    return TimelineEvent(
        seq=seq,
        at=approval.requested_at,
        kind=EventKind.ACTION_APPROVAL_REQUESTED,
        detail=f"Approval needed for {approval.action} on {approval.target}: {approval.change}",
        data={
            "step": approval.step,
            "action": approval.action,
            "target": approval.target,
            "change": approval.change,
            "expires_at": approval.expires_at.isoformat(),
        },
    )


# Events that make a note on the linked PagerDuty incident, and which note. The other
# ``action.*`` events make an "action" note (an approval's answer or expiry among them:
# their words say who decided, and where).
_PAGERDUTY_NOTES = {
    EventKind.TRIAGE_COMPLETED: "triage",
    EventKind.INCIDENT_ACKNOWLEDGED: "handoff",
    EventKind.PAGERDUTY_LINKED: "summary",
    EventKind.ACTION_APPROVAL_REQUESTED: "approval",
    EventKind.AUTOMATION_PAUSED: "action",
    EventKind.AUTOMATION_RESUMED: "action",
}


def dedup_key(incident: Incident) -> str:
    return page_dedup_key(incident.id)


def _paged_key(state: DeliveryState, key: str) -> str:
    """The key the incident's page went out under (the sink says), not a re-page's."""
    paged = str(state.refs.get("dedup_key") or key)
    return key if paged.startswith(f"{key}:repage") else paged


@dataclass
class PagerDutyPlanner:
    """``notes``: an API key is configured (notes on linked incidents, and their ack when
    a person takes the incident here); ``events``: a
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
        out.extend(self._pages_acknowledged(incident, events, state, key))
        out.extend(self._linked_acknowledged(incident, events))
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

    def _pages_acknowledged(
        self,
        incident: Incident,
        events: Sequence[TimelineEvent],
        state: DeliveryState,
        key: str,
    ) -> list[Outbound]:
        """A person took the incident here (Slack's Acknowledge, the API): the pages
        responder sent are acknowledged at PagerDuty too, as an ack there would be, so
        their escalation stops paging the next person. An ack made in PagerDuty is
        PagerDuty's own already."""
        if not self.events or not incident.is_active:
            return []
        out: list[Outbound] = []
        for event in events:
            if (
                event.kind is not EventKind.INCIDENT_ACKNOWLEDGED
                or event.data.get("via") == "pagerduty"
            ):
                continue
            keys = [_paged_key(state, key)] if state.refs.get("triggered") is True else []
            keys += [
                f"{key}:{mark}"
                for mark, sent in state.refs.items()
                if mark.startswith("repage") and not mark.endswith("_resolved") and sent is True
            ]
            out += [
                Outbound(
                    sink=self.sink,
                    step=f"ack{event.seq}.{n}",
                    op="acknowledge",
                    fields={"dedup_key": paged},
                )
                for n, paged in enumerate(keys)
            ]
        return out

    def _linked_acknowledged(
        self, incident: Incident, events: Sequence[TimelineEvent]
    ) -> list[Outbound]:
        """A person took the incident here (Slack's Acknowledge, the API) and it is linked
        to a PagerDuty incident (Alertmanager paged PagerDuty itself): that incident is
        acknowledged through the REST API, as an ack there would be, so its escalation
        stops too. Before the handoff note, which tells why. An ack made in PagerDuty is
        PagerDuty's own already, and the webhook that answers ours finds the incident
        acknowledged (``apply_pagerduty``): nothing comes back."""
        linked = incident.pagerduty_incident_id
        if not self.notes or not linked or not incident.is_active:
            return []
        return [
            Outbound(
                sink=self.sink,
                step=f"ack{event.seq}.incident",
                op="acknowledge_incident",
                fields={"incident_id": linked},
            )
            for event in events
            if event.kind is EventKind.INCIDENT_ACKNOWLEDGED
            and event.data.get("via") != "pagerduty"
        ]

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
