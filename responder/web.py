"""HTTP surface: webhook intake, incident reads, health, metrics and the OpenAPI document.

Intake answers only after the store has durably queued the webhook's signals: 200 then
means "nothing will be lost"; 503 (with Retry-After) when the store is unreachable makes
Alertmanager and PagerDuty send again later.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import BaseModel, SecretStr, ValidationError

from responder.api import (
    AckRequest,
    Automation,
    ErrorBody,
    Health,
    IncidentDocument,
    IncidentList,
    PackInfo,
    PauseRequest,
    Readiness,
    ReloadOutcome,
    RulesInForce,
)
from responder.domain.errors import (
    QueueFullError,
    StoreUnavailableError,
    UnconfirmedWriteError,
)
from responder.domain.incident import IncidentChange, IncidentStatus, acknowledge
from responder.domain.severity import Severity
from responder.domain.signal import Observation, ObserveOutcome, TimerSignal
from responder.grouping import AlertGroups
from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.ingest.pagerduty import PagerDutyWebhook, signature_valid
from responder.logs import REQUEST_ID
from responder.metrics import Metrics
from responder.ports import (
    Clock,
    IncidentCursor,
    IncidentState,
    IncidentView,
    Pause,
    StateStore,
    WorkQueue,
    mutate_incident,
)
from responder.redaction import Redactor
from responder.report.reports import Reports
from responder.rules.registry import RuleRegistry
from responder.settings import ASCII_WHITESPACE, Settings, is_loopback

log = structlog.get_logger("responder.web")

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


def documents_redacted(redact: Redactor) -> Middleware:
    """Middleware: no configured secret's value in a document the API answers (an
    incident's annotations, a probe's evidence may quote one), JSON or text, whichever
    handler built it. A body without one is passed as it is (a search per secret)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if isinstance(response, web.Response):
            body = response.body
            if isinstance(body, bytes) and body:
                kind = response.content_type
                if kind == "application/json":
                    clean = redact.json_document(body)
                elif kind.startswith("text/"):
                    clean = redact.text_document(body)
                else:
                    clean = body
                if clean is not body:
                    response.body = clean
        return response

    return middleware


def _error_response(exc: ApiError) -> web.Response:
    response = json_response(exc.body, status=exc.status, headers=exc.headers)
    if exc.close_connection:
        response.force_close()
    return response


# Request ids: a random per-process prefix and a counter (32 hex digits in all), much
# cheaper than a uuid4 per request on the hot path and as unique in practice.
# The counter starts at 2**48, so that hex() of it is "0x1" and 12 hex digits: the
# cheapest way to 12 digits (a format spec costs twice as much).
_REQUEST_ID_PREFIX = secrets.token_hex(10)
_request_counter = itertools.count(1 << 48)


