"""Start-up check of the message templates: each one is compiled and rendered against
sample incidents (``render.samples``) in every state a message can be planned in, so that
a broken override (a typo in a variable name, a syntax error) stops the service at
start-up, with the file and the reason, and not at 03:00 on the first incident. The
postmortem's template is checked the same way by ``report.postmortem``."""

from __future__ import annotations

from responder.domain.timeline import EventKind
from responder.notify.planners import (
    PAGERDUTY_NOTE,
    PAGERDUTY_SUMMARY,
    SLACK_EVENT,
    SLACK_ROOT,
    STATUSPAGE_BODY,
    STATUSPAGE_NAME,
    Renderer,
)
from responder.render.samples import SAMPLE_NOW, sample_events, sample_incidents
from responder.render.templates import TemplateProblem

# the note each event kind makes on PagerDuty (as the planner does)
_NOTE_FOR = {
    EventKind.TRIAGE_COMPLETED: "triage",
    EventKind.ACTION_APPLIED: "action",
    EventKind.ACTION_REFUSED: "action",
    EventKind.INCIDENT_ACKNOWLEDGED: "handoff",
    EventKind.ACTION_APPROVAL_REQUESTED: "approval",
}


def check_templates(renderer: Renderer) -> list[str]:
    """Every problem found, as ``template: reason`` lines; empty when all render."""
    problems: dict[str, str] = {}
    now = SAMPLE_NOW

    def attempt(name: str, render: object) -> None:
        if name in problems:
            return
        try:
            assert callable(render)
            render()
        except TemplateProblem as exc:
            problems[name] = str(exc)

    for incident in sample_incidents():
        attempt(SLACK_ROOT, lambda i=incident: renderer.internal(SLACK_ROOT, i, now))
        attempt(PAGERDUTY_SUMMARY, lambda i=incident: renderer.internal(PAGERDUTY_SUMMARY, i, now))
        attempt(STATUSPAGE_NAME, lambda i=incident: renderer.public(STATUSPAGE_NAME, i, now))
        attempt(STATUSPAGE_BODY, lambda i=incident: renderer.public(STATUSPAGE_BODY, i, now))
        for event in sample_events():
            attempt(
                SLACK_EVENT,
                lambda i=incident, e=event: renderer.internal(SLACK_EVENT, i, now, event=e),
            )
            note = _NOTE_FOR.get(event.kind)
            if note is not None:
                attempt(
                    PAGERDUTY_NOTE,
                    lambda i=incident, e=event, n=note: renderer.internal(
                        PAGERDUTY_NOTE, i, now, event=e, note=n
                    ),
                )
    for incident in sample_incidents():  # the summary note goes with a link event
        link = sample_events()[0].model_copy(update={"kind": EventKind.PAGERDUTY_LINKED})
        attempt(
            PAGERDUTY_NOTE,
            lambda i=incident, e=link: renderer.internal(
                PAGERDUTY_NOTE, i, now, event=e, note="summary"
            ),
        )
    return [problems[name] for name in sorted(problems)]
