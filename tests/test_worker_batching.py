"""How the workers of one process make batches: a flow of signals fills one batch, taken
by one consumer task at a time; a lone signal does not wait for a batch that never comes.

Run on both backends: the memory queue and Redis streams must batch alike.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from responder.app import Overrides, build_backend
from tests.support.clock import ShiftableClock
from tests.support.faulty_store import WatchedQueue
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually

UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"


def pod_alert(pod: int) -> dict[str, Any]:
    payload = copy.deepcopy(example(UNREACHABLE))
    alert = payload["alerts"][0]
    alert["labels"]["instance"] = f"pod-{pod}"
    alert["fingerprint"] = ""
    return payload


def batches(svc: Service) -> tuple[float, float]:
    """How many batches the workers handled, and how many entries in all."""
    registry = svc.runtime.metrics.registry
    count = registry.get_sample_value("responder_worker_batch_entries_count")
    total = registry.get_sample_value("responder_worker_batch_entries_sum")
    return count or 0.0, total or 0.0


async def alerts_in_incident(svc: Service, n: int) -> bool:
    found = await svc.incidents()
    return bool(found) and found[0]["alerts_total"] == n


async def test_a_flow_of_signals_fills_one_batch_across_consumer_tasks(backend_settings) -> None:
    """Eight alerts 100 ms apart, with four consumer tasks and a 2 s batch wait (0.5 s
    steps): the task that read the first keeps its batch open while the flow lasts (past
    its first step), and the other tasks, waiting for their turn to read, take none."""
    settings = backend_settings(workers=4, batch_wait_s=2.0, visibility_timeout_s=10)
    async with running_service(settings) as svc:
        for pod in range(8):
            assert (await svc.post_alertmanager(pod_alert(pod))).status == 200
            await asyncio.sleep(0.1)
        await eventually(lambda: alerts_in_incident(svc, 8), timeout_s=15, what="8 alerts")
        await svc.idle(timeout_s=15)
        assert batches(svc) == (1, 8)


async def test_a_lone_signal_waits_one_step_not_the_whole_batch_wait(backend_settings) -> None:
    """A signal alone waits one step (1 s of the 4 s batch wait); the step's read finds
    nothing and the batch goes at once: a signal that comes after that read is not in it,
    as it would be were the batch held open for the rest of its wait."""
    settings = backend_settings(workers=4, batch_wait_s=4.0, visibility_timeout_s=10)  # 1 s steps
    clock = ShiftableClock()  # counts the waits asked of it
    store, real_queue = build_backend(settings, clock)
    queue = WatchedQueue(real_queue)
    overrides = Overrides(clock=clock, store=store, queue=queue)
    async with running_service(settings, overrides) as svc:
        assert (await svc.post_alertmanager(pod_alert(0))).status == 200
        # the step's read, which found nothing more
        await asyncio.wait_for(queue.empty_fill.wait(), timeout=15)
        assert clock.sleeps == [1.0]  # it waited its step, one step, not more
        assert [r for r in queue.reads if r[0] == 0] == [(0, 0)]
        assert (await svc.post_alertmanager(pod_alert(1))).status == 200
        await eventually(lambda: alerts_in_incident(svc, 2), timeout_s=15, what="both alerts")
        await svc.idle(timeout_s=15)
        assert batches(svc) == (2, 2)  # one batch each


async def test_no_batch_wait_handles_each_signal_at_once(backend_settings) -> None:
    settings = backend_settings(workers=1, batch_wait_s=0)
    async with running_service(settings) as svc:
        for pod in range(3):
            assert (await svc.post_alertmanager(pod_alert(pod))).status == 200
            await eventually(
                lambda n=pod + 1: alerts_in_incident(svc, n), timeout_s=15, what="the alert"
            )
        await svc.idle(timeout_s=15)
        assert batches(svc) == (3, 3)


async def test_a_stop_during_the_wait_handles_the_entries_in_hand(backend_settings) -> None:
    """Stopping cancels a task that waits for entries, but one that holds some (waiting
    for its batch to fill) hands them to the pipeline: nothing is left for another
    replica to claim after the visibility timeout."""
    settings = backend_settings(workers=1, batch_wait_s=4.0, visibility_timeout_s=10)
    async with running_service(settings) as svc:
        assert (await svc.post_alertmanager(pod_alert(0))).status == 200
        await asyncio.sleep(0.3)  # read, and waiting out its first 1 s step
        assert await svc.incidents() == []
        svc.runtime.worker.stop()
        await eventually(lambda: alerts_in_incident(svc, 1), timeout_s=5, what="the incident")
        await svc.idle(timeout_s=5)
        assert batches(svc) == (1, 1)
