"""Role protocols the core depends on; adapters implement them.

Each port has a real adapter and an in-memory one shipped in ``responder.adapters`` (the
embedded default); the same contract tests run on both.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import Field, JsonValue

from responder.domain.facts import ProbeResult
from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentChange,
    IncidentLookup,
    IncidentStatus,
    combine,
)
from responder.domain.model import Frozen
from responder.domain.notification import DeliveryState, Outbound
from responder.domain.severity import Severity
from responder.domain.signal import (
    Observation,
    ObserveOutcome,
    TimerSignal,
    epoch_ms,
)
from responder.domain.timeline import TimelineEvent


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC now."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this long (a worker's wait for its batch to fill): a test's clock can
        count the waits instead of timing them."""
        ...


class QueueEntry(Frozen):
    """One delivery of a queued signal to a worker; ``order_key`` and ``seq``: its place
    among the signals of its ordering key (an incident group), when it has one."""

    entry_id: str
    payload: str
    deliveries: int = 1
    order_key: str | None = None
    seq: int | None = None


class QueueStats(Frozen):
    depth: int  # entries not yet delivered to any worker
    pending: int  # delivered, not yet acknowledged
    dead_letters: int
    oldest_age_s: float = 0.0  # age of the oldest entry not yet handled; 0 when none


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
    handled_incident: str | None = None  # the incident the handled signal was applied to


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
    # not 0: the store refused the new incident this item would open, as the pack opened
    # this many within a minute already; its alerts go to the pack's storm incident
    overflow_cap: int = 0


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
    # Order: the mutators' sequence numbers under ``order_key`` (ascending; ``None`` for a
    # signal without one). A mutator runs only once every lower number of the key was
    # applied; from the first that must wait, the rest of the item waits too
    # (``MutationResult.waiting``). ``skip_gap``: run them anyway (the wait ran out).
    order_key: str | None = None
    seqs: tuple[int | None, ...] = ()
    skip_gap: bool = False
    # Set by the store, never by the caller: the pack's cap of new incidents a minute was
    # reached (see ``IncidentState.overflow_cap``); ``lookups`` then end with the storm's.
    overflow_cap: int = 0

    def signal(self, index: int) -> SignalRef | None:
        return self.signals[index] if index < len(self.signals) else None

    def seq(self, index: int) -> int | None:
        return self.seqs[index] if index < len(self.seqs) else None


@dataclass(frozen=True, slots=True)
class MutationResult:
    """What one mutator did."""

    change: IncidentChange | None  # None: the mutator changed nothing
    incident_id: str | None  # the incident it saw or made; None when there was none
    # the incident's processed cursor when the change was written: equal to the change's
    # first event seq when nothing older waits for the follow-up stages
    processed_seq: int | None = None
    # not run: an earlier signal of its ordering key has not been applied yet
    waiting: bool = False


class IncidentView(Frozen):
    incident: Incident
    alerts: tuple[IncidentAlert, ...] = Field(default_factory=tuple)
    timeline: tuple[TimelineEvent, ...] = Field(default_factory=tuple)
    # events with seq below this went through every follow-up stage and the notifier
    processed_seq: int = 0


class IncidentGraphs(Protocol):
    """The error-rate graph of an incident's window (the Prometheus range data the
    evidence collects), with the alert, each action and the resolve marked."""

    async def svg(self, view: IncidentView) -> str | None:
        """The graph as one self-contained ``<svg>`` element, or ``None`` when there is no
        data (no Prometheus, no query, nothing in the window)."""
        ...


# A cursor is short; anything much longer is not one.
_MAX_CURSOR_CHARS = 400


