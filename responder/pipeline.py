"""Runs signals through the stages of an incident's life.

Today: keep incidents (open, join, resolve, PagerDuty links, acks and notes) and tell the
notifier. Later stages (triage, decision, mitigation) plug in as ``IncidentStage``s that
see, in order, every event an incident gets.

Handling is at-least-once (the queue may redeliver), so every step must be idempotent: the
incident transitions are (see ``domain.incident``); a signal that a newer one has
superseded since it was queued is skipped; and follow-up work is driven by the incident's
processed cursor, so events written but not yet followed up (their worker died) are picked
up by the next handling of that incident.

A worker hands over the batch of entries it read at once: alerts of one group are applied
to their incident in one read and one write, and the reads, writes and follow-up marks of
the whole batch each take one store round trip. An alert storm is where this counts.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog
from pydantic import JsonValue

from responder.domain.decision import Decision
from responder.domain.errors import RetryLaterError, StoreUnavailableError
from responder.domain.incident import (
    IncidentChange,
    IncidentLookup,
    acknowledge,
    apply_alert,
    apply_pagerduty,
    classify,
    collect_into_storm,
    combine,
    decide_approval,
    new_incident_id,
    note_fire,
    open_from_pagerduty,
    open_incident,
    open_storm,
    pause_automation,
    recent_fires,
    reopen_flapping,
    resume_automation,
)
from responder.domain.notification import PAGE_KEY_PREFIX
from responder.domain.severity import SeverityLevel
from responder.domain.signal import (
    AckSignal,
    AlertSignal,
    AlertStatus,
    HumanSignal,
    PagerDutySignal,
    QueuedSignal,
    TimerSignal,
    group_key_for,
)
from responder.domain.timeline import EventKind, TimelineEvent
from responder.keyed_locks import KeyedLocks
from responder.metrics import Metrics
from responder.ports import (
    Clock,
    IncidentMutator,
    IncidentState,
    MutationItem,
    MutationResult,
    Notifier,
    SignalRecord,
    SignalRef,
    StageIncompleteError,
    StageResult,
    Store,
    record_results,
)
from responder.rules.engine import AlertInput, RuleSet
from responder.rules.schema import Flapping
from responder.yielding import Slices

log = structlog.get_logger("responder.pipeline")

# Work scheduled for later (an action's verification, another try at a sink), by timer
# kind; a ``follow_up`` timer needs none: the follow-up runs for every timer's incident.
# Its result is written on the timer's incident, then followed up like any change.
TimerHandler = Callable[[TimerSignal], Awaitable["StageResult | None"]]


class IncidentStage(Protocol):
    """A later stage of the pipeline; sees every new timeline event once it is written.

    A stage returns what it wants recorded on the incident (``StageResult``: mutators, and
    the work to do once they are written) and writes nothing itself: the pipeline writes
    what the stages of a round return in one store call, and the events written go through
    the stages in turn. Stages must be idempotent per event: after a crash, events not yet
    marked processed are handed to them again.

    ``reads_store``: the stage reads the incident from the store and must find there what
    the stages before it in the round asked to record (the report's draft shows the
    reverts made on resolve): the pipeline writes those first.
    """

    reads_store: bool

    async def __call__(self, change: IncidentChange) -> StageResult | None: ...


# Workers handle entries in parallel, so a later signal can overtake an earlier one: a
# PagerDuty note or ack can come before the "triggered" that links the incident, an
# alert's resolve before its firing. Such a signal younger than this is retried later
# rather than dropped.
_LINK_GRACE_S = 60.0

# A stage that keeps adding events would otherwise loop forever.
_MAX_FOLLOW_UP_ROUNDS = 20

# The events of a group collected into its pack's alert storm incident (the first one
# opens it), instead of an incident of its own.
_CAPPED_KINDS = frozenset({EventKind.INCIDENT_STORM, EventKind.STORM_COLLECTED})


@dataclass(frozen=True, slots=True)
class Order:
    """A signal's place among those of its ordering key (intake numbered them), and
    whether it may go ahead of a gap it has waited too long for."""

    key: str
    seq: int
    skip_gap: bool = False


@dataclass
class Handled:
    """What became of one signal."""

    change: IncidentChange | None = None
    incident_id: str | None = None
    retry_reason: str | None = None  # not handled yet: leave it pending, try again later
    error: Exception | None = None  # its follow-up failed: retry, or dead-letter in the end
    waiting: bool = False  # an earlier signal of its group is not applied yet: try soon
    # applied, but its incident's follow-up is in another replica's hands (its lease):
    # try soon, not a failure; the next try finds the events followed up, or follows
    # up what the holder had not seen
    busy: bool = False


@dataclass
class _FollowUp:
    """One incident's new events from this batch, and the signals that made them."""

    signals: list[int] = field(default_factory=list)
    changes: list[IncidentChange] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        metrics: Metrics,
        group_by: Sequence[str],
        rules: Callable[[], RuleSet] = RuleSet,
        force_dry_run: bool = False,
        stages: Sequence[IncidentStage] = (),
        timer_handlers: Mapping[str, TimerHandler] | None = None,
        follow_up_lease_s: float = 30.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._notifier = notifier
        self._metrics = metrics
        self._group_by = tuple(group_by)  # for alerts no rule pack claims
        self._rules = rules
        self._force_dry_run = force_dry_run
        self._stages = tuple(stages)
        self._timer_handlers = dict(timer_handlers or {})
        # the incidents (by lookup) a consumer task of this process is applying and
        # following up: another task with signals for them waits (see keyed_locks)
        self._incidents_in_hand = KeyedLocks()
        # incidents this process is following up now (see renew_follow_ups)
        self._following: Counter[str] = Counter()
        # the follow-up leases this process holds (one task at a time per incident, by
        # _incidents_in_hand), renewed with the queue's leases; a lease lapses after
        # follow_up_lease_s when its process dies
        self._lease_token = f"pipeline-{uuid.uuid4().hex}"
        self._follow_up_lease_s = follow_up_lease_s
        self._leased: set[str] = set()

    def classify(self, signal: AlertSignal) -> tuple[Decision, SeverityLevel]:
        """What the rules in force say of an alert, before triage."""
        return self._classify(signal)[:2]

    def _classify(self, signal: AlertSignal) -> tuple[Decision, SeverityLevel, Flapping]:
        rules = self._rules()
        decision = rules.classify(
            AlertInput(labels=signal.labels, annotations=signal.annotations, source=signal.source)
        )
        if self._force_dry_run and decision.actions:
            decision = decision.model_copy(
                update={
                    "actions": tuple(
                        a.model_copy(update={"dry_run": True}) for a in decision.actions
                    )
                }
            )
        return (
            decision,
            rules.severity_level(decision.pack, decision.severity),
            rules.flapping(decision.pack),
        )

    async def handle(
        self, *signals: QueuedSignal, orders: Sequence[Order | None] = ()
    ) -> list[Handled]:
        """Apply signals, in order, to their incidents, then run the follow-up stages.

        Returns one ``Handled`` per signal. Follow-up runs for every incident a signal
        found, changed or not: a redelivered signal finds its change applied but perhaps
        not yet followed up, because the worker that applied it died first. ``orders``:
        each signal's place under its ordering key (see ``Order``); one that comes before
        an earlier signal of its key was applied is not applied (``Handled.waiting``).
        """
        handled = [Handled() for _ in signals]
        items, owners = await self._items(signals, handled, self._clock.now(), orders)
        keys = [f"{lk.kind}:{lk.key}" for item in items for lk in item.lookups]
        async with self._incidents_in_hand.hold(keys):
            await self._apply(signals, handled, items, owners)
        return handled

    async def _apply(
        self,
        signals: Sequence[QueuedSignal],
        handled: list[Handled],
        items: list[MutationItem],
        owners: list[list[int]],
    ) -> None:
        results = await self._store.mutate_incidents(items) if items else []
        follow_ups: dict[str, _FollowUp] = {}
        for item_owners, item_results in zip(owners, results, strict=True):
            for index, result in zip(item_owners, item_results, strict=True):
                if result.waiting:
                    handled[index].waiting = True
                    continue
                self._record(signals[index], result, handled[index])
                if result.incident_id is None:
                    continue
                follow = follow_ups.setdefault(result.incident_id, _FollowUp())
                follow.signals.append(index)
                if result.change is not None:
                    follow.changes.append(result.change)
        for index, signal in enumerate(signals):
            if isinstance(signal, TimerSignal):
                await self._timer(index, signal, handled, follow_ups)
        await self._follow_up_all(follow_ups, handled)

    async def _timer(
        self,
        index: int,
        signal: TimerSignal,
        handled: list[Handled],
        follow_ups: dict[str, _FollowUp],
    ) -> None:
        """Work the service scheduled for itself (an action's verification, a follow-up)."""
        try:
            change = None
            timer_handler = self._timer_handlers.get(signal.kind)
            result = await timer_handler(signal) if timer_handler is not None else None
            if result is not None:
                change = await record_results(self._store, signal.incident_id, [result])
        except RetryLaterError as exc:
            handled[index].retry_reason = str(exc) or type(exc).__name__
            return
        except Exception as exc:
            log.exception("timer failed", step=signal.step)
            handled[index].error = exc
            return
        handled[index].change = change
        handled[index].incident_id = signal.incident_id
        follow_ups.setdefault(signal.incident_id, _FollowUp()).signals.append(index)

    async def _items(
        self,
        signals: Sequence[QueuedSignal],
        handled: list[Handled],
        now: datetime,
        orders: Sequence[Order | None],
    ) -> tuple[list[MutationItem], list[list[int]]]:
        """One item per alert group (its alerts in order), one per PagerDuty event; and for
        each item, the indexes of its signals."""

        def order(index: int) -> Order | None:
            return orders[index] if index < len(orders) else None

        groups: dict[str, list[int]] = {}
        decisions: dict[int, tuple[Decision, SeverityLevel, Flapping]] = {}
        items: list[MutationItem] = []
        owners: list[list[int]] = []
        slices = Slices()
        for index, signal in enumerate(signals):
            await slices.tick()
            if isinstance(signal, TimerSignal):
                continue
            if isinstance(signal, AckSignal | HumanSignal):
                placed = order(index)
                mutator = (
                    _ack_mutator(signal, now)
                    if isinstance(signal, AckSignal)
                    else _human_mutator(signal, now)
                )
                items.append(
                    MutationItem(
                        lookups=(IncidentLookup(kind="id", key=signal.incident_id),),
                        mutators=(mutator,),
                        order_key=placed.key if placed else None,
                        seqs=(placed.seq,) if placed else (),
                        skip_gap=placed.skip_gap if placed else False,
                    )
                )
                owners.append([index])
                continue
            if isinstance(signal, AlertSignal):
                decisions[index] = self._classify(signal)
                placed = order(index)
                if placed is not None:  # intake named its group: the one it is ordered in
                    groups.setdefault(placed.key, []).append(index)
                    continue
                group_by = decisions[index][0].group_by or self._group_by
                groups.setdefault(group_key_for(signal.labels, group_by), []).append(index)
                continue
            lookups = _pagerduty_lookups(signal)
            if not lookups:
                log.info(
                    "pagerduty event recorded",
                    event_type=signal.event_type,
                    event_id=signal.event_id,
                )
                continue
            placed = order(index)
            items.append(
                MutationItem(
                    lookups=lookups,
                    mutators=(_pagerduty_mutator(signal, now),),
                    order_key=placed.key if placed else None,
                    seqs=(placed.seq,) if placed else (),
                    skip_gap=placed.skip_gap if placed else False,
                )
            )
            owners.append([index])
        for group_key, indexes in groups.items():
            placed_all = [order(i) for i in indexes]
            seqs = [p.seq if p else 0 for p in placed_all]
            if any(placed_all) and seqs != sorted(seqs):
                # in the order intake queued them (a batch may hold a redelivered entry
                # after later ones); unordered ones (queued by an earlier version) first
                ranked = sorted(zip(indexes, placed_all, strict=True), key=_seq_rank)
                indexes = [i for i, _ in ranked]
                placed_all = [p for _, p in ranked]
            alerts = [s for s in (signals[i] for i in indexes) if isinstance(s, AlertSignal)]
            mutators = tuple(
                _alert_mutator(a, group_key, now, handled[i], decisions[i], ordered=p is not None)
                for a, i, p in zip(alerts, indexes, placed_all, strict=True)
            )
            items.append(
                MutationItem(
                    # the group's open incident, else the one it resolved last: a firing
                    # within the pack's flapping window may open it again
                    lookups=(
                        IncidentLookup(kind="group", key=group_key),
                        IncidentLookup(kind="settled", key=group_key),
                    ),
                    mutators=mutators,
                    fingerprints=tuple(dict.fromkeys(a.fingerprint for a in alerts)),
                    signals=tuple(
                        SignalRef(key=a.dedupe_key, status=a.dedupe_status, order_ms=a.order_ms)
                        for a in alerts
                    ),
                    order_key=group_key if any(placed_all) else None,
                    seqs=tuple(p.seq if p else None for p in placed_all),
                    skip_gap=any(p.skip_gap for p in placed_all if p),
                )
            )
            owners.append(indexes)
        return items, owners

    def _record(self, signal: QueuedSignal, result: MutationResult, handled: Handled) -> None:
        handled.change, handled.incident_id = result.change, result.incident_id
        if result.change is not None:
            for event in result.change.events:
                self._metrics.incident_event_counter(event.kind).inc()
                if event.kind in _CAPPED_KINDS:  # a group that got no incident of its own
                    pack = result.change.incident.pack or "-"
                    self._metrics.incidents_capped.labels(pack).inc()
        if isinstance(signal, PagerDutySignal) and result.incident_id is None:
            age_s = (self._clock.now() - signal.received_at).total_seconds()
            if signal.incident_id and age_s < _LINK_GRACE_S:
                handled.retry_reason = f"PagerDuty incident {signal.incident_id} not linked yet"
                return
            self._metrics.unmatched_events.labels(signal.event_type).inc()
            log.info(
                "pagerduty event matched no incident",
                event_type=signal.event_type,
                pagerduty_incident_id=signal.incident_id,
            )

    async def _follow_up_all(
        self, follow_ups: dict[str, _FollowUp], handled: list[Handled]
    ) -> None:
        """Follow up every incident the batch touched; mark them processed together.

        One follow-up of an incident at a time, whatever found it (an alert's group, a
        PagerDuty id or key, an incident id): in this process by the incident's id (a
        task whose signal found it by another key waits here until the cursor moved), and
        across replicas by the incident's lease in the store. An incident another replica
        is following up is left to it: its signals are tried again later, and find their
        events processed by then.
        """
        if not follow_ups:
            return
        async with self._incidents_in_hand.hold(f"incident:{i}" for i in follow_ups):
            cursors = await self._store.lease_follow_ups(
                list(follow_ups), token=self._lease_token, ttl_s=self._follow_up_lease_s
            )
            leased = [i for i, cursor in cursors.items() if cursor is not None]
            self._leased.update(leased)
            try:
                await self._follow_up_leased(follow_ups, cursors, handled)
            finally:
                self._leased.difference_update(leased)
                await self._release_leases(leased)

    async def _follow_up_leased(
        self,
        follow_ups: dict[str, _FollowUp],
        cursors: Mapping[str, int | None],
        handled: list[Handled],
    ) -> None:
        marks: dict[str, int] = {}
        slices = Slices()
        for incident_id, follow in follow_ups.items():
            await slices.tick()
            cursor = cursors.get(incident_id)
            if cursor is None:
                log.info("incident followed up by another replica", incident_id=incident_id)
                for index in follow.signals:
                    handled[index].busy = True
                continue
            known: IncidentChange | None = None
            events = tuple(e for c in follow.changes for e in c.events)
            if events and cursor == events[0].seq and _contiguous(events):
                # the usual case: nothing older waits, nobody followed these up meanwhile
                # and nobody wrote between them, so the batch's changes are the backlog
                known = IncidentChange(incident=follow.changes[-1].incident, events=events)
            try:
                next_seq = await self._follow_up_once(incident_id, known)
            except RetryLaterError as exc:
                for index in follow.signals:
                    handled[index].retry_reason = str(exc) or type(exc).__name__
                continue
            except Exception as exc:
                log.exception("follow-up failed", incident_id=incident_id)
                for index in follow.signals:
                    handled[index].error = exc
                continue
            if next_seq is not None:
                marks[incident_id] = next_seq
        if marks:
            await self._store.mark_processed(marks)

    async def _release_leases(self, incident_ids: Sequence[str]) -> None:
        if not incident_ids:
            return
        try:
            await self._store.release_follow_ups(incident_ids, token=self._lease_token)
        except StoreUnavailableError:
            # not worth failing the batch over (its marks are written): a lease not given
            # up lapses after its TTL, and meanwhile the other replicas try again later
            log.warning("follow-up leases not released", incident_ids=list(incident_ids))

    async def _follow_up_once(self, incident_id: str, known: IncidentChange | None) -> int | None:
        """Run the stages and the notifier on the pending events, and on the events the
        stages add in turn; the seq to mark processed next (``None``: nothing was pending).

        ``known``: the pending events when the caller knows them; else they are read.
        """
        if known is None:
            view = await self._store.unprocessed(incident_id)
            if view is None or not view.timeline:
                return None
            known = IncidentChange(incident=view.incident, events=view.timeline)
        structlog.contextvars.bind_contextvars(incident_id=incident_id)
        self._following[incident_id] += 1
        try:
            pending: IncidentChange | None = known
            next_seq = known.events[-1].seq + 1
            for _ in range(_MAX_FOLLOW_UP_ROUNDS):
                if pending is None:
                    return next_seq
                for event in pending.events:
                    log.info("incident event", kind=event.kind, detail=event.detail, seq=event.seq)
                # people hear first (the first Slack message before triage's probes run),
                # then the stages act
                told = await self._notifier.incident_changed(pending)
                added = await self._run_stages(incident_id, pending, told)
                next_seq = max(next_seq, pending.events[-1].seq + 1)
                events = tuple(e for c in added for e in c.events)
                if events and (events[0].seq != next_seq or not _contiguous(events)):
                    # another signal of the incident (found by another key, or on another
                    # replica before our lease) was written between: follow its events up
                    # here, in order, rather than move the cursor past them unseen
                    pending = await self._unprocessed_from(incident_id, next_seq)
                    continue
                pending = (
                    IncidentChange(incident=added[-1].incident, events=events) if events else None
                )
            log.error("follow-up did not settle", rounds=_MAX_FOLLOW_UP_ROUNDS)
            return next_seq
        finally:
            self._following[incident_id] -= 1
            if not self._following[incident_id]:
                del self._following[incident_id]
            structlog.contextvars.unbind_contextvars("incident_id")

    async def _unprocessed_from(self, incident_id: str, seq: int) -> IncidentChange | None:
        """The incident's events from ``seq`` on (those before are followed up)."""
        await self._store.mark_processed({incident_id: seq})
        view = await self._store.unprocessed(incident_id)
        if view is None or not view.timeline:
            return None
        return IncidentChange(incident=view.incident, events=view.timeline)

    async def _run_stages(
        self, incident_id: str, pending: IncidentChange, told: StageResult | None
    ) -> list[IncidentChange]:
        """One round: every stage on ``pending``, then what they and the notifier
        (``told``) asked to record written in one store call (earlier, only for a stage
        that reads the store); the changes written."""
        unwritten: list[StageResult] = [told] if told is not None else []
        written: list[IncidentChange] = []

        async def write() -> None:
            if unwritten:
                change = await record_results(self._store, incident_id, unwritten)
                unwritten.clear()
                if change is not None:
                    written.append(change)

        try:
            for stage in self._stages:
                if stage.reads_store:
                    await write()
                try:
                    result = await stage(pending)
                except StageIncompleteError as exc:
                    # the steps it carried out before failing are recorded like the rest
                    if exc.done is not None:
                        unwritten.append(exc.done)
                    await write()
                    raise exc.cause from exc
                if result is not None:
                    unwritten.append(result)
        except Exception:
            # what the stages before the failing one did stays recorded (their effects'
            # claims finished), as when each wrote its own; the round is tried again
            await write()
            raise
        await write()
        return written

    async def renew_follow_ups(self, held: Sequence[str] = ()) -> None:
        """The follow-ups in this process's hands are alive, those running and those
        ``held`` for another try: the store's check for incidents left unfollowed-up
        (their worker died) waits another grace for them."""
        ids = list(dict.fromkeys([*self._following, *held]))
        if ids:
            await self._store.defer_follow_up_checks(ids)
        if self._leased:
            await self._store.lease_follow_ups(
                list(self._leased),
                token=self._lease_token,
                ttl_s=self._follow_up_lease_s,
                renew_only=True,
            )

    async def give_up_follow_up(self, incident_id: str) -> None:
        """An entry of the incident was dead-lettered: a human looks, no check retries."""
        await self._store.drop_follow_up_checks([incident_id])


