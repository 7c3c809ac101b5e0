"""Pure rules: incident transitions, their idempotency, and folding a batch of mutators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from responder.adapters.incident_fold import fold
from responder.domain.incident import (
    IncidentLookup,
    IncidentStatus,
    apply_alert,
    apply_pagerduty,
    open_from_pagerduty,
    open_incident,
)
from responder.domain.signal import (
    AlertSignal,
    AlertStatus,
    PagerDutyAgent,
    PagerDutySignal,
    alertmanager_pagerduty_key,
    group_key_for,
)
from responder.pipeline import already_handled
from responder.ports import IncidentState, MutationItem, SignalRecord

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
GROUP = '{alertname="A",service="s"}'


def alert(fp: str = "f1", status: str = "firing", starts: datetime = T0) -> AlertSignal:
    return AlertSignal(
        fingerprint=fp,
        status=AlertStatus(status),
        labels={"alertname": "A", "service": "s"},
        starts_at=starts,
        am_group_key='{}:{alertname="A"}',
        received_at=T0,
    )


def test_group_key_reads_like_alertmanager_group_labels() -> None:
    assert group_key_for({"alertname": "A", "x": "1"}, ("alertname", "service")) == (
        '{alertname="A",service=""}'
    )


def test_open_then_join_refire_and_resolve() -> None:
    opened = open_incident(incident_id="inc-1", group_key=GROUP, signal=alert(), now=T0)
    inc = opened.incident
    assert opened.opened
    assert (inc.alerts_total, inc.alerts_firing, inc.events_count) == (1, 1, 1)
    assert inc.pagerduty_keys == (alertmanager_pagerduty_key('{}:{alertname="A"}'),)
    [first] = opened.alerts

    joined = apply_alert(inc, None, alert("f2"), T0)
    assert joined is not None
    assert [e.kind for e in joined.events] == ["alert.joined"]
    assert joined.events[0].seq == 1
    assert joined.alerts[0].number == 2

    resolved = apply_alert(joined.incident, first, alert(status="resolved"), T0)
    assert resolved is not None
    assert resolved.incident.alerts_firing == 1
    assert resolved.incident.status is IncidentStatus.OPEN

    refired = apply_alert(
        resolved.incident, resolved.alerts[0], alert(starts=T0 + timedelta(1)), T0
    )
    assert refired is not None
    assert [e.kind for e in refired.events] == ["alert.refired"]
    assert refired.incident.alerts_firing == 2
    assert refired.alerts[0].number == 1  # keeps its place


def test_same_signal_twice_changes_nothing() -> None:
    opened = open_incident(incident_id="inc-1", group_key=GROUP, signal=alert(), now=T0)
    assert apply_alert(opened.incident, opened.alerts[0], alert(), T0) is None
    done = apply_alert(opened.incident, opened.alerts[0], alert(status="resolved"), T0)
    assert done is not None
    assert done.incident.status is IncidentStatus.RESOLVED
    assert [e.kind for e in done.events] == ["alert.resolved", "incident.resolved"]
    assert apply_alert(done.incident, done.alerts[0], alert(status="resolved"), T0) is None


def test_resolve_of_an_older_occurrence_is_ignored() -> None:
    later = alert(starts=T0 + timedelta(hours=1))
    opened = open_incident(incident_id="inc-1", group_key=GROUP, signal=later, now=T0)
    assert apply_alert(opened.incident, opened.alerts[0], alert(status="resolved"), T0) is None


def pd(event_type: str, event_id: str = "E1", **kw: object) -> PagerDutySignal:
    return PagerDutySignal(
        event_id=event_id,
        event_type=event_type,
        occurred_at=T0,
        incident_id="P1",
        received_at=T0,
        agent=PagerDutyAgent(summary="Dana"),
        **kw,
    )  # type: ignore[arg-type]


def test_pagerduty_ack_once_and_redelivery_is_ignored() -> None:
    opened = open_incident(incident_id="inc-1", group_key=GROUP, signal=alert(), now=T0)
    acked = apply_pagerduty(opened.incident, pd("incident.acknowledged"), T0)
    assert acked is not None
    assert [e.kind for e in acked.events] == ["pagerduty.linked", "incident.acknowledged"]
    assert acked.incident.acked_by == "Dana"
    assert apply_pagerduty(acked.incident, pd("incident.acknowledged"), T0) is None
    # a later ack (another event id) of an acked incident adds nothing either
    assert apply_pagerduty(acked.incident, pd("incident.acknowledged", "E2"), T0) is None


def test_pagerduty_incident_opened_from_its_own_event() -> None:
    change = open_from_pagerduty(
        incident_id="inc-9", signal=pd("incident.triggered", incident_key="k"), now=T0
    )
    assert change.incident.group_key == "pagerduty:k"
    assert change.incident.pagerduty_events == ("E1",)


def test_already_handled_compares_occurrence_then_status() -> None:
    def rec(status: str, order: int) -> SignalRecord:
        return SignalRecord(
            status="x",
            order_ms=0,
            first_seen_ms=0,
            last_seen_ms=0,
            handled_status=status,
            handled_order_ms=order,
        )

    o = alert().order_ms
    assert already_handled(alert(), rec("firing", o))
    assert already_handled(alert(), rec("resolved", o))
    assert not already_handled(alert(status="resolved"), rec("firing", o))
    assert already_handled(alert(status="resolved"), rec("resolved", o))
    assert already_handled(alert(), rec("firing", o + 1))
    assert not already_handled(alert(), rec("resolved", o - 1))


def test_fold_resolving_frees_the_group_and_the_next_firing_opens_anew() -> None:
    def mutator(signal: AlertSignal, new_id: str):  # type: ignore[no-untyped-def]
        def mutate(state: IncidentState):  # type: ignore[no-untyped-def]
            if state.incident is None:
                if signal.status is AlertStatus.FIRING:
                    return open_incident(incident_id=new_id, group_key=GROUP, signal=signal, now=T0)
                return None
            return apply_alert(state.incident, state.alerts.get(signal.fingerprint), signal, T0)

        return mutate

    later = T0 + timedelta(hours=1)
    item = MutationItem(
        lookups=(IncidentLookup(kind="group", key=GROUP),),
        mutators=(
            mutator(alert(), "inc-a"),
            mutator(alert(status="resolved"), "unused"),
            mutator(alert(starts=later), "inc-b"),
        ),
        fingerprints=("f1",),
    )
    folded = fold(item, incident=None, version=-1, alerts={}, records=[None, None, None])
    assert [w.incident.id for w in folded.writes] == ["inc-a", "inc-b"]
    assert [w.expected_version for w in folded.writes] == [-1, -1]
    assert folded.writes[0].incident.status is IncidentStatus.RESOLVED
    assert [e.kind for e in folded.writes[0].events] == [
        "incident.opened",
        "alert.resolved",
        "incident.resolved",
    ]
    assert [r.incident_id for r in folded.results] == ["inc-a", "inc-a", "inc-b"]
