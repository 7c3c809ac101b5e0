"""Crash between steps: the store fails (or stalls) at a chosen call, so a worker "dies"
between doing a thing and recording that it did; the next handling must not do it again.

Each test pins one check that nothing else covers:

- delivery's "already sent" (``Deliveries._one``: a message whose idempotency record is
  done is not sent again): the worker posts to Slack and finishes the message's record,
  then dies before moving the sink's cursor; the redelivered follow-up plans the same
  messages again and must find them sent;
- the mitigation step's "done" (``Mitigator._claim``: an effect carried out before is not
  carried out again): a worker stalls with the resolve's change in hand while another
  replica (once the stalled one's follow-up lease lapsed) follows the incident up and
  reverts the action; the first, going on with its
  stale change, must find the revert done rather than send it a second time.

Real parts throughout: the service in-process, the real store behind ``FaultyStore``
(Redis and memory), the real slack-sdk client against the loopback fake Slack, the
Kubernetes client against the fake API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from responder.adapters.clock import SystemClock
from responder.app import Overrides, build_backend
from responder.domain.signal import TimerSignal
from responder.settings import Settings
from tests.support.fake_notify import FakeSlack
from tests.support.faulty_store import FaultyStore, first_arg
from tests.support.mitigation import Cluster, alert, cluster, kinds, on_cluster
from tests.support.service import Service, running_service, started_now
from tests.support.waiting import eventually

CHANNEL = "#posthog-incidents"


@asynccontextmanager
async def faulty_service(
    c: Cluster, make: Callable[..., Settings], *, notify: bool = False, **settings: Any
) -> AsyncIterator[tuple[Service, FaultyStore]]:
    """The service on the cluster (no consumer task: the test hands entries to the worker
    itself), its store behind a ``FaultyStore``."""
    resolved = make(**on_cluster(c, **{"workers": 0, **settings}))
    store, queue = build_backend(resolved, SystemClock())
    faulty = FaultyStore(store)
    overrides = Overrides(store=faulty, queue=queue)  # type: ignore[arg-type]
    async with running_service(resolved, overrides, notify=notify) as svc:
        yield svc, faulty


async def handle_next(svc: Service) -> Any:
    """Read the one entry queued and hand it to the worker; the entry."""
    queue = svc.runtime.queue
    [entry] = await queue.read(consumer="w1", count=10, block_ms=0)
    await svc.runtime.worker.handle(entry)
    return entry


def slack_posts(slack: FakeSlack) -> list[str]:
    """The idempotency key of every chat.postMessage Slack answered, in order."""
    keys = []
    for request in slack.requests:
        if request.api != "chat.postMessage":
            continue
        payload = (request.args.get("metadata") or {}).get("event_payload") or {}
        keys.append(str(payload.get("key")))
    return keys


def deployment_patches(c: Cluster) -> list[Any]:
    return [r for r in c.patches() if "/deployments/" in r.path]


# Where the worker dies once the root message is posted: its record written, the reply
# lost; or the record written, then the sink's cursor not saved.
CRASHES = {
    "root record written, reply lost": (
        "finish_effect",
        first_arg(lambda key: str(key).endswith(":notify:slack:root")),
        True,
    ),
    "cursor not saved": ("save_delivery_state", lambda args, kwargs: args[1] == "slack", False),
}


@pytest.mark.parametrize("crash", list(CRASHES))
async def test_a_message_sent_before_the_worker_died_is_not_sent_again(
    backend_settings, tmp_path: Path, crash: str
) -> None:
    """Posted and its record finished, then the store fails before the sink's cursor is
    saved: the follow-up fails and the entry is handled again. The messages of the first
    pass are planned again from the old cursor; each must be found sent, not posted
    twice."""
    async with (
        FakeSlack() as slack,
        cluster(tmp_path) as c,
        faulty_service(
            c,
            backend_settings,
            notify=True,
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel=CHANNEL,
            notify_retry_base_s=0.05,
            notify_retry_cap_s=0.3,
        ) as (svc, store),
    ):
        method, when, after = CRASHES[crash]
        store.fail(method, when=when, after=after)
        [payload] = started_now(alert("SetEnv"))
        assert (await svc.post_alertmanager(payload)).status == 200
        entry = await handle_next(svc)
        assert store.failures == [method]  # the worker "died" there
        first_pass = slack_posts(slack)
        [inc] = await svc.incidents()
        root = f"{inc['id']}:notify:slack:root"
        assert root in first_pass  # sent, and its record finished, before the crash

        await svc.runtime.worker.handle(entry)  # redelivered
        await svc.idle()
        [inc] = await svc.incidents()
        assert "action.applied" in kinds(inc)  # the follow-up went through this time
        everything = slack_posts(slack)
        assert len(everything) > len(first_pass)  # later events were told
        # nothing twice: each message reached Slack once, the root first
        assert len(set(everything)) == len(everything), everything
        assert everything.count(root) == 1
        assert everything[0] == root
        messages = slack.messages(CHANNEL)
        assert len([m for m in messages if not m.is_reply]) == 1


async def test_a_revert_done_by_another_worker_is_not_sent_again(
    backend_settings, tmp_path: Path
) -> None:
    """The resolve's follow-up stalls in the store just before it claims the revert (a
    worker paused past its grace); meanwhile the incident is followed up by another
    consumer (the store's follow-up check queues a timer for a late one), which reverts
    the action. The first worker then goes on with the change it holds, in which the
    action is not reverted yet: the revert's record, done, must stop it."""
    async with (
        cluster(tmp_path) as c,
        faulty_service(c, backend_settings) as (svc, store),
    ):
        assert (await svc.post_alertmanager(alert("SetEnv"))).status == 200
        await handle_next(svc)
        [inc] = await svc.incidents()
        assert kinds(inc).count("action.applied") == 1
        assert len(deployment_patches(c)) == 1
        assert c.env()["RATE_LIMIT_MODE"] == "queue"

        gate = store.hold("claim_effect", when=first_arg(lambda key: ":revert:" in key))
        assert (await svc.post_alertmanager(alert("SetEnv", status="resolved"))).status == 200
        [entry] = await svc.runtime.queue.read(consumer="w1", count=10, block_ms=0)
        slow = asyncio.create_task(svc.runtime.worker.handle(entry))
        # another replica on the same store: within this process the incident's follow-ups
        # take turns, and the paused worker's follow-up lease lapses (nothing renews it)
        replica_overrides = Overrides(store=store, queue=svc.runtime.queue)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(gate.reached.wait(), timeout=20)
            async with running_service(svc.runtime.settings, replica_overrides) as replica:
                # it follows the incident up once the lease lapsed, and reverts the action
                async def followed_up() -> bool:
                    now = datetime.now(UTC)
                    signal = TimerSignal.follow_up_now(inc["id"], "check", now)
                    [handled] = await replica.runtime.pipeline.handle(signal)
                    return not handled.busy and handled.retry_reason is None

                await eventually(followed_up, interval_s=0.2, what="the replica's follow-up")
            assert len(deployment_patches(c)) == 2
            assert "RATE_LIMIT_MODE" not in c.env()
        finally:
            gate.open()
            await asyncio.wait_for(slow, timeout=20)

        assert len(deployment_patches(c)) == 2  # the action and one revert, no second
        [inc] = await svc.incidents()
        assert inc["status"] == "resolved"
        assert kinds(inc).count("action.reverted") == 1
        assert "RATE_LIMIT_MODE" not in c.env()