def _contiguous(events: Sequence[TimelineEvent]) -> bool:
    return all(b.seq == a.seq + 1 for a, b in itertools.pairwise(events))


def _seq_rank(pair: tuple[int, Order | None]) -> tuple[int, int]:
    index, placed = pair
    return (placed.seq, index) if placed else (0, index)


def _alert_mutator(
    signal: AlertSignal,
    group_key: str,
    now: datetime,
    handled: Handled,
    classification: tuple[Decision, SeverityLevel, Flapping],
    *,
    ordered: bool = False,
) -> IncidentMutator:
    decision, level, flapping = classification

    def mutate(state: IncidentState) -> IncidentChange | None:
        handled.retry_reason = None  # the store may run a mutator again after a conflict
        record = state.signal
        if record is not None and already_handled(signal, record):
            # a redelivered entry, or one overtaken by a newer status: nothing to do
            log.info("signal already handled", dedupe_key=signal.dedupe_key)
            return None
        change: IncidentChange | None = None
        firing = signal.status is AlertStatus.FIRING
        incident, cap = state.incident, state.overflow_cap
        settled = None
        if incident is not None and not incident.is_active:
            # found by ``settled``: the group has no open incident, this one resolved last
            settled, incident = incident, None
        if firing and settled is not None and not cap:
            change = reopen_flapping(
                settled,
                state.alerts.get(signal.fingerprint),
                signal,
                now,
                fires=flapping.fires,
                window_s=flapping.window_s,
                quiet_s=flapping.quiet_s,
            )
        if change is not None:
            return change
        if incident is not None:
            current = state.alerts.get(signal.fingerprint)
            if firing and incident.storm and group_key not in incident.groups:
                # found by the storm's group: the pack's cap is reached, this group joins
                change = collect_into_storm(
                    incident, current, group_key=group_key, signal=signal, now=now
                )
            else:
                change = apply_alert(incident, current, signal, now)
        elif firing and cap:
            # the pack opened its cap of incidents within a minute: its alert storm's
            change = open_storm(
                incident_id=new_incident_id(now),
                pack=decision.pack,
                cap=cap,
                group_key=group_key,
                signal=signal,
                severity=decision.severity,
                now=now,
            )
        elif firing:
            change = open_incident(
                incident_id=new_incident_id(now),
                group_key=group_key,
                signal=signal,
                now=now,
                fired_before=recent_fires(
                    settled.fired_at if settled else (), now, window_s=flapping.window_s
                ),
            )
        if change is not None:
            if firing:
                # a new or returning alert may say the incident is worse than thought
                change = combine(change, classify(change.incident, decision, now, level=level))
                flaps = note_fire(
                    change.incident,
                    now,
                    fires=flapping.fires,
                    window_s=flapping.window_s,
                    quiet_s=flapping.quiet_s,
                )
                change = combine(change, flaps)
            return change
        # In order, a resolve that finds nothing to resolve has no firing still to come
        # (its firing was queued, hence applied, before it). Unordered (queued by an
        # earlier version), its firing may be in another worker's hands: wait for it.
        young = (now - signal.received_at).total_seconds() < _LINK_GRACE_S
        if (
            (state.incident is None or settled is not None)
            and signal.status is AlertStatus.RESOLVED
            and young
            and not ordered
        ):
            # Nothing open to resolve: another worker may still hold this alert's firing
            # (it was queued first). Try again later rather than lose the resolve.
            handled.retry_reason = f"alert {signal.fingerprint} resolved before its firing"
        return None

    return mutate