@dataclass(frozen=True, slots=True)
class IncidentCursor:
    """A place in the incidents listed newest first: the opened-at (epoch ms) and the id of
    the last incident a page held. Incidents are ordered by that pair, descending; the next
    page starts right after it, whatever opened since, so paging neither skips nor repeats
    an incident while new ones open (a position, not an offset)."""

    opened_ms: int
    incident_id: str

    @classmethod
    def at(cls, incident: Incident) -> IncidentCursor:
        return cls(epoch_ms(incident.opened_at), incident.id)

    @property
    def key(self) -> tuple[int, str]:
        """The sort key: a later key is newer, so listed earlier."""
        return (self.opened_ms, self.incident_id)

    def encode(self) -> str:
        """The opaque string the API hands out (URL-safe base64 of ``<ms>:<id>``)."""
        raw = f"{self.opened_ms}:{self.incident_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> IncidentCursor:
        """The cursor ``encode`` made; ``ValueError`` for anything else."""
        if not 0 < len(token) <= _MAX_CURSOR_CHARS:
            raise ValueError("not a cursor")
        try:
            padded = token + "=" * (-len(token) % 4)
            raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor") from None
        ms, sep, incident_id = raw.partition(":")
        if not sep or not incident_id or not (ms.isascii() and ms.isdigit()):
            raise ValueError("not a cursor")
        return cls(int(ms), incident_id)


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """Which incidents a listing holds: any of ``statuses`` and of ``severities`` (``None``:
    no condition; an unclassified incident has no severity), opened at or after ``since``."""

    statuses: frozenset[IncidentStatus] | None = None
    severities: frozenset[Severity] | None = None
    since: datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        status: IncidentStatus | Collection[IncidentStatus] | None = None,
        severity: Severity | Collection[Severity] | None = None,
        since: datetime | None = None,
    ) -> IncidentFilter:
        """From ``Store.list_incidents``' arguments: one value or several; none, or every
        status, is no condition."""
        statuses = _as_set(status, IncidentStatus)
        if statuses is not None and len(statuses) == len(IncidentStatus):
            statuses = None
        return cls(statuses=statuses, severities=_as_set(severity, Severity), since=since)

    def matches(self, incident: Incident) -> bool:
        return (
            (self.statuses is None or incident.status in self.statuses)
            and (self.severities is None or incident.severity in self.severities)
            and (self.since is None or incident.opened_at >= self.since)
        )


_Member = TypeVar("_Member", IncidentStatus, Severity)


def _as_set(
    values: _Member | Collection[_Member] | None, kind: type[_Member]
) -> frozenset[_Member] | None:
    if values is None:
        return None
    # a single member is a str, itself a collection (of characters): test it first
    chosen = frozenset((values,) if isinstance(values, str) else values)
    return frozenset(kind(v) for v in chosen) or None


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """One page of a listing, and where the next one starts (``None``: nothing follows)."""

    incidents: list[IncidentView]
    next: IncidentCursor | None = None


@dataclass(frozen=True, slots=True)
class RecordsEpoch:
    """``Store.records_since``: every write since ``since`` is held; ``began``: the caller
    is the one that found the server new (it looks for what lost records left behind)."""

    since: datetime
    began: bool = False


