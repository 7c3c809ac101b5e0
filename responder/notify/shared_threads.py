"""One public status page incident per set of components, however many incidents affect
them: the thread several incidents share.

The status page planner marks its messages with the key of the components (and the
public service name) they are about (``Outbound.shared``). ``SharedThreads`` wraps the
sink and carries them out against a record of the store (``SharedThread``), under a lock
of its own held across replicas (``shared:<key>``, a lease as every lock):

- a creation attaches the incident to the record; the first one creates the public
  incident (the record notes the creation's idempotency key first, so whoever comes
  next, should its worker die, looks for it at the sink before creating another), every
  later one takes the public incident as its own, sending nothing, unless it is worse
  than what the public incident shows;
- every incident's update says what it wants shown; the public incident shows the worst
  of its attached incidents' messages (``shared_lead``: impact, components, then status:
  "monitoring" once every attached incident monitors), and is edited only when that
  changes, so fifty incidents of one service make one creation and a few edits;
- a resolve detaches the incident; the public incident is resolved, its components
  operational, with the last attached incident that is still open (an attached incident
  the store no longer holds, or holds resolved, is detached on the way).

A contended lock is ``SinkBusy``: the message is tried again shortly, neither a failure
nor a delay of the sink.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Collection, Mapping
from typing import Protocol

from pydantic import JsonValue, ValidationError

from responder.domain.notification import Outbound, shared_lead
from responder.ports import (
    Clock,
    DeliveryError,
    NamedLocks,
    OpenThread,
    SharedThread,
    SharedThreadRecords,
    Sink,
    Store,
)


class SinkBusy(DeliveryError):
    """Another worker works on the shared thread now: try the message again shortly."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def _member(message: Outbound) -> str:
    return str(message.fields["key"]).partition(":notify:")[0]


class SharedThreadLedger(NamedLocks, SharedThreadRecords, Protocol):
    """What ``SharedThreads`` keeps in the action ledger: the threads' records, and
    the lock of each (``shared:<key>``)."""


