"""Composition root: builds the store, queue, pipeline and workers, and the aiohttp app.

``create_app(settings, overrides=...)`` is the one place that picks adapters: Redis when
``RESPONDER_REDIS_URL`` (or ``RESPONDER_REDIS_SENTINELS``) is set, the in-memory twins
otherwise; tests inject their own
clock, store, queue or notifier through ``Overrides`` instead of patching anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from pydantic import SecretStr

from responder.adapters.clock import SystemClock
from responder.adapters.console import ConsoleSink
from responder.adapters.durability import IntakeDurability
from responder.adapters.evidence import WindowEvidence
from responder.adapters.graphs import PrometheusGraphs
from responder.adapters.http import SharedSession
from responder.adapters.kube import ClusterGateway
from responder.adapters.memory import MemoryQueue, MemoryStore
from responder.adapters.pagerduty_api import PagerDutySink
from responder.adapters.probes.health import HttpHealthProbe
from responder.adapters.probes.http_headers import HttpHeadersProbe
from responder.adapters.probes.pod_logs import PodLogsReader
from responder.adapters.probes.prometheus import PrometheusQueryProbe
from responder.adapters.probes.vendor_status import StatuspageProbe
from responder.adapters.prometheus import PrometheusClient, PrometheusVerify
from responder.adapters.redis_client import SentinelMaster, connect, connect_sentinel
from responder.adapters.redis_keys import RedisKeys
from responder.adapters.redis_queue import RedisQueue
from responder.adapters.redis_store import RedisStore
from responder.adapters.slack import SlackWebhookSink, SlackWebSink
from responder.adapters.slack_people import SlackWebPeople
from responder.adapters.statuspage import StatuspageSink
from responder.domain.errors import StoreUnavailableError
from responder.grouping import AlertGroups
from responder.ingest.slack import SlackAccess
from responder.kube_access import AccessState, access_report
from responder.metrics import Metrics
from responder.mitigate.executor import Mitigator, Policy
from responder.mitigate.step import StepKit
from responder.notify.checks import check_templates
from responder.notify.delivery import Channel, Deliveries, DeliveryPolicy
from responder.notify.outbound_text import CleanSink, OutboundText
from responder.notify.planners import (
    PagerDutyPlanner,
    Renderer,
    SlackPlanner,
    StatuspagePlanner,
    console_planner,
)
from responder.notify.recap import Recap
from responder.openapi import build_openapi
from responder.pipeline import Pipeline
from responder.ports import (
    Clock,
    IncidentGraphs,
    KubeGateway,
    Notifier,
    Probe,
    StateStore,
    WorkQueue,
)
from responder.redaction import Redactor
from responder.render.templates import Templates
from responder.report.bundle_cache import BundleCache
from responder.report.postmortem import check_postmortem
from responder.report.reports import Reports
from responder.report.stage import ReportStage
from responder.rules.engine import RuleSet
from responder.rules.registry import RuleRegistry
from responder.settings import ConfigError, Settings
from responder.triage.stage import TriageStage
from responder.watch.chain import TimerChain, WatchKind
from responder.watch.flapping import FlapWatch
from responder.watch.response import AckDeadline
from responder.watch.updates import UpdateReminders
from responder.watch.vendor import VendorWatch
from responder.web.common import CONTEXT, WebContext
from responder.web.middleware import documents_redacted, request_context
from responder.web.routes import add_routes
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
    console: TextIO | None = None  # where the console notifier writes (standard output)


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
    deliveries: Deliveries
    renderer: Renderer


RUNTIME = web.AppKey("runtime", Runtime)
# How long shutdown waits for workers to finish the entries in hand.
_STOP_GRACE_S = 10.0


# What the store needs done once the event loop runs, as the app starts: a check of the
# server (ConfigError stops the start), the watch of the sentinels.
OnStart = Callable[[], Awaitable[None]]


def build_backend(
    settings: Settings, clock: Clock, *, on_start: list[OnStart] | None = None
) -> tuple[StateStore, WorkQueue]:
    """The store and queue; ``on_start`` gets what must run once the event loop does (the
    check of the server's fsync configuration, the sentinel watch)."""
    if not settings.uses_redis:
        queue = MemoryQueue(clock=clock, maxlen=settings.queue_maxlen)
        memory = MemoryStore(
            queue=queue,
            clock=clock,
            follow_up_grace_s=2 * settings.visibility_timeout_s,
            retention_s=settings.incident_retention_s,
            new_incidents_per_minute=settings.max_new_incidents_per_minute,
        )
        return memory, queue
    client = redis_client(settings)
    durability = IntakeDurability(
        settings.intake_durability,
        wait_timeout_ms=settings.intake_wait_timeout_ms,
        replicas=settings.intake_wait_replicas,
        fsync_unchecked=settings.intake_fsync_unchecked,
    )
    if on_start is not None:
        on_start.append(lambda: durability.check(client))
        if isinstance(client, SentinelMaster):
            on_start.append(client.follow_master)
    keys = RedisKeys(settings.redis_prefix)
    store = RedisStore(
        client,
        keys=keys,
        clock=clock,
        signal_ttl_s=settings.signal_ttl_s,
        queue_maxlen=settings.queue_maxlen,
        durability=durability,
        # a live worker's follow-up ends well within two visibility timeouts (triage's
        # budget is below one): past that, its worker is gone
        follow_up_grace_s=2 * settings.visibility_timeout_s,
        incident_retention_s=settings.incident_retention_s,
        new_incidents_per_minute=settings.max_new_incidents_per_minute,
    )
    return store, RedisQueue(client, keys=keys, clock=clock, order_ttl_s=settings.signal_ttl_s)


def slack_channels(settings: Settings, rules: RuleSet) -> set[str]:
    """Every Slack channel an incident's root may go to: by severity, the rules' and the
    packs' ``slack:`` targets, the default."""
    named = {settings.slack_channel, *settings.slack_channels.values()}
    for pack in rules.packs:
        targets = [*pack.spec.defaults.notify, *(n for r in pack.spec.rules for n in r.notify)]
        named.update(t.removeprefix("slack:") for t in targets if t.startswith("slack:"))
    return named


def redis_client(settings: Settings) -> aioredis.Redis:
    """By URL, or the master the sentinels name (settings allow one or the other)."""
    timeout_s = settings.redis_timeout_s
    if settings.redis_url is not None:
        return connect(settings.redis_url.get_secret_value(), timeout_s=timeout_s)
    assert settings.redis_sentinel_master is not None  # a settings rule
    return connect_sentinel(
        settings.sentinel_addresses(),
        settings.redis_sentinel_master,
        timeout_s=timeout_s,
        password=_secret(settings.redis_password),
        sentinel_password=_secret(settings.redis_sentinel_password),
    )


SHIPPED_TEMPLATES = Path(__file__).resolve().parent / "render" / "defaults"


def message_templates(settings: Settings) -> Templates:
    """The shipped message templates, overridden by ``templates_dir``'s."""
    search = [settings.templates_dir] if settings.templates_dir else []
    return Templates([*search, SHIPPED_TEMPLATES])


def build_renderer(settings: Settings, rules: Callable[[], RuleSet]) -> Renderer:
    """The message renderer; ``ConfigError`` naming each template that does not render."""
    renderer = Renderer(
        templates=message_templates(settings),
        rules=rules,
        commander=settings.incident_commander,
        update_intervals_s=settings.update_intervals_s(),
    )
    problems = check_templates(renderer) + check_postmortem(renderer.templates)
    if problems:
        raise ConfigError("message templates do not render: " + "; ".join(problems))
    return renderer


def outbound_ssl(settings: Settings) -> ssl.SSLContext | None:
    """The system's CAs, plus ``ca_file``'s when set."""
    if settings.ca_file is None:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(settings.ca_file))
    return context


