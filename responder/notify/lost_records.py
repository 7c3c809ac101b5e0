"""What the store's lost records leave behind at the sinks: never a second thread, never
a thread that silently nobody follows.

Redis can lose the service's last writes: a crash with ``appendfsync everysec``, a restart
without persistence, a failover to a replica that lagged. An incident whose record went
may have left a Slack root message and a status page incident behind, and its alert may
come again (Alertmanager repeats a firing alert every ``repeat_interval``). The store
says since when its records are complete (``Store.records_since``: when the service first
found the Redis server it writes to now); from that:

- **taking over**: an incident about to open a thread at a sink, whose first alert started
  before that time, first asks the sink for an open thread of its group whose incident
  the store no longer holds, and takes it over instead of opening a second one
  (``LostRecords.adoptable``, used by ``Deliveries``);
- **marking**: the replica that finds the store begun anew waits for the signals in
  flight to settle (they may take threads over), then reads the open threads of the sinks
  (Slack: the channels incidents go to) and marks each whose incident the store no longer
  holds: its record was lost, nothing follows it unless its alert comes again, and then
  the new incident takes it over, marked or not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from responder.domain.errors import StoreUnavailableError
from responder.domain.incident import Incident
from responder.domain.notification import Outbound
from responder.metrics import Metrics
from responder.ports import Clock, OpenThread, Store

if TYPE_CHECKING:
    from responder.notify.delivery import Channel

log = structlog.get_logger("responder.notify")

# How far back the marking reads a sink's threads before the records began anew (a sink
# also bounds what it reads: Slack, the 1,000 newest messages of a channel).
LOOKBACK = timedelta(days=30)


class LostRecords:
    """``channels``: the shared sinks (not the console); ``where``: the places their
    threads may be (Slack channels by name or id), as the settings and rules say now;
    ``settle_s``: how long the marking waits after the records began anew."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        channels: Sequence[Channel],
        where: Callable[[], Collection[str]],
        timeout_s: float,
        settle_s: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._channels = list(channels)
        self._where = where
        self._timeout_s = timeout_s
        self._settle_s = settle_s
        self._marking: asyncio.Task[int] | None = None

    async def since(self) -> datetime:
        """The time the store's records are complete from; the first caller to find the
        store begun anew starts the marking."""
        epoch = await self._store.records_since()
        if epoch.began and self._channels:
            self._start_marking(epoch.since)
        return epoch.since

    async def check(self) -> None:
        """A look at the store, for a worker's housekeeping loop: a Redis restarted while
        no incident opens is found all the same."""
        await self.since()

    async def adoptable(
        self, channel: Channel, incident: Incident, message: Outbound, group: str
    ) -> OpenThread | None:
        """The thread ``incident`` takes over at ``channel`` instead of opening one: its
        own (posted before its delivery record was lost) or one of its group whose
        incident the store no longer holds; ``None`` when the store may not have lost any
        record of it (its first alert started after the records begin), or none is found,
        or the sink cannot tell (the message is then sent: a thread of its own)."""
        started = incident.started_at or incident.opened_at
        if started >= await self.since():
            return None
        try:
            found = await asyncio.wait_for(
                channel.sink.find_open(message, group=group, since=started.timestamp()),
                self._timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - cannot tell: a thread of its own
            log.warning("could not look for a lost thread", sink=channel.name, error=str(exc))
            return None
        own = next((t for t in found if t.incident_id == incident.id), None)
        if own is not None:
            return own  # posted before its delivery record was lost: never another
        for thread in found:
            if await self._store.get_incident(thread.incident_id) is None:
                return thread
            # a live incident's (it resolved since, the sink not told yet): not lost
        return None

    def _start_marking(self, since: datetime) -> None:
        if self._marking is not None and not self._marking.done():
            return
        self._marking = asyncio.create_task(self._mark_later(since), name="mark-lost-threads")

    async def _mark_later(self, since: datetime) -> int:
        await asyncio.sleep(self._settle_s)
        try:
            return await self.mark(since)
        except StoreUnavailableError as exc:
            log.warning("lost threads not marked: store unreachable", error=str(exc))
        except Exception:
            log.exception("lost threads not marked")
        return 0

    async def mark(self, since: datetime) -> int:
        """Mark every open thread whose incident the store no longer holds; how many."""
        marked = 0
        oldest = (since - LOOKBACK).timestamp()
        where = sorted(self._where())
        for channel in self._channels:
            try:
                threads = await asyncio.wait_for(
                    channel.sink.open_threads(where, since=oldest), self._timeout_s * 10
                )
            except Exception as exc:  # noqa: BLE001 - the others are marked all the same
                log.warning("could not read open threads", sink=channel.name, error=str(exc))
                continue
            for thread in threads:
                if await self._store.get_incident(thread.incident_id) is not None:
                    continue
                note = (
                    f"responder lost its record of incident {thread.incident_id} when its "
                    f"store began anew at {since:%Y-%m-%d %H:%M:%S} UTC (a Redis restart or "
                    "failover): nothing follows this thread now. If the alert still fires, "
                    "its next notification takes this thread over; if it resolved, close "
                    "it by hand."
                )
                try:
                    await asyncio.wait_for(channel.sink.mark_lost(thread, note), self._timeout_s)
                except Exception as exc:  # noqa: BLE001 - logged: the next ones go on
                    log.warning("could not mark a lost thread", sink=channel.name, error=str(exc))
                    continue
                marked += 1
                self._metrics.notifications.labels(channel.name, "lost").inc()
                log.warning(
                    "thread of a lost incident record",
                    sink=channel.name,
                    incident_id=thread.incident_id,
                    refs=thread.refs,
                )
        return marked

    async def close(self) -> None:
        if self._marking is not None:
            self._marking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._marking
