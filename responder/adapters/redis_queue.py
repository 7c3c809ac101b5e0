"""The ``WorkQueue`` port on a Redis Stream with a consumer group.

Entries are added by ``RedisStore.observe`` (same Lua script as the dedupe record); workers
read them with XREADGROUP, acknowledge after handling, and reclaim entries that another
worker left pending past the visibility timeout with XAUTOCLAIM.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from responder.adapters.redis_client import unavailable_as_store_error
from responder.adapters.redis_keys import CONSUMER_GROUP, RedisKeys
from responder.domain.signal import epoch_ms
from responder.ports import Clock, DeadLetter, QueueEntry, QueueStats

_DEAD_LETTER_MAXLEN = 10_000


def _entries(raw: Any, deliveries: dict[str, int] | None = None) -> list[QueueEntry]:
    out = []
    for entry_id, fields in raw:
        if not fields:  # deleted from the stream (trimmed) while pending
            continue
        out.append(
            QueueEntry(
                entry_id=entry_id,
                payload=fields.get("signal", ""),
                deliveries=(deliveries or {}).get(entry_id, 1),
            )
        )
    return out


class RedisQueue:
    def __init__(self, client: aioredis.Redis, *, keys: RedisKeys, clock: Clock) -> None:
        # Typed Any: redis-py's stubs cannot know that decode_responses=True makes every
        # value a str, and would need a cast at each call.
        self._redis: Any = client
        self._keys = keys
        self._clock = clock

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
        if not entry_ids:
            return
        async with unavailable_as_store_error("queue.ack"):
            await self._redis.xack(self._keys.queue, CONSUMER_GROUP, *entry_ids)

    async def dead_letter(self, entry: QueueEntry, *, reason: str) -> None:
        async with (
            unavailable_as_store_error("queue.dead_letter"),
            self._redis.pipeline(transaction=True) as pipe,
        ):
            pipe.xadd(
                self._keys.dead_letters,
                {
                    "entry_id": entry.entry_id,
                    "signal": entry.payload,
                    "reason": reason[:2000],
                    "deliveries": entry.deliveries,
                    "dead_at": epoch_ms(self._clock.now()),
                },
                maxlen=_DEAD_LETTER_MAXLEN,
                approximate=True,
            )
            pipe.xack(self._keys.queue, CONSUMER_GROUP, entry.entry_id)
            await pipe.execute()

    async def stats(self) -> QueueStats:
        async with unavailable_as_store_error("queue.stats"):
            try:
                groups = await self._redis.xinfo_groups(self._keys.queue)
            except ResponseError:
                groups = []  # no stream yet
            dead = await self._redis.xlen(self._keys.dead_letters)
        info = next((g for g in groups if g.get("name") == CONSUMER_GROUP), None)
        if info is None:
            return QueueStats(depth=0, pending=0, dead_letters=dead)
        return QueueStats(
            depth=int(info.get("lag") or 0), pending=int(info["pending"]), dead_letters=dead
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
