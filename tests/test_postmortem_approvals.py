"""The postmortem tells who approved or rejected which step, when, and what then ran (or
that no one answered, and who was called), on its timeline and in its approvals section."""

from __future__ import annotations

from datetime import timedelta

from responder.domain.action import ActionRecord, Outcome
from responder.domain.incident import Approval
from responder.render.templates import Templates
from responder.report.postmortem import render_postmortem
from tests.test_report import DEFAULTS, T0, TIMELINE, event, incident, postmortem_of

TARGET = "production/posthog-integration"


def approval(step: str, state: str, **update: object) -> Approval:
    base = Approval(
        step=step,
        action="set_env",
        target=TARGET,
        change="container app: POSTHOG_FALLBACK: None → 'true'",
        state=state,  # type: ignore[arg-type]
        requested_at=T0 + timedelta(minutes=2),
        expires_at=T0 + timedelta(minutes=17),
    )
    return base.model_copy(update=update)


def test_the_postmortem_tells_each_approval_and_what_then_ran() -> None:
    applied = ActionRecord(
        step="a#0:set_env",
        action="set_env",
        target=TARGET,
        verdict=Outcome.APPLIED,
        reason="applied",
        at=T0 + timedelta(minutes=6),
        approved_by="Dana Oncall",
        approved_via="slack",
    )
    inc = incident(
        actions=(applied,),
        approvals=(
            approval(
                "a#0:set_env",
                "approved",
                decided_by="Dana Oncall",
                decided_at=T0 + timedelta(minutes=5),
                via="slack",
            ),
            approval(
                "b#0:set_env",
                "rejected",
                decided_by="Sam Second",
                decided_at=T0 + timedelta(minutes=7),
                via="api",
            ),
            approval("c#0:set_env", "expired", decided_at=T0 + timedelta(minutes=17)),
        ),
    )
    timeline = [
        *TIMELINE[:6],
        event(20, 2, "action.approval_requested", f"Approval needed for set_env on {TARGET}"),
        event(21, 5, "action.approved", f"set_env on {TARGET} approved by Dana Oncall in Slack"),
        event(
            22,
            6,
            "action.applied",
            f"set_env on {TARGET}: POSTHOG_FALLBACK → 'true'",
            approved_by="Dana Oncall",
        ),
        event(23, 7, "action.rejected", f"set_env on {TARGET} rejected by Sam Second"),
        event(24, 17, "action.approval_expired", "No one approved set_env", step="c#0:set_env"),
        TIMELINE[-1],
    ]
    pm = postmortem_of(inc, timeline)
    lines = [line.text for line in pm.timeline]
    assert f"Approved: set_env on {TARGET} approved by Dana Oncall in Slack" in lines
    assert (
        f"Action applied: set_env on {TARGET}: POSTHOG_FALLBACK → 'true' (approved by Dana Oncall)"
        in lines
    )
    assert f"Rejected: set_env on {TARGET} rejected by Sam Second; it did not run" in lines
    assert "Approval expired: No one approved set_env" in lines
    assert pm.approvals == (
        f"set_env on {TARGET} (asked 03:02): approved by Dana Oncall in Slack at 03:05; "
        "then applied at 03:06: applied",
        f"set_env on {TARGET} (asked 03:02): rejected by Sam Second through the API at 03:07; "
        "it did not run",
        f"set_env on {TARGET} (asked 03:02): no one answered by 03:17; it did not run, "
        "a human was called and the on-call paged",
    )
    text = render_postmortem(Templates([DEFAULTS]), pm)
    section = text.split("### Approvals\n", 1)[1].split("### Root Cause", 1)[0]
    assert "- set_env on production/posthog-integration (asked 03:02): approved by Dana" in section
    assert "rejected by Sam Second" in section
    assert any("was rejected" in item for item in pm.action_items)
    assert any("No one answered the approval" in item for item in pm.action_items)
    # and without approvals, no such section
    plain = render_postmortem(Templates([DEFAULTS]), postmortem_of(incident()))
    assert "### Approvals" not in plain


def test_an_approval_that_lapsed_at_resolve_is_not_shown_waiting() -> None:
    inc = incident(approvals=(approval("a#0:set_env", "expired"),))
    lapsed = event(20, 9, "action.approval_expired", "lapsed", step="a#0:set_env", lapsed=True)
    pm = postmortem_of(inc, [*TIMELINE, lapsed])
    assert pm.approvals == (
        f"set_env on {TARGET} (asked 03:02): unanswered when the incident resolved; it did not run",
    )
    assert not any("No one answered the approval" in item for item in pm.action_items)
    assert "waiting" not in render_postmortem(Templates([DEFAULTS]), pm)
