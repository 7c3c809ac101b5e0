"""The Redis client the service builds: hiredis packing, on a real Redis."""

from __future__ import annotations

import pytest
from redis.exceptions import DataError

from responder.adapters.redis_client import _HiredisPacking, connect


async def test_commands_are_packed_by_hiredis_and_round_trip(
    redis_url: str, redis_prefix: str
) -> None:
    client = connect(redis_url, timeout_s=2.0)
    try:
        assert issubclass(client.connection_pool.connection_class, _HiredisPacking)
        key = f"{{{redis_prefix}}}:packing"
        # str (non-ASCII too), int, float and bytes arguments, as the scripts send them
        await client.hset(
            key, mapping={"text": "héllo ✓", "int": 42, "float": 1.5, "raw": b"\x00x"}
        )
        assert await client.hgetall(key) == {
            "text": "héllo ✓",
            "int": "42",
            "float": "1.5",
            "raw": "\x00x",
        }
        # a command name of two words is sent as two arguments
        assert "maxmemory" in await client.execute_command("CONFIG GET", "maxmemory")
        with pytest.raises(DataError):
            await client.set(key, object())  # type: ignore[arg-type]
    finally:
        await client.aclose()
