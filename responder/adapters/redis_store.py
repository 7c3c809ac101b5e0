"""The ``Store`` port on Redis: dedupe records, incidents, their alerts and timelines.

Every write is one Lua script, so each is atomic and costs one round trip:
- ``observe``: dedupe and queue the signals of every webhook waiting (``observe.lua``,
  batched by ``Coalescer``);
- ``mutate_incidents``: a read script finds each incident and the alert records the mutators
  need; the mutators (pure domain code) run here; a write script checks that nobody wrote
  in between (the timeline length is the version) and writes the incident, its alerts,
  events and index entries. On a conflict the read and the mutator run again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from pydantic import JsonValue
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from responder.adapters.batching import Coalescer
from responder.adapters.incident_fold import Folded, IncidentWrite, fold
from responder.adapters.redis_client import unavailable_as_store_error
from responder.adapters.redis_keys import (
    EFFECT_TTL_S,
    PAGERDUTY_INDEX_TTL_S,
    RESOLVED_INCIDENT_TTL_S,
    RedisKeys,
)
from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentStatus,
)
from responder.domain.model import to_json
from responder.domain.notification import DeliveryState
from responder.domain.signal import Observation, ObserveOutcome, TimerSignal, epoch_ms
from responder.domain.timeline import TimelineEvent
from responder.ports import (
    Clock,
    EffectClaim,
    IncidentView,
    MutationItem,
    MutationResult,
    Pause,
    SignalRecord,
)
from responder.yielding import Slices


def _lua(name: str) -> str:
    return files("responder.adapters").joinpath(name).read_text(encoding="utf-8")


# Moves the processed cursor forward only, and gives it the incident's remaining lifetime.
_MARK_PROCESSED_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], wanted)
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return 1
"""
# The incident, its processed cursor and the timeline events from the cursor on.
_UNPROCESSED_LUA = """
local processed = tonumber(redis.call('GET', KEYS[2]) or '0')
return {redis.call('GET', KEYS[1]), processed, redis.call('LRANGE', KEYS[3], processed, -1)}
"""
# Take one slot of the sliding-window budget if one is free.
_SPEND_BUDGET_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# Take a lock, or renew it when the same token holds it (a step's recovery after its
# worker died: the step is the token, so it can go on where it stopped).
_ACQUIRE_LOCK_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Release a lock only if we still hold it.
_RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Note progress on an effect we hold.
_NOTE_EFFECT_LUA = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1
"""
# Give up an unfinished claim we hold.
_RELEASE_EFFECT_LUA = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'state') == 'applying' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Move due timers onto the queue, each atomically with its removal.
_RELEASE_TIMERS_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, timer in ipairs(due) do
  if redis.call('ZREM', KEYS[1], timer) == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'signal', timer)
  end
end
return #due
"""
# Conflicts are retried; this many in a row means something writes the same incident in a
# loop, which is a bug worth an error.
_MAX_CONFLICTS = 100

