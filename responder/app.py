"""Composition root: builds the store, queue, pipeline and workers, and the aiohttp app.

``create_app(settings, overrides=...)`` is the one place that picks adapters: Redis when
``RESPONDER_REDIS_URL`` is set, the in-memory twins otherwise; tests inject their own
clock, store, queue or notifier through ``Overrides`` instead of patching anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web

from responder.adapters.clock import SystemClock
from responder.adapters.console import ConsoleNotifier
from responder.adapters.http import SharedSession
from responder.adapters.kube import ClusterGateway
from responder.adapters.memory import MemoryQueue, MemoryStore
from responder.adapters.probes.health import HttpHealthProbe
from responder.adapters.probes.pod_logs import PodLogsReader
from responder.adapters.probes.prometheus import PrometheusQueryProbe
from responder.adapters.probes.vendor_status import StatuspageProbe
from responder.adapters.prometheus import PrometheusClient, PrometheusVerify
from responder.adapters.redis_client import connect
from responder.adapters.redis_keys import RedisKeys
from responder.adapters.redis_queue import RedisQueue
from responder.adapters.redis_store import RedisStore
from responder.domain.errors import StoreUnavailableError
from responder.metrics import Metrics
from responder.mitigate.executor import Mitigator, Policy
from responder.openapi import build_openapi
from responder.pipeline import Pipeline
from responder.ports import Clock, KubeGateway, Notifier, Probe, StateStore, WorkQueue
from responder.redaction import Redactor
from responder.rules.registry import RuleRegistry
from responder.settings import Settings
from responder.triage.stage import TriageStage
from responder.web import CONTEXT, WebContext, add_routes, request_context
from responder.worker import Worker, consumer_prefix

log = structlog.get_logger("responder.app")


@dataclass
class Overrides:
    """Adapters a caller supplies instead of the ones settings would choose."""

    clock: Clock | None = None
    store: StateStore | None = None
    queue: WorkQueue | None = None
    notifier: Notifier | None = None
    kube: KubeGateway | None = None


@dataclass
class Runtime:
    """Everything one running app holds; read by tests and the CLI."""

    settings: Settings
    metrics: Metrics
    clock: Clock
    store: StateStore
    queue: WorkQueue
    rules: RuleRegistry
    pipeline: Pipeline
    worker: Worker
    http: SharedSession
    kube: KubeGateway


RUNTIME = web.AppKey("runtime", Runtime)
# How long shutdown waits for workers to finish the entries in hand.
_STOP_GRACE_S = 10.0


def build_backend(settings: Settings, clock: Clock) -> tuple[StateStore, WorkQueue]:
    if settings.redis_url is None:
        queue = MemoryQueue(clock=clock)
        return MemoryStore(queue=queue, clock=clock), queue
    client = connect(settings.redis_url.get_secret_value(), timeout_s=settings.redis_timeout_s)
    keys = RedisKeys(settings.redis_prefix)
    store = RedisStore(
        client,
        keys=keys,
        clock=clock,
        signal_ttl_s=settings.signal_ttl_s,
        queue_maxlen=settings.queue_maxlen,
    )
    return store, RedisQueue(client, keys=keys, clock=clock)


def create_app(
    settings: Settings, *, overrides: Overrides | None = None, handle_signals: bool = False
) -> web.Application:
    """The app; ``RuleLoadError`` when a rule pack has a problem (nothing starts).

    ``handle_signals``: reload the rules on SIGHUP (``responder serve`` does).
    """
    overrides = overrides or Overrides()
    metrics = Metrics()
    rules = RuleRegistry(settings.rules, metrics)
    clock = overrides.clock or SystemClock()
    if overrides.store is not None and overrides.queue is not None:
        store, queue = overrides.store, overrides.queue
    else:
        store, queue = build_backend(settings, clock)
    notifier = overrides.notifier or ConsoleNotifier()
    http = SharedSession()
    kube: KubeGateway = overrides.kube or ClusterGateway(settings.kubeconfig)
    redact = Redactor(settings.secret_values())
    prometheus = (
        PrometheusClient(settings.prometheus_url, http) if settings.prometheus_url else None
    )
    probes: dict[str, Probe] = {
        "vendor_status": StatuspageProbe(http),
        "health": HttpHealthProbe(http),
        "prometheus": PrometheusQueryProbe(prometheus),
        "pod_logs": PodLogsReader(kube, redact),
    }
    triage = TriageStage(
        store=store,
        probes=probes,
        rules=rules,
        clock=clock,
        metrics=metrics,
        redact=redact,
        budget_s=settings.triage_budget_s,
        cache_ttl_s=settings.triage_cache_ttl_s,
        force_dry_run=settings.dry_run,
    )
    worker_name = consumer_prefix()
    mitigator = Mitigator(
        store=store,
        ledger=store,
        kube=kube,
        clock=clock,
        metrics=metrics,
        policy=Policy(
            allowlist=tuple(settings.action_allowlist),
            cooldown_s=settings.action_cooldown_s,
            budget=settings.action_budget,
            budget_window_s=settings.action_budget_window_s,
            lock_ttl_s=settings.action_lock_ttl_s,
            # a step's holder is presumed dead once its signal could be claimed by another
            lease_s=settings.visibility_timeout_s,
            force_dry_run=settings.dry_run,
        ),
        verify=PrometheusVerify(prometheus) if prometheus is not None else None,
        owner=worker_name,
    )
    pipeline = Pipeline(
        store=store,
        clock=clock,
        notifier=notifier,
        metrics=metrics,
        group_by=settings.group_by,
        rules=rules,
        force_dry_run=settings.dry_run,
        stages=((triage,) if settings.triage else ()) + (mitigator,),
        timer_handler=mitigator.verify,
    )
    worker = Worker(
        queue=queue,
        pipeline=pipeline,
        metrics=metrics,
        clock=clock,
        tasks=settings.workers,
        visibility_timeout_s=settings.visibility_timeout_s,
        batch_wait_s=settings.batch_wait_s,
        max_deliveries=settings.max_deliveries,
        name=worker_name,
        timers=store,
    )
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        clock=clock,
        store=store,
        queue=queue,
        rules=rules,
        pipeline=pipeline,
        worker=worker,
        http=http,
        kube=kube,
    )

    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[request_context])
    app[CONTEXT] = WebContext(
        settings=settings,
        store=store,
        queue=queue,
        clock=clock,
        metrics=metrics,
        rules=rules,
        openapi=build_openapi(),
    )
    app[RUNTIME] = runtime
    add_routes(app, metrics)
    app.cleanup_ctx.append(_run_workers)
    if handle_signals:
        app.cleanup_ctx.append(_reload_on_sighup)
    return app


async def _reload_on_sighup(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, app[RUNTIME].rules.reload)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


async def _run_workers(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    try:
        await runtime.queue.ensure()
    except StoreUnavailableError as exc:
        # Start anyway: /readyz says not ready, intake answers 503, workers keep trying.
        log.warning("store unreachable at start-up", error=str(exc))
    task: asyncio.Task[None] | None = None
    if runtime.settings.workers:
        task = asyncio.create_task(runtime.worker.run(), name="workers")
    try:
        yield
    finally:
        if task is not None:
            runtime.worker.stop()
            try:
                # the entry in hand is finished; one not finished in time stays pending
                # and another replica claims it after the visibility timeout
                await asyncio.wait_for(asyncio.shield(task), _STOP_GRACE_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await runtime.store.close()
        await runtime.http.close()
        close = getattr(runtime.kube, "close", None)
        if close is not None:
            await close()