def _next_request_id() -> str:
    return _REQUEST_ID_PREFIX + hex(next(_request_counter))[3:]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, JSON errors, and the store-down answer, for every route."""
    request_id = request.headers.get("X-Request-Id") or _next_request_id()
    token = REQUEST_ID.set(request_id)
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error_response(exc)
        except QueueFullError as exc:
            ctx = request.app[CONTEXT]
            log.warning("work queue full", path=request.path, error=str(exc))
            ctx.metrics.queue_full.inc()
            response = _error_response(
                ApiError(
                    503,
                    "queue full",
                    f"{exc}; retry later, nothing of this request was recorded",
                    headers={"Retry-After": str(ctx.settings.retry_after_s)},
                )
            )
        except StoreUnavailableError as exc:
            ctx = request.app[CONTEXT]
            log.warning("store unreachable", path=request.path, error=str(exc))
            response = _error_response(
                ApiError(
                    503,
                    "store unavailable",
                    str(exc)  # written, not confirmed durable: it says so (no URL in it)
                    if isinstance(exc, UnconfirmedWriteError)
                    else "the state store cannot be reached; retry later, nothing was queued",
                    headers={"Retry-After": str(ctx.settings.retry_after_s)},
                )
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error_response(
                ApiError(
                    exc.status,
                    exc.reason,
                    f"{request.method} {request.path}",
                    headers={k: v for k, v in exc.headers.items() if k == "Allow"},
                )
            )
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        REQUEST_ID.reset(token)


# ---------------------------------------------------------------------------- intake helpers


def _unauthorized(detail: str, challenge: str) -> ApiError:
    return ApiError(
        401, "unauthorized", detail, outcome="unauthorized", headers={"WWW-Authenticate": challenge}
    )


def _check_alertmanager_auth(request: web.Request, settings: Settings) -> None:
    """Bearer token and/or basic auth, as Alertmanager's http_config sends them."""
    if not settings.intake_has_credentials:
        return  # open intake: allowed only on loopback or explicitly (checked at start-up)
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    # ASCII whitespace only: "Bearer \u00a0token" is not "Bearer token"
    credentials = credentials.strip(ASCII_WHITESPACE)
    challenge = (
        'Bearer realm="responder"' if settings.alertmanager_token else ('Basic realm="responder"')
    )
    if not credentials:
        raise _unauthorized("send the configured bearer token or basic-auth credentials", challenge)
    scheme = scheme.lower()
    ok = False
    if scheme == "bearer" and settings.alertmanager_token is not None:
        ok = _one_matches(
            credentials.encode("utf-8", "surrogateescape"), [settings.alertmanager_token]
        )
    elif (
        scheme == "basic"
        and settings.alertmanager_username is not None
        and settings.alertmanager_password is not None
    ):
        try:
            user, _, password = (
                base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
            )
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 inside
            user, password = "", ""
        user_ok = hmac.compare_digest(user.encode(), settings.alertmanager_username.encode())
        password_ok = hmac.compare_digest(
            password.encode(), settings.alertmanager_password.get_secret_value().encode()
        )
        ok = user_ok and password_ok
    if not ok:
        raise ApiError(
            403,
            "forbidden",
            "the credentials sent are not the configured ones",
            outcome="forbidden",
        )


def _check_json_content_type(request: web.Request) -> None:
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(
            415,
            "unsupported media type",
            f"send Content-Type: application/json, not {ctype or 'nothing'}",
            outcome="unsupported_media_type",
        )


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None


