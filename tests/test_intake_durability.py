"""What a webhook's 200 waits for (RESPONDER_INTAKE_DURABILITY), on real redis-servers."""

from __future__ import annotations

import pytest
import redis
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from responder.adapters.redis_client import connect, unavailable_as_store_error
from responder.adapters.redis_keys import RedisKeys
from responder.app import create_app
from responder.domain.errors import StoreUnavailableError
from responder.domain.signal import alertmanager_dedupe_key
from responder.settings import ConfigError, Settings
from tests.support.procs import free_port, redis_replica, redis_server, wait_replica_linked
from tests.support.service import example, running_service
from tests.test_cli import responder

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"
FINGERPRINT = example(UNREACHABLE)["alerts"][0]["fingerprint"]
PREFIX = "durability"


def intake_only(make_settings, url: str, mode: str, **more: object) -> Settings:
    # no workers: the queue keeps what intake wrote, for the test to read
    settings: Settings = make_settings(
        redis_url=url, redis_prefix=PREFIX, intake_durability=mode, workers=0, **more
    )
    return settings


async def test_replica_mode_answers_200_once_a_replica_has_the_signals(make_settings) -> None:
    with redis_server() as master, redis_replica(master) as replica:
        settings = intake_only(make_settings, master.url, "replica")
        async with running_service(settings) as svc:
            resp = await svc.post_alertmanager(example(UNREACHABLE))
            assert resp.status == 200, await resp.text()
            # right after the 200, read on the replica: no waiting
            keys = RedisKeys(PREFIX)
            on_replica = redis.Redis(port=replica.port, decode_responses=True)
            try:
                record = on_replica.hgetall(keys.signal(alertmanager_dedupe_key(FINGERPRINT)))
                assert record["status"] == "firing"
                assert on_replica.xlen(keys.queue) == 1
            finally:
                on_replica.close()


async def test_replica_mode_without_a_replica_answers_503_until_one_confirms(
    make_settings,
) -> None:
    with redis_server() as master, redis_replica(master) as replica:
        settings = intake_only(make_settings, master.url, "replica", intake_wait_timeout_ms=200)
        async with running_service(settings) as svc:
            replica.stop()
            for _ in range(2):  # the sender's retry is a repeat: it waits for a replica too
                resp = await svc.post_alertmanager(example(UNREACHABLE))
                assert resp.status == 503, await resp.text()
                assert "no replica confirmed it within 200 ms" in (await resp.json())["detail"]
            on_master = redis.Redis(port=master.port)
            try:
                assert on_master.xlen(RedisKeys(PREFIX).queue) == 1  # queued once, unconfirmed
            finally:
                on_master.close()

            replica.start()
            wait_replica_linked(replica, master)
            resp = await svc.post_alertmanager(example(UNREACHABLE))
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["repeated"] == 1


async def refused_start(settings: Settings) -> str:
    """The ConfigError that stops the app's start-up."""
    server = TestServer(create_app(settings), host="127.0.0.1")
    try:
        with pytest.raises(ConfigError) as refused:
            await server.start_server()
    finally:
        await server.close()
    return str(refused.value)


async def test_fsync_mode_refuses_a_server_that_does_not_fsync_every_write(make_settings) -> None:
    with redis_server("--appendonly", "yes", "--appendfsync", "everysec") as server:
        refused = await refused_start(intake_only(make_settings, server.url, "fsync"))
        assert "appendfsync always; it runs with appendonly yes and appendfsync everysec" in refused


async def test_fsync_mode_starts_on_a_server_that_fsyncs_every_write(make_settings) -> None:
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as server:
        async with running_service(intake_only(make_settings, server.url, "fsync")) as svc:
            resp = await svc.post_alertmanager(example(UNREACHABLE))
            assert resp.status == 200, await resp.text()


async def test_fsync_mode_without_config_get_needs_the_operators_word(make_settings) -> None:
    with redis_server("--rename-command", "CONFIG", "") as server:
        refused = await refused_start(intake_only(make_settings, server.url, "fsync"))
        assert "refused CONFIG GET" in refused
        assert "RESPONDER_INTAKE_FSYNC_UNCHECKED=true" in refused
        vouched = intake_only(make_settings, server.url, "fsync", intake_fsync_unchecked=True)
        async with running_service(vouched) as svc:
            resp = await svc.post_alertmanager(example(UNREACHABLE))
            assert resp.status == 200, await resp.text()


def test_serve_refuses_fsync_mode_on_a_server_without_it_in_one_line() -> None:
    with redis_server() as server:
        result = responder(
            "serve",
            "--port",
            str(free_port()),
            env={"RESPONDER_REDIS_URL": server.url, "RESPONDER_INTAKE_DURABILITY": "fsync"},
        )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RESPONDER_INTAKE_DURABILITY=fsync needs"), last
    assert last.endswith("appendonly no and appendfsync everysec; nothing started"), last


async def test_a_demoted_master_is_a_store_unavailable_not_an_error() -> None:
    # a failover turns the master the client talks to into a replica: READONLY
    with redis_server() as master, redis_replica(master) as replica:
        client = connect(replica.url, timeout_s=2.0)
        try:
            with pytest.raises(StoreUnavailableError, match="read-only replica"):
                async with unavailable_as_store_error("observe"):
                    await client.set(f"{{{PREFIX}}}:x", 1)
        finally:
            await client.aclose()


def test_durability_settings() -> None:
    with pytest.raises(ValidationError, match="intake_durability=replica needs Redis"):
        Settings(intake_durability="replica")
    with pytest.raises(ValidationError, match="intake_wait_timeout_ms must be below"):
        Settings(
            redis_url="redis://127.0.0.1:6379/0",
            intake_durability="replica",
            intake_wait_timeout_ms=2000,
            redis_timeout_s=2.0,
        )
    with pytest.raises(ValidationError, match="intake_durability"):
        Settings(redis_url="redis://127.0.0.1:6379/0", intake_durability="quorum")
    assert Settings().intake_durability == "write"


def test_wait_replicas_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().intake_wait_replicas == 1
    monkeypatch.setenv("RESPONDER_INTAKE_WAIT_REPLICAS", "all")
    assert Settings().intake_wait_replicas == "all"
    monkeypatch.setenv("RESPONDER_INTAKE_WAIT_REPLICAS", "2")
    assert Settings().intake_wait_replicas == 2
    for wrong in ("0", "most"):
        monkeypatch.setenv("RESPONDER_INTAKE_WAIT_REPLICAS", wrong)
        with pytest.raises(ValidationError, match="intake_wait_replicas"):
            Settings()
