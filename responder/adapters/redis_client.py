"""Building the Redis client and translating its failures into the ports' language."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import hiredis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from responder.domain.errors import StoreUnavailableError

log = structlog.get_logger("responder.adapters.redis_client")


def _fast_retry() -> Retry:
    # Few, fast retries: a webhook waiting on a dead Redis should get its 503 quickly so
    # that Alertmanager retries, rather than hang until its own timeout.
    return Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=2)


def connect(url: str, *, timeout_s: float) -> aioredis.Redis:
    client = aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=_fast_retry(),
    )
    pool = client.connection_pool
    # the URL chose the class (TCP, TLS or a Unix socket): keep it, pack with hiredis
    pool.connection_class = hiredis_packing(pool.connection_class)
    return client


class _SentinelConnection(SentinelManagedConnection):
    """redis-py's, asking the sentinels also when a command finds it closed.

    ``SentinelManagedConnection`` asks them in ``connect``, which the pool calls when it
    hands a connection out; but a retry within a command (after a dropped connection, or
    READONLY from a demoted master) reconnects through ``send_packed_command``, which
    goes straight to the address the connection had: the old master (redis-py 8.1).
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)


class SentinelMaster(aioredis.Redis):
    """The client of the master the sentinels name; closing it closes theirs too."""

    sentinels: Sentinel | None = None
    _follower: asyncio.Task[None] | None = None

    async def follow_master(self, every_s: float = 1.0) -> None:
        """Ask the sentinels for the master every ``every_s`` (in a task of the running
        loop, until ``aclose``); when they name another, drop every connection.

        redis-py asks the sentinels only when a connection (re)connects. After a planned
        failover (``SENTINEL FAILOVER``) the old master stays up, writable, until the
        sentinels turn it into a replica, seconds later; a pooled connection to it would go
        on writing there, and what it wrote would be lost. Dropped, connections reconnect
        to the new master; a call in flight fails over to it through the retry.
        """
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(
                self._follow(every_s), name="redis-sentinel-follow"
            )

    async def _follow(self, every_s: float) -> None:
        pool = self.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        while True:
            await asyncio.sleep(every_s)
            try:
                address = await pool.sentinel_manager.discover_master(pool.service_name)
            except (RedisConnectionError, RedisTimeoutError):
                continue  # no master named (yet), or no sentinel answers: calls fail alike
            if pool.master_address is not None and address != pool.master_address:
                log.warning("redis master moved: reconnecting", master=f"{address[0]}:{address[1]}")
                pool.master_address = address
                await pool.disconnect(inuse_connections=True)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def connect_sentinel(
    sentinels: list[tuple[str, int]],
    master: str,
    *,
    timeout_s: float,
    password: str | None = None,
    sentinel_password: str | None = None,
) -> aioredis.Redis:
    """The master's client, as ``connect`` builds it, its address asked of the sentinels.

    redis-py's ``SentinelManagedConnection`` asks the sentinels for the master's address
    whenever it (re)connects, and the pool drops its idle connections when the address
    changes. An old master that was demoted answers writes with READONLY: the connection
    then disconnects and raises ``ConnectionError``, which the retry (or the next call)
    answers by connecting to the new master. Until the sentinels have promoted one, calls
    fail as unreachable (``MasterNotFoundError`` is a ``ConnectionError``): 503 to webhooks,
    back-off for workers.
    """
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        # without sentinel_kwargs, redis-py would give the sentinels' clients only our
        # socket_* options: its default retry (10 tries, up to 10 s apart) would hold a
        # webhook far longer than a 503 should take
        sentinel_kwargs={
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "retry": Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=1),
            "password": sentinel_password,
        },
    )
    client: SentinelMaster = sentinel.master_for(
        master,
        redis_class=SentinelMaster,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=_fast_retry(),
        password=password,
    )
    client.sentinels = sentinel
    pool = client.connection_pool
    # plain TCP, packed with hiredis as ``connect`` does
    pool.connection_class = hiredis_packing(_SentinelConnection)
    return client


class _HiredisPacking:
    """Packs commands with hiredis's C packer, as redis-py's synchronous client does.

    The asyncio client packs in Python, argument by argument; our scripts take dozens of
    arguments (an incident write, a batch of webhooks' signals), and packing them was the
    largest single cost of a Redis call on the client (bench/intake.py, ``py-spy``).
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        # as redis-py does: a command name with a space is several words ("CONFIG GET")
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def hiredis_packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """``cls`` with hiredis packing (memoised: one subclass per connection class)."""
    if issubclass(cls, _HiredisPacking):
        return cls
    if cls not in _PACKING:
        _PACKING[cls] = type(cls.__name__, (_HiredisPacking, cls), {})
    return _PACKING[cls]


@asynccontextmanager
async def unavailable_as_store_error(what: str) -> AsyncIterator[None]:
    """Turn "Redis cannot be reached" (or cannot take writes, during a failover) into
    ``StoreUnavailableError``; other errors pass."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # (a Sentinel's MasterNotFoundError is a ConnectionError: no master promoted yet)
        # The message names the failure class only: a Redis error can quote the URL.
        raise StoreUnavailableError(f"{what}: Redis unreachable ({type(exc).__name__})") from None
    except ReadOnlyError:
        # a master demoted in a failover; through Sentinel, the next call finds the new one
        raise StoreUnavailableError(f"{what}: Redis is a read-only replica now") from None
