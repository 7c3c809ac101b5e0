"""When a sink fails: the next try of an (incident, sink) scheduled after a backoff (never
sooner than Retry-After), each sink's circuit breaker, and the delay on the timeline.

The pure parts (the backoff, the breaker) are in ``notify.retry``; this keeps one breaker
per sink for the process and schedules the ``deliver`` timers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import structlog

from responder.domain.notification import DeliveryState
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind
from responder.metrics import Metrics
from responder.notify.channels import DeliveryPolicy
from responder.notify.delivery_records import DeliveryRecords, label
from responder.notify.retry import CircuitBreaker, backoff_s
from responder.ports import ActionLedger, Clock, DeliveryError

log = structlog.get_logger("responder.notify")


class Retries:
    """The retry and circuit policy of the sinks named ``sinks``."""

    def __init__(
        self,
        *,
        sinks: Iterable[str],
        ledger: ActionLedger,
        clock: Clock,
        metrics: Metrics,
        policy: DeliveryPolicy,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._metrics = metrics
        self._policy = policy
        self._breakers = {
            name: CircuitBreaker(threshold=policy.breaker_threshold, open_s=policy.breaker_open_s)
            for name in sinks
        }
        for name in self._breakers:
            metrics.watch_sink(name)

    def circuit_open(self, name: str) -> DeliveryError | None:
        """The error a sink whose circuit is open fails with now, unsent; None when closed."""
        breaker = self._breakers[name]
        if breaker.allows(self._clock.monotonic()):
            return None
        assert breaker.open_until is not None
        wait = breaker.open_until - self._clock.monotonic()
        return DeliveryError(
            f"circuit open after repeated failures; next try in {wait:.0f}s",
            retryable=True,
            retry_after_s=wait,
        )

    def succeeded(self, name: str) -> None:
        """A message reached the sink: its circuit closes."""
        self._breakers[name].success()
        self._metrics.circuit_open.labels(name).set(0)

    async def failed_attempt(
        self,
        incident_id: str,
        name: str,
        state: DeliveryState,
        error: DeliveryError,
        records: DeliveryRecords,
        *,
        count: bool = True,
    ) -> DeliveryState:
        """A retryable failure: the next try scheduled, the first delay (or an opened
        circuit) in ``records``; the sink's state with the attempt counted."""
        now = self._clock.now()
        attempts = state.attempts + 1
        breaker = self._breakers[name]
        opened = count and breaker.failure(self._clock.monotonic())
        delay = backoff_s(
            attempts,
            base_s=self._policy.retry_base_s,
            cap_s=self._policy.retry_cap_s,
            retry_after_s=error.retry_after_s,
        )
        if breaker.open_until is not None:
            delay = max(delay, breaker.open_until - self._clock.monotonic())
            self._metrics.circuit_open.labels(name).set(1)
        if opened:
            log.warning("circuit opened", sink=name, error=str(error))
        self._metrics.notifications.labels(name, "retry").inc()
        log.info("delivery failed; trying again later", sink=name, error=str(error), delay_s=delay)
        retry_at = now + timedelta(seconds=delay)
        await self.schedule(incident_id, name, delay)
        if state.attempts == 0 or opened:
            what = (
                f"circuit open after {self._policy.breaker_threshold} failures in a row ({error})"
                if opened
                else str(error)
            )
            records.record(
                name,
                EventKind.NOTIFICATION_DELAYED,
                f"{label(name)}: {what}; trying again in {delay:.0f}s, until it works",
                error=str(error),
                retry_in_s=round(delay, 1),
            )
        return state.model_copy(
            update={
                "attempts": attempts,
                "failing_since": state.failing_since or now,
                "retry_at": retry_at,
                "last_error": str(error),
            }
        )

    async def schedule(self, incident_id: str, sink: str, delay_s: float) -> None:
        """A ``deliver`` timer: the (incident, sink) is delivered again in ``delay_s``."""
        now = self._clock.now()
        await self._ledger.schedule(
            TimerSignal(
                kind="deliver",
                incident_id=incident_id,
                step=sink,
                due_at=now + timedelta(seconds=delay_s),
                received_at=now,
            )
        )
