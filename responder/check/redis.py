"""Redis: reachable, its version, whether it persists, and that it never evicts (an
evicting Redis drops queued alerts and incident records without a word)."""

from __future__ import annotations

from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from responder.adapters.redis_client import connect, connect_sentinel
from responder.check.result import Result, fail, ok, skip, warn
from responder.settings import Settings

NAME = "redis"
MIN_VERSION = (7, 0)  # the Lua scripts and stream commands the adapters use
FIX_EVICTION = (
    "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in "
    "redis.conf or your provider's parameter group): a full Redis must refuse writes, "
    "which responder retries, never drop queued alerts"
)


def _where(settings: Settings) -> tuple[str, aioredis.Redis]:
    if settings.redis_sentinels:
        sentinels = ", ".join(settings.redis_sentinels)
        where = f"sentinels {sentinels}, master {settings.redis_sentinel_master}"
        client = connect_sentinel(
            settings.sentinel_addresses(),
            str(settings.redis_sentinel_master),
            timeout_s=settings.redis_timeout_s,
            password=_secret(settings.redis_password),
            sentinel_password=_secret(settings.redis_sentinel_password),
        )
        return where, client
    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 6379}"  # never the password
    return where, connect(url, timeout_s=settings.redis_timeout_s)


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if getter is not None else None


async def check(settings: Settings) -> list[Result]:
    if not settings.uses_redis:
        return [
            skip(NAME, "not configured: the embedded memory store (nothing survives a restart)")
        ]
    where, client = _where(settings)
    try:
        try:
            await client.ping()
            server = await client.info("server")
            persistence = await client.info("persistence")
            memory = await client.info("memory")
        except AuthenticationError:
            return [
                fail(
                    NAME,
                    f"{where} refused our credentials",
                    "check the password in RESPONDER_REDIS_URL (or RESPONDER_REDIS_PASSWORD)",
                )
            ]
        except (RedisError, OSError) as exc:
            return [
                fail(
                    NAME,
                    f"{where} unreachable: {type(exc).__name__}",
                    "start Redis there, or point RESPONDER_REDIS_URL at the one that runs",
                )
            ]
        return [
            _version(where, str(server.get("redis_version", "?"))),
            await _persistence(client, persistence),
            _eviction(str(memory.get("maxmemory_policy", "?"))),
        ]
    finally:
        await client.aclose()


def _version(where: str, version: str) -> Result:
    try:
        found = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        found = (0, 0)
    if found < MIN_VERSION:
        return fail(
            NAME,
            f"{where}: version {version} is older than {'.'.join(map(str, MIN_VERSION))}",
            "upgrade Redis to 7.0 or later",
        )
    return ok(NAME, f"{where} answers ping, version {version}")


async def _persistence(client: aioredis.Redis, info: dict[str, object]) -> Result:
    aof = str(info.get("aof_enabled", "0")) == "1"
    try:
        save = (await client.config_get("save")).get("save", "")
    except ResponseError:  # CONFIG disabled (a managed Redis): RDB unknown
        save = None
    if aof:
        fsync = (await _config(client, "appendfsync")) or "?"
        return ok(NAME, f"persistence: AOF (appendfsync {fsync})" + (", RDB" if save else ""))
    if save:
        return warn(
            NAME,
            f"persistence: RDB snapshots only (save {save}): a crash loses the writes since",
            "turn on AOF (appendonly yes) so accepted alerts survive a crash",
        )
    if save is None:
        return warn(
            NAME,
            "persistence: AOF off, RDB unknown (CONFIG is disabled here)",
            "turn on AOF (appendonly yes) so accepted alerts survive a crash",
        )
    return warn(
        NAME,
        "persistence: none (no AOF, no RDB): a restart loses queued alerts and incidents",
        "turn on AOF (appendonly yes), or accept losing the queue with each restart",
    )


async def _config(client: aioredis.Redis, name: str) -> str | None:
    try:
        return str((await client.config_get(name)).get(name, "")) or None
    except ResponseError:
        return None


def _eviction(policy: str) -> Result:
    if policy == "noeviction":
        return ok(NAME, "maxmemory-policy noeviction")
    return fail(NAME, f"maxmemory-policy is {policy}: Redis may evict our keys", FIX_EVICTION)