@dataclass(frozen=True, slots=True)
class OpenThread:
    """An incident's thread at a sink that does not show resolved (a Slack root message,
    a status page incident): its handles, the idempotency key it was sent with
    (``<incident id>:notify:<sink>:<step>``), and what the sink shows of it, for an edit."""

    refs: dict[str, JsonValue]
    key: str
    shown: dict[str, Any] = field(default_factory=dict)

    @property
    def incident_id(self) -> str:
        return self.key.partition(":notify:")[0]


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

        Cap: a write that would open an alert's incident once its pack opened the store's
        cap of new incidents within the last minute (counted across every process using
        the store, in the same atomic step as the write) is not made: the item runs again
        with ``overflow_cap`` set and the pack's storm group as its last lookup, so its
        alerts go to the pack's one storm incident.
        """
        ...

    async def get_incident(self, incident_id: str) -> IncidentView | None: ...

    async def unprocessed(self, incident_id: str) -> IncidentView | None:
        """The incident with only the timeline events not yet processed (and no alerts)."""
        ...

    async def mark_processed(self, marks: Mapping[str, int]) -> None:
        """Record, per incident id, that its events below the given seq are processed
        (never moves backwards). An incident whose every event is processed leaves the
        follow-up check; one written to enters it: if its events are still not all
        processed a grace later (its worker died), the store queues a ``follow_up``
        timer for it, once (``DurableTimers.release_due_timers``)."""
        ...

    async def lease_follow_ups(
        self,
        incident_ids: Sequence[str],
        *,
        token: str,
        ttl_s: float,
        renew_only: bool = False,
    ) -> dict[str, int | None]:
        """Take, or renew for ``token``, each incident's follow-up lease (one replica
        follows an incident up at a time); per incident, its processed cursor when
        ``token`` holds the lease now, read in the same step, ``None`` when another does
        (``renew_only``: or nobody; a lease given up is not taken again). The lease lapses
        after ``ttl_s`` unless renewed (its holder died)."""
        ...

    async def release_follow_ups(self, incident_ids: Sequence[str], *, token: str) -> None:
        """Give up the follow-up leases ``token`` holds (after the cursor moved)."""
        ...

    async def defer_follow_up_checks(self, incident_ids: Sequence[str]) -> None:
        """Their follow-up is in a live worker's hands: check them a grace from now."""
        ...

    async def drop_follow_up_checks(self, incident_ids: Sequence[str]) -> None:
        """Their follow-up was given up (its entry dead-lettered): no check."""
        ...

    async def records_since(self) -> RecordsEpoch:
        """Since when this store is known to hold every write made to it: when the
        service first found the server it writes to now (the process's start, for a store
        in memory). A restart or a failover puts another server behind the address, which
        may have lost the writes of the moments before (all of them, without
        persistence): a record made before this time may be gone, though what it caused
        outside (a Slack message posted) is not. ``began``: this very call found the
        other server, once across replicas."""
        ...

    async def remember_once(self, key: str, *, ttl_s: float) -> bool:
        """Whether ``key`` is seen here for the first time (across every process using
        the store) within ``ttl_s``: the first call says ``True`` and is remembered that
        long, every later one ``False``. How a signed request is taken once (a Slack
        interaction replayed to another replica is refused)."""
        ...

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | Collection[IncidentStatus] | None = None,
        severity: Severity | Collection[Severity] | None = None,
        since: datetime | None = None,
        after: IncidentCursor | None = None,
        limit: int = 100,
    ) -> IncidentPage:
        """One page of incidents, newest first: by opened-at (epoch ms), then by id, both
        descending, so that ties keep their order.

        Filters (``IncidentFilter``): any of the statuses, any of the severities, opened at
        or after ``since``. ``after`` is the previous page's ``next``: the page holds the
        matching incidents listed after that position, so incidents that open while a
        client pages never shift a later page, and every incident shows up once.

        A page holds at most ``limit`` incidents. It may hold fewer, even none, and still
        have a ``next``, when the store stopped looking (it examines a bounded number of
        incidents per call when filters reject many): only ``next is None`` says that
        nothing follows.
        """
        ...

    async def close(self) -> None: ...


# The most queued entries ``WorkQueue.holds_earlier`` looks at (a bound on its time; a
# backlog this deep is a storm the cap of new incidents has long turned into one).
EARLIER_LOOKED_AT_MAX = 100_000


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

    async def ack(self, *entry_ids: str) -> None:
        """Acknowledge handled entries; they leave the queue."""
        ...

    async def extend(self, *, consumer: str, entry_ids: Sequence[str]) -> None:
        """Renew the lease of entries ``consumer`` still works on, without counting a
        delivery: nobody claims them for another visibility timeout."""
        ...

    async def prune_consumers(self, *, idle_ms: int, only: Sequence[str] | None = None) -> int:
        """Remove consumers that hold no entry and were idle ``idle_ms`` (``only``: just
        those of these names); how many."""
        ...

    async def dead_letter(self, entry: QueueEntry, *, reason: str) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically; the
        signals of its ordering key no longer wait for it."""
        ...

    async def stats(self) -> QueueStats: ...

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]: ...

    async def holds_earlier(self, order_key: str, seq: int) -> bool:
        """Whether a signal of ``order_key`` numbered below ``seq`` is still queued (read
        or not, held or not: not handled yet). Asked only before a signal that waited
        long for an earlier one goes ahead of it; looks at the oldest
        ``EARLIER_LOOKED_AT_MAX`` entries at most."""
        ...


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
    # the pod's kubectl.kubernetes.io/default-container annotation: the container whose log
    # is read when none is named (a mesh sidecar is often the first)
    default_container: str | None = None
    # when each running container last started (a container restart reads a Secret anew)
    container_started_at: dict[str, datetime] = Field(default_factory=dict)


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
    ``claimed_at``: when the record was first claimed (no try of the effect can be older);
    ``None`` when unknown (a record written before this was kept).

    A record whose key starts with an incident's id and a colon lives as the incident
    does: no expiry while it is active, the incident's once it is resolved.
    """

    status: Literal["start", "done", "busy", "recover"]
    data: dict[str, JsonValue] = Field(default_factory=dict)
    claimed_at: datetime | None = None