class SharedThreads:
    """A ``Sink`` whose messages marked ``shared`` go to one thread per key."""

    def __init__(
        self,
        *,
        sink: Sink,
        store: Store,
        ledger: SharedThreadLedger,
        clock: Clock,
        owner: str,
        lease_s: float,
        lock_wait_s: float,
    ) -> None:
        self._sink = sink
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._owner = owner
        self._lease_s = lease_s
        self._lock_wait_s = lock_wait_s
        self.name = sink.name

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        key = message.shared
        if not key:
            return await self._sink.send(message, refs)
        lock = f"shared:{key}"
        token = f"{self._owner}:{secrets.token_hex(4)}"
        if not await self._acquire(lock, token):
            raise SinkBusy(f"another worker updates the shared {self.name} incident")
        try:
            if message.leaves_shared:
                return await self._leave(key, message, refs)
            return await self._join(key, message, refs)
        finally:
            await self._ledger.release_lock(lock, token=token)

    async def _acquire(self, lock: str, token: str) -> bool:
        deadline = self._clock.monotonic() + self._lock_wait_s
        while True:
            if await self._ledger.acquire_lock(lock, token=token, ttl_s=self._lease_s):
                return True
            if self._clock.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _join(
        self, key: str, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue]:
        thread = await self._ledger.join_shared_thread(
            key, member=_member(message), want=message.model_dump(mode="json")
        )
        own = refs.get("id")
        if not thread.refs.get("id") and own:
            # its own public incident, not in the record (made before it was kept, or the
            # record expired): the components' one from now on
            thread = await self._settle(
                key, thread, refs={"id": own, "shortlink": refs.get("shortlink")}
            )
        if not thread.refs.get("id") and thread.creating:
            # a creation was under way (its worker died, or its answer never came): made?
            tried = message.model_copy(
                update={"op": "create", "fields": {**message.fields, "key": thread.creating}}
            )
            found = await self._sink.find_sent(tried, {})
            if found:
                thread = await self._settle(key, thread, refs=found, creating="")
                if tried.fields["key"] == message.fields["key"]:
                    own = found.get("id")  # this very message made it
        if not thread.refs.get("id"):
            if message.op != "create":
                return {}
            await self._ledger.settle_shared_thread(key, creating=str(message.fields["key"]))
            created = await self._sink.send(message, {})
            thread = await self._settle(key, thread, refs=created, creating="", shown=message.shows)
            await self._show_lead(key, thread)  # an incident attached before is worse
            return dict(created)
        await self._show_lead(key, thread)
        if message.op == "create":
            attached = thread.refs.get("id") != own
            return {**thread.refs, "attached": True} if attached else dict(thread.refs)
        return {}

    async def _leave(
        self, key: str, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue]:
        own = refs.get("id")
        thread = await self._ledger.leave_shared_thread(key, members=[_member(message)])
        if not own:
            return {}
        if thread.refs.get("id") != own:
            # its public incident has no record (any more): the last incident attached to
            # it resolved it, and the record went
            return {}
        open_ones = await self._still_open(key, thread)
        if open_ones:
            await self._show_lead(key, thread.model_copy(update={"members": open_ones}))
            return {}
        sent = await self._sink.send(message, refs)
        await self._ledger.close_shared_thread(key, thread_id=str(own))
        return sent

    async def _still_open(self, key: str, thread: SharedThread) -> dict[str, dict[str, JsonValue]]:
        """The attached incidents still open, as far as the first one found; those the
        store no longer holds open on the way are detached."""
        gone: list[str] = []
        found: dict[str, dict[str, JsonValue]] = {}
        for member in sorted(thread.members):
            view = await self._store.get_incident(member)
            if view is not None and view.incident.is_active:
                found = {m: w for m, w in thread.members.items() if m not in gone}
                break
            gone.append(member)
        if gone:
            await self._ledger.leave_shared_thread(key, members=gone)
        return found

    async def _show_lead(self, key: str, thread: SharedThread) -> None:
        members: dict[str, Outbound] = {}
        for member, want in thread.members.items():
            try:
                members[member] = Outbound.model_validate(want)
            except ValidationError:
                continue  # a record this version cannot read: it shows nothing
        lead = shared_lead(members)
        if lead is None or lead.shows == thread.shown:
            return
        await self._sink.send(lead.model_copy(update={"op": "update"}), thread.refs)
        await self._ledger.settle_shared_thread(key, shown=lead.shows)

    async def _settle(
        self,
        key: str,
        thread: SharedThread,
        *,
        refs: dict[str, JsonValue] | None = None,
        creating: str | None = None,
        shown: dict[str, JsonValue] | None = None,
    ) -> SharedThread:
        await self._ledger.settle_shared_thread(key, refs=refs, creating=creating, shown=shown)
        update: dict[str, object] = {}
        if refs is not None:
            update["refs"] = refs
        if creating is not None:
            update["creating"] = creating or None
        if shown is not None:
            update["shown"] = shown
        return thread.model_copy(update=update)

    async def open_for(self, message: Outbound) -> bool:
        """Whether the thread ``message`` would open is open already (then nothing a lost
        record left needs to be looked for: the incident attaches to it)."""
        key = message.shared
        if not key:
            return False
        thread = await self._ledger.leave_shared_thread(key, members=())  # a read
        return bool(thread.refs.get("id"))

    async def adopted(self, message: Outbound, refs: dict[str, JsonValue]) -> dict[str, JsonValue]:
        """``message`` took over a thread a lost record opened (``LostRecords``): the
        components' thread, unless they have one already (then that one is its)."""
        key = message.shared
        if not key:
            return refs
        thread = await self._ledger.join_shared_thread(
            key, member=_member(message), want=message.model_dump(mode="json")
        )
        if thread.refs.get("id"):
            return dict(thread.refs)
        await self._ledger.settle_shared_thread(key, refs=refs, shown={})
        return refs

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        if message.shared:
            # sending again is looking first: the record says what was done, and a
            # creation under way is looked for at the sink
            return None
        return await self._sink.find_sent(message, refs)

    async def find_open(self, message: Outbound, *, group: str, since: float) -> list[OpenThread]:
        return await self._sink.find_open(message, group=group, since=since)

    async def open_threads(self, where: Collection[str], *, since: float) -> list[OpenThread]:
        return await self._sink.open_threads(where, since=since)

    async def mark_lost(self, thread: OpenThread, note: str) -> None:
        await self._sink.mark_lost(thread, note)

    async def close(self) -> None:
        await self._sink.close()
