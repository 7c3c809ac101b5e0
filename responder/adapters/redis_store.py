"""The ``Store`` port on Redis: dedupe records, incidents, their alerts and timelines.

Every write is one Lua script (a .lua file beside this module), so each is atomic and
costs one round trip:
- ``observe``: dedupe and queue the signals of every webhook waiting (``observe.lua``,
  batched by ``Coalescer``);
- ``mutate_incidents``: a read script finds each incident and the alert records the mutators
  need; the mutators (pure domain code) run here; a write script checks that nobody wrote
  in between (the timeline length is the version) and writes the incident, its alerts,
  events and index entries. On a conflict the read and the mutator run again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import JsonValue
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from responder.adapters.batching import Coalescer
from responder.adapters.durability import IntakeDurability
from responder.adapters.incident_fold import (
    NEW_INCIDENTS_WINDOW_S,
    Folded,
    IncidentWrite,
    capped_pack,
    fold,
    overflowed,
)
from responder.adapters.redis_client import unavailable_as_store_error
from responder.adapters.redis_keys import (
    EFFECT_TTL_S,
    RESOLVED_INCIDENT_TTL_S,
    RedisKeys,
)
from responder.domain.errors import QueueFullError
from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentLookup,
    IncidentStatus,
)
from responder.domain.model import to_stored_json
from responder.domain.notification import DeliveryState
from responder.domain.severity import Severity
from responder.domain.signal import Observation, ObserveOutcome, TimerSignal, epoch_ms
from responder.domain.timeline import TimelineEvent
from responder.ports import (
    Clock,
    EffectClaim,
    IncidentCursor,
    IncidentFilter,
    IncidentPage,
    IncidentView,
    MutationItem,
    MutationResult,
    Pause,
    RecordsEpoch,
    SharedThread,
    SignalRecord,
    needs_follow_up,
)
from responder.yielding import Slices


def _lua(name: str) -> str:
    """The script of ``name``, a .lua file beside this module: every script lives in one,
    its header saying what it does, its KEYS and ARGV one a line, and its reply."""
    return files("responder.adapters").joinpath(name).read_text(encoding="utf-8")


# Calls per command: a script runs atomically, so Redis serves no other client meanwhile;
# a few incidents' writes at a time keep intake's calls from waiting behind a whole batch.
_BATCH_CALLS = 8


def _batched(script: str) -> str:
    """``script`` (which must end with a return), run once per call of a batch: many calls
    of one script as one command (see batch_driver.lua)."""
    return "local function one(KEYS, ARGV)\n" + script + "\nend\n" + _lua("batch_driver.lua")


# The ledger's field of a sink's delivery state (``delivery:<sink>``), and the field of the
# record of an effect whose key names no incident, in that record's own hash (ledger.lua).
_DELIVERY_FIELD = "delivery:"
_OWN_EFFECT_FIELD = "effect"
# Conflicts are retried; this many in a row means something writes the same incident in a
# loop, which is a bug worth an error.
_MAX_CONFLICTS = 100
# A listing looks at this many incidents at most per call: a filter that rejects most of
# them answers a short page with a cursor rather than reading every incident kept.
_LIST_EXAMINED_MAX = 10_000
# With a severity filter (read off each incident) positions are read this many at least.
_LIST_CHUNK_MIN = 200

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
        durability: IntakeDurability | None = None,
        follow_up_grace_s: float = 60.0,
        incident_retention_s: int = RESOLVED_INCIDENT_TTL_S,
        new_incidents_per_minute: int = 0,
    ) -> None:
        # Typed Any: redis-py's stubs cannot know that decode_responses=True makes every
        # value a str, and would need a cast at each call.
        self._redis: Any = client
        # what a webhook's 200 waits for (adapters/durability.py); default: the write
        self._durability = durability or IntakeDurability()
        # an incident whose events are not all followed up this long after they were
        # written is followed up again (see RedisKeys.follow_ups)
        self._follow_up_grace_s = follow_up_grace_s
        self._keys = keys
        self._clock = clock
        self._signal_ttl_s = signal_ttl_s
        self._queue_maxlen = queue_maxlen
        # a resolved incident and every record of it (and its PagerDuty links) live this long
        self._retention_s = incident_retention_s
        # the cap of new incidents a minute per pack (0: none); see Store.mutate_incidents
        self._cap = new_incidents_per_minute
        self._observe = client.register_script(_lua("observe.lua"))
        self._read = client.register_script(_batched(_lua("incident_read.lua")))
        self._write = client.register_script(_batched(_lua("incident_write.lua")))
        self._mark_processed = client.register_script(_batched(_lua("mark_processed.lua")))
        self._advance_order = client.register_script(_lua("advance_order.lua"))
        self._unprocessed = client.register_script(_lua("unprocessed.lua"))
        self._ledger = client.register_script(_lua("ledger.lua"))
        self._spend = client.register_script(_lua("spend_budget.lua"))
        self._unlock = client.register_script(_lua("release_lock.lua"))
        self._lock = client.register_script(_lua("acquire_lock.lua"))
        self._lease = client.register_script(_batched(_lua("lease_follow_up.lua")))
        self._unlease = client.register_script(_batched(_lua("release_lock.lua")))
        self._shared = client.register_script(_lua("shared_thread.lua"))
        self._release_timers = client.register_script(_lua("release_timers.lua"))
        self._epoch = client.register_script(_lua("records_epoch.lua"))
        self._observe_batches: Coalescer[Observation, ObserveOutcome] = Coalescer(self._observe_now)

    async def ping(self) -> None:
        async with unavailable_as_store_error("ping"):
            await self._redis.ping()

    async def records_since(self) -> RecordsEpoch:
        async with unavailable_as_store_error("records since"):
            since, began = await self._epoch(
                keys=[self._keys.epoch], args=[epoch_ms(self._clock.now())]
            )
        return RecordsEpoch(datetime.fromtimestamp(int(since) / 1000, UTC), began=bool(began))

    # ------------------------------------------------------------------------ dedupe

    async def observe(self, signals: Sequence[Observation]) -> list[ObserveOutcome]:
        if not signals:
            return []
        return await self._observe_batches.submit(signals)

    async def _observe_now(self, signals: list[Observation]) -> list[ObserveOutcome]:
        """One script call for the signals of every webhook waiting (see ``Coalescer``)."""
        k = self._keys
        keys = [k.queue]
        args: list[str | int | bytes] = [
            epoch_ms(self._clock.now()),
            self._signal_ttl_s,
            self._queue_maxlen,
        ]
        for s in signals:
            # a signal without an ordering key names the queue in its place (unused)
            keys += [k.signal(s.dedupe_key), k.order(s.order_key) if s.order_key else k.queue]
            args += [s.dedupe_status, s.order_ms, s.payload, s.order_key or ""]
        async with unavailable_as_store_error("observe"):
            # the script, then (replica mode) WAIT on its connection
            raw = await self._durability.run(self._observe, keys, args)
        if raw and raw[0] == "full":
            raise QueueFullError(f"the work queue holds {self._queue_maxlen} unhandled signals")
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
            handled_incident=h.get("handled_incident"),
        )

    # --------------------------------------------------------------------- incidents

    async def mutate_incidents(self, items: Sequence[MutationItem]) -> list[list[MutationResult]]:
        results: list[list[MutationResult] | None] = [None] * len(items)
        todo = list(range(len(items)))
        items = list(items)  # an item over its pack's cap is replaced by its overflow
        async with unavailable_as_store_error("mutate_incidents"):
            for _ in range(_MAX_CONFLICTS):
                if not todo:
                    break
                # every item's read in one round trip, every write in another
                reads = await self._batch(self._read, [self._read_call(items[i]) for i in todo])
                slices = Slices()  # a big batch must not hold up the webhooks for long
                folded: dict[int, Folded] = {}
                fresh = _Fresh()
                for i, reply in zip(todo, reads, strict=True):
                    folded[i] = self._fold(items[i], reply, fresh)
                    await slices.tick()
                advances: list[tuple[list[str], list[Any]]] = []
                for i in todo:
                    done, key = folded[i].order_done, items[i].order_key
                    if done is None or key is None:
                        continue
                    if folded[i].writes:  # the item's last write moves its cursor
                        folded[i].writes[-1].order_key = key
                        folded[i].writes[-1].order_done = done
                    else:
                        keys = [self._keys.order(key), self._keys.order_skipped(key)]
                        advances.append((keys, [done, self._signal_ttl_s]))
                writes = [(i, w) for i in todo for w in folded[i].writes]
                calls = []
                digests: dict[int, str] = {}
                for _, write in writes:
                    calls.append(self._write_call(write, digests))
                    await slices.tick()
                replies = await self._batch(self._write, calls, confirm="incident write")
                # signals that changed nothing still take their turn (rare: a second round
                # trip only then)
                await self._scripts(self._advance_order, advances, confirm="incident order")
                conflicted: set[int] = set()
                cursors: dict[tuple[int, str], int] = {}
                for (i, write), reply in zip(writes, replies, strict=True):
                    if reply[0] == "capped":
                        # nothing written; again, for its alerts to go to the pack's storm
                        pack = capped_pack(write, self._cap) or "-"
                        items[i] = overflowed(items[i], self._cap, pack)
                        conflicted.add(i)
                    elif reply[0] == "conflict":
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
        self,
        script: AsyncScript,
        calls: list[tuple[list[str], list[Any]]],
        *,
        confirm: str | None = None,
    ) -> list[Any]:
        """Run many calls of one script in a single round trip (a pipeline of EVALSHA).

        ``confirm`` (the writer's name): the writes come before something done outside
        (a message posted, an action applied); with ``RESPONDER_INTAKE_DURABILITY=replica``
        a ``WAIT`` on the same connection, in the same round trip, holds the reply until a
        replica has them, so a failover cannot forget what the outside was then told."""
        if not calls:
            return []
        wait = confirm is not None and self._durability.waits_for_replica
        if wait:
            await self._durability.prepare(self._redis)
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                if wait:
                    self._durability.wait_on(pipe)
                try:
                    replies = list(await pipe.execute())
                except NoScriptError:
                    if attempt:
                        raise
                    # Redis restarted or was flushed: load the script and go again
                    await self._redis.script_load(script.script)
                    continue
            if wait:
                self._durability.confirmed(replies.pop(), confirm or "")
            return replies
        raise AssertionError("unreachable")

    async def _script(
        self, script: AsyncScript, keys: list[str], args: list[Any], *, confirm: str
    ) -> Any:
        """One call of a writing script whose write comes before something done outside
        (see ``_scripts``)."""
        if not self._durability.waits_for_replica:
            return await script(keys=keys, args=args)
        return (await self._scripts(script, [(keys, args)], confirm=confirm))[0]

    async def _batch(
        self,
        script: AsyncScript,
        calls: list[tuple[list[str], list[Any]]],
        *,
        confirm: str | None = None,
    ) -> list[Any]:
        """Run many calls of a ``_batched`` script, ``_BATCH_CALLS`` a command, in one
        round trip; their replies."""
        commands = []
        for start in range(0, len(calls), _BATCH_CALLS):
            keys: list[str] = []
            counts: list[int] = [len(calls[start : start + _BATCH_CALLS])]
            args: list[Any] = []
            for call_keys, call_args in calls[start : start + _BATCH_CALLS]:
                keys += call_keys
                args += call_args
                counts += (len(call_keys), len(call_args))
            commands.append((keys, counts + args))
        return [
            reply
            for replies in await self._scripts(script, commands, confirm=confirm)
            for reply in replies
        ]

    def _read_call(self, item: MutationItem) -> tuple[list[str], list[Any]]:
        k = self._keys
        keys = [
            k.incident(lk.key) if lk.kind == "id" else k.index(lk.kind, lk.key)
            for lk in item.lookups
        ]
        refs = [ref for ref in item.signals if ref is not None]
        keys += [k.signal(ref.key) for ref in refs]
        if item.order_key is not None:
            keys.append(k.order(item.order_key))
        kinds = ["id" if lk.kind == "id" else "index" for lk in item.lookups]
        args = [len(item.lookups), len(refs), k.incident_prefix, *kinds, *item.fingerprints]
        return keys, args

    def _fold(self, item: MutationItem, reply: list[Any], fresh: _Fresh) -> Folded:
        order_done, reply = int(reply[0]), reply[1:]
        n_refs = sum(ref is not None for ref in item.signals)
        found = iter(_record(reply[5 * j : 5 * j + 5]) for j in range(n_refs))
        records = [
            next(found) if item.signal(i) is not None else None for i in range(len(item.mutators))
        ]
        rest = reply[5 * n_refs :]
        incident: Incident | None = None
        version, alerts = -1, {}
        if rest:
            _, raw, read_version, *alert_docs = rest
            incident, version = Incident.model_validate_json(raw), int(read_version)
            alerts = {
                fp: _alert(doc, incident)
                for fp, doc in zip(item.fingerprints, alert_docs, strict=True)
                if doc
            }
        chain = fresh.answering(item.lookups, incident)
        if chain is not None:
            # an incident an earlier item of this round writes: fold on what that write
            # leaves, and write right after it (an alert storm's groups, one round)
            if incident is None or incident.id != chain.incident.id:
                alerts = {}
            known = fresh.alerts[chain.incident.id]
            alerts = {
                fp: known.get(fp) or alerts[fp]
                for fp in item.fingerprints
                if fp in known or fp in alerts
            }
            incident, version = chain.incident, chain.version_after
        folded = fold(
            item,
            incident=incident,
            version=version,
            alerts=alerts,
            records=records,
            order_done=order_done,
        )
        for write in folded.writes:
            if chain is not None and write.incident.id == chain.incident.id:
                write.chained_on = chain
            fresh.add(write)
        return folded

    def _write_call(
        self, write: IncidentWrite, digests: dict[int, str]
    ) -> tuple[list[str], list[Any]]:
        """The write script's keys and arguments for one incident (see incident_write.lua).
        ``digests``: the SHA-1 of each incident JSON written so far this round, by write
        (``id``), for a write chained on one of them."""
        k = self._keys
        inc = write.incident
        pagerduty_keys = [
            k.index(lk.kind, lk.key)
            for lk in inc.lookups()
            # and the group's incident resolved last: set with the same lifetime
            if lk.kind in ("pagerduty_id", "pagerduty_key", "settled")
        ]
        # a storm's collected groups: those new to it while active, all once it resolved
        before = set(write.groups_before) if inc.is_active else set()
        group_keys = [k.index("group", g) for g in inc.groups if g not in before]
        pack = capped_pack(write, self._cap)
        window = [k.new_incidents(pack)] if pack is not None else []
        stored = to_stored_json(inc)
        digests[id(write)] = hashlib.sha1(stored).hexdigest()  # noqa: S324 (not security)
        chained = digests[id(write.chained_on)] if write.chained_on is not None else ""
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
            k.follow_ups,
            *pagerduty_keys,
            *group_keys,
            *window,
            *[k.signal(key) for key in write.handled],
        ]
        if write.order_key is not None:
            keys += [k.order(write.order_key), k.order_skipped(write.order_key)]
        now_ms = epoch_ms(self._clock.now())
        horizon_ms = now_ms - self._retention_s * 1000
        args: list[Any] = [
            write.expected_version,
            inc.id,
            stored,
            inc.status.value,
            epoch_ms(inc.opened_at),
            "1" if inc.is_active else "0",
            self._retention_s,
            self._retention_s,  # PagerDuty links: as long as the incident
            horizon_ms,
            len(pagerduty_keys),
            len(write.events),
            write.order_done if write.order_key is not None else 0,
            self._signal_ttl_s,
            self._follow_up_check_ms(write.events),
            len(group_keys),
            self._cap if pack is not None else 0,
            NEW_INCIDENTS_WINDOW_S * 1000,
            now_ms,
            chained,
            *[to_stored_json(e) for e in write.events],
        ]
        for status, order_ms in write.handled.values():
            args += [status, order_ms]
        for alert in write.alerts.values():
            args += [alert.fingerprint, _stored_alert(alert, inc)]
        return keys, args

    def _follow_up_check_ms(self, events: Sequence[TimelineEvent]) -> int:
        """When to check that ``events`` were followed up; 0 when they need no follow-up."""
        if not needs_follow_up(events):
            return 0
        return epoch_ms(self._clock.now()) + int(self._follow_up_grace_s * 1000)

    async def mark_processed(self, marks: Mapping[str, int]) -> None:
        k = self._keys
        calls: list[tuple[list[str], list[Any]]] = [
            ([k.processed(i), k.incident(i), k.timeline(i), k.follow_ups], [seq, i])
            for i, seq in marks.items()
        ]
        async with unavailable_as_store_error("mark_processed"):
            await self._batch(self._mark_processed, calls)

    async def lease_follow_ups(
        self,
        incident_ids: Sequence[str],
        *,
        token: str,
        ttl_s: float,
        renew_only: bool = False,
    ) -> dict[str, int | None]:
        k = self._keys
        ttl_ms, renew = max(int(ttl_s * 1000), 1), "1" if renew_only else "0"
        calls: list[tuple[list[str], list[Any]]] = [
            ([k.follow_up_lease(i), k.processed(i)], [token, ttl_ms, renew]) for i in incident_ids
        ]
        async with unavailable_as_store_error("lease_follow_ups"):
            # taken before the stages act outside: confirmed like the ledger's claims
            replies = await self._batch(self._lease, calls, confirm="lease_follow_ups")
        return {
            i: (int(r) if int(r) >= 0 else None) for i, r in zip(incident_ids, replies, strict=True)
        }

    async def release_follow_ups(self, incident_ids: Sequence[str], *, token: str) -> None:
        calls: list[tuple[list[str], list[Any]]] = [
            ([self._keys.follow_up_lease(i)], [token]) for i in incident_ids
        ]
        async with unavailable_as_store_error("release_follow_ups"):
            await self._batch(self._unlease, calls)

    async def defer_follow_up_checks(self, incident_ids: Sequence[str]) -> None:
        due_ms = epoch_ms(self._clock.now()) + int(self._follow_up_grace_s * 1000)
        async with unavailable_as_store_error("defer_follow_up_checks"):
            # XX: only those still waiting; one whose follow-up just ended stays out
            await self._redis.zadd(
                self._keys.follow_ups, dict.fromkeys(incident_ids, due_ms), xx=True
            )

    async def drop_follow_up_checks(self, incident_ids: Sequence[str]) -> None:
        async with unavailable_as_store_error("drop_follow_up_checks"):
            await self._redis.zrem(self._keys.follow_ups, *incident_ids)

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
        self,
        *,
        status: IncidentStatus | Collection[IncidentStatus] | None = None,
        severity: Severity | Collection[Severity] | None = None,
        since: datetime | None = None,
        after: IncidentCursor | None = None,
        limit: int = 100,
    ) -> IncidentPage:
        """Positions from the sorted sets (``_positions``), then the incidents there read
        in one call and filtered, round after round until the page is full, the sets are
        exhausted, or ``_LIST_EXAMINED_MAX`` incidents were looked at."""
        wanted = IncidentFilter.of(status=status, severity=severity, since=since)
        k = self._keys
        keys = (
            [k.incidents]
            if wanted.statuses is None
            else [k.incidents_with(s) for s in sorted(wanted.statuses)]
        )
        floor_ms = epoch_ms(since) if since is not None else None
        limit = max(limit, 1)
        taken: list[str] = []
        position, examined = after, 0
        async with unavailable_as_store_error("list_incidents"):
            while True:
                # one more than still wanted tells whether a next page exists
                chunk = limit - len(taken) + 1
                if wanted.severities is not None:
                    chunk = max(chunk, _LIST_CHUNK_MIN)
                found, complete = await self._positions(keys, position, floor_ms, chunk)
                ids = [k.incident(c.incident_id) for c in found]
                docs = await self._redis.mget(ids) if ids else []
                for cursor, raw in zip(found, docs, strict=True):
                    if raw is not None and wanted.matches(Incident.model_validate_json(raw)):
                        if len(taken) == limit:
                            return IncidentPage(await self._views(taken), next=position)
                        taken.append(cursor.incident_id)
                    position = cursor
                examined += len(found)
                if complete:
                    return IncidentPage(await self._views(taken), next=None)
                if examined >= _LIST_EXAMINED_MAX:
                    return IncidentPage(await self._views(taken), next=position)

    async def _positions(
        self, keys: list[str], after: IncidentCursor | None, floor_ms: int | None, chunk: int
    ) -> tuple[list[IncidentCursor], bool]:
        """Up to ``chunk`` positions listed after ``after`` in the union of the sorted sets
        ``keys`` (scored at least ``floor_ms``), newest first; and whether none follow.

        One transaction (one slot: the sets are read at one instant, so an incident that
        changes status meanwhile is in exactly one of them). Per set: the incidents opened
        in the cursor's millisecond (all of them, seldom more than one) whose id sorts
        below the cursor's, then ``chunk`` older ones. Sets read in full to a point are
        merged down to the newest such point, beyond which one of them may hold more.
        """
        if after is not None and floor_ms is not None and after.opened_ms < floor_ms:
            return [], True
        low: int | str = "-inf" if floor_ms is None else floor_ms
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                top: int | str = "+inf"
                if after is not None:
                    top = f"({after.opened_ms}"
                    pipe.zrange(key, after.opened_ms, after.opened_ms, desc=True, byscore=True)
                pipe.zrange(
                    key, top, low, desc=True, byscore=True, withscores=True, offset=0, num=chunk
                )
            replies = iter(await pipe.execute())
        read: set[tuple[int, str]] = set()
        frontier: tuple[int, str] | None = None  # the newest point a set may hold more past
        for _ in keys:
            if after is not None:
                same_ms = next(replies)
                read.update((after.opened_ms, m) for m in same_ms if m < after.incident_id)
            older = [(int(score), member) for member, score in next(replies)]
            read.update(older)
            if len(older) == chunk and (frontier is None or older[-1] > frontier):
                frontier = older[-1]
        ordered = sorted(read, reverse=True)
        if frontier is not None:
            ordered = [p for p in ordered if p >= frontier]
        complete = frontier is None and len(ordered) <= chunk
        return [IncidentCursor(ms, incident_id) for ms, incident_id in ordered[:chunk]], complete

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
            incident = Incident.model_validate_json(raw)
            alerts = sorted((_alert(a, incident) for a in alert_docs), key=lambda a: a.number)
            views.append(
                IncidentView(
                    incident=incident,
                    alerts=tuple(alerts),
                    timeline=tuple(TimelineEvent.model_validate_json(e) for e in events),
                    processed_seq=int(processed or 0),
                )
            )
        return views

    # ------------------------------------------------------------- action ledger

    def _effect_call(self, key: str, op: str) -> tuple[list[str], list[Any]]:
        """The ledger script's keys and first arguments for the effect ``key``: when it
        names an incident (it starts with the incident's id and a colon, as every key the
        stages claim does), its field in the incident's ledger, else a hash of its own."""
        incident_id, colon, suffix = key.partition(":")
        old = self._keys.effect(key)
        if not colon or not incident_id:
            return [old, old], [op, _OWN_EFFECT_FIELD, EFFECT_TTL_S]
        if suffix.startswith(_DELIVERY_FIELD):
            raise ValueError(f"an effect key cannot name a delivery state: {key!r}")
        keys = [self._keys.ledger(incident_id), old, self._keys.incident(incident_id)]
        return keys, [op, suffix, EFFECT_TTL_S]

    def _delivery_call(self, incident_id: str, sink: str, op: str) -> tuple[list[str], list[Any]]:
        keys = [
            self._keys.ledger(incident_id),
            self._keys.delivery(incident_id, sink),
            self._keys.incident(incident_id),
        ]
        return keys, [op, _DELIVERY_FIELD + sink, EFFECT_TTL_S]

    async def claim_effect(self, key: str, *, owner: str, lease_s: float) -> EffectClaim:
        now = epoch_ms(self._clock.now())
        keys, args = self._effect_call(key, "claim")
        async with unavailable_as_store_error("claim_effect"):
            status, data, claimed = await self._script(
                self._ledger, keys, [*args, owner, now, int(lease_s * 1000)], confirm="claim_effect"
            )
        return EffectClaim(
            status=status,
            data=json.loads(data),
            claimed_at=datetime.fromtimestamp(int(claimed) / 1000, UTC) if claimed else None,
        )

    async def note_effect(self, key: str, *, owner: str, data: dict[str, JsonValue]) -> None:
        keys, args = self._effect_call(key, "note")
        async with unavailable_as_store_error("note_effect"):
            await self._script(
                self._ledger, keys, [*args, owner, _compact(data)], confirm="note_effect"
            )

    async def finish_effect(self, key: str, *, data: dict[str, JsonValue]) -> None:
        keys, args = self._effect_call(key, "finish")
        async with unavailable_as_store_error("finish_effect"):
            await self._script(self._ledger, keys, [*args, _compact(data)], confirm="finish_effect")

    async def release_effect(self, key: str, *, owner: str) -> None:
        keys, args = self._effect_call(key, "release")
        async with unavailable_as_store_error("release_effect"):
            await self._script(self._ledger, keys, [*args, owner], confirm="release_effect")

    async def delivery_state(self, incident_id: str, sink: str) -> DeliveryState | None:
        keys, args = self._delivery_call(incident_id, sink, "read")
        async with unavailable_as_store_error("delivery_state"):
            raw = await self._ledger(keys=keys, args=args)
        return DeliveryState.model_validate_json(raw) if raw else None

    async def save_delivery_state(self, incident_id: str, sink: str, state: DeliveryState) -> None:
        keys, args = self._delivery_call(incident_id, sink, "save")
        async with unavailable_as_store_error("save_delivery_state"):
            await self._script(
                self._ledger, keys, [*args, to_stored_json(state)], confirm="save_delivery_state"
            )

    async def remember_once(self, key: str, *, ttl_s: float) -> bool:
        async with unavailable_as_store_error("remember_once"):
            first = await self._redis.set(
                self._keys.once(key), b"1", nx=True, px=max(1, int(ttl_s * 1000))
            )
        return bool(first)

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
            taken = await self._script(
                self._spend,
                [self._keys.budget],
                [epoch_ms(now), int(window_s * 1000), limit, f"{token}@{epoch_ms(now)}"],
                confirm="spend_budget",
            )
        return bool(taken)

    async def acquire_lock(self, name: str, *, token: str, ttl_s: float) -> bool:
        async with unavailable_as_store_error("acquire_lock"):
            return bool(
                await self._script(
                    self._lock,
                    [self._keys.lock(name)],
                    [token, int(ttl_s * 1000)],
                    confirm="acquire_lock",
                )
            )

    async def release_lock(self, name: str, *, token: str) -> None:
        async with unavailable_as_store_error("release_lock"):
            await self._unlock(keys=[self._keys.lock(name)], args=[token])

    async def schedule(self, timer: TimerSignal) -> None:
        async with unavailable_as_store_error("schedule"):
            await self._redis.zadd(
                self._keys.timers, {timer.model_dump_json(): epoch_ms(timer.due_at)}
            )

    async def _shared_call(self, key: str, op: str, *args: str) -> SharedThread:
        async with unavailable_as_store_error(f"{op}_shared_thread"):
            reply = await self._script(
                self._shared,
                [self._keys.shared_thread(key)],
                [op, RESOLVED_INCIDENT_TTL_S, *args],
                confirm=f"{op}_shared_thread",
            )
        pairs = [v.decode() if isinstance(v, bytes) else str(v) for v in reply or []]
        return SharedThread.of_fields(dict(zip(pairs[::2], pairs[1::2], strict=True)))

    async def join_shared_thread(
        self, key: str, *, member: str, want: dict[str, JsonValue]
    ) -> SharedThread:
        return await self._shared_call(key, "join", member, _compact(want))

    async def leave_shared_thread(self, key: str, *, members: Sequence[str]) -> SharedThread:
        return await self._shared_call(key, "leave", *members)

    async def settle_shared_thread(
        self,
        key: str,
        *,
        refs: dict[str, JsonValue] | None = None,
        creating: str | None = None,
        shown: dict[str, JsonValue] | None = None,
    ) -> None:
        pairs: list[str] = []
        if refs is not None:
            pairs += ["refs", _compact(refs)]
        if creating is not None:
            pairs += ["creating", creating]
        if shown is not None:
            pairs += ["shown", _compact(shown)]
        await self._shared_call(key, "settle", *pairs)

    async def close_shared_thread(self, key: str, *, thread_id: str) -> None:
        await self._shared_call(key, "close", thread_id)

    async def release_due_timers(self, *, now: datetime, limit: int) -> int:
        async with unavailable_as_store_error("release_due_timers"):
            return int(
                await self._release_timers(
                    keys=[self._keys.timers, self._keys.queue, self._keys.follow_ups],
                    args=[
                        epoch_ms(now),
                        limit,
                        now.isoformat(),
                        self._keys.incident_prefix,
                    ],
                )
            )

    async def close(self) -> None:
        await self._redis.aclose()


def _compact(data: dict[str, JsonValue]) -> str:
    """An effect's data as the ledger keeps it: JSON without blanks."""
    return json.dumps(data, separators=(",", ":"))


# An alert whose labels and annotations are its incident's (those of the alert that
# opened it, while they do not change) is kept without them: they were a fifth of an
# open incident's memory, kept twice. A stored alert without "labels" takes both from
# its incident (labels are required, so no alert is stored without them otherwise).
_AS_INCIDENT = {"labels", "annotations"}


def _stored_alert(alert: IncidentAlert, incident: Incident) -> bytes:
    same = alert.labels == incident.labels and alert.annotations == incident.annotations
    return alert.__pydantic_serializer__.to_json(
        alert, exclude_defaults=True, exclude=_AS_INCIDENT if same else None
    )


def _alert(doc: str, incident: Incident) -> IncidentAlert:
    # a JSON string value cannot hold '"labels":' unescaped: only the key matches
    if '"labels":' in doc:
        return IncidentAlert.model_validate_json(doc)
    fields = orjson.loads(doc)
    fields.update(labels=incident.labels, annotations=incident.annotations)
    return IncidentAlert.model_validate(fields)


def _record(values: list[str]) -> SignalRecord | None:
    """A dedupe record from the read script's five values (observed, then handled)."""
    status, order, handled_status, handled_order, handled_incident = values
    if not status:
        return None
    return SignalRecord(
        status=status,
        order_ms=int(order),
        first_seen_ms=0,
        last_seen_ms=0,
        handled_status=handled_status or None,
        handled_order_ms=int(handled_order) if handled_order else None,
        handled_incident=handled_incident or None,
    )


class _Fresh:
    """The incidents the writes of one round leave, as the next items of the round see
    them: an item whose lookups one of them answers (the read, made before, found
    nothing newer there) folds on it and writes right after it, rather than conflicting
    and waiting for a round of its own; an alert storm's hundreds of groups go to its
    incident in one round."""

    def __init__(self) -> None:
        self.writes: dict[str, IncidentWrite] = {}  # by incident id, the round's last
        self.alerts: dict[str, dict[str, IncidentAlert]] = {}  # the alerts they wrote
        self._answers: dict[IncidentLookup, str] = {}  # lookup -> incident id

    def add(self, write: IncidentWrite) -> None:
        inc = write.incident
        before = self.writes.get(inc.id)
        was = before.incident if before is not None else None
        if was is not None and _grown(was, inc):
            # the usual chained write: a storm collected groups, nothing else moved
            new = [IncidentLookup(kind="group", key=g) for g in inc.groups[len(was.groups) :]]
            self._answers.update(dict.fromkeys(new, inc.id))
        else:
            old = set(was.lookups()) if was is not None else set()
            now = set(inc.lookups())
            for lookup in old - now:
                if self._answers.get(lookup) == inc.id:
                    del self._answers[lookup]
            self._answers.update(dict.fromkeys(now - old, inc.id))
        self.writes[inc.id] = write
        self.alerts.setdefault(inc.id, {}).update(write.alerts)

    def answering(
        self, lookups: Sequence[IncidentLookup], read: Incident | None
    ) -> IncidentWrite | None:
        """The write an item with ``lookups`` must fold on, whose read found ``read``;
        ``None``: the read stands (a write of it this round then makes a conflict)."""
        if not self._answers:
            return None
        for lookup in lookups:
            incident_id = self._answers.get(lookup)
            if read is not None and read.answers(lookup):
                # the read found it here: only a write of that same incident is newer
                if read is not None and incident_id == read.id:
                    return self.writes[incident_id]
                return None
            if incident_id is not None:
                return self.writes[incident_id]
        return None


def _grown(was: Incident, now: Incident) -> bool:
    """``now`` answers to what ``was`` did and to the groups appended since, no more."""
    return (
        was.is_active == now.is_active
        and was.group_key == now.group_key
        and was.pagerduty_incident_id == now.pagerduty_incident_id
        and was.pagerduty_keys == now.pagerduty_keys
        and now.groups[: len(was.groups)] == was.groups
    )
