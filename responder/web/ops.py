"""The service's own routes, for its operators: liveness, readiness, Prometheus metrics and
the OpenAPI document."""

from __future__ import annotations

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from responder.api import Health, Readiness
from responder.domain.errors import StoreUnavailableError
from responder.metrics import Metrics
from responder.web.common import CONTEXT, Handler, json_response


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
