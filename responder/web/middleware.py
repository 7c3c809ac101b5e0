"""The middlewares every route runs through: request ids, JSON errors and the store-down
answer (``request_context``); no configured secret in an answered document
(``documents_redacted``)."""

from __future__ import annotations

import itertools
import secrets

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from responder.domain.errors import QueueFullError, StoreUnavailableError, UnconfirmedWriteError
from responder.logs import REQUEST_ID
from responder.redaction import Redactor
from responder.web.common import CONTEXT, ApiError, Handler, json_response

log = structlog.get_logger("responder.web")


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
