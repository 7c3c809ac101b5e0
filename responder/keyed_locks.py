"""Mutual exclusion by key among the tasks of one process.

The worker runs several consumer tasks so that one incident's slow follow-up (triage
probes, a rollout) does not hold up the others. Two tasks working on the same incident
at once are still correct (the store detects the conflict, the follow-up reads what the
other task has not marked processed yet) but each pays for the other: a conflicting
write is read and folded again, and a follow-up reads the timeline back. Holding the
incident's key for the whole step makes the usual case the cheap one; other replicas are
still handled by the store. The follow-up is held by the incident's id as well (the
pipeline's): a signal that found the incident by another key (a PagerDuty id) must not
follow it up while another task does, or its triage would run twice; across replicas the
store's follow-up lease does the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders and waiters: the entry goes when the last one leaves


class KeyedLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Keys held or waited for now (the others are forgotten)."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold every key of ``keys``; taken in sorted order, so two holders never wait
        on each other in a circle."""
        held: list[tuple[str, _Entry]] = []
        try:
            for key in sorted(set(keys)):
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry()
                entry.users += 1
                try:
                    await entry.lock.acquire()
                except BaseException:
                    self._leave(key, entry)
                    raise
                held.append((key, entry))
            yield
        finally:
            for key, entry in reversed(held):
                entry.lock.release()
                self._leave(key, entry)

    def _leave(self, key: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[key]
