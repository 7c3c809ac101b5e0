"""Several workers and replicas on one Redis, racing on the same incidents."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from typing import Any

from tests.support.service import example, running_service

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"
LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"


def pod_alert(path: str, pod: int, status: str = "firing") -> dict[str, Any]:
    payload = copy.deepcopy(example(path))
    alert = payload["alerts"][0]
    alert["labels"]["instance"] = f"pod-{pod}"
    alert["fingerprint"] = ""
    alert["status"] = payload["status"] = status
    if status == "resolved":
        alert["endsAt"] = "2026-11-29T03:41:26Z"
    return payload


async def test_two_replicas_racing_on_two_groups_keep_one_incident_each(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(workers=4, redis_url=redis_url, redis_prefix=redis_prefix)
    pods = range(40)
    async with running_service(settings) as a, running_service(settings) as b:
        sends = [
            svc.post_alertmanager(pod_alert(path, pod))
            for pod in pods
            for path, svc in ((UNREACHABLE, a), (LIMITED, b))
        ]
        assert all(r.status == 200 for r in await asyncio.gather(*sends))
        await a.idle(timeout_s=30)
        incidents = await a.incidents()
        assert len(incidents) == 2
        for inc in incidents:
            kinds = Counter(e["kind"] for e in inc["timeline"])
            assert kinds == {"incident.opened": 1, "incident.classified": 1, "alert.joined": 39}
            assert [e["seq"] for e in inc["timeline"]] == list(range(41))
            assert (inc["alerts_total"], inc["alerts_firing"]) == (40, 40)
            assert len({x["fingerprint"] for x in inc["alerts"]}) == 40
        # every event was followed up (notified) by one replica or the other; exactly-once
        # delivery to a sink is the sink's effect key, not the follow-up's
        notified = Counter(a.notifier.kinds() + b.notifier.kinds())
        assert notified >= Counter(
            {"incident.opened": 2, "incident.classified": 2, "alert.joined": 78}
        )

        resolves = [
            svc.post_alertmanager(pod_alert(path, pod, "resolved"))
            for pod in pods
            for path, svc in ((UNREACHABLE, b), (LIMITED, a))
        ]
        assert all(r.status == 200 for r in await asyncio.gather(*resolves))
        await a.idle(timeout_s=30)
        for inc in await a.incidents():
            kinds = Counter(e["kind"] for e in inc["timeline"])
            assert kinds["alert.resolved"] == 40
            assert kinds["incident.resolved"] == 1
            assert inc["status"] == "resolved"
            assert inc["alerts_firing"] == 0


async def test_concurrent_batches_on_one_group_conflict_and_retry_without_loss(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """Sixteen consumers on two replicas each take two alerts of one group and write at
    once: the losers of each race read again and apply on the fresh state."""
    settings = make_settings(workers=0, redis_url=redis_url, redis_prefix=redis_prefix)
    async with running_service(settings) as a, running_service(settings) as b:
        for pod in range(32):
            await a.post_alertmanager(pod_alert(UNREACHABLE, pod))
        queue = a.runtime.queue
        assert queue is not None
        batches = [await queue.read(consumer=f"c{n}", count=2, block_ms=0) for n in range(16)]
        workers = [a.runtime.worker, b.runtime.worker]
        # A batch whose group has an earlier signal not applied yet waits for it, and one
        # whose incident the other replica is following up is left to it: the consumer
        # loops (off here) try such entries again soon. The first rounds race every batch
        # at once; the later ones settle what is left one batch after another, as the
        # consumer loops would once the race is over (racing again each round could
        # leave some batch's incident busy on the other replica every time).
        for round_ in range(len(batches)):
            if round_ < 3:
                await asyncio.gather(
                    *(workers[n % 2].handle(*batch) for n, batch in enumerate(batches))  # type: ignore[union-attr]
                )
            else:
                for n, batch in enumerate(batches):
                    await workers[n % 2].handle(*batch)  # type: ignore[union-attr]
            if (await queue.stats()).pending == 0:
                break
        assert (await queue.stats()).pending == 0
        [inc] = await a.incidents()
        kinds = Counter(e["kind"] for e in inc["timeline"])
        assert kinds == {"incident.opened": 1, "incident.classified": 1, "alert.joined": 31}
        assert [e["seq"] for e in inc["timeline"]] == list(range(33))
        assert sorted(x["number"] for x in inc["alerts"]) == list(range(1, 33))
        # every event reached the notifier (at least once: see the test above)
        assert Counter(a.notifier.kinds() + b.notifier.kinds()) >= kinds