class SharedThread(Frozen):
    """One thread at a sink that several incidents share: the public status page incident
    of a set of components, opened by the first incident that affects them, kept by every
    later one (``notify.shared_threads``). ``refs``: its handles once created (id,
    shortlink); ``creating``: the idempotency key of a creation under way (looked for at
    the sink before another is tried); ``shown``: what it was last made to show;
    ``members``: the incidents attached, each with the message it wants shown (an
    ``Outbound`` as JSON)."""

    refs: dict[str, JsonValue] = Field(default_factory=dict)
    creating: str | None = None
    shown: dict[str, JsonValue] = Field(default_factory=dict)
    members: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)

    @classmethod
    def of_fields(cls, fields: Mapping[str, str]) -> SharedThread:
        """From its record's fields (both stores keep a hash): ``refs``, ``creating``,
        ``shown`` and ``m:<incident id>`` per member, JSON each but ``creating``."""
        members = {k[2:]: json.loads(v) for k, v in fields.items() if k.startswith("m:")}
        return cls(
            refs=json.loads(fields.get("refs") or "{}"),
            creating=fields.get("creating") or None,
            shown=json.loads(fields.get("shown") or "{}"),
            members=members,
        )


class Pause(Frozen):
    by: str
    reason: str
    at: datetime


# The action ledger: the shared state that keeps automatic actions safe across workers
# and replicas, one role per Protocol below (a consumer asks for the roles it uses; both
# store adapters keep them all: ``ActionLedger``). Every operation is atomic.


class EffectLedger(Protocol):
    """Idempotency records of side effects (an action step, a verification, a revert, an
    outbound message, a report): claimed before the effect, noted while it is under way,
    finished once done, so that it happens once however many workers try it."""

    async def claim_effect(self, key: str, *, owner: str, lease_s: float) -> EffectClaim: ...

    async def note_effect(self, key: str, *, owner: str, data: dict[str, JsonValue]) -> None:
        """Record progress (e.g. the exact patch about to be sent) while holding it."""
        ...

    async def finish_effect(self, key: str, *, data: dict[str, JsonValue]) -> None: ...

    async def release_effect(self, key: str, *, owner: str) -> None:
        """Give up a claim not carried out (the attempt failed before any side effect):
        the next claim starts afresh. Only the owner's claim of an unfinished effect goes."""
        ...


class DeliveryStates(Protocol):
    """What each sink has been told of each incident (``DeliveryState``)."""

    async def delivery_state(self, incident_id: str, sink: str) -> DeliveryState | None:
        """What ``sink`` has been told of the incident (see ``responder.notify``)."""
        ...

    async def save_delivery_state(
        self, incident_id: str, sink: str, state: DeliveryState
    ) -> None: ...


class AutomationSwitch(Protocol):
    """The kill switch of automatic actions: paused (by whom, why) or not."""

    async def paused(self) -> Pause | None: ...

    async def set_paused(self, pause: Pause | None) -> None: ...


class ActionLimits(Protocol):
    """The limits the guards read before an automatic action: each target's cooldown
    and the sliding-window budget of actions."""

    async def cooldown_until(self, key: str) -> datetime | None: ...

    async def start_cooldown(self, key: str, *, until: datetime) -> None: ...

    async def budget_used(self, *, window_s: float, now: datetime) -> int: ...

    async def spend_budget(self, *, window_s: float, limit: int, now: datetime, token: str) -> bool:
        """Take one action from the sliding-window budget; False when it is spent."""
        ...


