"""The admin API (the admin token): reload the rules, pause and resume the automation,
acknowledge an incident, pause or resume its automation, approve or reject its steps."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import structlog
from aiohttp import web

from responder.api import (
    AckRequest,
    HumanActRequest,
    IncidentDocument,
    PauseRequest,
    ReloadOutcome,
)
from responder.domain.incident import Incident, IncidentStatus, approval_of
from responder.domain.signal import AckSignal, HumanAct, HumanSignal
from responder.ports import IncidentView, Pause
from responder.web.auth import check_admin
from responder.web.common import (
    CONTEXT,
    ApiError,
    M,
    WebContext,
    check_json_content_type,
    json_response,
    parse_json,
    path_incident_id,
)
from responder.web.reads import automation_document, pack_infos

log = structlog.get_logger("responder.web")

# How long an ack (or another act on an incident) through the API waits for a worker to
# apply it before answering 202.
_APPLY_WAIT_S = 5.0
_APPLY_POLL_S = 0.05


async def reload_rules(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    check_admin(request, ctx.settings)
    result = await ctx.rules.reload_in_thread()
    outcome = ReloadOutcome(
        ok=result.ok, packs=pack_infos(ctx.rules), problems=list(result.problems)
    )
    return json_response(outcome, status=200 if result.ok else 422)


async def _body(request: web.Request, model: type[M]) -> M:
    check_json_content_type(request)
    raw = await request.read()
    return parse_json(model, raw or b"{}")


async def pause(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    check_admin(request, ctx.settings)
    asked = await _body(request, PauseRequest)
    await ctx.store.set_paused(Pause(by=asked.by, reason=asked.reason, at=ctx.clock.now()))
    log.warning("automation paused", by=asked.by, reason=asked.reason)
    return json_response(await automation_document(ctx))


async def resume(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    check_admin(request, ctx.settings)
    await ctx.store.set_paused(None)
    log.warning("automation resumed")
    return json_response(await automation_document(ctx))


async def ack_incident(request: web.Request) -> web.StreamResponse:
    """A human takes the incident (as an ack in PagerDuty does): the automation only
    reports from now on.

    The ack is queued and applied by a worker, as a PagerDuty ack is, so it takes the one
    path every event of an incident takes (ordered, applied once, followed up). The answer
    waits a little for it: 200 with the incident acknowledged, or 202 with the incident as
    it still is when no worker applied it in time (it will be, the ack is durable)."""
    ctx = request.app[CONTEXT]
    check_admin(request, ctx.settings)
    incident_id = path_incident_id(request)
    asked = await _body(request, AckRequest)
    view = await _incident(ctx, incident_id)

    def taken(incident: Incident) -> bool:
        return incident.status is not IncidentStatus.OPEN

    if not taken(view.incident):
        signal = AckSignal(
            incident_id=incident_id,
            by=asked.by,
            request_id=secrets.token_hex(8),
            received_at=ctx.clock.now(),
        )
        await ctx.store.observe([signal.observation()])
        log.info("acknowledgement queued", incident_id=incident_id, by=asked.by)
        view = await _when_applied(ctx, incident_id, taken) or view
    status = 200 if taken(view.incident) else 202
    return json_response(IncidentDocument.of(view), status=status)


async def pause_incident(request: web.Request) -> web.StreamResponse:
    """Pause this incident's automation (Slack's Pause automation button)."""
    return await _human_act(request, "pause")


async def resume_incident(request: web.Request) -> web.StreamResponse:
    """Let this incident's automation act again (Slack's Resume automation button)."""
    return await _human_act(request, "resume")


async def approve_step(request: web.Request) -> web.StreamResponse:
    """Yes to a step waiting for approval (Slack's Approve button)."""
    return await _human_act(request, "approve")


async def reject_step(request: web.Request) -> web.StreamResponse:
    """No to a step waiting for approval (Slack's Reject button)."""
    return await _human_act(request, "reject")


# What an approval's decision reads as, for the one that was asked.
_DECIDED: dict[HumanAct, str] = {"approve": "approved", "reject": "rejected"}


def _applied(incident: Incident, act: HumanAct, step: str | None) -> bool:
    """Whether the incident shows ``act`` done (by this request or an earlier one)."""
    if act == "pause":
        return incident.paused_by is not None
    if act == "resume":
        return incident.paused_by is None
    if act == "acknowledge":
        return incident.status is not IncidentStatus.OPEN
    approval = approval_of(incident, step or "")
    return approval is not None and approval.state != "requested"


def _conflict(incident: Incident, act: HumanAct, step: str | None) -> str | None:
    """Why ``act`` cannot be done to the incident as it is (409), or None."""
    if not incident.is_active:
        return f"incident {incident.id} is resolved: there is no automation left to {act}"
    if act not in _DECIDED:
        return None
    approval = approval_of(incident, step or "")
    if approval is None:
        return f"step {step} of incident {incident.id} waits for no approval"
    if approval.state == "requested" or approval.state == _DECIDED[act]:
        return None
    if approval.state == "expired":
        return f"the approval of step {step} expired at {approval.expires_at:%H:%M:%S} UTC"
    at = f"{approval.decided_at:%H:%M:%S} UTC" if approval.decided_at else "an earlier time"
    return f"step {step} was already {approval.state} by {approval.decided_by} at {at}"


async def _human_act(request: web.Request, act: HumanAct) -> web.StreamResponse:
    """A person's act on one incident through the API, queued as a ``HumanSignal`` and
    applied by a worker like a press of its Slack button; the answer waits for it as the
    ack's does (200 applied, 202 queued and not yet applied), 409 when the incident cannot
    take it (resolved; no approval waiting for that step, or one decided otherwise)."""
    ctx = request.app[CONTEXT]
    check_admin(request, ctx.settings)
    incident_id = path_incident_id(request)
    step = request.match_info.get("step")
    asked = await _body(request, HumanActRequest)
    view = await _incident(ctx, incident_id)
    conflict = _conflict(view.incident, act, step)
    if conflict is not None:
        raise ApiError(409, "conflict", conflict)
    if not _applied(view.incident, act, step):
        signal = HumanSignal(
            incident_id=incident_id,
            act=act,
            step=step,
            by=asked.by,
            via="api",
            request_id=secrets.token_hex(8),
            received_at=ctx.clock.now(),
        )
        await ctx.store.observe([signal.observation()])
        log.info("human act queued", incident_id=incident_id, act=act, step=step, by=asked.by)
        view = await _when_applied(ctx, incident_id, lambda i: _applied(i, act, step)) or view
        # another answer may have come first (approved while we rejected): said as such
        conflict = _conflict(view.incident, act, step) if act in _DECIDED else None
        if conflict is not None and _applied(view.incident, act, step):
            raise ApiError(409, "conflict", conflict)
    status = 200 if _applied(view.incident, act, step) else 202
    return json_response(IncidentDocument.of(view), status=status)


async def _incident(ctx: WebContext, incident_id: str) -> IncidentView:
    view = await ctx.store.get_incident(incident_id)
    if view is None:
        raise ApiError(404, "not found", f"no incident {incident_id}")
    return view


async def _when_applied(
    ctx: WebContext, incident_id: str, applied: Callable[[Incident], bool]
) -> IncidentView | None:
    """The incident once ``applied`` says a worker applied what was queued, or as it is
    after ``_APPLY_WAIT_S``."""
    deadline = ctx.clock.monotonic() + _APPLY_WAIT_S
    while True:
        view = await ctx.store.get_incident(incident_id)
        if view is None or applied(view.incident):
            return view
        if ctx.clock.monotonic() >= deadline:
            return view
        await ctx.clock.sleep(_APPLY_POLL_S)
