"""Role protocols the core depends on; adapters implement them.

Each port has a real adapter and an in-memory one shipped in ``responder.adapters`` (the
embedded default); the same contract tests run on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import Field, JsonValue

from responder.domain.facts import ProbeResult
from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentChange,
    IncidentLookup,
    IncidentStatus,
)
from responder.domain.model import Frozen
from responder.domain.notification import DeliveryState, Outbound
from responder.domain.signal import (
    Observation,
    ObserveOutcome,
    TimerSignal,
)
from responder.domain.timeline import TimelineEvent


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC now."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring durations."""
        ...


class QueueEntry(Frozen):
    """One delivery of a queued signal to a worker."""

    entry_id: str
    payload: str
    deliveries: int = 1


class QueueStats(Frozen):
    depth: int  # entries not yet delivered to any worker
    pending: int  # delivered, not yet acknowledged
    dead_letters: int


class DeadLetter(Frozen):
    entry_id: str
    payload: str
    reason: str
    deliveries: int
    dead_at: datetime


class SignalRecord(Frozen):
    """What the store remembers of one dedupe key: the last status observed by intake, and
    the last one the workers applied to an incident (written with that incident)."""

    status: str
    order_ms: int
    first_seen_ms: int
    last_seen_ms: int
    repeats: int = 0
    handled_status: str | None = None
    handled_order_ms: int | None = None


# SignalRef, IncidentState and MutationResult are made several times per signal inside the
# worker and never leave the process: plain frozen dataclasses, not validated models.
@dataclass(frozen=True, slots=True)
class SignalRef:
    """The signal a mutator applies: its dedupe key, and which status of which occurrence."""

    key: str
    status: str
    order_ms: int


@dataclass(frozen=True, slots=True)
class IncidentState:
    """What a mutator sees: the incident found (if any), its records of the alerts asked
    for, and the store's dedupe record of the signal being handled (if one was named)."""

    incident: Incident | None
    alerts: Mapping[str, IncidentAlert] = field(default_factory=dict)
    signal: SignalRecord | None = None


IncidentMutator = Callable[[IncidentState], IncidentChange | None]


@dataclass(frozen=True)
class MutationItem:
    """Mutators to apply, in order, to the incident that ``lookups`` find.

    Each mutator sees the state the previous one left: the incident (or none: once an
    incident no longer answers to ``lookups``, e.g. it resolved and freed its group, the
    next mutator sees none and may open a new one), the incident's records of the alerts
    named by ``fingerprints``, and the store's record of its entry in ``signals``. When a
    mutator changes an incident, its signal is recorded as handled in the same atomic step.
    """

    lookups: tuple[IncidentLookup, ...]
    mutators: tuple[IncidentMutator, ...]
    fingerprints: tuple[str, ...] = ()
    signals: tuple[SignalRef | None, ...] = ()

    def signal(self, index: int) -> SignalRef | None:
        return self.signals[index] if index < len(self.signals) else None


@dataclass(frozen=True, slots=True)
class MutationResult:
    """What one mutator did."""

    change: IncidentChange | None  # None: the mutator changed nothing
    incident_id: str | None  # the incident it saw or made; None when there was none
    # the incident's processed cursor when the change was written: equal to the change's
    # first event seq when nothing older waits for the follow-up stages
    processed_seq: int | None = None


class IncidentView(Frozen):
    incident: Incident
    alerts: tuple[IncidentAlert, ...] = Field(default_factory=tuple)
    timeline: tuple[TimelineEvent, ...] = Field(default_factory=tuple)
    # events with seq below this went through every follow-up stage and the notifier
    processed_seq: int = 0


