"""Evidence bundles built on demand, kept a short while, built a few at a time.

A bundle costs calls to Prometheus and Kubernetes and CPU to pack, so twenty reads of one
incident's evidence must cost one build, and twenty reads of twenty incidents must not
start twenty builds at once:

- single-flight: one build in flight per incident and version; every reader of it awaits
  that one (shielded: a reader who hangs up does not cancel it for the others);
- a semaphore: at most ``max_builds`` builds run at once, the others wait their turn;
- a bounded LRU of the results (``max_entries`` bundles, ``max_bytes`` in all), one per
  incident: a new version (a new event on its timeline) replaces the old one; an open
  incident's bundle expires after ``ttl_s`` (its window keeps growing), a resolved one's
  only when pushed out.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

DEFAULT_TTL_S = 60.0
DEFAULT_MAX_BUILDS = 2
DEFAULT_MAX_ENTRIES = 16
DEFAULT_MAX_BYTES = 128 * 1024 * 1024

BuildKey = tuple[str, int]  # incident id, the version (its last timeline event's seq)


@dataclass(frozen=True)
class _Entry:
    version: int
    data: bytes
    expires_at: float | None  # on the monotonic clock; None: until pushed out


class BundleCache:
    def __init__(
        self,
        *,
        monotonic: Callable[[], float],
        ttl_s: float = DEFAULT_TTL_S,
        max_builds: int = DEFAULT_MAX_BUILDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._monotonic = monotonic
        self._ttl_s = ttl_s
        self._slots = asyncio.Semaphore(max_builds)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._building: dict[BuildKey, asyncio.Task[bytes]] = {}
        self.builds = 0  # started, for the metrics and the tests' arithmetic

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self,
        incident_id: str,
        version: int,
        build: Callable[[], Awaitable[bytes]],
        *,
        expires: bool,
    ) -> bytes:
        """The bundle of ``incident_id`` at ``version``: cached, being built, or built now
        by ``build`` (once, however many ask)."""
        entry = self._entries.get(incident_id)
        fresh = entry is not None and (
            entry.expires_at is None or self._monotonic() < entry.expires_at
        )
        if entry is not None and fresh and entry.version == version:
            self._entries.move_to_end(incident_id)
            return entry.data
        key = (incident_id, version)
        task = self._building.get(key)
        if task is None:
            task = asyncio.create_task(self._build(key, build, expires=expires))
            self._building[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(task)

    async def _build(
        self, key: BuildKey, build: Callable[[], Awaitable[bytes]], *, expires: bool
    ) -> bytes:
        async with self._slots:
            self.builds += 1
            data = await build()
        expires_at = self._monotonic() + self._ttl_s if expires else None
        self._keep(key, _Entry(version=key[1], data=data, expires_at=expires_at))
        return data

    def _settled(self, key: BuildKey, task: asyncio.Task[bytes]) -> None:
        if self._building.get(key) is task:
            del self._building[key]
        if not task.cancelled():
            task.exception()  # retrieved: the readers got it, or none was left to

    def _keep(self, key: BuildKey, entry: _Entry) -> None:
        incident_id = key[0]
        old = self._entries.get(incident_id)
        if old is not None and old.version > entry.version:
            return  # a slower build of an older version: the newer one stays
        if old is not None:
            del self._entries[incident_id]
            self._bytes -= len(old.data)
        if len(entry.data) > self._max_bytes:
            return  # served to its readers, never kept
        self._entries[incident_id] = entry
        self._bytes += len(entry.data)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.data)
