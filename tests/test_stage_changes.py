"""Stages return what they want recorded; the pipeline writes what the stages of one round
return in one store call, then runs the work each asked to do after the write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from responder.adapters.memory import MemoryQueue, MemoryStore
from responder.domain.incident import IncidentChange, record_report
from responder.domain.signal import AlertSignal, AlertStatus
from responder.domain.timeline import EventKind
from responder.metrics import Metrics
from responder.pipeline import Pipeline
from responder.ports import IncidentState, MutationItem, MutationResult, StageResult
from tests.support.clock import ShiftableClock
from tests.support.service import RecordingNotifier


@dataclass
class CountingStore(MemoryStore):
    """The in-memory store, counting its incident writes (store calls)."""

    writes: list[int] = field(default_factory=list)  # the mutators of each call

    async def mutate_incidents(self, items: Sequence[MutationItem]) -> list[list[MutationResult]]:
        self.writes.append(sum(len(i.mutators) for i in items))
        return await super().mutate_incidents(items)


def _note(detail: str) -> StageResult:
    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is None:
            return None
        return record_report(
            state.incident, datetime.now(UTC), kind=EventKind.REPORT_FAILED, detail=detail
        )

    return StageResult(mutators=(mutate,))


class NoteOnOpen:
    """Records a note when an incident opens; once written, looks at the store."""

    reads_store = False

    def __init__(self, store: MemoryStore, detail: str) -> None:
        self.store = store
        self.detail = detail
        self.seen_after_write: list[str] = []

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        if EventKind.INCIDENT_OPENED not in {e.kind for e in change.events}:
            return None
        incident_id = change.incident.id

        async def after() -> None:
            view = await self.store.get_incident(incident_id)
            assert view is not None
            self.seen_after_write.extend(e.detail for e in view.timeline)

        note = _note(self.detail)
        return StageResult(mutators=note.mutators, after_write=(after,))


class ReadsOnOpen:
    """Reads the incident from the store when it opens (as the report stage does)."""

    reads_store = True

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.seen: list[str] = []

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        if EventKind.INCIDENT_OPENED not in {e.kind for e in change.events}:
            return None
        view = await self.store.get_incident(change.incident.id)
        assert view is not None
        self.seen.extend(e.detail for e in view.timeline)
        return _note("read")


class FailsOnOpen:
    reads_store = False

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        if EventKind.INCIDENT_OPENED in {e.kind for e in change.events}:
            raise RuntimeError("stage broke")
        return None


def _pipeline(
    store: MemoryStore,
    clock: ShiftableClock,
    *stages: object,
    notifier: RecordingNotifier | None = None,
) -> Pipeline:
    return Pipeline(
        store=store,
        clock=clock,
        notifier=notifier or RecordingNotifier(),
        metrics=Metrics(),
        group_by=["alertname"],
        stages=stages,  # type: ignore[arg-type]
    )


def _alert(clock: ShiftableClock) -> AlertSignal:
    return AlertSignal(
        fingerprint="f1",
        status=AlertStatus.FIRING,
        labels={"alertname": "Down"},
        starts_at=clock.now(),
        received_at=clock.now(),
    )


def _store(clock: ShiftableClock) -> CountingStore:
    return CountingStore(queue=MemoryQueue(clock=clock), clock=clock)


async def test_what_the_stages_of_a_round_return_is_written_in_one_store_call() -> None:
    clock = ShiftableClock()
    store = _store(clock)
    first, second = NoteOnOpen(store, "first"), NoteOnOpen(store, "second")
    notifier = RecordingNotifier()
    pipeline = _pipeline(store, clock, first, second, notifier=notifier)

    [handled] = await pipeline.handle(_alert(clock))

    assert handled.error is None
    assert handled.incident_id is not None
    # the alert's write, then one write with both stages' mutators
    assert store.writes == [1, 2]
    view = await store.get_incident(handled.incident_id)
    assert view is not None
    details = [e.detail for e in view.timeline]
    assert details[-2:] == ["first", "second"]
    # the work after the write finds the record there
    assert "first" in first.seen_after_write
    assert "second" in second.seen_after_write
    # the written events went round the stages (and the notifier) in the next round
    assert [e.detail for e in notifier.changes[-1].events] == ["first", "second"]


async def test_a_stage_that_reads_the_store_finds_what_the_stages_before_it_asked_for() -> None:
    clock = ShiftableClock()
    store = _store(clock)
    reader = ReadsOnOpen(store)
    pipeline = _pipeline(store, clock, NoteOnOpen(store, "before"), reader)

    [handled] = await pipeline.handle(_alert(clock))

    assert handled.error is None
    assert "before" in reader.seen
    assert store.writes == [1, 1, 1]


async def test_a_failing_stage_leaves_what_the_stages_before_it_did_recorded() -> None:
    clock = ShiftableClock()
    store = _store(clock)
    first = NoteOnOpen(store, "first")
    pipeline = _pipeline(store, clock, first, FailsOnOpen())

    [handled] = await pipeline.handle(_alert(clock))

    assert isinstance(handled.error, RuntimeError)
    assert handled.incident_id is not None
    view = await store.get_incident(handled.incident_id)
    assert view is not None
    assert "first" in [e.detail for e in view.timeline]
    assert "first" in first.seen_after_write
