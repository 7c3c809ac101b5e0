"""An incident's effect records and delivery states live as long as the incident: none
expires while it is open, however long that is (a joining alert weeks later must not post
a second Slack root, an action step must not run again), and once it is resolved they
expire with it. Real Redis; time is never waited for: TTLs are read, and "30 days went by"
is every key that would have expired by then deleted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from responder.adapters.clock import SystemClock
from responder.adapters.redis_keys import EFFECT_TTL_S, RESOLVED_INCIDENT_TTL_S, RedisKeys
from responder.app import build_backend
from responder.domain.notification import DeliveryState
from responder.settings import Settings
from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.mitigation import alert, cluster, kinds, responder, settled
from tests.support.service import Service
from tests.support.waiting import eventually

CHANNEL = "#posthog-incidents"
DAY_MS = 24 * 3600 * 1000


def slack_settings(fake: FakeSlack) -> dict[str, Any]:
    return {
        "slack_token": fake.token,
        "slack_api_url": fake.api_url,
        "slack_channel": CHANNEL,
        "notify_retry_base_s": 0.05,
    }


async def records_of(r: aioredis.Redis, keys: RedisKeys, incident_id: str) -> list[str]:
    """The incident's effect records and delivery states: the fields of its ledger. Any
    effect record or delivery state kept elsewhere fails the test."""
    strays = [k async for k in r.scan_iter(match=keys.effect(f"{incident_id}:*"))]
    strays += [k async for k in r.scan_iter(match=keys.delivery(incident_id, "*"))]
    assert not strays, strays
    return sorted(await r.hkeys(keys.ledger(incident_id)))


async def thirty_days_pass(r: aioredis.Redis, prefix: str) -> list[str]:
    """What Redis would have done in 30 days: every key of the deployment with a TTL that
    runs out by then is gone. The deleted keys."""
    gone = []
    async for key in r.scan_iter(match="{" + prefix + "}*"):
        left = int(await r.pttl(key))
        if 0 <= left <= 30 * DAY_MS:
            gone.append(key)
    if gone:
        await r.delete(*gone)
    return gone


def roots(fake: FakeSlack) -> list[SlackMessage]:
    return [m for m in fake.messages(CHANNEL) if not m.is_reply]


async def incident_with(svc: Service, kind: str, count: int = 1) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        for inc in await svc.incidents():
            if kinds(inc).count(kind) >= count:
                return inc
        return None

    return await eventually(found, what=f"{count} {kind}")


async def test_records_never_expire_while_the_incident_is_open_and_expire_with_it(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    keys = RedisKeys(redis_prefix)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with (
            FakeSlack() as slack,
            cluster(tmp_path) as c,
            responder(
                c,
                make_settings,
                notify=True,
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                **slack_settings(slack),
            ) as svc,
        ):
            await svc.post_alertmanager(alert("SetEnv"))
            inc = await settled(svc, "SetEnv", "action.applied")
            await eventually(
                lambda: _async(len(slack.replies(CHANNEL, roots(slack)[0].ts)) >= 3),
                what="the root and its replies",
            )
            await svc.idle()
            incident_id = inc["id"]
            patches = len(c.patches())
            assert patches == 1

            # open: the incident and its ledger, which holds its effect records
            # (notifications, the action step) and its delivery state, have no TTL at all,
            # so no length of time expires them
            names = await records_of(r, keys, incident_id)
            assert "delivery:slack" in names
            assert "notify:slack:root" in names
            steps = [n for n in names if not n.startswith(("notify:", "delivery:"))]
            assert steps, names  # the action step's record
            assert await r.pttl(keys.incident(incident_id)) == -1
            assert await r.pttl(keys.ledger(incident_id)) == -1

            # 30 days go by (the old records' TTL): nothing of the open incident expires
            gone = await thirty_days_pass(r, redis_prefix)
            assert not [g for g in gone if incident_id in g], gone
            # and an alert that joins it then is told in its thread, not under a new root
            await svc.post_alertmanager(alert("SetEnv", instance="pod-2"))
            joined = await incident_with(svc, "alert.joined")
            seq = next(e["seq"] for e in joined["timeline"] if e["kind"] == "alert.joined")
            await svc.idle()

            async def told() -> bool:
                state = await svc.runtime.store.delivery_state(incident_id, "slack")
                return state is not None and state.cursor > seq

            await eventually(told, what="Slack told of the joining alert")
            assert len(roots(slack)) == 1
            assert len(c.patches()) == patches  # the action step was not carried out again

            # resolved: the incident gets its retention, and its ledger, so every record of
            # it, the same TTL (those written before the resolve, and those after: the
            # revert, the edits)
            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            await svc.post_alertmanager(alert("SetEnv", instance="pod-2", status="resolved"))
            await incident_with(svc, "action.reverted")
            await svc.idle()

            async def all_expire_with_it() -> list[str] | None:
                names = await records_of(r, keys, incident_id)
                ttl = int(await r.pttl(keys.incident(incident_id)))
                left = int(await r.pttl(keys.ledger(incident_id)))
                after = [n for n in names if n.startswith("revert:")]
                return names if ttl > 0 and abs(left - ttl) < 5_000 and after else None

            # one written after the resolve (the revert) is there, expiring with the incident
            await eventually(all_expire_with_it, what="records expiring with it")
            ttl = int(await r.pttl(keys.incident(incident_id)))
            assert RESOLVED_INCIDENT_TTL_S * 1000 - 60_000 < ttl <= RESOLVED_INCIDENT_TTL_S * 1000
            assert len(roots(slack)) == 1
    finally:
        await r.aclose()


async def test_an_effect_of_no_incident_keeps_a_ttl_and_an_old_record_follows_its_incident(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    """The ledger's part, on the store: the incident key stands for an incident (open: no
    TTL; resolved: its retention), as incident_write.lua leaves it."""
    keys = RedisKeys(redis_prefix)
    settings = make_settings(redis_url=redis_url, redis_prefix=redis_prefix)
    store, _ = build_backend(settings, SystemClock())
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # a key that names no incident (a hash of its own), or an incident that is not
        # there (its ledger): the fixed TTL
        await store.claim_effect("maintenance", owner="a", lease_s=30)
        await store.claim_effect("inc-gone:step", owner="a", lease_s=30)
        for name in (keys.effect("maintenance"), keys.ledger("inc-gone")):
            assert 0 < await r.ttl(name) <= EFFECT_TTL_S

        # an open incident: no TTL, and a record written by the old code (its own hash,
        # 30 days) moves into the ledger, which has none, the next time it is claimed
        await r.set(keys.incident("inc-open"), "{}")
        await r.hset(keys.effect("inc-open:old"), mapping={"state": "done", "data": "{}"})
        await r.expire(keys.effect("inc-open:old"), EFFECT_TTL_S)
        assert (await store.claim_effect("inc-open:old", owner="a", lease_s=30)).status == "done"
        claim = await store.claim_effect("inc-open:new", owner="a", lease_s=30)
        assert claim.status == "start"
        assert claim.claimed_at is not None
        await store.finish_effect("inc-open:new", data={"ok": True})
        assert not await r.exists(keys.effect("inc-open:old"), keys.effect("inc-open:new"))
        assert set(await r.hkeys(keys.ledger("inc-open"))) == {"old", "new"}
        assert await r.pttl(keys.ledger("inc-open")) == -1
        # done: kept compact, with no owner or lease
        claimed = int(claim.claimed_at.timestamp() * 1000)
        assert await r.hget(keys.ledger("inc-open"), "new") == f'd{claimed},{{"ok":true}}'

        # a resolved incident: a record written now gets what the incident has left
        await r.set(keys.incident("inc-done"), "{}", px=3 * DAY_MS)
        await store.claim_effect("inc-done:late", owner="a", lease_s=30)
        incident_left = int(await r.pttl(keys.incident("inc-done")))
        assert incident_left - 1_000 < int(await r.pttl(keys.ledger("inc-done"))) <= incident_left
    finally:
        await r.aclose()
        await store.close()


async def test_records_the_old_code_wrote_are_read_and_moved_into_the_ledger(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    """An upgrade with incidents open: their effect records (a hash each) and delivery
    states (a string each) are found where the old code kept them, and moved into the
    ledger when next written; a record of no incident is converted in place, keeping its
    TTL."""
    keys = RedisKeys(redis_prefix)
    settings = make_settings(redis_url=redis_url, redis_prefix=redis_prefix)
    store, _ = build_backend(settings, SystemClock())
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await r.set(keys.incident("inc-1"), "{}")
        old_state = DeliveryState(cursor=3, refs={"channel": "C1", "ts": "1.2", "root": True})
        await r.set(keys.delivery("inc-1", "slack"), old_state.model_dump_json(), ex=EFFECT_TTL_S)
        held = {"state": "applying", "owner": "w1", "lease": "1", "claimed": "5", "data": "{}"}
        await r.hset(keys.effect("inc-1:step"), mapping=held)
        await r.hset(
            keys.effect("inc-1:notify:slack:root"),
            mapping={"state": "done", "data": '{"refs": {"ts": "1.2"}}'},
        )
        await r.hset(keys.effect("k"), mapping={"state": "done", "data": '{"x": 1}'})
        await r.expire(keys.effect("k"), 100)

        assert await store.delivery_state("inc-1", "slack") == old_state
        root = await store.claim_effect("inc-1:notify:slack:root", owner="w2", lease_s=30)
        assert (root.status, root.data, root.claimed_at) == ("done", {"refs": {"ts": "1.2"}}, None)
        # its owner died (the lease ran out): recovered, with the time of its first claim
        step = await store.claim_effect("inc-1:step", owner="w2", lease_s=30)
        assert (step.status, step.claimed_at) == ("recover", datetime.fromtimestamp(0.005, UTC))
        await store.note_effect("inc-1:step", owner="w2", data={"patch": {"x": 1}})
        await store.finish_effect("inc-1:step", data={"verdict": "applied"})
        await store.save_delivery_state(
            "inc-1", "slack", old_state.model_copy(update={"cursor": 4})
        )
        assert (await store.delivery_state("inc-1", "slack") or DeliveryState()).cursor == 4
        assert not await r.exists(
            keys.delivery("inc-1", "slack"),
            keys.effect("inc-1:step"),
            keys.effect("inc-1:notify:slack:root"),
        )
        assert sorted(await r.hkeys(keys.ledger("inc-1"))) == [
            "delivery:slack",
            "notify:slack:root",
            "step",
        ]
        assert await r.pttl(keys.ledger("inc-1")) == -1

        done = await store.claim_effect("k", owner="w2", lease_s=30)
        assert (done.status, done.data) == ("done", {"x": 1})
        assert await r.hkeys(keys.effect("k")) == ["effect"]
        assert 0 < await r.ttl(keys.effect("k")) <= 100
    finally:
        await r.aclose()
        await store.close()


async def _async(value: Any) -> Any:
    return value
