"""The admin API (the admin token): reload the rules, pause and resume the automation,
acknowledge an incident."""

from __future__ import annotations

import structlog
from aiohttp import web

from responder.api import AckRequest, IncidentDocument, PauseRequest, ReloadOutcome
from responder.domain.incident import IncidentChange, acknowledge
from responder.domain.signal import TimerSignal
from responder.ports import IncidentState, Pause, mutate_incident
from responder.web.auth import check_admin
from responder.web.common import (
    CONTEXT,
    ApiError,
    M,
    check_json_content_type,
    json_response,
    parse_json,
    path_incident_id,
)
from responder.web.reads import automation_document, pack_infos

log = structlog.get_logger("responder.web")


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
    reports from now on."""
    ctx = request.app[CONTEXT]
    check_admin(request, ctx.settings)
    incident_id = path_incident_id(request)
    asked = await _body(request, AckRequest)
    now = ctx.clock.now()

    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is None:
            return None
        return acknowledge(state.incident, by=asked.by, at=now, now=now, via="through the API")

    result = await mutate_incident(ctx.store, incident_id, mutate)
    if result.incident_id is None:
        raise ApiError(404, "not found", f"no incident {incident_id}")
    if result.change is not None:
        # the ack's follow-up (the notifier, the handoff) runs on a worker, like any other
        await ctx.store.schedule(
            TimerSignal.follow_up_now(incident_id, f"ack@{now.isoformat()}", now)
        )
    view = await ctx.store.get_incident(incident_id)
    assert view is not None
    return json_response(IncidentDocument.of(view))
