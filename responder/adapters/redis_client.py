"""Building the Redis client and translating its failures into the ports' language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from responder.domain.errors import StoreUnavailableError


def connect(url: str, *, timeout_s: float) -> aioredis.Redis:
    # Few, fast retries: a webhook waiting on a dead Redis should get its 503 quickly so
    # that Alertmanager retries, rather than hang until its own timeout.
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=2),
    )


@asynccontextmanager
async def unavailable_as_store_error(what: str) -> AsyncIterator[None]:
    """Turn "Redis cannot be reached" into ``StoreUnavailableError``; other errors pass."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        # The message names the failure class only: a Redis error can quote the URL.
        raise StoreUnavailableError(f"{what}: Redis unreachable ({type(exc).__name__})") from None
