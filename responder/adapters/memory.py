"""In-memory ``Store`` and ``WorkQueue``: the embedded default, one process, no Redis.

They keep the same contracts as the Redis adapters (the contract tests run on both):
observe is atomic (no await between reading and writing), incident updates are atomic,
entries stay pending until acknowledged and are reclaimed after the visibility timeout.
Nothing survives a restart. A resolved incident, its alerts, timeline, effect records and
delivery states are forgotten together once it has been resolved (its last write) for the
retention, by the store's clock, as their keys expire on Redis.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pydantic import JsonValue

from responder.adapters.incident_fold import (
    NEW_INCIDENTS_WINDOW_S,
    Folded,
    capped_pack,
    fold,
    overflowed,
)
from responder.domain.errors import QueueFullError
from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentLookup,
    IncidentStatus,
    LookupKind,
)
from responder.domain.notification import DeliveryState
from responder.domain.severity import Severity
from responder.domain.signal import (
    Observation,
    ObserveOutcome,
    TimerSignal,
    dedupe_outcome,
    epoch_ms,
)
from responder.domain.timeline import TimelineEvent
from responder.ports import (
    Clock,
    DeadLetter,
    EffectClaim,
    IncidentCursor,
    IncidentFilter,
    IncidentPage,
    IncidentView,
    MutationItem,
    MutationResult,
    Pause,
    QueueEntry,
    QueueStats,
    RecordsEpoch,
    SharedThread,
    SignalRecord,
    needs_follow_up,
)


@dataclass
class _Pending:
    entry: QueueEntry
    consumer: str
    delivered_at: float
    deliveries: int


@dataclass
class MemoryQueue:
    clock: Clock
    maxlen: int = 100_000  # the most unhandled entries it holds (intake answers 503 then)
    _ready: OrderedDict[str, QueueEntry] = field(default_factory=OrderedDict)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _dead: list[DeadLetter] = field(default_factory=list)
    _seq: int = 0
    _wakeup: asyncio.Event | None = None
    # ordering keys: the last number given out, the highest applied, those dead-lettered
    # before their turn (as the Redis ordering record)
    order_seq: dict[str, int] = field(default_factory=dict)
    order_done: dict[str, int] = field(default_factory=dict)
    order_skipped: dict[str, set[int]] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        return len(self._ready) + len(self._pending)

    def put(self, payload: str, order_key: str | None = None) -> str:
        self._seq += 1
        entry_id = f"{epoch_ms(self.clock.now())}-{self._seq}"
        seq = None
        if order_key is not None:
            seq = self.order_seq[order_key] = self.order_seq.get(order_key, 0) + 1
        self._ready[entry_id] = QueueEntry(
            entry_id=entry_id, payload=payload, order_key=order_key, seq=seq
        )
        if self._wakeup is not None:
            self._wakeup.set()
        return entry_id

    def advance_order(self, key: str, applied: int) -> None:
        """The ordering cursor moves to ``applied`` (never back), over skipped numbers."""
        done = max(self.order_done.get(key, 0), applied)
        skipped = self.order_skipped.get(key, set())
        while done + 1 in skipped:
            skipped.discard(done + 1)
            done += 1
        self.order_done[key] = done

    async def ensure(self) -> None:
        return None

    async def read(self, *, consumer: str, count: int, block_ms: int) -> list[QueueEntry]:
        if not self._ready and block_ms > 0:
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=block_ms / 1000)
            except TimeoutError:
                return []
        out: list[QueueEntry] = []
        while self._ready and len(out) < count:
            entry_id, entry = self._ready.popitem(last=False)
            self._pending[entry_id] = _Pending(entry, consumer, self.clock.monotonic(), 1)
            out.append(entry)
        return out

    async def claim_stale(self, *, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]:
        now = self.clock.monotonic()
        out: list[QueueEntry] = []
        for p in self._pending.values():
            if len(out) >= count:
                break
            if (now - p.delivered_at) * 1000 >= min_idle_ms:
                p.consumer, p.delivered_at, p.deliveries = consumer, now, p.deliveries + 1
                out.append(p.entry.model_copy(update={"deliveries": p.deliveries}))
        return out

    async def ack(self, *entry_ids: str) -> None:
        for entry_id in entry_ids:
            self._pending.pop(entry_id, None)

    async def extend(self, *, consumer: str, entry_ids: Sequence[str]) -> None:
        now = self.clock.monotonic()
        for entry_id in entry_ids:
            p = self._pending.get(entry_id)
            if p is not None:
                p.consumer, p.delivered_at = consumer, now

    async def prune_consumers(self, *, idle_ms: int, only: Sequence[str] | None = None) -> int:
        return 0  # consumers are not remembered here

    async def dead_letter(self, entry: QueueEntry, *, reason: str) -> None:
        self._pending.pop(entry.entry_id, None)
        if entry.order_key is not None and entry.seq is not None:
            key, seq = entry.order_key, entry.seq
            if seq == self.order_done.get(key, 0) + 1:
                self.advance_order(key, seq)
            elif seq > self.order_done.get(key, 0):
                self.order_skipped.setdefault(key, set()).add(seq)
        self._dead.append(
            DeadLetter(
                entry_id=entry.entry_id,
                payload=entry.payload,
                reason=reason[:2000],
                deliveries=entry.deliveries,
                dead_at=self.clock.now(),
            )
        )

    async def holds_earlier(self, order_key: str, seq: int) -> bool:
        queued = (*self._ready.values(), *(p.entry for p in self._pending.values()))
        return any(e.order_key == order_key and e.seq is not None and e.seq < seq for e in queued)

    async def stats(self) -> QueueStats:
        oldest = min(
            (int(i.partition("-")[0]) for i in (*self._ready, *self._pending)), default=None
        )
        age_s = 0.0
        if oldest is not None:
            age_s = max(epoch_ms(self.clock.now()) - oldest, 0) / 1000
        return QueueStats(
            depth=len(self._ready),
            pending=len(self._pending),
            dead_letters=len(self._dead),
            oldest_age_s=age_s,
        )

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        return list(reversed(self._dead))[:limit]


@dataclass
class _Effect:
    owner: str
    lease_until: float
    done: bool = False
    data: dict[str, JsonValue] = field(default_factory=dict)
    claimed_at: datetime | None = None


@dataclass
class _SignalState:
    status: str
    order_ms: int
    first_seen_ms: int
    last_seen_ms: int
    repeats: int = 0
    handled_status: str | None = None
    handled_order_ms: int | None = None
    handled_incident: str | None = None


@dataclass
class MemoryStore:
    queue: MemoryQueue
    clock: Clock
    _signals: dict[str, _SignalState] = field(default_factory=dict)
    _incidents: dict[str, Incident] = field(default_factory=dict)
    _timelines: dict[str, list[TimelineEvent]] = field(default_factory=dict)
    _index: dict[tuple[LookupKind, str], str] = field(default_factory=dict)
    _processed: dict[str, int] = field(default_factory=dict)
    _alerts: dict[str, dict[str, IncidentAlert]] = field(default_factory=dict)
    _effects: dict[str, _Effect] = field(default_factory=dict)
    _paused: Pause | None = None
    # requests already taken (remember_once), by when they are forgotten (monotonic s)
    _once: dict[str, float] = field(default_factory=dict)
    _cooldowns: dict[str, datetime] = field(default_factory=dict)
    _budget: list[tuple[datetime, str]] = field(default_factory=list)
    _locks: dict[str, tuple[str, float]] = field(default_factory=dict)
    _timers: list[tuple[datetime, str]] = field(default_factory=list)
    _deliveries: dict[tuple[str, str], DeliveryState] = field(default_factory=dict)
    # threads several incidents share, as the Redis hash's fields (RedisKeys.shared_thread)
    _shared: dict[str, dict[str, str]] = field(default_factory=dict)
    # incidents with events not yet followed up, and when to check (RedisKeys.follow_ups)
    follow_up_grace_s: float = 60.0
    _follow_ups: dict[str, datetime] = field(default_factory=dict)
    _records_since: RecordsEpoch = field(init=False)
    # how long a resolved incident is kept (from its last write), s: the app passes
    # RESPONDER_INCIDENT_RETENTION_S
    retention_s: float = 90 * 24 * 3600.0
    # the cap of new incidents a minute per pack (0: none), and each pack's window
    new_incidents_per_minute: int = 0
    _windows: dict[str, deque[datetime]] = field(default_factory=dict)
    # resolved incidents by when they expire (a heap; ``_expires`` has the current time)
    _expiring: list[tuple[datetime, str]] = field(default_factory=list)
    _expires: dict[str, datetime] = field(default_factory=dict)

    async def ping(self) -> None:
        return None

    def __post_init__(self) -> None:
        # kept in this process only: what it holds is all it held since it was created;
        # what an earlier process posted is taken over when its alert comes again, not
        # looked for (a store in memory is for trying the service out)
        self._records_since = RecordsEpoch(self.clock.now())

    async def records_since(self) -> RecordsEpoch:
        return self._records_since

    async def observe(self, signals: Sequence[Observation]) -> list[ObserveOutcome]:
        if self.queue.backlog >= self.queue.maxlen:
            raise QueueFullError(f"the work queue holds {self.queue.maxlen} unhandled signals")
        now_ms = epoch_ms(self.clock.now())
        outcomes = []
        for s in signals:
            state = self._signals.get(s.dedupe_key)
            previous = (state.status, state.order_ms) if state else None
            outcome = dedupe_outcome(previous=previous, status=s.dedupe_status, order_ms=s.order_ms)
            if outcome is ObserveOutcome.REPEAT:
                assert state is not None
                state.repeats += 1
                state.last_seen_ms = now_ms
            else:
                if state is None:
                    state = self._signals[s.dedupe_key] = _SignalState(
                        s.dedupe_status, s.order_ms, now_ms, now_ms
                    )
                state.status, state.order_ms = s.dedupe_status, s.order_ms
                state.last_seen_ms, state.repeats = now_ms, 0
                self.queue.put(s.payload.decode(), s.order_key)
            outcomes.append(outcome)
        return outcomes

    async def signal_record(self, dedupe_key: str) -> SignalRecord | None:
        return self._record(dedupe_key)

    def _record(self, dedupe_key: str) -> SignalRecord | None:
        s = self._signals.get(dedupe_key)
        if s is None:
            return None
        return SignalRecord(
            status=s.status,
            order_ms=s.order_ms,
            first_seen_ms=s.first_seen_ms,
            last_seen_ms=s.last_seen_ms,
            repeats=s.repeats,
            handled_status=s.handled_status,
            handled_order_ms=s.handled_order_ms,
            handled_incident=s.handled_incident,
        )

    def _find(self, lookups: Sequence[IncidentLookup]) -> Incident | None:
        for lookup in lookups:
            incident_id = (
                lookup.key if lookup.kind == "id" else self._index.get((lookup.kind, lookup.key))
            )
            if incident_id is not None and incident_id in self._incidents:
                return self._incidents[incident_id]
        return None

    async def mutate_incidents(self, items: Sequence[MutationItem]) -> list[list[MutationResult]]:
        # No await anywhere: atomic on the event loop, so nothing can conflict.
        self._forget_expired()
        return [self._mutate(item) for item in items]

    def _fold(self, item: MutationItem) -> Folded:
        current = self._find(item.lookups)
        known = self._alerts.get(current.id, {}) if current else {}
        refs = [item.signal(i) for i in range(len(item.mutators))]
        records = [self._record(ref.key) if ref is not None else None for ref in refs]
        return fold(
            item,
            incident=current,
            version=len(self._timelines.get(current.id, ())) if current else -1,
            alerts={fp: known[fp] for fp in item.fingerprints if fp in known},
            records=records,
            order_done=self.queue.order_done.get(item.order_key, 0) if item.order_key else 0,
        )

    def _over_cap(self, folded: Folded) -> str | None:
        """The pack whose cap of new incidents a minute a write of ``folded`` would pass."""
        cap = self.new_incidents_per_minute
        since = self.clock.now() - timedelta(seconds=NEW_INCIDENTS_WINDOW_S)
        for write in folded.writes:
            pack = capped_pack(write, cap)
            if pack is None:
                continue
            window = self._windows.setdefault(pack, deque())
            while window and window[0] <= since:
                window.popleft()
            if len(window) >= cap:
                return pack
        return None

    def _mutate(self, item: MutationItem) -> list[MutationResult]:
        folded = self._fold(item)
        pack = self._over_cap(folded)
        if pack is not None:  # nothing written: its alerts go to the pack's storm instead
            item = overflowed(item, self.new_incidents_per_minute, pack)
            folded = self._fold(item)
        if folded.order_done is not None and item.order_key is not None:
            self.queue.advance_order(item.order_key, folded.order_done)
        cursors = {}
        for write in folded.writes:
            inc = write.incident
            owner = self._index.get(("group", inc.group_key))
            if write.expected_version == -1 and owner not in (None, inc.id):
                raise RuntimeError(f"group {inc.group_key} already has an active incident")
            pack = capped_pack(write, self.new_incidents_per_minute)
            if pack is not None:
                self._windows.setdefault(pack, deque()).append(self.clock.now())
            self._incidents[inc.id] = inc
            self._timelines.setdefault(inc.id, []).extend(write.events)
            self._alerts.setdefault(inc.id, {}).update(write.alerts)
            if needs_follow_up(write.events):
                check_at = self.clock.now() + timedelta(seconds=self.follow_up_grace_s)
                self._follow_ups[inc.id] = check_at
            for lookup in inc.lookups():
                if lookup.kind != "id":
                    self._index[(lookup.kind, lookup.key)] = inc.id
            if inc.is_active:
                # a resolved incident opened again (flapping) lives while active again
                self._expires.pop(inc.id, None)
            else:
                for group in (inc.group_key, *inc.groups):
                    if self._index.get(("group", group)) == inc.id:
                        del self._index[("group", group)]
                # kept for the retention from its last write, as its keys on Redis
                expires = self.clock.now() + timedelta(seconds=self.retention_s)
                self._expires[inc.id] = expires
                heapq.heappush(self._expiring, (expires, inc.id))
            for key, (status, order_ms) in write.handled.items():
                if key in self._signals:
                    self._signals[key].handled_status = status
                    self._signals[key].handled_order_ms = order_ms
                    self._signals[key].handled_incident = inc.id
            cursors[inc.id] = self._processed.get(inc.id, 0)
        return [
            replace(r, processed_seq=cursors.get(r.incident_id))
            if r.change is not None and r.incident_id is not None
            else r
            for r in folded.results
        ]

    def _forget_expired(self) -> None:
        """Forget the resolved incidents past their retention, and every record of them."""
        now = self.clock.now()
        while self._expiring and self._expiring[0][0] <= now:
            expires, incident_id = heapq.heappop(self._expiring)
            if self._expires.get(incident_id) != expires:
                continue  # written again since: a later entry stands for it
            del self._expires[incident_id]
            inc = self._incidents.pop(incident_id, None)
            self._timelines.pop(incident_id, None)
            self._alerts.pop(incident_id, None)
            self._processed.pop(incident_id, None)
            self._follow_ups.pop(incident_id, None)
            if inc is not None:
                for lookup in inc.lookups():
                    if self._index.get((lookup.kind, lookup.key)) == incident_id:
                        del self._index[(lookup.kind, lookup.key)]
            for key in [k for k in self._effects if k.startswith(incident_id + ":")]:
                del self._effects[key]
            for pair in [p for p in self._deliveries if p[0] == incident_id]:
                del self._deliveries[pair]

    async def get_incident(self, incident_id: str) -> IncidentView | None:
        self._forget_expired()
        inc = self._incidents.get(incident_id)
        if inc is None:
            return None
        return self._view(inc)

    def _view(self, inc: Incident) -> IncidentView:
        alerts = sorted(self._alerts.get(inc.id, {}).values(), key=lambda a: a.number)
        return IncidentView(
            incident=inc,
            alerts=tuple(alerts),
            timeline=tuple(self._timelines.get(inc.id, ())),
            processed_seq=self._processed.get(inc.id, 0),
        )

    async def mark_processed(self, marks: Mapping[str, int]) -> None:
        for incident_id, next_seq in marks.items():
            self._processed[incident_id] = max(self._processed.get(incident_id, 0), next_seq)
            if not self._waiting_follow_up(incident_id):
                self._follow_ups.pop(incident_id, None)

    def _waiting_follow_up(self, incident_id: str) -> bool:
        processed = self._processed.get(incident_id, 0)
        return needs_follow_up(self._timelines.get(incident_id, [])[processed:])

    async def lease_follow_ups(
        self,
        incident_ids: Sequence[str],
        *,
        token: str,
        ttl_s: float,
        renew_only: bool = False,
    ) -> dict[str, int | None]:
        leased: dict[str, int | None] = {}
        for incident_id in incident_ids:
            name = f"following:{incident_id}"
            current = self._locks.get(name)
            if renew_only and (current is None or current[0] != token):
                leased[incident_id] = None
                continue
            held = await self.acquire_lock(name, token=token, ttl_s=ttl_s)
            leased[incident_id] = self._processed.get(incident_id, 0) if held else None
        return leased

    async def release_follow_ups(self, incident_ids: Sequence[str], *, token: str) -> None:
        for incident_id in incident_ids:
            await self.release_lock(f"following:{incident_id}", token=token)

    async def defer_follow_up_checks(self, incident_ids: Sequence[str]) -> None:
        check_at = self.clock.now() + timedelta(seconds=self.follow_up_grace_s)
        for incident_id in incident_ids:
            if incident_id in self._follow_ups:
                self._follow_ups[incident_id] = check_at

    async def drop_follow_up_checks(self, incident_ids: Sequence[str]) -> None:
        for incident_id in incident_ids:
            self._follow_ups.pop(incident_id, None)

    async def unprocessed(self, incident_id: str) -> IncidentView | None:
        self._forget_expired()
        inc = self._incidents.get(incident_id)
        if inc is None:
            return None
        processed = self._processed.get(incident_id, 0)
        return IncidentView(
            incident=inc,
            timeline=tuple(self._timelines.get(incident_id, ())[processed:]),
            processed_seq=processed,
        )

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | Collection[IncidentStatus] | None = None,
        severity: Severity | Collection[Severity] | None = None,
        since: datetime | None = None,
        after: IncidentCursor | None = None,
        limit: int = 100,
    ) -> IncidentPage:
        self._forget_expired()
        wanted = IncidentFilter.of(status=status, severity=severity, since=since)
        limit = max(limit, 1)
        # ordered as the Redis sorted sets order them: opened-at ms, then id
        candidates = (
            (IncidentCursor.at(inc).key, inc)
            for inc in self._incidents.values()
            if wanted.matches(inc)
        )
        if after is not None:
            below = after.key
            candidates = ((key, inc) for key, inc in candidates if key < below)
        # one more than asked tells whether a next page exists
        found = heapq.nlargest(limit + 1, candidates, key=lambda pair: pair[0])
        page = [inc for _, inc in found[:limit]]
        next_cursor = IncidentCursor.at(page[-1]) if len(found) > limit else None
        return IncidentPage(incidents=[self._view(i) for i in page], next=next_cursor)

    # ------------------------------------------------------------- action ledger

    async def claim_effect(self, key: str, *, owner: str, lease_s: float) -> EffectClaim:
        now = self.clock.monotonic()
        effect = self._effects.get(key)
        if effect is None:
            claimed_at = self.clock.now()
            self._effects[key] = _Effect(owner, now + lease_s, claimed_at=claimed_at)
            return EffectClaim(status="start", claimed_at=claimed_at)
        if effect.done:
            return EffectClaim(status="done", data=effect.data, claimed_at=effect.claimed_at)
        if effect.lease_until > now:
            return EffectClaim(status="busy", data=effect.data, claimed_at=effect.claimed_at)
        effect.owner, effect.lease_until = owner, now + lease_s
        return EffectClaim(status="recover", data=effect.data, claimed_at=effect.claimed_at)

    async def note_effect(self, key: str, *, owner: str, data: dict[str, JsonValue]) -> None:
        effect = self._effects.get(key)
        if effect is not None and effect.owner == owner and not effect.done:
            effect.data = dict(data)

    async def finish_effect(self, key: str, *, data: dict[str, JsonValue]) -> None:
        # done: nobody holds it any more (the Redis ledger keeps no owner or lease)
        effect = self._effects.setdefault(key, _Effect(owner="", lease_until=0))
        effect.done, effect.data, effect.owner, effect.lease_until = True, dict(data), "", 0

    async def release_effect(self, key: str, *, owner: str) -> None:
        effect = self._effects.get(key)
        if effect is not None and effect.owner == owner and not effect.done:
            del self._effects[key]

    async def delivery_state(self, incident_id: str, sink: str) -> DeliveryState | None:
        return self._deliveries.get((incident_id, sink))

    async def save_delivery_state(self, incident_id: str, sink: str, state: DeliveryState) -> None:
        self._deliveries[(incident_id, sink)] = state

    async def remember_once(self, key: str, *, ttl_s: float) -> bool:
        now = self.clock.monotonic()
        if len(self._once) > 10_000:  # forget the expired ones now and then, not each call
            self._once = {k: until for k, until in self._once.items() if until > now}
        until = self._once.get(key)
        if until is not None and until > now:
            return False
        self._once[key] = now + ttl_s
        return True

    async def paused(self) -> Pause | None:
        return self._paused

    async def set_paused(self, pause: Pause | None) -> None:
        self._paused = pause

    async def cooldown_until(self, key: str) -> datetime | None:
        until = self._cooldowns.get(key)
        return until if until is not None and until > self.clock.now() else None

    async def start_cooldown(self, key: str, *, until: datetime) -> None:
        self._cooldowns[key] = until

    async def budget_used(self, *, window_s: float, now: datetime) -> int:
        since = now - timedelta(seconds=window_s)
        return sum(1 for at, _ in self._budget if at > since)

    async def spend_budget(self, *, window_s: float, limit: int, now: datetime, token: str) -> bool:
        since = now - timedelta(seconds=window_s)
        self._budget = [(at, t) for at, t in self._budget if at > since]
        if len(self._budget) >= limit:
            return False
        self._budget.append((now, token))
        return True

    async def acquire_lock(self, name: str, *, token: str, ttl_s: float) -> bool:
        now = self.clock.monotonic()
        held = self._locks.get(name)
        if held is not None and held[1] > now and held[0] != token:
            return False
        self._locks[name] = (token, now + ttl_s)
        return True

    async def release_lock(self, name: str, *, token: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == token:
            del self._locks[name]

    async def schedule(self, timer: TimerSignal) -> None:
        self._timers.append((timer.due_at, timer.model_dump_json()))
        self._timers.sort()

    async def join_shared_thread(
        self, key: str, *, member: str, want: dict[str, JsonValue]
    ) -> SharedThread:
        record = self._shared.setdefault(key, {})
        record[f"m:{member}"] = json.dumps(want)
        return SharedThread.of_fields(record)

    async def leave_shared_thread(self, key: str, *, members: Sequence[str]) -> SharedThread:
        record = self._shared.get(key, {})
        for member in members:
            record.pop(f"m:{member}", None)
        return SharedThread.of_fields(record)

    async def settle_shared_thread(
        self,
        key: str,
        *,
        refs: dict[str, JsonValue] | None = None,
        creating: str | None = None,
        shown: dict[str, JsonValue] | None = None,
    ) -> None:
        record = self._shared.get(key)
        if record is None:
            return
        if refs is not None:
            record["refs"] = json.dumps(refs)
        if creating is not None:
            record["creating"] = creating
        if shown is not None:
            record["shown"] = json.dumps(shown)

    async def close_shared_thread(self, key: str, *, thread_id: str) -> None:
        thread = SharedThread.of_fields(self._shared.get(key, {}))
        if not thread.members and thread.refs.get("id") == thread_id:
            self._shared.pop(key, None)

    async def release_due_timers(self, *, now: datetime, limit: int) -> int:
        due = [t for t in self._timers if t[0] <= now][:limit]
        for timer in due:
            self._timers.remove(timer)
            self.queue.put(timer[1])
        late = [i for i, at in self._follow_ups.items() if at <= now][:limit]
        for incident_id in late:
            if not self._waiting_follow_up(incident_id):
                del self._follow_ups[incident_id]
                continue
            check = TimerSignal(
                kind="follow_up",
                incident_id=incident_id,
                step="unprocessed",
                due_at=now,
                received_at=now,
            )
            self.queue.put(check.model_dump_json())
            del self._follow_ups[incident_id]
        return len(due) + len(late)

    async def close(self) -> None:
        return None