def build_channels(
    settings: Settings, renderer: Renderer, http: SharedSession, console: TextIO | None = None
) -> list[Channel]:
    """The sinks the settings configure; the console when Slack is not configured."""
    tls = outbound_ssl(settings)
    timeout = settings.notify_timeout_s
    channels: list[Channel] = []

    def slack_planner(*, threads: bool) -> SlackPlanner:
        # buttons need both ways: the Web API to post them, Slack's signed presses to take
        buttons = threads and bool(settings.slack_signing_secrets)
        why = (
            "an incoming webhook cannot take button presses (no RESPONDER_SLACK_TOKEN)"
            if not threads
            else "interactivity is not configured (no RESPONDER_SLACK_SIGNING_SECRETS)"
        )
        return SlackPlanner(
            renderer=renderer,
            channels=settings.slack_channels,
            default_channel=settings.slack_channel,
            threads=threads,
            edits=threads,
            uploads=threads,  # the bot (Web API) may; an incoming webhook cannot
            buttons=buttons,
            no_buttons=None if buttons else why,
            public_url=settings.public_url,
        )

    if settings.slack_token is not None:
        channels.append(
            Channel(
                SlackWebSink(
                    token=settings.slack_token.get_secret_value(),
                    base_url=settings.slack_api_url,
                    timeout_s=timeout,
                    ssl_context=tls,
                ),
                slack_planner(threads=True),
            )
        )
    elif settings.slack_webhook_url is not None:
        channels.append(
            Channel(
                SlackWebhookSink(
                    url=settings.slack_webhook_url.get_secret_value(),
                    timeout_s=timeout,
                    ssl_context=tls,
                ),
                slack_planner(threads=False),
            )
        )
    else:
        channels.append(Channel(ConsoleSink(console), console_planner(renderer), per_process=True))
    if settings.statuspage_api_key is not None and settings.statuspage_page_id is not None:
        channels.append(
            Channel(
                StatuspageSink(
                    http=http,
                    api_url=settings.statuspage_api_url,
                    api_key=settings.statuspage_api_key.get_secret_value(),
                    page_id=settings.statuspage_page_id,
                    timeout_s=timeout,
                    ssl_context=tls,
                ),
                StatuspagePlanner(
                    renderer=renderer,
                    components=tuple(settings.statuspage_components),
                    severities=frozenset(settings.statuspage_severities),
                    component_status=settings.statuspage_component_status,
                ),
                shared=True,  # one public incident per set of components
            )
        )
    if settings.pagerduty_api_key is not None or settings.pagerduty_routing_key is not None:
        channels.append(
            Channel(
                PagerDutySink(
                    api_key=_secret(settings.pagerduty_api_key),
                    from_email=settings.pagerduty_from,
                    api_url=settings.pagerduty_api_url,
                    events_url=settings.pagerduty_events_url,
                    routing_key=_secret(settings.pagerduty_routing_key),
                    timeout_s=timeout,
                    verify=tls if tls is not None else True,
                ),
                PagerDutyPlanner(
                    renderer=renderer,
                    notes=settings.pagerduty_api_key is not None,
                    events=settings.pagerduty_routing_key is not None,
                    paged_label=settings.pagerduty_paged_label,
                ),
            )
        )
    # every sink's messages cleaned and redacted on their way out, in one place
    outbound = OutboundText(Redactor(settings.secret_values()).known_only)
    return [replace(c, sink=CleanSink(c.sink, outbound)) for c in channels]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_graphs(
    prometheus: PrometheusClient | None,
    *,
    clock: Clock,
    rules: Callable[[], RuleSet],
    redact: Redactor,
) -> IncidentGraphs | None:
    """The incident page's error-rate graph: none without a Prometheus to ask."""
    if prometheus is None:
        return None
    return PrometheusGraphs(prometheus=prometheus, clock=clock, rules=rules, redact=redact)


