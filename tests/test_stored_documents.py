"""What Redis keeps of an incident: compact documents that read back whole."""

from __future__ import annotations

import copy

import redis.asyncio as aioredis

from responder.adapters.redis_keys import RedisKeys
from tests.support.service import example, running_service

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


async def test_an_alert_like_its_incident_is_kept_without_a_second_copy_of_its_labels(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """The opener's labels and annotations are the incident's: its alert record leaves
    them out and reads back whole; a joining alert with labels of its own keeps them."""
    settings = make_settings(workers=1, redis_url=redis_url, redis_prefix=redis_prefix)
    async with running_service(settings) as svc:
        opener = example(UNREACHABLE)
        joining = copy.deepcopy(opener)
        joining["alerts"][0]["labels"]["instance"] = "another-pod"
        joining["alerts"][0]["fingerprint"] = ""
        await svc.post_alertmanager(opener)
        await svc.post_alertmanager(joining)
        await svc.idle()
        [inc] = await svc.incidents()
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            stored = await client.hgetall(RedisKeys(redis_prefix).alerts(inc["id"]))
        finally:
            await client.aclose()
        first, second = sorted(inc["alerts"], key=lambda a: a["number"])
        assert '"labels"' not in stored[first["fingerprint"]]
        assert '"labels"' in stored[second["fingerprint"]]
        assert first["labels"] == inc["labels"] == opener["alerts"][0]["labels"]
        assert first["annotations"] == opener["alerts"][0]["annotations"]
        assert second["labels"]["instance"] == "another-pod"
