"""The messages as people got them, planned again from an incident and its whole timeline:
what the evidence bundle keeps of what Slack and the status page showed. ``report`` reads
them through its ``MessageRecap`` port (``app`` wires this in), so it needs no planner of
its own and does not import ``notify``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from responder.domain.notification import DeliveryState
from responder.notify.planners import STATUSPAGE_BODY, STATUSPAGE_NAME, Renderer, SlackPlanner
from responder.ports import IncidentView


@dataclass
class Recap:
    renderer: Renderer

    def messages(self, view: IncidentView, now: datetime) -> dict[str, str]:
        """The Slack root and thread, and the status page, as text by where they went."""
        incident = view.incident
        slack = SlackPlanner(renderer=self.renderer)
        thread = slack.plan(incident, view.timeline, DeliveryState(), now)
        status_page = "\n\n".join(
            (
                self.renderer.public(STATUSPAGE_NAME, incident, now).strip(),
                self.renderer.public(STATUSPAGE_BODY, incident, now).strip(),
            )
        )
        return {
            "slack": "\n\n---\n\n".join(m.text for m in thread),
            "statuspage": status_page,
        }