class Store(Protocol):
    """Durable state: dedupe records, incidents and their timelines, indexes."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailableError`` when the store cannot be reached."""
        ...

    async def observe(self, signals: Sequence[Observation]) -> list[ObserveOutcome]:
        """Dedupe and queue, atomically per signal.

        A first signal or a status change is queued on the work queue in the same atomic
        step that records it; a repeat only bumps last-seen and the repeat counter. When
        this returns, every queued signal is durable.
        """
        ...

    async def signal_record(self, dedupe_key: str) -> SignalRecord | None: ...

    async def mutate_incidents(self, items: Sequence[MutationItem]) -> list[list[MutationResult]]:
        """Read-modify-write incidents; one list of results per item, one per mutator.

        The first lookup of an item that finds an incident decides which one its first
        mutator sees (``None`` when none does; the mutator may then open one). Each
        incident's new state, alerts, timeline events and index entries are written in one
        atomic step; when another writer changed the incident in between, the item's
        mutators run again on the fresh state (they are idempotent). A group has at most
        one active incident. Items are independent; the store may read and write them
        together to save round trips.
        """
        ...

    async def get_incident(self, incident_id: str) -> IncidentView | None: ...

    async def unprocessed(self, incident_id: str) -> IncidentView | None:
        """The incident with only the timeline events not yet processed (and no alerts)."""
        ...

    async def mark_processed(self, marks: Mapping[str, int]) -> None:
        """Record, per incident id, that its events below the given seq are processed
        (never moves backwards)."""
        ...

    async def list_incidents(
        self, *, status: IncidentStatus | None = None, limit: int = 100
    ) -> list[IncidentView]:
        """Newest first."""
        ...

    async def close(self) -> None: ...


