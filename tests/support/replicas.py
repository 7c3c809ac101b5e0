"""Several ``responder serve`` processes on one Redis, for the tests of what must happen once
whichever replica takes it: a key prefix of their own (deleted afterwards), the processes
started together, and a small client posting alerts and Slack presses to them and reading
their incidents back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis

from tests.support.procs import ServeProcess, serve_process


@contextlib.contextmanager
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of its own; its keys are deleted afterwards (and only its)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@contextlib.asynccontextmanager
async def serve_replicas(
    env: dict[str, str], *, redis_url: str, count: int = 2
) -> AsyncIterator[tuple[ServeProcess, ...]]:
    """``count`` serve processes with ``env`` on ``redis_url``, under a prefix of their own."""
    with key_prefix(redis_url) as prefix, contextlib.ExitStack() as stack:
        env = {"RESPONDER_REDIS_URL": redis_url, "RESPONDER_REDIS_PREFIX": prefix, **env}
        # started off the loop: the fakes on it answer their start-up checks meanwhile
        started = await asyncio.gather(
            *(asyncio.to_thread(stack.enter_context, serve_process(env)) for _ in range(count))
        )
        yield tuple(started)


@dataclass
class Replicas:
    """The client: alerts go to the first replica, incidents are read from the second (the
    state is in Redis, whichever replica wrote it)."""

    replicas: tuple[ServeProcess, ...]
    http: aiohttp.ClientSession

    async def post_alert(self, payload: dict[str, Any]) -> None:
        url = self.replicas[0].url + "/v1/webhooks/alertmanager"
        async with self.http.post(url, json=payload) as resp:
            assert resp.status == 200, await resp.text()

    async def incidents(self) -> list[dict[str, Any]]:
        async with self.http.get(self.replicas[1].url + "/v1/incidents") as resp:
            incidents: list[dict[str, Any]] = (await resp.json())["incidents"]
            return incidents

    async def incident(self, incident_id: str) -> dict[str, Any]:
        async with self.http.get(self.replicas[1].url + f"/v1/incidents/{incident_id}") as resp:
            assert resp.status == 200, await resp.text()
            doc: dict[str, Any] = await resp.json()
            return doc

    async def incident_where(
        self,
        found: Callable[[list[dict[str, Any]]], dict[str, Any] | None],
        *,
        what: str,
        timeout_s: float,
    ) -> dict[str, Any]:
        """The incident ``found`` picks from the list, once it picks one."""
        deadline = time.monotonic() + timeout_s
        while True:
            incidents = await self.incidents()
            hit = found(incidents)
            if hit:
                return dict(hit)
            assert time.monotonic() < deadline, f"{what}: not reached in {incidents}"
            await asyncio.sleep(0.05)

    async def send(self, replica: int, body: bytes, headers: dict[str, str]) -> int:
        """A request to ``replica``'s Slack interactions route, as Slack sends it; its status."""
        url = self.replicas[replica].url + "/v1/slack/interactions"
        async with self.http.post(url, data=body, headers=headers) as resp:
            return resp.status