def build_prometheus(settings: Settings, http: SharedSession) -> PrometheusClient | None:
    urls = settings.prometheus_urls
    return PrometheusClient(urls, http) if urls else None


def build_probes(
    settings: Settings,
    *,
    http: SharedSession,
    kube: KubeGateway,
    redact: Redactor,
    prometheus: PrometheusClient | None,
) -> dict[str, Probe]:
    """The triage probes by type: the service's and ``responder triage``'s, the same."""
    return {
        "vendor_status": StatuspageProbe(http),
        "health": HttpHealthProbe(http),
        "http": HttpHeadersProbe(http),
        "prometheus": PrometheusQueryProbe(prometheus),
        # only in the namespaces automatic actions may touch
        "pod_logs": PodLogsReader(kube, redact, allowlist=tuple(settings.action_allowlist)),
    }


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
    on_start: list[OnStart] = []
    if overrides.store is not None and overrides.queue is not None:
        store, queue = overrides.store, overrides.queue
    else:
        store, queue = build_backend(settings, clock, on_start=on_start)
    http = SharedSession()
    renderer = build_renderer(settings, rules)
    kube: KubeGateway = overrides.kube or ClusterGateway(settings.kubeconfig)
    redact = Redactor(settings.secret_values())
    prometheus = build_prometheus(settings, http)
    probes = build_probes(settings, http=http, kube=kube, redact=redact, prometheus=prometheus)
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
        StepKit(
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
                approval_timeout_s=settings.approval_timeout_s,
            ),
            verify=PrometheusVerify(prometheus) if prometheus is not None else None,
            owner=worker_name,
        )
    )
    deliveries = Deliveries(
        channels=build_channels(settings, renderer, http, overrides.console),
        store=store,
        ledger=store,
        clock=clock,
        metrics=metrics,
        policy=DeliveryPolicy(
            timeout_s=settings.notify_timeout_s,
            lease_s=max(30.0, settings.notify_timeout_s * 3),
            retry_base_s=settings.notify_retry_base_s,
            retry_cap_s=settings.notify_retry_cap_s,
            breaker_threshold=settings.notify_circuit_failures,
            breaker_open_s=settings.notify_circuit_open_s,
            give_up_s=settings.notify_give_up_s,
        ),
        owner=worker_name,
        threads_in=lambda: slack_channels(settings, rules()),
        # the signals in flight when Redis began anew are handled (and may take threads
        # over) within two visibility timeouts: only what is left then is marked lost
        settle_s=2 * settings.visibility_timeout_s,
    )
    if settings.uses_redis:
        on_start.append(deliveries.lost.check)
    notifier: Notifier = overrides.notifier or deliveries
    reports = Reports(
        templates=renderer.templates,
        recap=Recap(renderer=renderer),
        rules=rules,
        redact=redact,
        collector=WindowEvidence(
            prometheus=prometheus,
            kube=kube,
            redact=redact,
            allowlist=tuple(settings.action_allowlist),
        ),
        # served evidence: the file written at resolve, else one cached build per version
        directory=settings.reports_dir,
        cache=BundleCache(monotonic=clock.monotonic),
        public_url=settings.public_url,
    )
    reporter = ReportStage(
        store=store,
        ledger=store,
        clock=clock,
        reports=reports,
        directory=settings.reports_dir,
        public_url=settings.public_url,
        owner=worker_name,
        lease_s=settings.visibility_timeout_s,
        timers=store,
    )

    def chain(kind: WatchKind) -> TimerChain:
        # a round's holder is presumed dead once its timer could be claimed by another
        return TimerChain(
            kind=kind,
            ledger=store,
            clock=clock,
            owner=worker_name,
            lease_s=settings.visibility_timeout_s,
        )

    vendor_watch = VendorWatch(
        store=store,
        probe=probes["vendor_status"],
        chain=chain("vendor_watch"),
        clock=clock,
        interval_s=settings.vendor_watch_interval_s,
        max_s=settings.vendor_watch_max_s,
    )
    update_reminders = UpdateReminders(
        store=store,
        chain=chain("update_due"),
        clock=clock,
        intervals_s=settings.update_intervals_s(),
    )
    ack_deadline = AckDeadline(
        store=store,
        chain=chain("ack_due"),
        clock=clock,
        rules=rules,
        repages=settings.ack_repages,
        pages=settings.pagerduty_routing_key is not None,
    )
    watchers = (vendor_watch, update_reminders, ack_deadline)

    flaps = FlapWatch(store=store, timers=store, clock=clock, rules=rules)
    pipeline = Pipeline(
        store=store,
        clock=clock,
        notifier=notifier,
        metrics=metrics,
        group_by=settings.group_by,
        rules=rules,
        force_dry_run=settings.dry_run,
        # the report goes last: it tells what the mitigation stage did on resolve
        stages=((triage,) if settings.triage else ()) + (flaps, mitigator, *watchers, reporter),
        timer_handlers={
            "verify": mitigator.verify,
            "deliver": deliveries.deliver,
            "revert_check": mitigator.revert_check,
            "approval_expiry": mitigator.approval_expired,
            "vendor_watch": vendor_watch.round,
            "update_due": update_reminders.round,
            "ack_due": ack_deadline.round,
            "flap_quiet": flaps.settle,
            "evidence": reporter.window_ended,
        },
        # renewed with the queue's leases (a third of it): lapses as an entry's would
        follow_up_lease_s=settings.visibility_timeout_s,
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
        housekeeping=deliveries.lost.check,
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
        deliveries=deliveries,
        renderer=renderer,
    )

    # outermost: secrets are blanked out of every document, error answers included
    redacting = [documents_redacted(redact)] if redact.has_secrets else []
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[*redacting, request_context]
    )
    app[CONTEXT] = WebContext(
        settings=settings,
        store=store,
        queue=queue,
        clock=clock,
        metrics=metrics,
        rules=rules,
        groups=AlertGroups(rules=rules, default_group_by=settings.group_by),
        consumers_alive=lambda: worker.consumers_alive,
        openapi=build_openapi(),
        reports=reports,
        graphs=build_graphs(prometheus, clock=clock, rules=rules, redact=redact),
        slack=slack_access(settings, clock),
    )
    app[RUNTIME] = runtime
    add_routes(app, metrics)
    app.cleanup_ctx.append(_finish_background)
    if on_start:
        app.cleanup_ctx.append(_store_on_start(on_start))
    app.cleanup_ctx.append(_run_workers)
    app.cleanup_ctx.append(_check_kube_access)
    if handle_signals:
        app.cleanup_ctx.append(_reload_on_sighup)
    return app


