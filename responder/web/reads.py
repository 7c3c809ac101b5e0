"""The read API: incidents (a page of them, one, its postmortem, its evidence bundle),
the rules in force and the automation's state. Every route behind ``reader``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TypeVar

from aiohttp import web

from responder.api import (
    Automation,
    IncidentDocument,
    IncidentList,
    KubeAccess,
    KubeAccessFinding,
    PackInfo,
    RulesInForce,
)
from responder.domain.incident import IncidentStatus
from responder.domain.severity import Severity
from responder.ports import IncidentCursor, IncidentPage, IncidentView
from responder.rules.registry import RuleRegistry
from responder.web.auth import check_read
from responder.web.common import (
    CONTEXT,
    ApiError,
    Handler,
    WebContext,
    json_response,
    path_incident_id,
)

_Member = TypeVar("_Member", IncidentStatus, Severity)
# RFC 3339 date-time (a space before the offset: an unencoded "+" of the query string)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+\- ]\d{2}:\d{2})", re.ASCII
)


def _query_value(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (several values are comma-separated)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(
            400,
            "invalid query",
            f"give {name} once; several values are comma-separated",
            field=name,
        )
    return values[0] if values else None


def _query_members(request: web.Request, name: str, kind: type[_Member]) -> set[_Member] | None:
    raw = _query_value(request, name)
    if not raw:
        return None
    try:
        return {kind(part.strip()) for part in raw.split(",")}
    except ValueError:
        allowed = ", ".join(m.value for m in kind.__members__.values())
        raise ApiError(
            400,
            "invalid query",
            f"{name} must be one or more of {allowed}, comma-separated",
            field=name,
        ) from None


def _query_since(request: web.Request) -> datetime | None:
    raw = _query_value(request, "since")
    if raw is None:
        return None
    match = _RFC3339.fullmatch(raw)
    try:
        if match is None:
            raise ValueError(raw)
        if match[2] and match[2][0] == " ":
            raw = raw[:-6] + "+" + raw[-5:]
        return datetime.fromisoformat(raw.upper())
    except ValueError:
        raise ApiError(
            400,
            "invalid query",
            "since must be an RFC 3339 time with an offset, e.g. 2026-11-29T03:00:00Z",
            field="since",
        ) from None


async def read_incident_page(request: web.Request, *, default_limit: int = 100) -> IncidentPage:
    """The page of incidents the query asks for (``status``, ``severity``, ``since``,
    ``limit``, ``cursor``), read from the store: the read API's list and the incident
    list page read the same way; a bad query is a 400 naming its parameter."""
    ctx = request.app[CONTEXT]
    status = _query_members(request, "status", IncidentStatus)
    severity = _query_members(request, "severity", Severity)
    since = _query_since(request)
    raw_limit = _query_value(request, "limit") or str(default_limit)
    limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() else -1
    if not 1 <= limit <= 1000:
        raise ApiError(
            400, "invalid query", "limit must be a whole number from 1 to 1000", field="limit"
        )
    raw_cursor = _query_value(request, "cursor")
    after = None
    if raw_cursor is not None:
        try:
            after = IncidentCursor.decode(raw_cursor)
        except ValueError:
            raise ApiError(
                400,
                "invalid query",
                "cursor must be a next_cursor this API answered",
                field="cursor",
            ) from None
    return await ctx.store.list_incidents(
        status=status, severity=severity, since=since, after=after, limit=limit
    )


async def list_incidents(request: web.Request) -> web.StreamResponse:
    """One page of incidents, newest first; ``next_cursor`` leads to the next one."""
    page = await read_incident_page(request)
    return json_response(
        IncidentList(
            incidents=[IncidentDocument.of(v) for v in page.incidents],
            next_cursor=page.next.encode() if page.next is not None else None,
        )
    )


async def incident_view(request: web.Request) -> IncidentView:
    """The incident the path names; 404 when there is none."""
    incident_id = path_incident_id(request)
    view = await request.app[CONTEXT].store.get_incident(incident_id)
    if view is None:
        raise ApiError(404, "not found", f"no incident {incident_id}")
    return view


async def get_incident(request: web.Request) -> web.StreamResponse:
    return json_response(IncidentDocument.of(await incident_view(request)))


async def get_postmortem(request: web.Request) -> web.StreamResponse:
    """The postmortem draft (markdown; JSON of its fields with ``?format=json``)."""
    ctx = request.app[CONTEXT]
    view = await incident_view(request)
    now = ctx.clock.now()
    if request.query.get("format") == "json":
        return json_response(ctx.reports.postmortem(view, now))
    return web.Response(
        text=ctx.reports.postmortem_text(view, now), content_type="text/markdown", charset="utf-8"
    )


async def get_evidence(request: web.Request) -> web.StreamResponse:
    """The evidence bundle (``.tar.gz``): the one written at resolve, streamed from its
    file; else one built at most once a minute per incident version, a few at a time
    (``Reports.evidence``), so many readers cost one round of outside calls."""
    ctx = request.app[CONTEXT]
    view = await incident_view(request)
    incident_id = view.incident.id
    found = await ctx.reports.evidence(view, ctx.clock.now())
    headers = {"Content-Disposition": f'attachment; filename="{incident_id}-evidence.tar.gz"'}
    if isinstance(found, bytes):
        return web.Response(body=found, content_type="application/gzip", headers=headers)
    # the file as it is (sendfile, no copy in memory); the type said, not guessed from
    # ".gz" (which would add a Content-Encoding and have clients unpack it)
    return web.FileResponse(found, headers=headers | {"Content-Type": "application/gzip"})


def pack_infos(rules: RuleRegistry) -> list[PackInfo]:
    return [
        PackInfo(
            name=p.name, version=p.spec.version, source=p.source, rules=[r.name for r in p.rules]
        )
        for p in rules().packs
    ]


def reader(handler: Handler) -> Handler:
    """A read route: the token first (when reads need one), then the path's incident id,
    if it has one, before the handler reads anything."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        check_read(request, request.app[CONTEXT].settings)
        if "incident_id" in request.match_info:
            path_incident_id(request)
        return await handler(request)

    return guarded


async def list_rules(request: web.Request) -> web.StreamResponse:
    return json_response(RulesInForce(packs=pack_infos(request.app[CONTEXT].rules)))


async def automation(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    return json_response(await automation_document(ctx))


async def automation_document(ctx: WebContext) -> Automation:
    s = ctx.settings
    pause = await ctx.store.paused()
    used = await ctx.store.budget_used(window_s=s.action_budget_window_s, now=ctx.clock.now())
    return Automation(
        paused=pause is not None,
        paused_by=pause.by if pause else None,
        paused_reason=pause.reason if pause else None,
        paused_at=pause.at if pause else None,
        allowlist=list(s.action_allowlist),
        budget=s.action_budget,
        budget_used=used,
        budget_window_s=s.action_budget_window_s,
        cooldown_s=s.action_cooldown_s,
        dry_run_forced=s.dry_run,
        kube_access=KubeAccess(
            checked_at=ctx.kube_access.checked_at,
            checked=ctx.kube_access.checked,
            missing=[
                KubeAccessFinding(problem=f.problem, access=str(f.access) if f.access else None)
                for f in ctx.kube_access.findings
            ],
            skipped=ctx.kube_access.skipped,
        ),
    )
