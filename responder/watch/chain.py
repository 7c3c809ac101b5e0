"""``TimerChain``: one chain of durable timers per incident and watcher, each round once.

A watcher's rounds follow each other: round ``n``'s handler schedules round ``n + 1``
(or none: the chain ends). The start and every round are effects of the action ledger,
``<incident>:watch:<kind>:start`` and ``<incident>:watch:<kind>:<n>``: whichever stage or
replica starts the chain twice schedules round 1 once, and a redelivered round (a worker
died after scheduling the next one, before finishing) finds its claim done or recovers
it; the next round it scheduled again, if any, is then a second timer of one round, and
only one of the two claims it. So an incident never has two chains of one watcher.

A watcher whose cadence depends on what may change (the update reminders on the
severity) starts a chain per ``generation``: rounds ``<generation>.<n>``; a round of an
older generation than the incident's ends its chain, so one chain lives at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from responder.domain.errors import RetryLaterError
from responder.domain.signal import TimerSignal
from responder.ports import AfterWrite, Clock, DurableTimers, EffectLedger

WatchKind = Literal["vendor_watch", "update_due", "ack_due"]


class ChainLedger(EffectLedger, DurableTimers, Protocol):
    """The ledger's roles a chain uses: its claims and its timers."""


class TimerChain:
    def __init__(
        self, *, kind: WatchKind, ledger: ChainLedger, clock: Clock, owner: str, lease_s: float
    ) -> None:
        self.kind: WatchKind = kind
        self._ledger = ledger
        self._clock = clock
        self._owner = owner
        self._lease_s = lease_s

    def _key(self, incident_id: str, step: str) -> str:
        return f"{incident_id}:watch:{self.kind}:{step}"

    async def _claim(self, key: str) -> bool:
        """Whether this worker holds ``key`` now (``False``: it was done before)."""
        claim = await self._ledger.claim_effect(key, owner=self._owner, lease_s=self._lease_s)
        if claim.status == "busy":
            raise RetryLaterError(key)
        return claim.status != "done"

    async def start(self, incident_id: str, *, due_at: datetime, generation: str = "") -> None:
        """Schedule the incident's first round at ``due_at``, once whoever asks."""
        key = self._key(incident_id, f"{generation}.start" if generation else "start")
        if not await self._claim(key):
            return
        await self._schedule(incident_id, _step(generation, 1), due_at)
        await self._ledger.finish_effect(key, data={"due_at": due_at.isoformat()})

    async def claim(self, timer: TimerSignal) -> bool:
        """Whether this worker carries out the round ``timer`` is (``False``: done before)."""
        return await self._claim(self._key(timer.incident_id, timer.step))

    def then(self, timer: TimerSignal, next_due_at: datetime | None) -> AfterWrite:
        """What follows the round once its findings are written: the next round at
        ``next_due_at`` (``None``: the chain ends here), then the round's claim finished."""

        async def follow() -> None:
            if next_due_at is not None:
                step = _step(generation(timer), round_of(timer) + 1)
                await self._schedule(timer.incident_id, step, next_due_at)
            await self._ledger.finish_effect(
                self._key(timer.incident_id, timer.step),
                data={"next": next_due_at.isoformat() if next_due_at else None},
            )

        return follow

    async def _schedule(self, incident_id: str, step: str, due_at: datetime) -> None:
        await self._ledger.schedule(
            TimerSignal(
                kind=self.kind,
                incident_id=incident_id,
                step=step,
                due_at=due_at,
                received_at=self._clock.now(),
            )
        )


def _step(generation: str, round_: int) -> str:
    return f"{generation}.{round_}" if generation else str(round_)


def generation(timer: TimerSignal) -> str:
    """The generation of the chain ``timer`` is a round of (``""``: the only one)."""
    return timer.step.rpartition(".")[0]


def round_of(timer: TimerSignal) -> int:
    """Which round of its chain ``timer`` is, from 1."""
    return int(timer.step.rpartition(".")[2])
