"""The admin API (the admin token): reload the rules, pause and resume the automation,
acknowledge an incident."""

from __future__ import annotations

import secrets

import structlog
from aiohttp import web

from responder.api import AckRequest, IncidentDocument, PauseRequest, ReloadOutcome
from responder.domain.incident import IncidentStatus
from responder.domain.signal import AckSignal
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

# How long an ack through the API waits for a worker to apply it before answering 202.
_ACK_WAIT_S = 5.0
_ACK_POLL_S = 0.05


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
    view = await ctx.store.get_incident(incident_id)
    if view is None:
        raise ApiError(404, "not found", f"no incident {incident_id}")
    if view.incident.status is IncidentStatus.OPEN:
        signal = AckSignal(
            incident_id=incident_id,
            by=asked.by,
            request_id=secrets.token_hex(8),
            received_at=ctx.clock.now(),
        )
        await ctx.store.observe([signal.observation()])
        log.info("acknowledgement queued", incident_id=incident_id, by=asked.by)
        view = await _when_taken(ctx, incident_id) or view
    status = 202 if view.incident.status is IncidentStatus.OPEN else 200
    return json_response(IncidentDocument.of(view), status=status)


async def _when_taken(ctx: WebContext, incident_id: str) -> IncidentView | None:
    """The incident once no longer open (a worker applied the ack), or as it is after
    ``_ACK_WAIT_S``."""
    deadline = ctx.clock.monotonic() + _ACK_WAIT_S
    while True:
        view = await ctx.store.get_incident(incident_id)
        if view is None or view.incident.status is not IncidentStatus.OPEN:
            return view
        if ctx.clock.monotonic() >= deadline:
            return view
        await ctx.clock.sleep(_ACK_POLL_S)
