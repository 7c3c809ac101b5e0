"""Webhook intake: Alertmanager and PagerDuty.

Intake answers only after the store has durably queued the webhook's signals: 200 then
means "nothing will be lost"; 503 (with Retry-After) when the store is unreachable makes
Alertmanager and PagerDuty send again later.
"""

from __future__ import annotations

import asyncio

import orjson
import structlog
from aiohttp import web

from responder.domain.errors import QueueFullError, StoreUnavailableError
from responder.domain.signal import Observation, ObserveOutcome
from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.ingest.pagerduty import PagerDutyWebhook, signature_valid
from responder.settings import is_loopback
from responder.web.auth import check_alertmanager_auth, unauthorized
from responder.web.common import (
    CONTEXT,
    ApiError,
    Handler,
    WebContext,
    check_json_content_type,
    parse_json,
)

log = structlog.get_logger("responder.web")


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


def counted_webhook(source: str, handler: Handler) -> Handler:
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


async def alertmanager_webhook(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    check_alertmanager_auth(request, ctx.settings)
    check_json_content_type(request)
    body = await _read_body(request, ctx.settings.max_body_bytes)
    payload = parse_json(AlertmanagerWebhook, body)
    signals = payload.observations(received_at=ctx.clock.now(), group_of=ctx.groups)
    return await _queue_signals(ctx, "alertmanager", signals, payload.truncated_alerts)


async def pagerduty_webhook(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    secrets = [s.get_secret_value() for s in ctx.settings.pagerduty_webhook_secrets]
    header = request.headers.get("X-PagerDuty-Signature", "")
    if secrets and not (header and header.isascii()):
        raise unauthorized(
            "X-PagerDuty-Signature is missing or not v1=<hex>", 'Signature realm="responder"'
        )
    if not secrets and not (ctx.settings.allow_unauthenticated or is_loopback(ctx.settings.host)):
        raise ApiError(
            403,
            "forbidden",
            "PagerDuty intake needs RESPONDER_PAGERDUTY_WEBHOOK_SECRETS on a non-loopback address",
            outcome="forbidden",
        )
    check_json_content_type(request)
    body = await _read_body_within(
        request,
        max_bytes=ctx.settings.pagerduty_max_body_bytes,
        deadline_s=ctx.settings.pagerduty_read_timeout_s,
    )
    if secrets and not signature_valid(body, header, secrets):
        raise ApiError(
            403, "forbidden", "X-PagerDuty-Signature does not match the body", outcome="forbidden"
        )
    payload = parse_json(PagerDutyWebhook, body)
    signal = Observation.of(payload.signal(received_at=ctx.clock.now()))
    return await _queue_signals(ctx, "pagerduty", [signal])