async def _read_body_within(request: web.Request, *, max_bytes: int, deadline_s: float) -> bytes:
    """The body, cut off at ``max_bytes`` (413) and at ``deadline_s`` (408, and the connection
    closed): a sender cannot hold the route with a body trickled in byte by byte."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline_s):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            "request timeout",
            f"the body did not arrive within {deadline_s:g} s",
            outcome="timeout",
            close_connection=True,
        ) from None
    return b"".join(chunks)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "payload too large", f"the limit is {max_bytes} bytes", outcome="too_large"
    )


def _parse(model: type[M], body: bytes) -> M:
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


def _webhook(source: str, handler: Handler) -> Handler:
    """Count every webhook by outcome and log the refused ones (never their credentials)."""

    async def counted(request: web.Request) -> web.StreamResponse:
        metrics = request.app[CONTEXT].metrics
        try:
            response = await handler(request)
        except ApiError as exc:
            metrics.webhook_counter(source, exc.outcome).inc()
            log.warning(
                "webhook refused",
                source=source,
                status=exc.status,
                error=exc.body.error,
                detail=exc.body.detail,
                remote=request.remote,
            )
            raise
        except StoreUnavailableError:
            metrics.webhook_counter(source, "unavailable").inc()
            raise
        except QueueFullError:
            metrics.webhook_counter(source, "queue_full").inc()
            raise
        metrics.webhook_counter(source, "accepted").inc()
        return response

    return counted


_NEW, _REPEAT = ObserveOutcome.NEW, ObserveOutcome.REPEAT
_OUTCOME_NAMES = tuple(o.value for o in (_NEW, ObserveOutcome.CHANGED, _REPEAT))


async def _queue_signals(
    ctx: WebContext, source: str, signals: list[Observation], truncated: int = 0
) -> web.Response:
    outcomes = await ctx.store.observe(signals)
    # counted in one pass over plain names (an enum's iteration and its .value cost a few
    # µs a webhook: this is the hot path)
    new = changed = repeated = 0
    for outcome in outcomes:
        if outcome is _REPEAT:
            repeated += 1
        elif outcome is _NEW:
            new += 1
        else:
            changed += 1
    for name, n in zip(_OUTCOME_NAMES, (new, changed, repeated), strict=True):
        if n:
            ctx.metrics.signal_counter(source, name).inc(n)
    log.info("webhook accepted", source=source, new=new, changed=changed, repeated=repeated)
    # The IntakeResult shape, written directly: this is the hot path.
    body = {
        "accepted": new,
        "changed": changed,
        "repeated": repeated,
        "truncated_alerts": truncated,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


# ---------------------------------------------------------------------------------- handlers


async def alertmanager_webhook(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    _check_alertmanager_auth(request, ctx.settings)
    _check_json_content_type(request)
    body = await _read_body(request, ctx.settings.max_body_bytes)
    payload = _parse(AlertmanagerWebhook, body)
    signals = payload.observations(received_at=ctx.clock.now(), group_of=ctx.groups)
    return await _queue_signals(ctx, "alertmanager", signals, payload.truncated_alerts)


async def pagerduty_webhook(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    secrets = [s.get_secret_value() for s in ctx.settings.pagerduty_webhook_secrets]
    header = request.headers.get("X-PagerDuty-Signature", "")
    if secrets and not (header and header.isascii()):
        raise _unauthorized(
            "X-PagerDuty-Signature is missing or not v1=<hex>", 'Signature realm="responder"'
        )
    if not secrets and not (ctx.settings.allow_unauthenticated or is_loopback(ctx.settings.host)):
        raise ApiError(
            403,
            "forbidden",
            "PagerDuty intake needs RESPONDER_PAGERDUTY_WEBHOOK_SECRETS on a non-loopback address",
            outcome="forbidden",
        )
    _check_json_content_type(request)
    body = await _read_body_within(
        request,
        max_bytes=ctx.settings.pagerduty_max_body_bytes,
        deadline_s=ctx.settings.pagerduty_read_timeout_s,
    )
    if secrets and not signature_valid(body, header, secrets):
        raise ApiError(
            403, "forbidden", "X-PagerDuty-Signature does not match the body", outcome="forbidden"
        )
    payload = _parse(PagerDutyWebhook, body)
    signal = Observation.of(payload.signal(received_at=ctx.clock.now()))
    return await _queue_signals(ctx, "pagerduty", [signal])


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


async def list_incidents(request: web.Request) -> web.StreamResponse:
    """One page of incidents, newest first; ``next_cursor`` leads to the next one."""
    ctx = request.app[CONTEXT]
    status = _query_members(request, "status", IncidentStatus)
    severity = _query_members(request, "severity", Severity)
    since = _query_since(request)
    raw_limit = _query_value(request, "limit") or "100"
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
    page = await ctx.store.list_incidents(
        status=status, severity=severity, since=since, after=after, limit=limit
    )
    return json_response(
        IncidentList(
            incidents=[IncidentDocument.of(v) for v in page.incidents],
            next_cursor=page.next.encode() if page.next is not None else None,
        )
    )


# How domain.incident.new_incident_id makes them: "inc-", 12 hex digits of epoch ms and 6
# random ones. Nothing else reaches a store key (":timeline" would name another record).
_INCIDENT_ID = re.compile(r"inc-[0-9a-f]{18}", re.ASCII)


def _incident_id(request: web.Request) -> str:
    """The path's incident id, or 404 if it cannot be one (the value is not echoed)."""
    incident_id = request.match_info["incident_id"]
    if _INCIDENT_ID.fullmatch(incident_id) is None:
        raise ApiError(
            404, "not found", "no such incident: an incident id is inc- and 18 hex digits"
        )
    return incident_id


async def _incident_view(request: web.Request) -> IncidentView:
    """The incident the path names; 404 when there is none."""
    incident_id = _incident_id(request)
    view = await request.app[CONTEXT].store.get_incident(incident_id)
    if view is None:
        raise ApiError(404, "not found", f"no incident {incident_id}")
    return view


async def get_incident(request: web.Request) -> web.StreamResponse:
    return json_response(IncidentDocument.of(await _incident_view(request)))


