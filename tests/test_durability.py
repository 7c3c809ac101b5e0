"""Nothing is lost: a worker that dies mid-entry, a Redis that goes away and comes back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap

from responder.settings import Settings
from tests.support.procs import env_without_responder, redis_server
from tests.support.service import example, running_service
from tests.support.waiting import eventually

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"

# A worker process that takes one entry from the queue and dies before acknowledging it.
DOOMED_WORKER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from responder.adapters.clock import SystemClock
    from responder.adapters.redis_client import connect
    from responder.adapters.redis_keys import RedisKeys
    from responder.adapters.redis_queue import RedisQueue

    async def main():
        client = connect(sys.argv[1], timeout_s=5)
        queue = RedisQueue(client, keys=RedisKeys(sys.argv[2]), clock=SystemClock())
        entries = await queue.read(consumer="doomed", count=10, block_ms=5000)
        print(len(entries), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_entry_of_a_killed_worker_is_handled_by_another_exactly_once(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    intake_only = make_settings(workers=0, redis_url=redis_url, redis_prefix=redis_prefix)
    async with running_service(intake_only) as intake:
        assert (await intake.post_alertmanager(example(UNREACHABLE))).status == 200
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", DOOMED_WORKER, redis_url, redis_prefix],
            capture_output=True,
            text=True,
            timeout=30,
            env=env_without_responder(),
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert proc.stdout.strip() == "1"
        stats = await intake.runtime.queue.stats()  # type: ignore[union-attr]
        assert (stats.depth, stats.pending) == (0, 1)
        assert await intake.incidents() == []

    # two replicas, several workers each, race to claim the orphaned entry
    replicas = make_settings(
        workers=3, visibility_timeout_s=0.3, redis_url=redis_url, redis_prefix=redis_prefix
    )
    async with running_service(replicas) as a, running_service(replicas) as b:
        await a.idle()
        [inc] = await a.incidents()
        assert [e["kind"] for e in inc["timeline"]] == ["incident.opened", "incident.classified"]
        assert a.notifier.kinds() + b.notifier.kinds() == ["incident.opened", "incident.classified"]
        stats = await a.runtime.queue.stats()  # type: ignore[union-attr]
        assert (stats.pending, stats.dead_letters) == (0, 0)


async def test_redis_down_answers_503_and_a_resend_after_it_returns_is_processed(
    make_settings,
) -> None:
    with redis_server() as server:
        settings: Settings = make_settings(
            redis_url=server.url,
            redis_prefix="durability",
            redis_timeout_s=0.5,
            visibility_timeout_s=0.5,
        )
        async with running_service(settings) as svc:
            assert (await svc.client.get("/readyz")).status == 200
            server.stop()

            resp = await svc.post_alertmanager(example(UNREACHABLE))
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            body = await resp.json()
            assert body["error"] == "store unavailable"
            assert "redis://" not in body["detail"]
            assert (await svc.client.get("/readyz")).status == 503
            text = await (await svc.client.get("/metrics")).text()
            assert (
                'responder_webhooks_total{outcome="unavailable",source="alertmanager"} 1.0' in text
            )

            server.start()  # same port, empty: a Redis restart without persistence

            async def accepted() -> bool:
                resp = await svc.post_alertmanager(example(UNREACHABLE))
                return resp.status == 200

            await eventually(accepted, timeout_s=10, interval_s=0.2, what="intake back")
            assert (await svc.client.get("/readyz")).status == 200

            async def opened() -> list:
                return await svc.incidents()

            [inc] = await eventually(opened, timeout_s=15, what="incident opened after recovery")
            assert [e["kind"] for e in inc["timeline"]] == [
                "incident.opened",
                "incident.classified",
            ]
