"""Delivery: every planned message reaches its sink once, in order, whatever fails.

For each sink, an incident's messages go out under a lock of their own (incident, sink),
in timeline order, from the sink's cursor (``DeliveryState``, in the action ledger):

1. plan the messages for the events from the cursor on (``notify.planners``);
2. for each, claim its effect ``{incident}:notify:{sink}:{step}``: one already sent (a
   redelivery, another replica) is skipped; one whose worker died mid-send is looked for
   at the sink (``Sink.find_sent``, told the time of the earliest try: the claim time of
   the dead worker's record, or of a try that timed out) before being sent again;
3. send with a time limit. A retryable failure (rate limit, 5xx, timeout) gives the claim
   back and schedules a ``deliver`` timer after a backoff with jitter, never sooner than
   Retry-After; messages after it wait, so the thread stays in order. A sink that keeps
   failing opens its circuit breaker and is left alone for a while. A message refused for
   good (bad channel, invalid payload), or failing for longer than ``give_up_s``, is
   recorded as failed and the rest go on.

This module keeps the per-(incident, sink) loop; step 2 and 3 for one message are
``notify.send_once``, the retry timers and circuit breakers ``notify.retries``, the
timeline events ``notify.delivery_records``: a pass collects them and hands them back
(``incident_changed``, ``deliver``) for the pipeline to write with its round.

The sinks run concurrently and each send is bounded in time, so one sink down slows
neither the others nor the pipeline; nothing a sink does raises into the pipeline, only a
store that cannot be reached does (the signal is then retried, as for any stage).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence

import structlog

from responder.domain.incident import Incident, IncidentChange
from responder.domain.notification import DeliveryState
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind, TimelineEvent
from responder.metrics import Metrics
from responder.notify.channels import Channel as Channel
from responder.notify.channels import DeliveryPolicy as DeliveryPolicy
from responder.notify.delivery_records import SINK_NAMES as SINK_NAMES
from responder.notify.delivery_records import DeliveryRecords, label
from responder.notify.lost_records import LostRecords
from responder.notify.retries import Retries
from responder.notify.send_once import SendOnce, sent_state
from responder.notify.send_once import group_mark as group_mark
from responder.notify.shared_threads import SharedThreads
from responder.ports import ActionLedger, Clock, StageResult, Store
from responder.render.templates import TemplateProblem

log = structlog.get_logger("responder.notify")

# Re-planning after a pass settles one-off steps found done with other content; more than
# this many passes would mean a planner that never settles.
_MAX_PASSES = 3
# Per-process channels remember this many incidents (an alert storm must not grow memory).
_TOLD_MAX = 10_000


class Deliveries:
    """The ``Notifier`` of the service: plans and delivers to every configured sink."""

    def __init__(
        self,
        *,
        channels: Sequence[Channel],
        store: Store,
        ledger: ActionLedger,
        clock: Clock,
        metrics: Metrics,
        policy: DeliveryPolicy | None = None,
        owner: str | None = None,
        threads_in: Callable[[], Collection[str]] = tuple,
        settle_s: float = 60.0,
    ) -> None:
        """``threads_in``: where the sinks' threads may be (Slack channels), for marking
        those a lost record left (``LostRecords``), ``settle_s`` after the store began
        anew."""
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._metrics = metrics
        self._policy = policy or DeliveryPolicy()
        self._owner = owner or secrets.token_hex(6)
        channels = [self._sharing(c, store, ledger, clock) for c in channels]
        self._channels = {c.name: c for c in channels}
        self.lost = LostRecords(
            store=store,
            clock=clock,
            metrics=metrics,
            channels=[c for c in channels if not c.per_process],
            where=threads_in,
            timeout_s=self._policy.timeout_s,
            settle_s=settle_s,
        )
        # per-process channels: what each incident was told, the most recent incidents only
        self._told: OrderedDict[tuple[str, str], DeliveryState] = OrderedDict()
        self._retries = Retries(
            sinks=self._channels,
            ledger=ledger,
            clock=clock,
            metrics=metrics,
            policy=self._policy,
        )
        self._send_once = SendOnce(
            ledger=ledger,
            clock=clock,
            metrics=metrics,
            policy=self._policy,
            owner=self._owner,
            retries=self._retries,
            lost=self.lost,
        )

    def _sharing(
        self, channel: Channel, store: Store, ledger: ActionLedger, clock: Clock
    ) -> Channel:
        if not channel.shared or isinstance(channel.sink, SharedThreads):
            return channel
        sink = SharedThreads(
            sink=channel.sink,
            store=store,
            ledger=ledger,
            clock=clock,
            owner=self._owner,
            lease_s=self._policy.lease_s,
            lock_wait_s=self._policy.lock_wait_s,
        )
        return Channel(sink, channel.planner, per_process=channel.per_process, shared=True)

    @property
    def sinks(self) -> list[str]:
        return list(self._channels)

    async def incident_changed(self, change: IncidentChange) -> StageResult | None:
        records = DeliveryRecords(self._clock)
        await self._all(change.incident.id, change, records)
        return records.result()

    async def deliver(self, timer: TimerSignal) -> StageResult | None:
        """A scheduled retry (or catch-up) of one sink for one incident; what to record
        of it on the incident's timeline."""
        channel = self._channels.get(timer.step)
        if channel is None:
            log.warning("deliver timer for a sink not configured", sink=timer.step)
            return None
        records = DeliveryRecords(self._clock)
        await self._locked(channel, timer.incident_id, None, records, retry=True)
        return records.result()

    async def close(self) -> None:
        await self.lost.close()
        for channel in self._channels.values():
            await channel.sink.close()

    async def _all(
        self, incident_id: str, known: IncidentChange | None, records: DeliveryRecords
    ) -> None:
        # This process's own output first, in line: it waits on nothing, and a task per
        # change would cost more than printing it (an alert storm is many changes).
        for channel in self._channels.values():
            if channel.per_process:
                await self._in_process(channel, known, records)
        shared = [c for c in self._channels.values() if not c.per_process]
        if not shared:
            return  # the embedded default: nothing to claim or record in the store
        results = await asyncio.gather(
            *(self._locked(c, incident_id, known, records, retry=False) for c in shared),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]  # the store failed: the signal is handled again later

    async def _in_process(
        self, channel: Channel, known: IncidentChange | None, records: DeliveryRecords
    ) -> None:
        """A per-process channel: the change in hand, planned against what this process
        told before, sent once, best effort."""
        if known is None or not known.events:
            return
        incident = known.incident
        slot = (incident.id, channel.name)
        state = self._told.pop(slot, None) or DeliveryState()
        events = [e for e in known.events if e.seq >= state.cursor]
        now = self._clock.now()
        try:
            messages = channel.planner.plan(incident, events, state, now) if events else []
        except TemplateProblem as exc:
            log.error("message does not render", sink=channel.name, error=str(exc))
            messages = []
        for message in messages:
            key = f"{incident.id}:notify:{channel.name}:{message.step}"
            message = message.model_copy(update={"fields": {**message.fields, "key": key}})
            try:
                # no time limit: writing to this process's output cannot be cut short
                refs = await channel.sink.send(message, state.refs)
            except Exception as exc:  # noqa: BLE001 - nothing to retry on a console
                log.warning("message not shown", sink=channel.name, error=str(exc))
                continue
            self._metrics.notification_counter(channel.name, "sent").inc()
            if message.marks == "root" and not state.refs.get("root"):
                # once per incident and process: the postmortem's "first message"
                where = f" in {message.fields['channel']}" if message.fields.get("channel") else ""
                records.record(
                    channel.name,
                    EventKind.NOTIFICATION_POSTED,
                    f"{label(channel.name)}: root message posted{where}",
                )
            state = sent_state(state, message, {"refs": refs, "shows": message.shows})
        if events:
            state = state.model_copy(update={"cursor": events[-1].seq + 1})
        self._told[slot] = state
        while len(self._told) > _TOLD_MAX:
            self._told.popitem(last=False)

    async def _locked(
        self,
        channel: Channel,
        incident_id: str,
        known: IncidentChange | None,
        records: DeliveryRecords,
        *,
        retry: bool,
    ) -> None:
        lock = f"notify:{incident_id}:{channel.name}"
        token = f"{self._owner}:{secrets.token_hex(4)}"
        if not await self._acquire(lock, token):
            # Another worker delivers this incident to this sink now and may not see what
            # was just written: look again shortly.
            await self._retries.schedule(incident_id, channel.name, self._policy.busy_retry_s)
            return
        try:
            await self._run(channel, incident_id, known, records, retry=retry)
        finally:
            await self._ledger.release_lock(lock, token=token)

    async def _acquire(self, lock: str, token: str) -> bool:
        """The lock, waiting a little for a holder that is about done (the usual case: two
        workers following up one incident at once)."""
        deadline = self._clock.monotonic() + self._policy.lock_wait_s
        while True:
            if await self._ledger.acquire_lock(lock, token=token, ttl_s=self._policy.lease_s):
                return True
            if self._clock.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _run(
        self,
        channel: Channel,
        incident_id: str,
        known: IncidentChange | None,
        records: DeliveryRecords,
        *,
        retry: bool,
    ) -> None:
        name = channel.name
        now = self._clock.now()
        state = await self._ledger.delivery_state(incident_id, name) or DeliveryState()
        if state.retry_at is not None and state.retry_at > now and not retry:
            return  # a retry is scheduled; it delivers the backlog, in order
        error = self._retries.circuit_open(name)
        if error is not None:
            state = await self._retries.failed_attempt(
                incident_id, name, state, error, records, count=False
            )
            await self._ledger.save_delivery_state(incident_id, name, state)
            return
        incident, events = await self._pending(incident_id, state, known)
        if incident is None:
            return
        for _ in range(_MAX_PASSES):
            try:
                messages = channel.planner.plan(incident, events, state, now)
            except TemplateProblem as exc:
                # templates are checked at start-up; one failing on this incident's data
                # must not stall the sink: say so once and go on
                log.error("message does not render", sink=name, error=str(exc))
                records.record(name, EventKind.NOTIFICATION_FAILED, f"{label(name)}: {exc}")
                messages = []
            cursor = max(state.cursor, events[-1].seq + 1) if events else state.cursor
            for message in messages:
                state, delivered = await self._send_once.send(
                    channel, incident, message, state, records
                )
                if not delivered:
                    await self._ledger.save_delivery_state(incident_id, name, state)
                    return
            state = state.model_copy(update={"cursor": cursor})
            events = []
            if not messages:
                break
        await self._ledger.save_delivery_state(incident_id, name, state)

    async def _pending(
        self, incident_id: str, state: DeliveryState, known: IncidentChange | None
    ) -> tuple[Incident | None, list[TimelineEvent]]:
        """The incident and its events from the sink's cursor on. The change in hand will
        do when it starts at or before the cursor and is not older than what the sink was
        last told; else the store has the truth."""
        if (
            known is not None
            and known.events
            and known.events[0].seq <= state.cursor <= known.incident.events_count
        ):
            return known.incident, [e for e in known.events if e.seq >= state.cursor]
        view = await self._store.get_incident(incident_id)
        if view is None:
            return None, []
        return view.incident, [e for e in view.timeline if e.seq >= state.cursor]