def _pagerduty_lookups(signal: PagerDutySignal) -> tuple[IncidentLookup, ...]:
    lookups = []
    if signal.incident_id:
        lookups.append(IncidentLookup(kind="pagerduty_id", key=signal.incident_id))
    if signal.incident_key:
        lookups.append(IncidentLookup(kind="pagerduty_key", key=signal.incident_key))
        if signal.incident_key.startswith(PAGE_KEY_PREFIX):
            # the PagerDuty incident our own page opened (see notify.planners.dedup_key)
            incident_id = signal.incident_key.removeprefix(PAGE_KEY_PREFIX)
            lookups.append(IncidentLookup(kind="id", key=incident_id))
    if signal.incident_key or signal.incident_id:
        # the group an incident opened from PagerDuty gets (see open_from_pagerduty)
        own_group = f"pagerduty:{signal.incident_key or signal.incident_id}"
        lookups.append(IncidentLookup(kind="group", key=own_group))
    return tuple(lookups)


def _pagerduty_mutator(signal: PagerDutySignal, now: datetime) -> IncidentMutator:
    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is None:
            if signal.event_type == "incident.triggered":
                return open_from_pagerduty(incident_id=new_incident_id(now), signal=signal, now=now)
            return None
        return apply_pagerduty(state.incident, signal, now)

    return mutate