async def get_postmortem(request: web.Request) -> web.StreamResponse:
    """The postmortem draft (markdown; JSON of its fields with ``?format=json``)."""
    ctx = request.app[CONTEXT]
    view = await _incident_view(request)
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
    view = await _incident_view(request)
    incident_id = view.incident.id
    found = await ctx.reports.evidence(view, ctx.clock.now())
    headers = {"Content-Disposition": f'attachment; filename="{incident_id}-evidence.tar.gz"'}
    if isinstance(found, bytes):
        return web.Response(body=found, content_type="application/gzip", headers=headers)
    # the file as it is (sendfile, no copy in memory); the type said, not guessed from
    # ".gz" (which would add a Content-Encoding and have clients unpack it)
    return web.FileResponse(found, headers=headers | {"Content-Type": "application/gzip"})


def _packs(rules: RuleRegistry) -> list[PackInfo]:
    return [
        PackInfo(
            name=p.name, version=p.spec.version, source=p.source, rules=[r.name for r in p.rules]
        )
        for p in rules().packs
    ]


def _bearer(request: web.Request) -> bytes | None:
    """The bearer token presented, as bytes, stripped of ASCII whitespace only; None when
    there is none. (Header bytes that are not UTF-8 come as surrogates: kept, not fatal.)"""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip(ASCII_WHITESPACE)
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8", "surrogateescape")


def _one_matches(presented: bytes, configured: list[SecretStr]) -> bool:
    ok = False
    for secret in configured:  # no early exit: the time does not tell which one matched
        ok |= hmac.compare_digest(presented, secret.get_secret_value().encode())
    return ok


def _check_admin(request: web.Request, settings: Settings) -> None:
    if settings.admin_token is None:
        raise ApiError(
            403, "forbidden", "the admin API is off: set RESPONDER_ADMIN_TOKEN", outcome="forbidden"
        )
    token = _bearer(request)
    if token is None:
        raise _unauthorized("send the admin bearer token", 'Bearer realm="responder-admin"')
    if not _one_matches(token, [settings.admin_token]):
        raise ApiError(403, "forbidden", "wrong admin token", outcome="forbidden")


def _check_read(request: web.Request, settings: Settings) -> None:
    """The read API: the read or the admin token, unless reads are open (no read token, and
    a loopback bind or RESPONDER_ALLOW_UNAUTHENTICATED_READS)."""
    if not settings.reads_need_token(settings.host):
        return
    accepted = [t for t in (settings.read_token, settings.admin_token) if t is not None]
    if not accepted:
        raise ApiError(
            403,
            "forbidden",
            "the read API needs RESPONDER_READ_TOKEN on a non-loopback address (or "
            "RESPONDER_ALLOW_UNAUTHENTICATED_READS=true on a trusted network)",
            outcome="forbidden",
        )
    token = _bearer(request)
    if token is None:
        raise _unauthorized("send the read (or admin) bearer token", 'Bearer realm="responder"')
    if not _one_matches(token, accepted):
        raise ApiError(403, "forbidden", "wrong token", outcome="forbidden")