def slack_access(settings: Settings, clock: Clock) -> SlackAccess | None:
    """Who may press the incident messages' buttons; None without a signing secret (the
    route is off). Group members and ephemerals need the bot token."""
    if not settings.slack_signing_secrets:
        return None
    people = None
    if settings.slack_token is not None:
        people = SlackWebPeople(
            token=settings.slack_token.get_secret_value(),
            base_url=settings.slack_api_url,
            # a press waits for a group's members: well within Slack's 3 s
            timeout_s=2.0,
            ssl_context=outbound_ssl(settings),
        )
    return SlackAccess.of(settings, people=people, clock=clock)


async def _finish_background(app: web.Application) -> AsyncIterator[None]:
    """What requests left to do after their answer (ephemerals) is let finish, briefly."""
    yield
    ctx = app[CONTEXT]
    if ctx.background:
        _, pending = await asyncio.wait(set(ctx.background), timeout=_STOP_GRACE_S)
        for task in pending:
            task.cancel()
    if ctx.slack is not None and ctx.slack.people is not None:
        await ctx.slack.people.close()


def _store_on_start(
    hooks: list[OnStart],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def check(app: web.Application) -> AsyncIterator[None]:
        for run in hooks:
            try:
                await run()
            except StoreUnavailableError as exc:
                # run again before the first webhook's write, which gets 503 until it passes
                log.warning("store unreachable at start-up: checked later", error=str(exc))
            except ConfigError:
                await app[RUNTIME].store.close()
                raise
        yield

    return check


async def _check_kube_access(app: web.Application) -> AsyncIterator[None]:
    """Ask the API server, once the app runs, whether each permission the allowlist needs
    is granted: said in the log, the metric and GET /v1/automation before the first
    incident needs it. In the background: a slow API server does not hold the start."""
    runtime, ctx = app[RUNTIME], app[CONTEXT]

    async def check() -> None:
        try:
            state = await access_report(
                runtime.kube,
                runtime.settings.action_allowlist,
                runtime.rules(),
                now=runtime.clock.now(),
            )
        except Exception as exc:  # noqa: BLE001 - a check that failed is said, not fatal
            state = AccessState(skipped=f"the access check failed: {exc}")
        ctx.kube_access = state
        runtime.metrics.kube_access_missing.set(len(state.findings))
        for finding in state.findings:
            log.warning("kubernetes access missing", problem=finding.problem)
        if state.skipped:
            log.info("kubernetes access not checked", reason=state.skipped)
        elif not state.findings:
            log.info("kubernetes access granted", permissions=state.checked)

    task = asyncio.create_task(check(), name="kube-access-check")
    try:
        yield
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reload_on_sighup(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[object]] = set()  # held so that a reload is not collected

    def reload() -> None:
        task = asyncio.create_task(app[RUNTIME].rules.reload_in_thread())
        running.add(task)
        task.add_done_callback(running.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        if running:
            await asyncio.wait(running)


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
        await runtime.deliveries.close()
        await runtime.store.close()
        await runtime.http.close()
        close = getattr(runtime.kube, "close", None)
        if close is not None:
            await close()
