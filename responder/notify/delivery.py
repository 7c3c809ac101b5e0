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

The sinks run concurrently and each send is bounded in time, so one sink down slows
neither the others nor the pipeline; nothing a sink does raises into the pipeline, only a
store that cannot be reached does (the signal is then retried, as for any stage).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import JsonValue

from responder.domain.incident import (
    Incident,
    IncidentChange,
    record_delivery,
)
from responder.domain.notification import DeliveryState, Outbound
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind, TimelineEvent
from responder.metrics import Metrics
from responder.notify.lost_records import LostRecords
from responder.notify.planners import Planner
from responder.notify.retry import CircuitBreaker, backoff_s
from responder.notify.shared_threads import SharedThreads, SinkBusy
from responder.ports import (
    ActionLedger,
    Clock,
    DeliveryError,
    EffectClaim,
    IncidentState,
    Sink,
    Store,
    mutate_incident,
)
from responder.render.templates import TemplateProblem

log = structlog.get_logger("responder.notify")

# Re-planning after a pass settles one-off steps found done with other content; more than
# this many passes would mean a planner that never settles.
_MAX_PASSES = 3
# Per-process channels remember this many incidents (an alert storm must not grow memory).
_TOLD_MAX = 10_000
# The messages that open an incident's thread at a sink: taken over from an incident whose
# record the store lost, rather than opened twice (Delivery._adopt).
_OPENING_MARKS = frozenset({"root", "create"})
# Events other sinks may want to tell (a delay, a failure): they get a follow-up at once.
_TELL_OTHERS = frozenset({EventKind.NOTIFICATION_DELAYED, EventKind.NOTIFICATION_FAILED})
SINK_NAMES = {
    "slack": "Slack",
    "statuspage": "Status page",
    "pagerduty": "PagerDuty",
    "console": "Console",
}


