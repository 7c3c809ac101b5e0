"""The ``WorkQueue`` port on a Redis Stream with a consumer group.

Entries are added by ``RedisStore.observe`` (same Lua script as the dedupe record); workers
read them with XREADGROUP, acknowledge after handling, and reclaim entries that another
worker left pending past the visibility timeout with XAUTOCLAIM.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from responder.adapters.redis_client import unavailable_as_store_error
from responder.adapters.redis_keys import CONSUMER_GROUP, RedisKeys
from responder.domain.signal import epoch_ms
from responder.ports import EARLIER_LOOKED_AT_MAX, Clock, DeadLetter, QueueEntry, QueueStats

log = structlog.get_logger("responder.adapters.redis_queue")

_DEAD_LETTER_MAXLEN = 10_000


def _entries(raw: Any, deliveries: dict[str, int] | None = None) -> list[QueueEntry]:
    out = []
    for entry_id, fields in raw:
        if not fields:  # deleted from the stream while pending
            continue
        seq = fields.get("seq")
        out.append(
            QueueEntry(
                entry_id=entry_id,
                payload=fields.get("signal", ""),
                deliveries=(deliveries or {}).get(entry_id, 1),
                order_key=fields.get("order"),
                seq=int(seq) if seq else None,
            )
        )
    return out


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _lua(name: str) -> str:
    """The script of ``name``, a .lua file beside this module: every script lives in one,
    its header saying what it does, its KEYS and ARGV one a line, and its reply."""
    return files("responder.adapters").joinpath(name).read_text(encoding="utf-8")


class RedisQueue:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: RedisKeys,
        clock: Clock,
        order_ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        # Typed Any: redis-py's stubs cannot know that decode_responses=True makes every
        # value a str, and would need a cast at each call.
        self._redis: Any = client
        self._keys = keys
        self._clock = clock
        self._dead_letter = client.register_script(_lua("dead_letter.lua"))
        self._prune = client.register_script(_lua("prune_consumers.lua"))
        self._earlier = client.register_script(_lua("earlier_queued.lua"))
        self._order_ttl_s = order_ttl_s

    async def ensure(self) -> None:
        async with unavailable_as_store_error("queue.ensure"):
            try:
                # id "0": entries queued before the group existed are delivered too
                await self._redis.xgroup_create(
                    self._keys.queue, CONSUMER_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            await self._drop_handled()

    async def _drop_handled(self) -> None:
        """Delete entries handled before acknowledgements deleted them (a stream kept by
        an earlier version): everything older than the oldest pending or undelivered
        entry. New entries get later ids, so a signal queued meanwhile stays."""
        queue = self._keys.queue
        groups = await self._redis.xinfo_groups(queue)
        info = next((g for g in groups if g.get("name") == CONSUMER_GROUP), None)
        if info is None:
            return
        keep: list[tuple[int, int]] = []
        summary = await self._redis.xpending(queue, CONSUMER_GROUP)
        if summary and summary.get("pending"):
            keep.append(_id(summary["min"]))
        last = str(info.get("last-delivered-id") or "0-0")
        after = await self._redis.xrange(queue, min="(" + last, count=1)
        if after:
            keep.append(_id(after[0][0]))
        ms, seq = min(keep) if keep else (_id(last)[0], _id(last)[1] + 1)
        dropped = await self._redis.xtrim(queue, minid=f"{ms}-{seq}")
        if dropped:
            log.warning(
                "handled entries dropped",
                entries=int(dropped),
                below=f"{ms}-{seq}",
                last_delivered=last,
                pending_min=summary.get("min") if summary else None,
            )

    async def read(self, *, consumer: str, count: int, block_ms: int) -> list[QueueEntry]:
        async with unavailable_as_store_error("queue.read"):
            try:
                raw = await self._redis.xreadgroup(
                    CONSUMER_GROUP,
                    consumer,
                    {self._keys.queue: ">"},
                    count=count,
                    block=block_ms if block_ms > 0 else None,  # BLOCK 0 would wait forever
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost its data (restart without persistence): recreate and go on.
                await self.ensure()
                return []
        if not raw:
            return []
        return _entries(raw[0][1])

    async def claim_stale(self, *, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]:
        async with unavailable_as_store_error("queue.claim_stale"):
            try:
                reply = await self._redis.xautoclaim(
                    self._keys.queue,
                    CONSUMER_GROUP,
                    consumer,
                    min_idle_time=min_idle_ms,
                    start_id="0-0",
                    count=count,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure()
                return []
            claimed = reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                # trimmed away while pending: nothing left to handle
                log.warning("pending entries found deleted", entries=len(deleted))
                await self._redis.xack(self._keys.queue, CONSUMER_GROUP, *deleted)
            if not claimed:
                return []
            # XAUTOCLAIM does not say how often an entry was delivered; XPENDING does.
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry_id, _ in claimed:
                    pipe.xpending_range(
                        self._keys.queue, CONSUMER_GROUP, min=entry_id, max=entry_id, count=1
                    )
                pendings = await pipe.execute()
        deliveries = {p[0]["message_id"]: int(p[0]["times_delivered"]) for p in pendings if p}
        return _entries(claimed, deliveries)

    async def ack(self, *entry_ids: str) -> None:
        """Acknowledge and delete: the stream holds only what is not handled yet."""
        if not entry_ids:
            return
        async with (
            unavailable_as_store_error("queue.ack"),
            # one round trip; an entry acknowledged but not deleted (the connection died
            # in between) is deleted with the handled ones at the next start (ensure)
            self._redis.pipeline(transaction=False) as pipe,
        ):
            pipe.xack(self._keys.queue, CONSUMER_GROUP, *entry_ids)
            pipe.xdel(self._keys.queue, *entry_ids)
            await pipe.execute()

    async def extend(self, *, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries this consumer still works on (XCLAIM JUSTID
        does not count a delivery): no other worker claims them while it lives."""
        if not entry_ids:
            return
        async with unavailable_as_store_error("queue.extend"):
            await self._redis.xclaim(
                self._keys.queue,
                CONSUMER_GROUP,
                consumer,
                min_idle_time=0,
                message_ids=list(entry_ids),
                justid=True,
            )

    async def holds_earlier(self, order_key: str, seq: int) -> bool:
        async with unavailable_as_store_error("queue.holds_earlier"):
            found = await self._earlier(
                keys=[self._keys.queue], args=[order_key, seq, EARLIER_LOOKED_AT_MAX]
            )
        return bool(found)

    async def prune_consumers(self, *, idle_ms: int, only: Sequence[str] | None = None) -> int:
        """Remove the group's consumers that hold nothing and were idle this long (those
        of processes gone); how many. One script: a consumer that takes an entry between
        a look and a delete would lose it from the group's pending list."""
        async with unavailable_as_store_error("queue.prune_consumers"):
            try:
                return int(
                    await self._prune(
                        keys=[self._keys.queue], args=[CONSUMER_GROUP, idle_ms, *(only or ())]
                    )
                )
            except ResponseError as exc:
                if "no such key" in str(exc).lower() or "NOGROUP" in str(exc):
                    return 0  # no stream or group yet
                raise

    async def dead_letter(self, entry: QueueEntry, *, reason: str) -> None:
        k = self._keys
        order_key = entry.order_key if entry.seq is not None else None
        keys = [k.queue, k.dead_letters]
        if order_key is not None:
            keys += [k.order(order_key), k.order_skipped(order_key)]
        args: list[str | int] = [
            CONSUMER_GROUP,
            entry.entry_id,
            entry.payload,
            reason[:2000],
            entry.deliveries,
            epoch_ms(self._clock.now()),
            _DEAD_LETTER_MAXLEN,
            entry.seq or 0,
            self._order_ttl_s,
        ]
        async with unavailable_as_store_error("queue.dead_letter"):
            await self._dead_letter(keys=keys, args=args)

    async def stats(self) -> QueueStats:
        async with unavailable_as_store_error("queue.stats"):
            try:
                groups = await self._redis.xinfo_groups(self._keys.queue)
            except ResponseError:
                groups = []  # no stream yet
            dead = await self._redis.xlen(self._keys.dead_letters)
            # handled entries are deleted: the stream's first entry is the oldest waiting
            first = await self._redis.xrange(self._keys.queue, count=1)
        info = next((g for g in groups if g.get("name") == CONSUMER_GROUP), None)
        oldest_age_s = 0.0
        if first:
            oldest_age_s = max(epoch_ms(self._clock.now()) - _id(first[0][0])[0], 0) / 1000
        if info is None:
            return QueueStats(depth=0, pending=0, dead_letters=dead, oldest_age_s=oldest_age_s)
        return QueueStats(
            depth=int(info.get("lag") or 0),
            pending=int(info["pending"]),
            dead_letters=dead,
            oldest_age_s=oldest_age_s,
        )

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        async with unavailable_as_store_error("queue.dead_letters"):
            raw = await self._redis.xrevrange(self._keys.dead_letters, count=limit)
        return [
            DeadLetter(
                entry_id=f["entry_id"],
                payload=f["signal"],
                reason=f["reason"],
                deliveries=int(f["deliveries"]),
                dead_at=datetime.fromtimestamp(int(f["dead_at"]) / 1000, tz=UTC),
            )
            for _, f in raw
        ]