def _reader(handler: Handler) -> Handler:
    """A read route: the token first (when reads need one), then the path's incident id,
    if it has one, before the handler reads anything."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        _check_read(request, request.app[CONTEXT].settings)
        if "incident_id" in request.match_info:
            _incident_id(request)
        return await handler(request)

    return guarded


async def list_rules(request: web.Request) -> web.StreamResponse:
    return json_response(RulesInForce(packs=_packs(request.app[CONTEXT].rules)))


async def reload_rules(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    _check_admin(request, ctx.settings)
    result = await ctx.rules.reload_in_thread()
    outcome = ReloadOutcome(ok=result.ok, packs=_packs(ctx.rules), problems=list(result.problems))
    return json_response(outcome, status=200 if result.ok else 422)


async def automation(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    return json_response(await _automation(ctx))


async def _automation(ctx: WebContext) -> Automation:
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
    )


async def _body(request: web.Request, model: type[M]) -> M:
    _check_json_content_type(request)
    raw = await request.read()
    return _parse(model, raw or b"{}")


async def pause(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    _check_admin(request, ctx.settings)
    asked = await _body(request, PauseRequest)
    await ctx.store.set_paused(Pause(by=asked.by, reason=asked.reason, at=ctx.clock.now()))
    log.warning("automation paused", by=asked.by, reason=asked.reason)
    return json_response(await _automation(ctx))


async def resume(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    _check_admin(request, ctx.settings)
    await ctx.store.set_paused(None)
    log.warning("automation resumed")
    return json_response(await _automation(ctx))


async def ack_incident(request: web.Request) -> web.StreamResponse:
    """A human takes the incident (as an ack in PagerDuty does): the automation only
    reports from now on."""
    ctx = request.app[CONTEXT]
    _check_admin(request, ctx.settings)
    incident_id = _incident_id(request)
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


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when the store answers, a consumer loop runs (unless this process runs intake
    only) and the oldest unhandled signal is younger than the bound; the body says which
    check failed."""
    ctx = request.app[CONTEXT]
    checks: dict[str, str] = {}
    failed: list[str] = []
    try:
        await ctx.store.ping()
        checks["store"] = "ok"
    except StoreUnavailableError as exc:
        checks["store"] = str(exc)
        failed.append("store")
    expected = ctx.settings.workers
    if expected:
        alive = ctx.consumers_alive()
        checks["consumers"] = f"{alive} of {expected} consumer loops running"
        if alive == 0:
            failed.append("consumers")
    if "store" not in failed:
        bound_s = ctx.settings.ready_max_queue_age_s
        try:
            stats = await ctx.queue.stats()
        except StoreUnavailableError as exc:
            checks["queue"] = str(exc)
            failed.append("queue")
        except Exception as exc:  # noqa: BLE001 - an unexpected answer is a failed check
            checks["queue"] = f"cannot be read ({type(exc).__name__})"
            failed.append("queue")
        else:
            checks["queue"] = f"oldest unhandled signal {stats.oldest_age_s:.1f} s old"
            if bound_s > 0 and stats.oldest_age_s > bound_s:
                checks["queue"] += f" (more than {bound_s:g} s)"
                failed.append("queue")
    if failed:
        body = Readiness(status="not ready", failed=failed, checks=checks)
        return json_response(body, status=503)
    return json_response(Readiness(status="ready", checks=checks))


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=orjson.dumps(request.app[CONTEXT].openapi), content_type="application/json"
    )


def metrics_handler(metrics: Metrics) -> Handler:
    render = make_aiohttp_handler(metrics.registry)

    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        try:
            stats = await ctx.queue.stats()
        except StoreUnavailableError:
            pass  # the gauges keep their last values; /readyz tells the store is down
        else:
            metrics.queue_depth.set(stats.depth)
            metrics.queue_pending.set(stats.pending)
            metrics.dead_letters.set(stats.dead_letters)
            metrics.queue_oldest_age.set(stats.oldest_age_s)
        return await render(request)

    return handler


def add_routes(app: web.Application, metrics: Metrics) -> None:
    app.router.add_post("/v1/webhooks/alertmanager", _webhook("alertmanager", alertmanager_webhook))
    app.router.add_post("/v1/webhooks/pagerduty", _webhook("pagerduty", pagerduty_webhook))
    # every read of incident data, the automation's state or the rules: _reader
    app.router.add_get("/v1/incidents", _reader(list_incidents))
    app.router.add_get("/v1/incidents/{incident_id}", _reader(get_incident))
    app.router.add_get("/v1/incidents/{incident_id}/postmortem", _reader(get_postmortem))
    app.router.add_get("/v1/incidents/{incident_id}/evidence", _reader(get_evidence))
    app.router.add_get("/v1/rules", _reader(list_rules))
    app.router.add_post("/v1/admin/reload", reload_rules)
    app.router.add_get("/v1/automation", _reader(automation))
    app.router.add_post("/v1/admin/pause", pause)
    app.router.add_post("/v1/admin/resume", resume)
    app.router.add_post("/v1/incidents/{incident_id}/ack", ack_incident)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(metrics))
    app.router.add_get("/openapi.json", openapi)