@dataclass(frozen=True)
class Channel:
    """A sink and the planner that writes its messages.

    ``per_process``: the sink is this process's own output (the console). What it was
    told is kept in memory, not in the store, with no lock and no idempotency record:
    another replica prints on its own console, and a line printed twice after a crash
    harms nobody. It costs the store nothing, which matters in an alert storm.
    """

    sink: Sink
    planner: Planner
    per_process: bool = False
    # the messages that say so (``Outbound.shared``) go to a thread several incidents
    # share: one status page incident per set of components (``SharedThreads``)
    shared: bool = False

    @property
    def name(self) -> str:
        return self.sink.name


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 10.0  # one send
    lease_s: float = 60.0  # the (incident, sink) lock and a message's claim, if its worker dies
    retry_base_s: float = 2.0
    retry_cap_s: float = 300.0
    give_up_s: float = 24 * 3600.0  # a message failing this long is recorded as failed
    lock_wait_s: float = 2.0  # another worker delivers: wait this long for it to finish
    busy_retry_s: float = 2.0  # ... then look again after this
    breaker_threshold: int = 5
    breaker_open_s: float = 30.0


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
        self._breakers = {
            name: CircuitBreaker(
                threshold=self._policy.breaker_threshold, open_s=self._policy.breaker_open_s
            )
            for name in self._channels
        }

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

    async def incident_changed(self, change: IncidentChange) -> None:
        await self._all(change.incident.id, change)

    async def deliver(self, timer: TimerSignal) -> None:
        """A scheduled retry (or catch-up) of one sink for one incident."""
        channel = self._channels.get(timer.step)
        if channel is None:
            log.warning("deliver timer for a sink not configured", sink=timer.step)
            return
        await self._locked(channel, timer.incident_id, None, retry=True)

    async def close(self) -> None:
        await self.lost.close()
        for channel in self._channels.values():
            await channel.sink.close()

    async def _all(self, incident_id: str, known: IncidentChange | None) -> None:
        # This process's own output first, in line: it waits on nothing, and a task per
        # change would cost more than printing it (an alert storm is many changes).
        for channel in self._channels.values():
            if channel.per_process:
                await self._in_process(channel, known)
        shared = [c for c in self._channels.values() if not c.per_process]
        if not shared:
            return  # the embedded default: nothing to claim or record in the store
        results = await asyncio.gather(
            *(self._locked(c, incident_id, known, retry=False) for c in shared),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]  # the store failed: the signal is handled again later

    async def _in_process(self, channel: Channel, known: IncidentChange | None) -> None:
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
                await self._record(
                    incident.id,
                    channel.name,
                    EventKind.NOTIFICATION_POSTED,
                    f"{_label(channel.name)}: root message posted{where}",
                )
            state = _sent(state, message, {"refs": refs, "shows": message.shows})
        if events:
            state = state.model_copy(update={"cursor": events[-1].seq + 1})
        self._told[slot] = state
        while len(self._told) > _TOLD_MAX:
            self._told.popitem(last=False)

    async def _locked(
        self, channel: Channel, incident_id: str, known: IncidentChange | None, *, retry: bool
    ) -> None:
        lock = f"notify:{incident_id}:{channel.name}"
        token = f"{self._owner}:{secrets.token_hex(4)}"
        if not await self._acquire(lock, token):
            # Another worker delivers this incident to this sink now and may not see what
            # was just written: look again shortly.
            await self._schedule(incident_id, channel.name, self._policy.busy_retry_s)
            return
        try:
            await self._run(channel, incident_id, known, retry=retry)
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
        self, channel: Channel, incident_id: str, known: IncidentChange | None, *, retry: bool
    ) -> None:
        name = channel.name
        now = self._clock.now()
        state = await self._ledger.delivery_state(incident_id, name) or DeliveryState()
        if state.retry_at is not None and state.retry_at > now and not retry:
            return  # a retry is scheduled; it delivers the backlog, in order
        breaker = self._breakers[name]
        if not breaker.allows(self._clock.monotonic()):
            assert breaker.open_until is not None
            wait = breaker.open_until - self._clock.monotonic()
            error = DeliveryError(
                f"circuit open after repeated failures; next try in {wait:.0f}s",
                retryable=True,
                retry_after_s=wait,
            )
            state = await self._failed_attempt(incident_id, name, state, error, count=False)
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
                await self._record(
                    incident_id, name, EventKind.NOTIFICATION_FAILED, f"{_label(name)}: {exc}"
                )
                messages = []
            cursor = max(state.cursor, events[-1].seq + 1) if events else state.cursor
            for message in messages:
                state, delivered = await self._one(channel, incident, message, state)
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

    async def _one(
        self, channel: Channel, incident: Incident, message: Outbound, state: DeliveryState
    ) -> tuple[DeliveryState, bool]:
        """Send one message once; the new state, and whether the next may go."""
        name = channel.name
        key = f"{incident.id}:notify:{name}:{message.step}"
        fields = {**message.fields, "key": key, "incident_group": group_mark(incident.group_key)}
        message = message.model_copy(update={"fields": fields})
        claimed_at = self._clock.now()
        claim = await self._ledger.claim_effect(
            key, owner=self._owner, lease_s=self._policy.lease_s
        )
        if claim.status == "done":
            return _sent(state, message, claim.data), True
        if claim.status == "busy":
            await self._schedule(incident.id, name, self._policy.busy_retry_s)
            return state, False
        since = _tried_since(claim, state, key, claimed_at)
        if claim.status == "recover" or (claim.status == "start" and state.uncertain == key):
            found = await self._find(channel, message, state, since)
            if found is not None:
                # found as it was sent then, not as the incident is now: what it shows is
                # unknown, so the next plan edits it (an alert may have resolved between)
                data: dict[str, JsonValue] = {"refs": found, "found": True}
                await self._ledger.finish_effect(key, data=data)
                self._metrics.notifications.labels(name, "found").inc()
                return await self._delivered(incident, name, message, state, data), True
        shared = channel.sink if isinstance(channel.sink, SharedThreads) else None
        if (
            claim.status == "start"
            and message.marks in _OPENING_MARKS
            and not (shared is not None and await shared.open_for(message))
        ):
            adopted = await self._adopt(channel, incident, message)
            refs = adopted.get("refs") if adopted is not None else None
            if adopted is not None and shared is not None and isinstance(refs, dict):
                # the components' thread, if they have one already
                adopted = {**adopted, "refs": await shared.adopted(message, refs)}
            if adopted is not None:
                await self._ledger.finish_effect(key, data=adopted)
                self._metrics.notifications.labels(name, "adopted").inc()
                return _settled(state, message, adopted), True
        started = self._clock.monotonic()
        error: DeliveryError
        try:
            refs = await asyncio.wait_for(
                channel.sink.send(message, state.refs), self._policy.timeout_s
            )
        except SinkBusy:
            # another worker edits the shared thread: not a failure of the sink
            await self._ledger.release_effect(key, owner=self._owner)
            await self._schedule(incident.id, name, self._policy.busy_retry_s)
            return state, False
        except TimeoutError:
            error = DeliveryError(
                f"no answer within {self._policy.timeout_s:g}s", retryable=True, uncertain=True
            )
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # a sink's bug must not stall the others: retried, logged
            log.exception("sink failed unexpectedly", sink=name)
            error = DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
        else:
            self._metrics.notify_seconds.labels(name).observe(self._clock.monotonic() - started)
            self._metrics.notification_counter(name, "sent").inc()
            data = {"refs": refs, "shows": message.shows}
            await self._ledger.finish_effect(key, data=data)
            self._breakers[name].success()
            self._metrics.circuit_open.labels(name).set(0)
            return await self._delivered(incident, name, message, state, data), True
        now = self._clock.now()
        too_long = (
            state.failing_since is not None
            and (now - state.failing_since).total_seconds() > self._policy.give_up_s
        )
        if error.retryable and not too_long:
            await self._ledger.release_effect(key, owner=self._owner)
            failed = await self._failed_attempt(incident.id, name, state, error)
            uncertain, when = (key, since) if error.uncertain else (None, None)
            failed = failed.model_copy(update={"uncertain": uncertain, "uncertain_since": when})
            return failed, False
        # given up: recorded, and the rest goes on
        self._metrics.notifications.labels(name, "failed").inc()
        await self._ledger.finish_effect(key, data={"failed": str(error)})
        why = "failing for too long" if too_long else "refused"
        await self._record(
            incident.id,
            name,
            EventKind.NOTIFICATION_FAILED,
            f"{_label(name)}: {message.op} {message.step} {why}: {error}",
            step=message.step,
            error=str(error),
        )
        return _settled(state, message, {"failed": str(error)}), True

    async def _delivered(
        self,
        incident: Incident,
        name: str,
        message: Outbound,
        state: DeliveryState,
        data: dict[str, JsonValue],
    ) -> DeliveryState:
        now = self._clock.now()
        if state.attempts:
            since = state.failing_since or now
            await self._record(
                incident.id,
                name,
                EventKind.NOTIFICATION_RECOVERED,
                f"{_label(name)}: delivering again after {_seconds(now - since)} of failures "
                f"({state.attempts} failed attempts)",
                attempts=state.attempts,
            )
        refs = data.get("refs")
        if message.marks in ("root", "create", "triggered") and isinstance(refs, dict):
            shown = {k: v for k, v in refs.items() if k in ("channel", "ts", "id", "dedup_key")}
            where = f" in {message.fields['channel']}" if message.fields.get("channel") else ""
            what = _POSTED.get(message.marks, message.op)
            if refs.get("attached"):
                what = "attached to the incident already open for its components"
            await self._record(
                incident.id,
                name,
                EventKind.NOTIFICATION_POSTED,
                f"{_label(name)}: {what}{where}",
                refs=shown,
            )
        return _settled(state, message, data)

    async def _adopt(
        self, channel: Channel, incident: Incident, message: Outbound
    ) -> dict[str, JsonValue] | None:
        """Before opening a thread for ``incident``: the thread a lost record of it opened,
        taken over (``LostRecords``); the delivery record of the message, if so."""
        group = str(message.fields["incident_group"])
        thread = await self.lost.adoptable(channel, incident, message, group)
        if thread is None:
            return None
        data: dict[str, JsonValue] = {"refs": thread.refs, "found": True}
        if thread.incident_id == incident.id:
            return data  # its own, posted before its delivery record was lost
        owner = thread.incident_id
        shown = {k: v for k, v in thread.refs.items() if k in ("channel", "ts", "id")}
        await self._record(
            incident.id,
            channel.name,
            EventKind.NOTIFICATION_ADOPTED,
            f"{_label(channel.name)}: the store lost the record of {owner}; this "
            f"incident takes over what was posted for it",
            refs=shown,
            lost_incident=owner,
        )
        return data | {"adopted": owner}

    async def _find(
        self, channel: Channel, message: Outbound, state: DeliveryState, since: datetime | None
    ) -> dict[str, JsonValue] | None:
        if since is not None:
            fields = {**message.fields, "sent_after": since.timestamp()}
            message = message.model_copy(update={"fields": fields})
        try:
            return await asyncio.wait_for(
                channel.sink.find_sent(message, state.refs), self._policy.timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - cannot tell: send it again
            log.warning(
                "could not tell whether a message was sent", sink=channel.name, error=str(exc)
            )
            return None

    async def _failed_attempt(
        self,
        incident_id: str,
        name: str,
        state: DeliveryState,
        error: DeliveryError,
        *,
        count: bool = True,
    ) -> DeliveryState:
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
        await self._schedule(incident_id, name, delay)
        if state.attempts == 0 or opened:
            what = (
                f"circuit open after {self._policy.breaker_threshold} failures in a row ({error})"
                if opened
                else str(error)
            )
            await self._record(
                incident_id,
                name,
                EventKind.NOTIFICATION_DELAYED,
                f"{_label(name)}: {what}; trying again in {delay:.0f}s, until it works",
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

    async def _schedule(self, incident_id: str, sink: str, delay_s: float) -> None:
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

    async def _record(
        self,
        incident_id: str,
        sink: str,
        kind: EventKind,
        detail: str,
        *,
        refs: dict[str, JsonValue] | None = None,
        **data: JsonValue,
    ) -> None:
        """A timeline event of what a sink did or could not do."""
        now = self._clock.now()

        def mutate(found: IncidentState) -> IncidentChange | None:
            if found.incident is None:
                return None
            return record_delivery(
                found.incident, sink, now, kind=kind, detail=detail, refs=refs, **data
            )

        await mutate_incident(self._store, incident_id, mutate)
        if kind is EventKind.NOTIFICATION_ADOPTED or (
            kind in _TELL_OTHERS and len(self._channels) > 1
        ):
            # the other sinks may tell people (the Slack thread says the status page is
            # late), and a takeover is told in the very thread taken over: follow the new
            # event up now rather than with the incident's next change
            await self._ledger.schedule(
                TimerSignal.follow_up_now(incident_id, f"notify:{sink}", now)
            )


_POSTED = {
    "root": "root message posted",
    "create": "incident created",
    "triggered": "on-call paged (Events API trigger)",
}


def _label(sink: str) -> str:
    return SINK_NAMES.get(sink, sink)


def _seconds(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def group_mark(group_key: str) -> str:
    """What marks an incident's group at a sink: a digest (group keys hold label values,
    and a sink's metadata is readable by all who see the message)."""
    return hashlib.sha256(group_key.encode()).hexdigest()[:20]


def _settled(state: DeliveryState, message: Outbound, data: dict[str, Any]) -> DeliveryState:
    """``_sent``, and the sink's failure record cleared: the message is done with, sent or
    failed for good, and the next one starts afresh."""
    return _sent(state, message, data).model_copy(
        update={
            "attempts": 0,
            "failing_since": None,
            "retry_at": None,
            "last_error": None,
            "uncertain": None,
            "uncertain_since": None,
        }
    )


def _tried_since(
    claim: EffectClaim, state: DeliveryState, key: str, now: datetime
) -> datetime | None:
    """No try of the message ``key`` is older than this: ``now``, this try's claim, or an
    earlier try's (a dead worker's claim, a try that timed out); ``None`` when an earlier
    try's time is unknown (its record predates the claim time)."""
    tries = [now]
    if claim.status == "recover":
        if claim.claimed_at is None:
            return None
        tries.append(claim.claimed_at)
    if state.uncertain == key:
        if state.uncertain_since is None:
            return None
        tries.append(state.uncertain_since)
    return min(tries)


def _sent(state: DeliveryState, message: Outbound, data: dict[str, Any]) -> DeliveryState:
    """The state once ``message`` is done: its handles kept, what the sink shows now."""
    refs = dict(state.refs)
    found = data.get("refs")
    if isinstance(found, dict):
        refs.update(found)
    if message.marks:
        refs[message.marks] = "failed" if data.get("failed") else True
    shows = data.get("shows") if isinstance(data.get("shows"), dict) else None
    update: dict[str, Any] = {"refs": refs}
    if message.shows:
        update["shows"] = {} if data.get("found") else shows or message.shows
    if message.step == f"update{state.updates + 1}":
        update["updates"] = state.updates + 1
    return state.model_copy(update=update)
