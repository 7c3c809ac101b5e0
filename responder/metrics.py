"""Prometheus metrics of one app instance, on a registry of its own.

A registry per app (not the global one) lets tests and ``replay`` run several apps in one
process without "duplicated timeseries" errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

# What became of a request to POST /v1/slack/interactions
# (``responder_slack_interactions_total{outcome}``).
SLACK_INTERACTION_OUTCOMES = (
    "accepted",
    "forged",
    "stale",
    "replayed",
    "refused",
    "moot",
    "invalid",
    "unconfigured",
)
# Why the worker sets an entry aside (``responder_dead_lettered_total{reason}``).
DEAD_LETTER_REASONS = ("failed", "max_deliveries", "unreadable")


class Tally:
    """One labelled count of a ``HotCounter``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class HotCounter(Collector):
    """A counter bumped on intake's hot path: plain numbers, no lock, read when scraped.
    prometheus_client's ``Counter`` takes a lock on every increment (0.5 µs; twice a
    webhook); these are only counted on the event loop's thread, so they need none."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._tallies: dict[tuple[str, ...], Tally] = {}
        registry.register(self)

    def labels(self, *values: str) -> Tally:
        return self._tallies.setdefault(values, Tally())

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, tally in list(self._tallies.items()):
            family.add_metric(values, tally.value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = HotCounter(
            "responder_webhooks_total",
            "Webhook requests by source and outcome (accepted, unauthorized, forbidden, "
            "invalid, too_large, unsupported_media_type, unavailable, queue_full, error).",
            ["source", "outcome"],
            registry=r,
        )
        self.signals = HotCounter(
            "responder_signals_total",
            "Signals seen by intake, by source and dedupe outcome (new, changed, repeat).",
            ["source", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "responder_queue_depth", "Queued signals not yet delivered to a worker.", registry=r
        )
        self.queue_pending = Gauge(
            "responder_queue_pending",
            "Signals delivered to a worker and not yet acknowledged.",
            registry=r,
        )
        self.dead_letters = Gauge(
            "responder_queue_dead_letters", "Entries in the dead-letter stream.", registry=r
        )
        self.queue_oldest_age = Gauge(
            "responder_queue_oldest_age_seconds",
            "Age of the oldest signal not yet handled (pending or not yet delivered).",
            registry=r,
        )
        self.queue_full = Counter(
            "responder_intake_queue_full_total",
            "Webhooks answered 503 because the queue held RESPONDER_QUEUE_MAXLEN unhandled "
            "signals (the sender retries; alert on any increase).",
            registry=r,
        )
        self.consumer_crashes = Counter(
            "responder_worker_consumer_crashes_total",
            "Unexpected errors that ended a consumer loop's turn (it was restarted).",
            registry=r,
        )
        self.consumers_alive = Gauge(
            "responder_worker_consumers_alive",
            "Consumer loops running in this process.",
            registry=r,
        )
        self.order_waits = Counter(
            "responder_signal_order_waits_total",
            "Signals held back because an earlier signal of their group was not applied yet.",
            registry=r,
        )
        self.dead_lettered = Counter(
            "responder_dead_lettered_total",
            "Queue entries this process moved to the dead-letter stream, by reason.",
            ["reason"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "responder_signal_processing_seconds",
            "From receipt of a signal by intake to the end of its handling by a worker.",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.batch_entries = Histogram(
            "responder_worker_batch_entries",
            "Queue entries a worker handled together (their store round trips are shared).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
            registry=r,
        )
        self.handling_failures = Counter(
            "responder_signal_failures_total",
            "Signal handlings that raised (the entry is retried or dead-lettered).",
            ["source"],
            registry=r,
        )
        self.retries = Counter(
            "responder_signal_retries_total",
            "Signals left pending to be tried again later (e.g. not linked yet).",
            ["source"],
            registry=r,
        )
        self.incident_events = Counter(
            "responder_incident_events_total",
            "Timeline events written, by kind.",
            ["kind"],
            registry=r,
        )
        self.incidents_capped = Counter(
            "responder_incidents_capped_total",
            "Incident groups that got no incident of their own, by pack: the pack opened "
            "RESPONDER_MAX_NEW_INCIDENTS_PER_MINUTE within a minute, so they went to its "
            "alert storm incident (a human is told there).",
            ["pack"],
            registry=r,
        )
        self.probe_results = Counter(
            "responder_probe_results_total",
            "Triage probe runs by probe and outcome (ok, failed: error or timeout).",
            ["probe", "outcome"],
            registry=r,
        )
        self.triage_seconds = Histogram(
            "responder_triage_seconds",
            "Wall time of one incident's triage (all probes, concurrently).",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.actions = Counter(
            "responder_actions_total",
            "Automatic action steps by action and verdict (applied, dry_run, refused, ...).",
            ["action", "verdict"],
            registry=r,
        )
        self.action_refusals = Counter(
            "responder_action_refusals_total",
            "Automatic action steps a guard refused, by guard (paused, acknowledged, "
            "allowlist, cooldown, budget; responder_actions_total has them by action).",
            ["guard"],
            registry=r,
        )
        self.verifications = Counter(
            "responder_action_verifications_total",
            "Action verifications by outcome (helped, unhelpful, dropped).",
            ["outcome"],
            registry=r,
        )
        self.rule_reloads = Counter(
            "responder_rule_reloads_total",
            "Rule reloads by outcome (ok, error: the rules in force stayed).",
            ["outcome"],
            registry=r,
        )
        self.rule_packs = Gauge(
            "responder_rule_pack_rules",
            "Rule packs in force, by pack and version: the number of rules.",
            ["pack", "version"],
            registry=r,
        )
        self.unmatched_events = Counter(
            "responder_pagerduty_unmatched_total",
            "PagerDuty events that matched no incident here, by event type.",
            ["event_type"],
            registry=r,
        )
        self.notifications = Counter(
            "responder_notifications_total",
            "Outbound messages by sink and outcome (sent, retry, failed, found: sent by a "
            "worker that died before recording it; adopted: a thread a lost record opened, "
            "taken over; lost: a thread of an incident whose record Redis lost).",
            ["sink", "outcome"],
            registry=r,
        )
        self.notify_seconds = Histogram(
            "responder_notification_seconds",
            "Time one message took to send, by sink.",
            ["sink"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.circuit_open = Gauge(
            "responder_notification_circuit_open",
            "1 while a sink's circuit breaker is open (too many failures in a row).",
            ["sink"],
            registry=r,
        )
        self.kube_access_missing = Gauge(
            "responder_kube_access_missing",
            "What the action allowlist needs of Kubernetes that the last access check "
            "(SelfSubjectAccessReview, at start-up) found not granted or could not ask.",
            registry=r,
        )

        self.slack_interactions = Counter(
            "responder_slack_interactions_total",
            "Requests to the Slack interactions route by outcome: accepted (queued), forged "
            "(no or a wrong signature), stale (signed more than 5 minutes off our clock), "
            "replayed (a signed request seen before), refused (the presser is not granted "
            "the act), moot (its incident expired, is another install's, or is resolved), "
            "invalid (not a press of our buttons), unconfigured (no signing secret).",
            ["outcome"],
            registry=r,
        )

        # The children the self-monitoring alerts watch, at 0 from the start: Prometheus's
        # increase() cannot count the first event of a series that appears with it, and
        # these events are rare (deploy/prometheus/responder-alerts.yml).
        for reason in DEAD_LETTER_REASONS:
            self.dead_lettered.labels(reason)
        self.action_refusals.labels("budget")
        # a forged or replayed press is worth an alert from its first one
        for outcome in SLACK_INTERACTION_OUTCOMES:
            self.slack_interactions.labels(outcome)

    def watch_sink(self, sink: str) -> None:
        """A configured sink's children, at 0 (closed, nothing failed) before its first
        message, for the same reason."""
        self.circuit_open.labels(sink).set(0)
        for outcome in ("sent", "retry", "failed"):
            self.notifications.labels(sink, outcome)

    # Labelled children, looked up once: labels() costs a lock and a dict per call, and
    # these are counted on every webhook.
    @cache  # noqa: B019 - one Metrics per app, living as long as the app
    def webhook_counter(self, source: str, outcome: str) -> Tally:
        return self.webhooks.labels(source, outcome)

    @cache  # noqa: B019 - one Metrics per app, living as long as the app
    def signal_counter(self, source: str, outcome: str) -> Tally:
        return self.signals.labels(source, outcome)

    # The worker's, counted for every signal it handles (a few label values each: our own
    # event kinds, the sources, the configured sinks).
    @cache  # noqa: B019 - one Metrics per app, living as long as the app
    def incident_event_counter(self, kind: str) -> Counter:
        return self.incident_events.labels(kind)

    @cache  # noqa: B019 - one Metrics per app, living as long as the app
    def processing_histogram(self, source: str) -> Histogram:
        return self.processing_seconds.labels(source)

    @cache  # noqa: B019 - one Metrics per app, living as long as the app
    def notification_counter(self, sink: str, outcome: str) -> Counter:
        return self.notifications.labels(sink, outcome)