class NamedLocks(Protocol):
    """Locks by name held across replicas (a target's, a sink's, a shared thread's), each
    a lease: held by ``token`` for ``ttl_s`` at most, so a dead holder's lock goes."""

    async def acquire_lock(self, name: str, *, token: str, ttl_s: float) -> bool: ...

    async def release_lock(self, name: str, *, token: str) -> None: ...


class DurableTimers(Protocol):
    """Timers kept in the store (a verification, a delivery retry, a follow-up): each
    goes on the work queue once when due, whichever replica releases it."""

    async def schedule(self, timer: TimerSignal) -> None:
        """Queue ``timer`` on the work queue once its ``due_at`` has come."""
        ...

    async def release_due_timers(self, *, now: datetime, limit: int) -> int:
        """Move the timers that are due onto the work queue, atomically each; how many."""
        ...


class SharedThreadRecords(Protocol):
    """The records of threads several incidents share (``SharedThread``), by key; each
    call is atomic. A record lives while it is used: no expiry while it has members, and
    90 days after its last write in any case."""

    async def join_shared_thread(
        self, key: str, *, member: str, want: dict[str, JsonValue]
    ) -> SharedThread:
        """Attach ``member`` (or replace what it wants shown); the record as it is now."""
        ...

    async def leave_shared_thread(self, key: str, *, members: Sequence[str]) -> SharedThread:
        """Detach ``members`` (none: a read); the record as it is now (empty when there is
        none). The record stays, without members, until ``close_shared_thread``."""
        ...

    async def settle_shared_thread(
        self,
        key: str,
        *,
        refs: dict[str, JsonValue] | None = None,
        creating: str | None = None,
        shown: dict[str, JsonValue] | None = None,
    ) -> None:
        """Record what was done (``None``: unchanged; ``creating=""``: no creation under
        way); nothing when there is no record."""
        ...

    async def close_shared_thread(self, key: str, *, thread_id: str) -> None:
        """The thread ``thread_id`` was closed: its record goes, if it still has no
        members and is that thread's."""
        ...


class ActionLedger(
    EffectLedger,
    DeliveryStates,
    AutomationSwitch,
    ActionLimits,
    NamedLocks,
    DurableTimers,
    SharedThreadRecords,
    Protocol,
):
    """Every role of the action ledger, as both store adapters keep it."""


class SlackLookupError(Exception):
    """Slack could not say who is in a user group (an error, a timeout, no scope): the
    press that needed it is refused, with this as the reason."""


class SlackPeople(Protocol):
    """What the Slack interactions need of Slack's Web API (with the bot token): who is in
    a user group, and a word to one person only."""

    async def group_members(self, group_id: str) -> frozenset[str]:
        """The user ids of the group's members. Raises ``SlackLookupError``."""
        ...

    async def tell_privately(self, *, channel: str, user: str, text: str) -> None:
        """An ephemeral message (``chat.postEphemeral``): only ``user`` sees it, in
        ``channel``. Raises ``SlackLookupError`` when Slack refused it."""
        ...

    async def close(self) -> None: ...


