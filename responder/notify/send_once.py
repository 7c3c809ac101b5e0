"""Sending one message to one sink exactly once, whatever failed before.

The message's effect ``{incident}:notify:{sink}:{step}`` is claimed first: one already
sent (a redelivery, another replica) is skipped; one whose worker died mid-send, or whose
last try timed out, is looked for at the sink (``Sink.find_sent``, told the time of the
earliest try) before it is sent again; a thread a lost record opened is taken over rather
than opened twice (``LostRecords``). Then it is sent with a time limit and its effect
finished: sent, or failed for good; a retryable failure gives the claim back
(``Retries``).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import JsonValue

from responder.domain.incident import Incident
from responder.domain.notification import DeliveryState, Outbound
from responder.domain.timeline import EventKind
from responder.metrics import Metrics
from responder.notify.channels import Channel, DeliveryPolicy
from responder.notify.delivery_records import DeliveryRecords, label
from responder.notify.lost_records import LostRecords
from responder.notify.retries import Retries
from responder.notify.shared_threads import SharedThreads, SinkBusy
from responder.ports import ActionLedger, Clock, DeliveryError, EffectClaim

log = structlog.get_logger("responder.notify")

# The messages that open an incident's thread at a sink: taken over from an incident whose
# record the store lost, rather than opened twice (SendOnce._adopt).
_OPENING_MARKS = frozenset({"root", "create"})


class SendOnce:
    """Sends one planned message of an incident to a sink, once."""

    def __init__(
        self,
        *,
        ledger: ActionLedger,
        clock: Clock,
        metrics: Metrics,
        policy: DeliveryPolicy,
        owner: str,
        retries: Retries,
        lost: LostRecords,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._metrics = metrics
        self._policy = policy
        self._owner = owner
        self._retries = retries
        self._lost = lost

    async def send(
        self,
        channel: Channel,
        incident: Incident,
        message: Outbound,
        state: DeliveryState,
        records: DeliveryRecords,
    ) -> tuple[DeliveryState, bool]:
        """Send one message once; the new state, and whether the next may go. What the
        timeline should tell of it goes in ``records``."""
        name = channel.name
        key = f"{incident.id}:notify:{name}:{message.step}"
        fields = {**message.fields, "key": key, "incident_group": group_mark(incident.group_key)}
        message = message.model_copy(update={"fields": fields})
        claimed_at = self._clock.now()
        claim = await self._ledger.claim_effect(
            key, owner=self._owner, lease_s=self._policy.lease_s
        )
        if claim.status == "done":
            return sent_state(state, message, claim.data), True
        if claim.status == "busy":
            await self._retries.schedule(incident.id, name, self._policy.busy_retry_s)
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
                return self._delivered(name, message, state, data, records), True
        shared = channel.sink if isinstance(channel.sink, SharedThreads) else None
        if (
            claim.status == "start"
            and message.marks in _OPENING_MARKS
            and not (shared is not None and await shared.open_for(message))
        ):
            adopted = await self._adopt(channel, incident, message, records)
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
            await self._retries.schedule(incident.id, name, self._policy.busy_retry_s)
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
            self._retries.succeeded(name)
            return self._delivered(name, message, state, data, records), True
        now = self._clock.now()
        too_long = (
            state.failing_since is not None
            and (now - state.failing_since).total_seconds() > self._policy.give_up_s
        )
        if error.retryable and not too_long:
            await self._ledger.release_effect(key, owner=self._owner)
            failed = await self._retries.failed_attempt(incident.id, name, state, error, records)
            uncertain, when = (key, since) if error.uncertain else (None, None)
            failed = failed.model_copy(update={"uncertain": uncertain, "uncertain_since": when})
            return failed, False
        # given up: recorded, and the rest goes on
        self._metrics.notifications.labels(name, "failed").inc()
        await self._ledger.finish_effect(key, data={"failed": str(error)})
        why = "failing for too long" if too_long else "refused"
        records.record(
            name,
            EventKind.NOTIFICATION_FAILED,
            f"{label(name)}: {message.op} {message.step} {why}: {error}",
            step=message.step,
            error=str(error),
        )
        return _settled(state, message, {"failed": str(error)}), True

    def _delivered(
        self,
        name: str,
        message: Outbound,
        state: DeliveryState,
        data: dict[str, JsonValue],
        records: DeliveryRecords,
    ) -> DeliveryState:
        now = self._clock.now()
        if state.attempts:
            since = state.failing_since or now
            records.record(
                name,
                EventKind.NOTIFICATION_RECOVERED,
                f"{label(name)}: delivering again after {_seconds(now - since)} of failures "
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
            records.record(
                name,
                EventKind.NOTIFICATION_POSTED,
                f"{label(name)}: {what}{where}",
                refs=shown,
            )
        return _settled(state, message, data)

    async def _adopt(
        self, channel: Channel, incident: Incident, message: Outbound, records: DeliveryRecords
    ) -> dict[str, JsonValue] | None:
        """Before opening a thread for ``incident``: the thread a lost record of it opened,
        taken over (``LostRecords``); the delivery record of the message, if so."""
        group = str(message.fields["incident_group"])
        thread = await self._lost.adoptable(channel, incident, message, group)
        if thread is None:
            return None
        data: dict[str, JsonValue] = {"refs": thread.refs, "found": True}
        if thread.incident_id == incident.id:
            return data  # its own, posted before its delivery record was lost
        owner = thread.incident_id
        shown = {k: v for k, v in thread.refs.items() if k in ("channel", "ts", "id")}
        records.record(
            channel.name,
            EventKind.NOTIFICATION_ADOPTED,
            f"{label(channel.name)}: the store lost the record of {owner}; this "
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


_POSTED = {
    "root": "root message posted",
    "create": "incident created",
    "triggered": "on-call paged (Events API trigger)",
}


def _seconds(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def group_mark(group_key: str) -> str:
    """What marks an incident's group at a sink: a digest (group keys hold label values,
    and a sink's metadata is readable by all who see the message)."""
    return hashlib.sha256(group_key.encode()).hexdigest()[:20]


def _settled(state: DeliveryState, message: Outbound, data: dict[str, Any]) -> DeliveryState:
    """``sent_state``, and the sink's failure record cleared: the message is done with,
    sent or failed for good, and the next one starts afresh."""
    return sent_state(state, message, data).model_copy(
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


def sent_state(state: DeliveryState, message: Outbound, data: dict[str, Any]) -> DeliveryState:
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
    if message.counts_as_update:
        update["updates"] = state.updates + 1
    return state.model_copy(update=update)
