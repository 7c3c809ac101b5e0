"""Applying one item's mutators in order, in memory, before anything is written.

Both stores use this: it decides what each mutator sees (the state the previous one left)
and gathers, per incident, the one write that carries all of the item's changes to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentChange,
    IncidentLookup,
    storm_group_key,
)
from responder.domain.timeline import TimelineEvent
from responder.ports import IncidentState, MutationItem, MutationResult, SignalRecord, SignalRef


@dataclass
class IncidentWrite:
    """Everything an item changed in one incident, to write in one atomic step."""

    incident: Incident
    expected_version: int  # timeline length the store must still hold; -1: a new incident
    events: list[TimelineEvent] = field(default_factory=list)
    alerts: dict[str, IncidentAlert] = field(default_factory=dict)
    # signals applied to the incident: dedupe key -> (status, order) now handled
    handled: dict[str, tuple[str, int]] = field(default_factory=dict)
    # the ordering cursor this write moves (the last write of an item carries it)
    order_key: str | None = None
    order_done: int = 0
    # the groups the incident answered to before this write (an alert storm's grow)
    groups_before: tuple[str, ...] = ()
    # written in the same round right after this one, on the state it leaves (Redis)
    chained_on: IncidentWrite | None = None

    @property
    def version_after(self) -> int:
        """The timeline length once this write is made."""
        return max(self.expected_version, 0) + len(self.events)

    @property
    def change(self) -> IncidentChange:
        return IncidentChange(
            incident=self.incident, events=tuple(self.events), alerts=tuple(self.alerts.values())
        )


@dataclass
class Folded:
    writes: list[IncidentWrite]
    results: list[MutationResult]
    # the item's ordering cursor after it (the highest sequence number it applied), to be
    # written with its last write; None when it applied none
    order_done: int | None = None


def fold(
    item: MutationItem,
    *,
    incident: Incident | None,
    version: int,
    alerts: dict[str, IncidentAlert],
    records: Sequence[SignalRecord | None],
    order_done: int = 0,
) -> Folded:
    """Run the item's mutators on the state read (``incident`` at ``version``;
    ``order_done``: the ordering cursor of the item's key)."""
    current, current_alerts = incident, dict(alerts)
    records = list(records)
    writes: dict[str, IncidentWrite] = {}
    results: list[MutationResult] = []
    next_seq, advanced = order_done + 1, None
    for index, mutate in enumerate(item.mutators):
        seq = item.seq(index)
        if seq is not None and item.order_key is not None:
            if seq > next_seq and not item.skip_gap:
                # an earlier signal of the key is not applied yet: this one and the
                # item's later ones wait for it (a lower one may still come: redelivered)
                waiting = MutationResult(change=None, incident_id=None, waiting=True)
                results += [waiting] * (len(item.mutators) - index)
                break
            if seq >= next_seq:
                next_seq, advanced = seq + 1, seq
        record = records[index] if index < len(records) else None
        state = IncidentState(
            incident=current,
            alerts={fp: current_alerts[fp] for fp in item.fingerprints if fp in current_alerts},
            signal=record,
            overflow_cap=item.overflow_cap,
        )
        change = mutate(state)
        if change is None:
            results.append(
                MutationResult(change=None, incident_id=_incident_of(item, index, record, current))
            )
            continue
        inc = change.incident
        write = writes.get(inc.id)
        if write is None:
            known = incident is not None and incident.id == inc.id
            write = writes[inc.id] = IncidentWrite(
                incident=inc,
                expected_version=version if known else -1,
                groups_before=incident.groups if known and incident is not None else (),
            )
        write.incident = inc
        write.events.extend(change.events)
        write.alerts.update({a.fingerprint: a for a in change.alerts})
        results.append(MutationResult(change=change, incident_id=inc.id))
        ref = item.signal(index)
        if ref is not None:
            write.handled[ref.key] = (ref.status, ref.order_ms)
            _now_handled(item, records, after=index, ref=ref)
        if current is None or current.id != inc.id:
            current_alerts = {}
        current_alerts.update({a.fingerprint: a for a in change.alerts})
        # what the item's lookups find now: this incident, or nothing once it no longer
        # answers to them (a resolved incident frees its group)
        current = inc if any(inc.answers(lk) for lk in item.lookups) else None
        if current is None:
            current_alerts = {}
    return Folded(writes=list(writes.values()), results=results, order_done=advanced)


def _incident_of(
    item: MutationItem, index: int, record: SignalRecord | None, current: Incident | None
) -> str | None:
    """The incident a mutator that changed nothing belongs to, for its follow-up: the one
    its signal was applied to when it was (a redelivery after a failed follow-up finds
    its incident even when a resolve freed the group since), else the one found."""
    ref = item.signal(index)
    if (
        ref is not None
        and record is not None
        and record.handled_incident
        and record.handled_status == ref.status
        and record.handled_order_ms == ref.order_ms
    ):
        return record.handled_incident
    return current.id if current else None


def _now_handled(
    item: MutationItem, records: list[SignalRecord | None], *, after: int, ref: SignalRef
) -> None:
    """Later mutators of the same signal key see ``ref`` as handled."""
    for j in range(after + 1, len(item.mutators)):
        other = item.signal(j)
        if other is None or other.key != ref.key:
            continue
        seen = records[j] if j < len(records) else None
        base = seen or SignalRecord(
            status=ref.status, order_ms=ref.order_ms, first_seen_ms=0, last_seen_ms=0
        )
        marked = base.model_copy(
            update={"handled_status": ref.status, "handled_order_ms": ref.order_ms}
        )
        if j < len(records):
            records[j] = marked


# The window of the cap of new incidents per pack (RESPONDER_MAX_NEW_INCIDENTS_PER_MINUTE).
NEW_INCIDENTS_WINDOW_S = 60


def capped_pack(write: IncidentWrite, cap: int) -> str | None:
    """The pack whose cap of new incidents a minute ``write`` counts against (a pack of
    ``None``, alerts no pack classified, counts as ``-``); ``None`` when it does not: it
    changes an incident that exists, opens the storm itself, or opens an incident from
    PagerDuty (signed, hence trusted; no alert of it). 0 turns the cap off."""
    inc = write.incident
    if cap <= 0 or write.expected_version != -1 or inc.storm or inc.alerts_total == 0:
        return None
    return inc.pack or "-"


def overflowed(item: MutationItem, cap: int, pack: str) -> MutationItem:
    """``item`` again, for its new incident to go to ``pack``'s storm incident: found by
    the storm's group after its own lookups (the group may be collected already)."""
    storm = IncidentLookup(kind="group", key=storm_group_key(None if pack == "-" else pack))
    lookups = item.lookups if storm in item.lookups else (*item.lookups, storm)
    return replace(item, lookups=lookups, overflow_cap=cap)
