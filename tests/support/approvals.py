"""A step waiting for a person's yes, set up as the mitigation stage records it (an
``Approval`` through ``request_approval``), for the tests of what answers it: the admin
API, Slack's buttons and Slack's presses. Built here once so that they ask alike."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import JsonValue

from responder.domain.incident import Approval, IncidentChange, request_approval
from responder.ports import IncidentMutator, IncidentState, mutate_incident
from tests.support.service import Service


def asking_approval(
    *,
    step: str,
    now: datetime,
    action: str = "rollout_restart",
    target: str = "production/posthog-integration",
    change: str = "restart",
    **data: JsonValue,
) -> IncidentMutator:
    """The transition asking, at ``now``, for ``step``'s approval for 15 minutes; ``data``
    goes to the request's event as the stage's does (``patch=...``)."""
    approval = Approval(
        step=step,
        action=action,
        target=target,
        change=change,
        requested_at=now,
        expires_at=now + timedelta(minutes=15),
    )

    def ask(state: IncidentState) -> IncidentChange | None:
        assert state.incident is not None
        return request_approval(state.incident, approval, now, **data)

    return ask


async def waiting_approval(svc: Service, incident_id: str, step: str) -> None:
    """The incident's ``step`` waits for a person's approval (as the mitigation stage asks
    when a rule says ``approval: required``), written straight to the store."""
    ask = asking_approval(step=step, now=svc.runtime.clock.now())
    await mutate_incident(svc.runtime.store, incident_id, ask)