# The observe script's answers, as outcomes (a dict lookup: an Enum call per signal costs
# more, on intake's hot path).
_OUTCOMES = {o.value: o for o in ObserveOutcome}


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: RedisKeys,
        clock: Clock,
        signal_ttl_s: int,
        queue_maxlen: int,
    ) -> None:
        # Typed Any: redis-py's stubs cannot know that decode_responses=True makes every
        # value a str, and would need a cast at each call.
        self._redis: Any = client
        self._keys = keys
        self._clock = clock
        self._signal_ttl_s = signal_ttl_s
        self._queue_maxlen = queue_maxlen
        self._observe = client.register_script(_lua("observe.lua"))
        self._read = client.register_script(_lua("incident_read.lua"))
        self._write = client.register_script(_lua("incident_write.lua"))
        self._mark_processed = client.register_script(_MARK_PROCESSED_LUA)
        self._unprocessed = client.register_script(_UNPROCESSED_LUA)
        self._claim = client.register_script(_lua("ledger.lua"))
        self._spend = client.register_script(_SPEND_BUDGET_LUA)
        self._unlock = client.register_script(_RELEASE_LOCK_LUA)
        self._lock = client.register_script(_ACQUIRE_LOCK_LUA)
        self._note = client.register_script(_NOTE_EFFECT_LUA)
        self._release_timers = client.register_script(_RELEASE_TIMERS_LUA)
        self._release_effect = client.register_script(_RELEASE_EFFECT_LUA)
        self._observe_batches: Coalescer[Observation, ObserveOutcome] = Coalescer(self._observe_now)

    async def ping(self) -> None:
        async with unavailable_as_store_error("ping"):
            await self._redis.ping()

    # ------------------------------------------------------------------------ dedupe

    async def observe(self, signals: Sequence[Observation]) -> list[ObserveOutcome]:
        if not signals:
            return []
        return await self._observe_batches.submit(signals)

    async def _observe_now(self, signals: list[Observation]) -> list[ObserveOutcome]:
        """One script call for the signals of every webhook waiting (see ``Coalescer``)."""
        keys = [self._keys.queue] + [self._keys.signal(s.dedupe_key) for s in signals]
        args: list[str | int | bytes] = [
            epoch_ms(self._clock.now()),
            self._signal_ttl_s,
            self._queue_maxlen,
        ]
        for s in signals:
            args += [s.dedupe_status, s.order_ms, s.payload]
        async with unavailable_as_store_error("observe"):
            raw = await self._observe(keys=keys, args=args)
        return [_OUTCOMES[x] for x in raw]

    async def signal_record(self, dedupe_key: str) -> SignalRecord | None:
        async with unavailable_as_store_error("signal_record"):
            h = await self._redis.hgetall(self._keys.signal(dedupe_key))
        if not h:
            return None
        return SignalRecord(
            status=h["status"],
            order_ms=int(h["order"]),
            first_seen_ms=int(h.get("first_seen", h["last_seen"])),
            last_seen_ms=int(h["last_seen"]),
            repeats=int(h.get("repeats", 0)),
            handled_status=h.get("handled_status"),
            handled_order_ms=int(h["handled_order"]) if "handled_order" in h else None,
        )

    # --------------------------------------------------------------------- incidents

    async def mutate_incidents(self, items: Sequence[MutationItem]) -> list[list[MutationResult]]:
        results: list[list[MutationResult] | None] = [None] * len(items)
        todo = list(range(len(items)))
        async with unavailable_as_store_error("mutate_incidents"):
            for _ in range(_MAX_CONFLICTS):
                if not todo:
                    break
                # every item's read in one round trip, every write in another
                reads = await self._scripts(self._read, [self._read_call(items[i]) for i in todo])
                slices = Slices()  # a big batch must not hold up the webhooks for long
                folded: dict[int, Folded] = {}
                for i, reply in zip(todo, reads, strict=True):
                    folded[i] = self._fold(items[i], reply)
                    await slices.tick()
                writes = [(i, w) for i in todo for w in folded[i].writes]
                calls = []
                for _, write in writes:
                    calls.append(self._write_call(write))
                    await slices.tick()
                replies = await self._scripts(self._write, calls)
                conflicted: set[int] = set()
                cursors: dict[tuple[int, str], int] = {}
                for (i, write), reply in zip(writes, replies, strict=True):
                    if reply[0] == "conflict":
                        conflicted.add(i)
                    else:
                        cursors[(i, write.incident.id)] = int(reply[1])
                for i in todo:
                    if i not in conflicted:
                        results[i] = [
                            replace(r, processed_seq=cursors.get((i, r.incident_id)))
                            if r.change is not None and r.incident_id is not None
                            else r
                            for r in folded[i].results
                        ]
                # an item that lost a race runs again on fresh state (mutators are idempotent)
                todo = [i for i in todo if i in conflicted]
        if todo:
            raise RuntimeError(f"incident update kept conflicting ({_MAX_CONFLICTS} tries)")
        return [r if r is not None else [] for r in results]

    async def _scripts(
        self, script: AsyncScript, calls: list[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run many calls of one script in a single round trip (a pipeline of EVALSHA)."""
        if not calls:
            return []
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt:
                        raise
                    # Redis restarted or was flushed: load the script and go again
                    await self._redis.script_load(script.script)
        raise AssertionError("unreachable")

    def _read_call(self, item: MutationItem) -> tuple[list[str], list[Any]]:
        k = self._keys
        keys = [
            k.incident(lk.key) if lk.kind == "id" else k.index(lk.kind, lk.key)
            for lk in item.lookups
        ]
        refs = [ref for ref in item.signals if ref is not None]
        keys += [k.signal(ref.key) for ref in refs]
        kinds = ["id" if lk.kind == "id" else "index" for lk in item.lookups]
        args = [len(item.lookups), len(refs), k.incident_prefix, *kinds, *item.fingerprints]
        return keys, args

    def _fold(self, item: MutationItem, reply: list[Any]) -> Folded:
        n_refs = sum(ref is not None for ref in item.signals)
        found = iter(_record(reply[4 * j : 4 * j + 4]) for j in range(n_refs))
        records = [
            next(found) if item.signal(i) is not None else None for i in range(len(item.mutators))
        ]
        rest = reply[4 * n_refs :]
        if not rest:
            return fold(item, incident=None, version=-1, alerts={}, records=records)
        _, raw, version, *alert_docs = rest
        alerts = {
            fp: IncidentAlert.model_validate_json(doc)
            for fp, doc in zip(item.fingerprints, alert_docs, strict=True)
            if doc
        }
        return fold(
            item,
            incident=Incident.model_validate_json(raw),
            version=int(version),
            alerts=alerts,
            records=records,
        )

    def _write_call(self, write: IncidentWrite) -> tuple[list[str], list[Any]]:
        """The write script's keys and arguments for one incident (see incident_write.lua)."""
        k = self._keys
        inc = write.incident
        pagerduty_keys = [
            k.index(lk.kind, lk.key)
            for lk in inc.lookups()
            if lk.kind in ("pagerduty_id", "pagerduty_key")
        ]
        keys = [
            k.incident(inc.id),
            k.timeline(inc.id),
            k.alerts(inc.id),
            k.processed(inc.id),
            k.incidents,
            k.incidents_with(IncidentStatus.OPEN),
            k.incidents_with(IncidentStatus.ACKED),
            k.incidents_with(IncidentStatus.RESOLVED),
            k.index("group", inc.group_key),
            *pagerduty_keys,
            *[k.signal(key) for key in write.handled],
        ]
        horizon_ms = epoch_ms(self._clock.now()) - RESOLVED_INCIDENT_TTL_S * 1000
        args: list[Any] = [
            write.expected_version,
            inc.id,
            to_json(inc),
            inc.status.value,
            epoch_ms(inc.opened_at),
            "1" if inc.is_active else "0",
            RESOLVED_INCIDENT_TTL_S,
            PAGERDUTY_INDEX_TTL_S,
            horizon_ms,
            len(pagerduty_keys),
            len(write.events),
            *[to_json(e) for e in write.events],
        ]
        for status, order_ms in write.handled.values():
            args += [status, order_ms]
        for alert in write.alerts.values():
            args += [alert.fingerprint, to_json(alert)]
        return keys, args

    async def mark_processed(self, marks: Mapping[str, int]) -> None:
        k = self._keys
        calls: list[tuple[list[str], list[Any]]] = [
            ([k.processed(i), k.incident(i)], [seq]) for i, seq in marks.items()
        ]
        async with unavailable_as_store_error("mark_processed"):
            await self._scripts(self._mark_processed, calls)

    async def unprocessed(self, incident_id: str) -> IncidentView | None:
        k = self._keys
        keys = [k.incident(incident_id), k.processed(incident_id), k.timeline(incident_id)]
        async with unavailable_as_store_error("unprocessed"):
            raw, processed, events = await self._unprocessed(keys=keys)
        if raw is None:
            return None
        return IncidentView(
            incident=Incident.model_validate_json(raw),
            timeline=tuple(TimelineEvent.model_validate_json(e) for e in events),
            processed_seq=int(processed),
        )

    async def get_incident(self, incident_id: str) -> IncidentView | None:
        views = await self._views([incident_id])
        return views[0] if views else None

    async def list_incidents(
        self, *, status: IncidentStatus | None = None, limit: int = 100
    ) -> list[IncidentView]:
        key = self._keys.incidents if status is None else self._keys.incidents_with(status)
        async with unavailable_as_store_error("list_incidents"):
            ids = await self._redis.zrevrange(key, 0, max(limit, 1) - 1)
        return await self._views(list(ids))

    async def _views(self, ids: list[str]) -> list[IncidentView]:
        if not ids:
            return []
        k = self._keys
        async with (
            unavailable_as_store_error("get_incident"),
            self._redis.pipeline(transaction=False) as pipe,
        ):
            for incident_id in ids:
                pipe.get(k.incident(incident_id))
                pipe.hvals(k.alerts(incident_id))
                pipe.lrange(k.timeline(incident_id), 0, -1)
                pipe.get(k.processed(incident_id))
            results = await pipe.execute()
        views = []
        for i in range(0, len(results), 4):
            raw, alert_docs, events, processed = results[i : i + 4]
            if raw is None:
                continue  # expired between the index read and this one
            alerts = sorted(
                (IncidentAlert.model_validate_json(a) for a in alert_docs),
                key=lambda a: a.number,
            )
            views.append(
                IncidentView(
                    incident=Incident.model_validate_json(raw),
                    alerts=tuple(alerts),
                    timeline=tuple(TimelineEvent.model_validate_json(e) for e in events),
                    processed_seq=int(processed or 0),
                )
            )
        return views

    # ------------------------------------------------------------- action ledger

    async def claim_effect(self, key: str, *, owner: str, lease_s: float) -> EffectClaim:
        now = epoch_ms(self._clock.now())
        async with unavailable_as_store_error("claim_effect"):
            status, data = await self._claim(
                keys=[self._keys.effect(key)],
                args=[owner, now, int(lease_s * 1000), EFFECT_TTL_S],
            )
        return EffectClaim(status=status, data=json.loads(data))

    async def note_effect(self, key: str, *, owner: str, data: dict[str, JsonValue]) -> None:
        async with unavailable_as_store_error("note_effect"):
            await self._note(keys=[self._keys.effect(key)], args=[owner, json.dumps(data)])

    async def finish_effect(self, key: str, *, data: dict[str, JsonValue]) -> None:
        async with unavailable_as_store_error("finish_effect"):
            await self._redis.hset(
                self._keys.effect(key), mapping={"state": "done", "data": json.dumps(data)}
            )

    async def release_effect(self, key: str, *, owner: str) -> None:
        async with unavailable_as_store_error("release_effect"):
            await self._release_effect(keys=[self._keys.effect(key)], args=[owner])

    async def delivery_state(self, incident_id: str, sink: str) -> DeliveryState | None:
        async with unavailable_as_store_error("delivery_state"):
            raw = await self._redis.get(self._keys.delivery(incident_id, sink))
        return DeliveryState.model_validate_json(raw) if raw else None

    async def save_delivery_state(self, incident_id: str, sink: str, state: DeliveryState) -> None:
        async with unavailable_as_store_error("save_delivery_state"):
            await self._redis.set(
                self._keys.delivery(incident_id, sink), state.model_dump_json(), ex=EFFECT_TTL_S
            )

    async def paused(self) -> Pause | None:
        async with unavailable_as_store_error("paused"):
            raw = await self._redis.get(self._keys.paused)
        return Pause.model_validate_json(raw) if raw else None

    async def set_paused(self, pause: Pause | None) -> None:
        async with unavailable_as_store_error("set_paused"):
            if pause is None:
                await self._redis.delete(self._keys.paused)
            else:
                await self._redis.set(self._keys.paused, pause.model_dump_json())

    async def cooldown_until(self, key: str) -> datetime | None:
        async with unavailable_as_store_error("cooldown_until"):
            raw = await self._redis.get(self._keys.cooldown(key))
        return datetime.fromtimestamp(int(raw) / 1000, UTC) if raw else None

    async def start_cooldown(self, key: str, *, until: datetime) -> None:
        ms = epoch_ms(until)
        left = ms - epoch_ms(self._clock.now())
        if left <= 0:
            return
        async with unavailable_as_store_error("start_cooldown"):
            await self._redis.set(self._keys.cooldown(key), ms, px=left)

    async def budget_used(self, *, window_s: float, now: datetime) -> int:
        since = epoch_ms(now) - int(window_s * 1000)
        async with unavailable_as_store_error("budget_used"):
            return int(await self._redis.zcount(self._keys.budget, f"({since}", "+inf"))

    async def spend_budget(self, *, window_s: float, limit: int, now: datetime, token: str) -> bool:
        async with unavailable_as_store_error("spend_budget"):
            taken = await self._spend(
                keys=[self._keys.budget],
                args=[epoch_ms(now), int(window_s * 1000), limit, f"{token}@{epoch_ms(now)}"],
            )
        return bool(taken)

    async def acquire_lock(self, name: str, *, token: str, ttl_s: float) -> bool:
        async with unavailable_as_store_error("acquire_lock"):
            return bool(
                await self._lock(keys=[self._keys.lock(name)], args=[token, int(ttl_s * 1000)])
            )

    async def release_lock(self, name: str, *, token: str) -> None:
        async with unavailable_as_store_error("release_lock"):
            await self._unlock(keys=[self._keys.lock(name)], args=[token])

    async def schedule(self, timer: TimerSignal) -> None:
        async with unavailable_as_store_error("schedule"):
            await self._redis.zadd(
                self._keys.timers, {timer.model_dump_json(): epoch_ms(timer.due_at)}
            )

    async def release_due_timers(self, *, now: datetime, limit: int) -> int:
        async with unavailable_as_store_error("release_due_timers"):
            return int(
                await self._release_timers(
                    keys=[self._keys.timers, self._keys.queue],
                    args=[epoch_ms(now), limit, self._queue_maxlen],
                )
            )

    async def close(self) -> None:
        await self._redis.aclose()


def _record(values: list[str]) -> SignalRecord | None:
    """A dedupe record from the read script's four values (observed, then handled)."""
    status, order, handled_status, handled_order = values
    if not status:
        return None
    return SignalRecord(
        status=status,
        order_ms=int(order),
        first_seen_ms=0,
        last_seen_ms=0,
        handled_status=handled_status or None,
        handled_order_ms=int(handled_order) if handled_order else None,
    )
