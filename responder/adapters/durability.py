"""What a webhook's 200 waits for (``RESPONDER_INTAKE_DURABILITY``).

- ``write``: Redis executed the intake's script. What survives a crash of the Redis
  process is what its persistence kept (with ``appendfsync everysec``, up to the last
  second of accepted signals can be lost).
- ``replica``: and at least one replica acknowledged it (``WAIT 1 <timeout>``); if none
  does in time, the webhook gets 503. Its signals may be queued all the same: the sender
  retries, and dedupe turns the retry into a harmless repeat. The workers' writes that
  come before something is done outside (an incident written before its Slack message,
  a message's or an action's claim before the call) wait for a replica the same way
  (``confirmed``): after a failover the promoted replica holds every record of what was
  told or done outside, so nothing is told or done twice. Unconfirmed, the worker's step
  fails like a store outage and is tried again.
- ``fsync``: the server runs with ``appendonly yes`` and ``appendfsync always``, so it
  fsyncs every write to its append-only file before it replies. Redis 7.0 has no
  ``WAITAOF``: this is a property of the server, checked when the service starts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, cast

import redis.asyncio as aioredis
import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from responder.adapters.redis_client import unavailable_as_store_error
from responder.domain.errors import StoreUnavailableError, UnconfirmedWriteError
from responder.settings import ConfigError

log = structlog.get_logger("responder.adapters.durability")

Durability = Literal["write", "replica", "fsync"]
# With RESPONDER_INTAKE_WAIT_REPLICAS=all, the replicas online are counted this often.
_REPLICAS_READ_EVERY_S = 1.0


class IntakeDurability:
    """Runs the intake's write script and answers once the write is as durable as asked."""

    def __init__(
        self,
        mode: Durability = "write",
        *,
        wait_timeout_ms: int = 500,
        replicas: int | Literal["all"] = 1,
        fsync_unchecked: bool = False,
    ) -> None:
        self.mode = mode
        self._wait_timeout_ms = wait_timeout_ms
        # "all": every replica the master has online, read at most every
        # _REPLICAS_READ_EVERY_S (at least one)
        self._replicas_wanted = replicas
        self._replicas = 1 if replicas == "all" else replicas
        self._replicas_read_at: float | None = None
        self._fsync_unchecked = fsync_unchecked
        # fsync: the server's configuration was read and found right (or vouched for)
        self._fsync_checked = mode != "fsync"

    @property
    def waits_for_replica(self) -> bool:
        return self.mode == "replica"

    async def prepare(self, client: Any) -> None:
        """Before a write that waits: with ``replicas="all"``, how many replicas the master
        has online now (one ``INFO replication`` a second at most). Sentinel promotes the
        replica whose offset it last read as highest, which can be seconds old: a write
        only one of several replicas confirmed may be lost to a promotion of another."""
        if self._replicas_wanted != "all":
            return
        now = time.monotonic()
        read_at = self._replicas_read_at
        if read_at is not None and now - read_at < _REPLICAS_READ_EVERY_S:
            return
        info = await client.info("replication")
        # slave0: {ip, port, state, offset, lag}, one per replica
        online = sum(
            1
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        )
        self._replicas = max(1, online)
        self._replicas_read_at = now

    def wait_on(self, pipe: Any) -> None:
        """Queue the ``WAIT`` that confirms the writes queued before it on ``pipe``."""
        pipe.wait(self._replicas, self._wait_timeout_ms)

    def confirmed(self, acknowledged: Any, what: str) -> None:
        """Raise ``UnconfirmedWriteError`` unless a ``WAIT`` reply counts enough replicas;
        ``what`` names the writer in the error (the step that is tried again)."""
        if int(acknowledged) < self._replicas:
            self._replicas_read_at = None  # a replica gone, a failover: count them again
            raise UnconfirmedWriteError(
                f"{what}: written, but {self._short_of(acknowledged)} within "
                f"{self._wait_timeout_ms} ms (RESPONDER_INTAKE_DURABILITY=replica); "
                "tried again later"
            )

    def _short_of(self, acknowledged: Any) -> str:
        if int(acknowledged) == 0:
            return "no replica confirmed it"
        return f"{int(acknowledged)} of {self._replicas} replicas confirmed it"

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``script``'s reply; in ``replica`` mode only once a replica has its writes."""
        if self.mode == "replica":
            return await self._run_and_wait(script, keys, args)
        if not self._fsync_checked:
            await self._check_late(cast(aioredis.Redis, script.registered_client))
        return await script(keys=keys, args=args)

    async def _run_and_wait(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        # WAIT counts the replicas that acknowledged the replication offset of *this
        # connection's* last write. redis-py hands out pooled connections per command, so
        # a WAIT sent on its own could land on a connection that wrote nothing (and
        # return at once, confirming nothing). In one pipeline, the script and the WAIT
        # go out on one connection, in one round trip. If the connection drops, redis-py
        # sends the pipeline again, both commands, on the new connection: the script runs
        # again (a repeat then, which still writes its counter) and the WAIT covers that
        # write, hence the first one too (a server applies writes in order).
        # The WAIT runs whatever the outcomes: a repeat answered 200 must not stand for a
        # first sighting that got 503 because no replica confirmed it. (Both rely on
        # observe.lua writing for a repeat too, its counter: were a repeat ever to write
        # nothing, the WAIT would cover this connection's earlier writes only.)
        client = script.registered_client
        await self.prepare(client)
        for attempt in range(2):
            async with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                self.wait_on(pipe)
                try:
                    reply, acknowledged = await pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
                    # Redis restarted or failed over: load the script and go again
                    await client.script_load(script.script)
                    continue
            if int(acknowledged) < self._replicas:
                self._replicas_read_at = None  # a replica gone, a failover: count again
                raise UnconfirmedWriteError(
                    f"written, but {self._short_of(acknowledged)} within "
                    f"{self._wait_timeout_ms} ms (RESPONDER_INTAKE_DURABILITY=replica); "
                    "retry later: the retry is a repeat, confirmed in turn"
                )
            return reply
        raise AssertionError("unreachable")

    async def check(self, client: aioredis.Redis) -> None:
        """``fsync`` mode: ``ConfigError`` unless the server fsyncs every write before it
        replies; ``StoreUnavailableError`` when it cannot be reached. Other modes: nothing."""
        if self._fsync_checked:
            return
        try:
            async with unavailable_as_store_error("durability check"):
                found = await client.config_get("appendonly", "appendfsync")
        except ResponseError as exc:
            # CONFIG renamed away (unknown command) or not allowed to this user (NOPERM)
            if not self._fsync_unchecked:
                raise ConfigError(
                    "RESPONDER_INTAKE_DURABILITY=fsync: the Redis server refused CONFIG GET "
                    f"({str(exc).split(',')[0][:80]}), so appendonly/appendfsync cannot be "
                    "checked; set RESPONDER_INTAKE_FSYNC_UNCHECKED=true if it runs with "
                    "appendonly yes and appendfsync always"
                ) from None
            log.warning(
                "appendfsync not checked: CONFIG GET refused; the operator vouches for it",
                setting="RESPONDER_INTAKE_FSYNC_UNCHECKED",
            )
            self._fsync_checked = True
            return
        appendonly, appendfsync = found.get("appendonly"), found.get("appendfsync")
        if (appendonly, appendfsync) != ("yes", "always"):
            raise ConfigError(
                "RESPONDER_INTAKE_DURABILITY=fsync needs the Redis server to run with "
                f"appendonly yes and appendfsync always; it runs with appendonly {appendonly} "
                f"and appendfsync {appendfsync}"
            )
        self._fsync_checked = True

    async def _check_late(self, client: aioredis.Redis) -> None:
        """The start-up check, when Redis was unreachable at start-up: before the first
        write, and every write until it passes (503 meanwhile)."""
        try:
            await self.check(client)
        except ConfigError as exc:
            log.error("intake refused", error=str(exc))
            raise StoreUnavailableError(f"observe: {exc}") from None