class WorkQueue(Protocol):
    """At-least-once queue of signals for the workers.

    An entry stays pending until acknowledged; one left pending longer than the visibility
    timeout is claimed by another worker; after too many deliveries it is dead-lettered.
    """

    async def ensure(self) -> None:
        """Create what the queue needs (idempotent; after a store restart as well)."""
        ...

    async def read(self, *, consumer: str, count: int, block_ms: int) -> list[QueueEntry]: ...

    async def claim_stale(
        self, *, consumer: str, min_idle_ms: int, count: int
    ) -> list[QueueEntry]: ...

    async def ack(self, *entry_ids: str) -> None: ...

    async def dead_letter(self, entry: QueueEntry, *, reason: str) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically."""
        ...

    async def stats(self) -> QueueStats: ...

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]: ...


class Probe(Protocol):
    """One source of triage evidence. Failures are results (``ok=False``), not exceptions;
    the runner bounds every probe in time and cancels one that runs over."""

    kind: str  # the probe type it serves: vendor_status, health, prometheus, pod_logs

    async def run(self, spec: Any) -> ProbeResult: ...


class PodInfo(Frozen):
    name: str
    namespace: str
    containers: tuple[str, ...]
    started_at: datetime | None = None
    phase: str | None = None


class KubeError(Exception):
    """A Kubernetes call failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeGateway(Protocol):
    """Every Kubernetes call the service makes goes through this port. Objects travel as
    the API's JSON (dicts), so that what is recorded is what the cluster said."""

    async def list_pods(self, *, namespace: str, selector: str) -> list[PodInfo]: ...

    async def read_log(
        self, *, namespace: str, pod: str, container: str | None, since_s: int, tail_lines: int
    ) -> str: ...

    async def get_deployment(self, *, namespace: str, name: str) -> dict[str, Any]: ...

    async def patch_deployment(
        self, *, namespace: str, name: str, patch: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        """A strategic merge patch, as ``kubectl set env`` / ``rollout restart`` send."""
        ...

    async def get_scale(self, *, namespace: str, name: str) -> int: ...

    async def patch_scale(
        self, *, namespace: str, name: str, replicas: int, dry_run: bool
    ) -> int: ...

    async def secret_changed_at(self, *, namespace: str, name: str) -> datetime | None:
        """When the Secret's data last changed, as far as the API server says."""
        ...


class EffectClaim(Frozen):
    """The answer to "may I carry out this side effect?"

    ``start``: nobody did; you hold it now. ``done``: it was carried out (``data`` says
    how). ``busy``: another worker holds it and is alive. ``recover``: a worker took it and
    died (its lease ran out): you hold it now, and ``data`` holds what it had recorded.
    """

    status: Literal["start", "done", "busy", "recover"]
    data: dict[str, JsonValue] = Field(default_factory=dict)


class Pause(Frozen):
    by: str
    reason: str
    at: datetime


class ActionLedger(Protocol):
    """The shared state that keeps automatic actions safe across workers and replicas:
    idempotency records of side effects, the kill switch, cooldowns, the action budget,
    per-target locks, and durable timers. Every operation is atomic."""

    async def claim_effect(self, key: str, *, owner: str, lease_s: float) -> EffectClaim: ...

    async def note_effect(self, key: str, *, owner: str, data: dict[str, JsonValue]) -> None:
        """Record progress (e.g. the exact patch about to be sent) while holding it."""
        ...

    async def finish_effect(self, key: str, *, data: dict[str, JsonValue]) -> None: ...

    async def release_effect(self, key: str, *, owner: str) -> None:
        """Give up a claim not carried out (the attempt failed before any side effect):
        the next claim starts afresh. Only the owner's claim of an unfinished effect goes."""
        ...

    async def delivery_state(self, incident_id: str, sink: str) -> DeliveryState | None:
        """What ``sink`` has been told of the incident (see ``responder.notify``)."""
        ...

    async def save_delivery_state(
        self, incident_id: str, sink: str, state: DeliveryState
    ) -> None: ...

    async def paused(self) -> Pause | None: ...

    async def set_paused(self, pause: Pause | None) -> None: ...

    async def cooldown_until(self, key: str) -> datetime | None: ...

    async def start_cooldown(self, key: str, *, until: datetime) -> None: ...

    async def budget_used(self, *, window_s: float, now: datetime) -> int: ...

    async def spend_budget(self, *, window_s: float, limit: int, now: datetime, token: str) -> bool:
        """Take one action from the sliding-window budget; False when it is spent."""
        ...

    async def acquire_lock(self, name: str, *, token: str, ttl_s: float) -> bool: ...

    async def release_lock(self, name: str, *, token: str) -> None: ...

    async def schedule(self, timer: TimerSignal) -> None:
        """Queue ``timer`` on the work queue once its ``due_at`` has come."""
        ...

    async def release_due_timers(self, *, now: datetime, limit: int) -> int:
        """Move the timers that are due onto the work queue, atomically each; how many."""
        ...


class Notifier(Protocol):
    """Tells people what happened to an incident."""

    async def incident_changed(self, change: IncidentChange) -> None: ...


class DeliveryError(Exception):
    """A sink could not deliver a message. ``retryable``: worth another try later (rate
    limit, server error, timeout, connection); else the message is given up (refused as
    invalid, channel not found...). ``retry_after_s``: the wait the service asked for.
    ``uncertain``: the request may have been carried out (a timeout after sending): the
    next try first asks the sink whether it was (``Sink.find_sent``)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        uncertain: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.uncertain = uncertain


class Sink(Protocol):
    """One outbound channel (Slack, the status page, PagerDuty, the console): carries out
    the messages the planners wrote. ``message.fields["key"]`` is the message's
    idempotency key, for sinks that can mark what they send with it."""

    name: str

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        """Deliver; the handles to keep (e.g. the Slack ``ts``), merged into ``refs``.
        Raises ``DeliveryError``."""
        ...

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        """After a worker died between sending and recording: was ``message`` sent? Its
        handles if so, ``None`` if not (or if the sink cannot tell: it is sent again)."""
        ...

    async def close(self) -> None: ...


class StateStore(Store, ActionLedger, Protocol):
    """A store that also keeps the action ledger (both adapters are)."""


async def mutate_incident(
    store: Store, incident_id: str, mutate: IncidentMutator
) -> MutationResult:
    """Apply ``mutate`` to the incident with that id (it sees ``None`` when there is none):
    how a stage records what it did on the incident it works on."""
    [[result]] = await store.mutate_incidents(
        [MutationItem(lookups=(IncidentLookup(kind="id", key=incident_id),), mutators=(mutate,))]
    )
    return result