def _ack_mutator(signal: AckSignal, now: datetime) -> IncidentMutator:
    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is None:
            return None
        return acknowledge(
            state.incident,
            by=signal.by,
            at=signal.received_at,
            now=now,
            via="through the API",
            source="api",
        )

    return mutate


def _human_mutator(signal: HumanSignal, now: datetime) -> IncidentMutator:
    """A person's press (Slack) or request (API), applied to the incident as it is when
    its turn comes: a second press or a replica's redelivery finds it done."""
    extra: dict[str, JsonValue] = {}
    if signal.user_id is not None:
        extra["user_id"] = signal.user_id

    def mutate(state: IncidentState) -> IncidentChange | None:
        incident = state.incident
        if incident is None:
            return None
        if signal.act == "acknowledge":
            return acknowledge(
                incident,
                by=signal.by,
                at=signal.received_at,
                now=now,
                via="in Slack" if signal.via == "slack" else "through the API",
                commander=True,
                source=signal.via,
                **extra,
            )
        if signal.act == "pause":
            return pause_automation(incident, by=signal.by, now=now, via=signal.via, **extra)
        if signal.act == "resume":
            return resume_automation(incident, by=signal.by, now=now, via=signal.via, **extra)
        if signal.step is None:
            return None
        return decide_approval(
            incident,
            signal.step,
            approve=signal.act == "approve",
            by=signal.by,
            now=now,
            via=signal.via,
            **extra,
        )

    return mutate


def already_handled(signal: AlertSignal, record: SignalRecord) -> bool:
    """True when this status of this occurrence, or a later one, was already applied."""
    if record.handled_status is None or record.handled_order_ms is None:
        return False
    if record.handled_order_ms != signal.order_ms:
        return record.handled_order_ms > signal.order_ms
    return record.handled_status in (signal.status.value, AlertStatus.RESOLVED.value)
