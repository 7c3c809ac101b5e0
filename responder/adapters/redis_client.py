"""Building the Redis client and translating its failures into the ports' language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from responder.domain.errors import StoreUnavailableError


def connect(url: str, *, timeout_s: float) -> aioredis.Redis:
    # Few, fast retries: a webhook waiting on a dead Redis should get its 503 quickly so
    # that Alertmanager retries, rather than hang until its own timeout.
    client = aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=2),
    )
    pool = client.connection_pool
    # the URL chose the class (TCP, TLS or a Unix socket): keep it, pack with hiredis
    pool.connection_class = hiredis_packing(pool.connection_class)
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
    """Turn "Redis cannot be reached" into ``StoreUnavailableError``; other errors pass."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # The message names the failure class only: a Redis error can quote the URL.
        raise StoreUnavailableError(f"{what}: Redis unreachable ({type(exc).__name__})") from None
