"""What every route shares: the app's context, JSON answers and errors, the body and path checks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from responder.api import ErrorBody
from responder.grouping import AlertGroups
from responder.ingest.slack import SlackAccess
from responder.kube_access import AccessState
from responder.metrics import Metrics
from responder.ports import Clock, IncidentGraphs, StateStore, WorkQueue
from responder.report.reports import Reports
from responder.rules.registry import RuleRegistry
from responder.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


@dataclass
class WebContext:
    settings: Settings
    store: StateStore
    queue: WorkQueue
    clock: Clock
    metrics: Metrics
    rules: RuleRegistry
    groups: AlertGroups
    consumers_alive: Callable[[], int]
    openapi: dict[str, object]
    reports: Reports
    # the start-up access check's outcome (app.py fills it in when it is done)
    kube_access: AccessState = field(default_factory=AccessState)
    # the incident page's error-rate graph (None: the page shows none)
    graphs: IncidentGraphs | None = None
    # who may press the incident messages' buttons (None: no Slack signing secret)
    slack: SlackAccess | None = None
    # what a request left to do after its answer (a Slack ephemeral): awaited at shutdown
    background: set[asyncio.Task[None]] = field(default_factory=set)


CONTEXT = web.AppKey("context", WebContext)


class ApiError(Exception):
    """An error answered as JSON ``{"error", "detail", "field"}`` with its status."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str = "",
        *,
        field: str | None = None,
        outcome: str = "invalid",
        headers: dict[str, str] | None = None,
        close_connection: bool = False,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.body = ErrorBody(error=error, detail=detail, field=field)
        self.outcome = outcome
        self.headers = headers or {}
        # answered with Connection: close, and the connection is not kept for another
        # request (a body that stopped arriving)
        self.close_connection = close_connection


def json_response(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=model.__pydantic_serializer__.to_json(model, exclude_none=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def check_json_content_type(request: web.Request) -> None:
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(
            415,
            "unsupported media type",
            f"send Content-Type: application/json, not {ctype or 'nothing'}",
            outcome="unsupported_media_type",
        )


def parse_json(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise ApiError(
                400, "malformed JSON", str(first.get("ctx", {}).get("error", "")) or first["msg"]
            ) from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, "invalid payload", f"{where}: {first['msg']}", field=where) from None


# How domain.incident.new_incident_id makes them: "inc-", 12 hex digits of epoch ms and 6
# random ones. Nothing else reaches a store key (":timeline" would name another record).
_INCIDENT_ID = re.compile(r"inc-[0-9a-f]{18}", re.ASCII)


def path_incident_id(request: web.Request) -> str:
    """The path's incident id, or 404 if it cannot be one (the value is not echoed)."""
    incident_id = request.match_info["incident_id"]
    if _INCIDENT_ID.fullmatch(incident_id) is None:
        raise ApiError(
            404, "not found", "no such incident: an incident id is inc- and 18 hex digits"
        )
    return incident_id
