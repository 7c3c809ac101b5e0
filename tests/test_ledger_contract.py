"""The action ledger's contract, held on both stores: effects, pause, cooldown, budget,
locks, timers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from responder.domain.signal import SIGNAL_ADAPTER, TimerSignal
from responder.ports import Pause

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


async def test_an_effect_is_claimed_once_then_done(backend) -> None:
    store, _ = backend
    first = await store.claim_effect("inc-1:step", owner="a", lease_s=30)
    assert first.status == "start"
    assert (await store.claim_effect("inc-1:step", owner="b", lease_s=30)).status == "busy"
    await store.note_effect("inc-1:step", owner="a", data={"patch": {"x": 1}})
    await store.note_effect("inc-1:step", owner="b", data={"patch": "not the owner"})
    busy = await store.claim_effect("inc-1:step", owner="b", lease_s=30)
    assert busy.data == {"patch": {"x": 1}}
    await store.finish_effect("inc-1:step", data={"verdict": "applied"})
    done = await store.claim_effect("inc-1:step", owner="b", lease_s=30)
    assert (done.status, done.data) == ("done", {"verdict": "applied"})


async def test_an_effect_whose_owner_died_is_recovered_with_its_notes(backend) -> None:
    store, _ = backend
    await store.claim_effect("inc-1:step", owner="dead", lease_s=0.2)
    await store.note_effect("inc-1:step", owner="dead", data={"patch": {"x": 1}})
    await asyncio.sleep(0.3)
    claim = await store.claim_effect("inc-1:step", owner="alive", lease_s=30)
    assert (claim.status, claim.data) == ("recover", {"patch": {"x": 1}})
    # and the new owner holds it now
    await store.note_effect("inc-1:step", owner="alive", data={"patch": {"y": 2}})
    assert (await store.claim_effect("inc-1:step", owner="x", lease_s=30)).data == {
        "patch": {"y": 2}
    }


async def test_a_finished_effect_is_held_by_nobody_and_odd_owners_and_data_round_trip(
    backend,
) -> None:
    store, _ = backend
    owner = "w:1,2:3\nd5,"  # the ledger's separators, in an owner
    odd = {"text": "a,b:c\nd", "n": [1, 2.5, None], "empty": {}, "list": []}
    first = await store.claim_effect("inc-1:odd", owner=owner, lease_s=30)
    await store.note_effect("inc-1:odd", owner=owner, data=odd)
    busy = await store.claim_effect("inc-1:odd", owner="other", lease_s=30)
    assert (busy.status, busy.data, busy.claimed_at) == ("busy", odd, first.claimed_at)
    await store.release_effect("inc-1:odd", owner="other")  # not the owner: stays
    await store.finish_effect("inc-1:odd", data={"did": odd})
    # done: its former owner neither notes nor releases it any more
    await store.note_effect("inc-1:odd", owner=owner, data={"late": True})
    await store.release_effect("inc-1:odd", owner=owner)
    done = await store.claim_effect("inc-1:odd", owner="other", lease_s=30)
    assert (done.status, done.data, done.claimed_at) == ("done", {"did": odd}, first.claimed_at)
    # finished without a claim: done, first claim time unknown
    await store.finish_effect("inc-1:unclaimed", data={})
    unclaimed = await store.claim_effect("inc-1:unclaimed", owner="a", lease_s=30)
    assert (unclaimed.status, unclaimed.claimed_at) == ("done", None)
    # released by its owner: the next claim starts afresh
    await store.claim_effect("inc-1:given-up", owner="a", lease_s=30)
    await store.release_effect("inc-1:given-up", owner="a")
    assert (await store.claim_effect("inc-1:given-up", owner="b", lease_s=30)).status == "start"


async def test_concurrent_claims_let_exactly_one_start(backend) -> None:
    store, _ = backend
    claims = await asyncio.gather(
        *(store.claim_effect("k", owner=f"w{i}", lease_s=30) for i in range(20))
    )
    assert sorted(c.status for c in claims).count("start") == 1


async def test_pause_and_resume(backend) -> None:
    store, _ = backend
    assert await store.paused() is None
    pause = Pause(by="dana", reason="freeze", at=NOW)
    await store.set_paused(pause)
    assert await store.paused() == pause
    await store.set_paused(None)
    assert await store.paused() is None


async def test_cooldown_until(backend) -> None:
    store, _ = backend
    until = datetime.now(UTC) + timedelta(minutes=5)
    assert await store.cooldown_until("t:set_env") is None
    await store.start_cooldown("t:set_env", until=until)
    got = await store.cooldown_until("t:set_env")
    assert got is not None
    assert abs(got - until) < timedelta(milliseconds=5)
    await store.start_cooldown("t:scale", until=datetime.now(UTC) - timedelta(seconds=1))
    assert await store.cooldown_until("t:scale") is None


async def test_budget_is_a_sliding_window(backend) -> None:
    store, _ = backend
    for i in range(3):
        assert await store.spend_budget(window_s=60, limit=3, now=NOW, token=f"s{i}")
    assert not await store.spend_budget(window_s=60, limit=3, now=NOW, token="s4")
    assert await store.budget_used(window_s=60, now=NOW) == 3
    later = NOW + timedelta(seconds=61)
    assert await store.budget_used(window_s=60, now=later) == 0
    assert await store.spend_budget(window_s=60, limit=3, now=later, token="s5")


async def test_concurrent_spending_never_exceeds_the_budget(backend) -> None:
    store, _ = backend
    taken = await asyncio.gather(
        *(store.spend_budget(window_s=60, limit=2, now=NOW, token=f"t{i}") for i in range(10))
    )
    assert sum(taken) == 2


async def test_locks_are_exclusive_reentrant_for_their_token_and_expire(backend) -> None:
    store, _ = backend
    assert await store.acquire_lock("prod/api", token="step-1", ttl_s=30)
    assert not await store.acquire_lock("prod/api", token="step-2", ttl_s=30)
    assert await store.acquire_lock("prod/api", token="step-1", ttl_s=30)  # its recovery
    await store.release_lock("prod/api", token="step-2")  # not the holder: no effect
    assert not await store.acquire_lock("prod/api", token="step-2", ttl_s=30)
    await store.release_lock("prod/api", token="step-1")
    assert await store.acquire_lock("prod/api", token="step-2", ttl_s=0.2)
    await asyncio.sleep(0.3)
    assert await store.acquire_lock("prod/api", token="step-3", ttl_s=30)


async def test_due_timers_move_to_the_queue_once(backend) -> None:
    store, queue = backend
    now = datetime.now(UTC)
    due = TimerSignal(kind="verify", incident_id="inc-1", step="s", due_at=now, received_at=now)
    later = due.model_copy(update={"step": "later", "due_at": now + timedelta(hours=1)})
    await store.schedule(due)
    await store.schedule(later)
    assert await store.release_due_timers(now=now, limit=10) == 1
    assert await store.release_due_timers(now=now, limit=10) == 0
    [entry] = await queue.read(consumer="c", count=10, block_ms=0)
    assert SIGNAL_ADAPTER.validate_json(entry.payload) == due
