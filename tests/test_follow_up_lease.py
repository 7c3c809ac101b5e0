"""The follow-up lease's contract, held on both stores: one holder at a time, the
processed cursor read with it, renewed by its holder only, lapsing when not renewed."""

from __future__ import annotations

import asyncio


async def test_one_holder_at_a_time_reads_the_cursor_and_renews_only_its_own(backend) -> None:
    store, _ = backend
    ids = ["inc-0000000000000000a1", "inc-0000000000000000a2"]
    taken = await store.lease_follow_ups(ids, token="a", ttl_s=30)
    assert taken == dict.fromkeys(ids, 0)
    # another replica finds them taken
    assert await store.lease_follow_ups(ids[:1], token="b", ttl_s=30) == {ids[0]: None}
    # the cursor comes with the lease: the holder follows up from there
    await store.mark_processed({ids[0]: 4})
    assert await store.lease_follow_ups(ids[:1], token="a", ttl_s=30) == {ids[0]: 4}
    # renewing keeps only what is held: a lease given up is not taken again by it
    await store.release_follow_ups(ids[:1], token="a")
    renewed = await store.lease_follow_ups(ids, token="a", ttl_s=30, renew_only=True)
    assert renewed == {ids[0]: None, ids[1]: 0}
    # released, another replica takes it; a release by a non-holder changes nothing
    await store.release_follow_ups(ids[:1], token="a")
    assert await store.lease_follow_ups(ids[:1], token="b", ttl_s=30) == {ids[0]: 4}
    await store.release_follow_ups(ids[:1], token="a")
    assert await store.lease_follow_ups(ids[:1], token="c", ttl_s=30) == {ids[0]: None}


async def test_a_lease_not_renewed_lapses(backend) -> None:
    store, _ = backend
    incident = "inc-0000000000000000b1"
    assert await store.lease_follow_ups([incident], token="dead", ttl_s=0.2) == {incident: 0}
    await asyncio.sleep(0.3)
    assert await store.lease_follow_ups([incident], token="alive", ttl_s=30) == {incident: 0}