class Notifier(Protocol):
    """Tells people what happened to an incident; returns what to record of it on the
    incident's timeline (a message posted, a sink delayed or failed), which the pipeline
    writes with the stages' results of the same round."""

    async def incident_changed(self, change: IncidentChange) -> StageResult | None: ...


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
        handles if so, ``None`` if not (or if the sink cannot tell: it is sent again).
        ``message.fields["sent_after"]``, when there: epoch seconds (by our clock) before
        which no try of the message was made, so a sink that reads back its history can
        read it from then on."""
        ...

    async def find_open(self, message: Outbound, *, group: str, since: float) -> list[OpenThread]:
        """Before ``message`` opens an incident's thread (a Slack root, a status page
        incident) for an incident whose earlier record may be lost: the threads this sink
        holds of incidents of ``group`` that are still open, started from ``since`` (epoch
        seconds, the incident's first alert's start) on, newest first; empty when the
        sink cannot tell."""
        ...

    async def open_threads(self, where: Collection[str], *, since: float) -> list[OpenThread]:
        """Every thread this sink started that does not show resolved, in the places
        ``where`` (Slack channels), started from ``since`` on (as far back as the sink
        reads); empty when the sink cannot tell."""
        ...

    async def mark_lost(self, thread: OpenThread, note: str) -> None:
        """Say on ``thread`` that the service lost its incident's record (``note``), so
        that nobody takes it for followed; a no-op where that cannot or should not be
        shown (a public status page)."""
        ...

    async def close(self) -> None: ...


class NoThreadLookup:
    """For a sink that cannot read back what it sent (an incoming webhook, the Events
    API, this process's console): no thread found, none marked (``LostRecords``)."""

    async def find_open(self, message: Outbound, *, group: str, since: float) -> list[OpenThread]:
        return []

    async def open_threads(self, where: Collection[str], *, since: float) -> list[OpenThread]:
        return []

    async def mark_lost(self, thread: OpenThread, note: str) -> None:
        return None


class StateStore(Store, ActionLedger, Protocol):
    """A store that also keeps the action ledger (both adapters are)."""


def needs_follow_up(events: Sequence[TimelineEvent]) -> bool:
    """Whether written ``events`` wait for the follow-up stages: not when all of them are
    what a notification sink did (they are written by a follow-up round, and the next round
    of that follow-up tells them)."""
    return any(not e.kind.startswith("notification.") for e in events)


async def mutate_incident(
    store: Store, incident_id: str, mutate: IncidentMutator
) -> MutationResult:
    """Apply ``mutate`` to the incident with that id (it sees ``None`` when there is none):
    how a stage records what it did on the incident it works on."""
    [[result]] = await store.mutate_incidents(
        [MutationItem(lookups=(IncidentLookup(kind="id", key=incident_id),), mutators=(mutate,))]
    )
    return result


# Work a stage does once what it asked to record is written (see ``StageResult``).
AfterWrite = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StageResult:
    """What a stage of the pipeline wants recorded on the incident it was handed, and what
    it then does.

    The pipeline applies the ``mutators`` of every stage of a round in one store call (in
    order, on that incident), then awaits each ``after_write`` in order: the work that must
    come after the record is durable, such as finishing the ledger claim of the effect the
    record tells of (a crash in between leaves the claim unfinished, and whoever recovers
    it finds the record) or scheduling the effect's verification.
    """

    mutators: tuple[IncidentMutator, ...] = ()
    after_write: tuple[AfterWrite, ...] = ()


class StageIncompleteError(Exception):
    """A stage failed part way through: ``done`` is what it carried out before, which the
    pipeline records before ``cause`` goes on up (the signal's next try then finds those
    steps done)."""

    def __init__(self, done: StageResult | None, cause: Exception) -> None:
        super().__init__(str(cause))
        self.done = done
        self.cause = cause


def merge_results(results: Sequence[StageResult]) -> StageResult | None:
    """Several results as one, in order; ``None`` when there is nothing in them."""
    mutators = tuple(m for r in results for m in r.mutators)
    after_write = tuple(a for r in results for a in r.after_write)
    return StageResult(mutators, after_write) if mutators or after_write else None


async def record_results(
    store: Store, incident_id: str, results: Sequence[StageResult]
) -> IncidentChange | None:
    """Write the mutators of ``results`` to the incident in one store call, then run their
    ``after_write``; the change written (``None``: nothing changed)."""
    merged = merge_results(results)
    if merged is None:
        return None
    change: IncidentChange | None = None
    if merged.mutators:
        [written] = await store.mutate_incidents(
            [
                MutationItem(
                    lookups=(IncidentLookup(kind="id", key=incident_id),),
                    mutators=merged.mutators,
                )
            ]
        )
        for result in written:
            if result.change is not None:
                change = result.change if change is None else combine(change, result.change)
    for after in merged.after_write:
        await after()
    return change
