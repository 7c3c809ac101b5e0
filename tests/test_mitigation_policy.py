"""Issue 18, the mitigation misfires and the revert policy, through the running service
(real Redis, the fake cluster; a real Prometheus where a query decides):

- a verification that falls due after the incident resolved is dropped and recorded, not
  run ("did not help" below the postmortem);
- the cooldown is kept by the exact change: one switch does not hold back another; a
  refusal that leaves the runbook's step undone calls a human, as does an undecided
  incident;
- ``revert: never`` leaves the change and shows its undo at resolve; ``revert:
  vendor_resolved`` keeps it past resolve and undoes it once the vendor's incident is over
  and the verify query stays in bounds for a quiet period.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from responder.app import Overrides
from responder.domain.action import ActionRecord
from responder.domain.incident import IncidentChange
from responder.domain.signal import TimerSignal
from responder.domain.timeline import EventKind, TimelineEvent
from responder.notify.planners import SLACK_REPLY_KINDS
from responder.ports import IncidentState, StageResult, record_results
from responder.rules.loader import RuleLoadError, load_pack
from tests.support.clock import ShiftableClock
from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.mitigation import Cluster, alert, cluster, kinds, responder, settled
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import Service
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHANNEL = "#incidents"
GAUGE = ("posthog_error_ratio_now", {"service": "posthog-integration"})
QUERY = 'max(posthog_error_ratio_now{service="posthog-integration"})'

PACK = """
name: policy-test
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: false
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: P2, error_type: rate_limit}}
    continue: true
  - name: queue-requests
    match: ['alertname=~"Queue.*"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{RATE_LIMIT_MODE: queue}}
        settle_s: 60
        verify: {{query: '{query}', below: 0.05}}
  - name: fallback
    match: ['alertname="Fallback"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{POSTHOG_FALLBACK: "true"}}
        {fallback_revert}
        settle_s: 60
        verify: {{query: '{query}', below: 0.05}}
  - name: keep
    match: ['alertname="Keep"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{LOG_LEVEL: debug}}
        {keep_revert}
"""


def with_pack(
    c: Cluster,
    *,
    fallback_revert: str = "revert_on_resolve: true",
    keep_revert: str = "revert_on_resolve: false",
) -> Cluster:
    path = c.pack.parent / "policy.yaml"
    path.write_text(
        PACK.format(
            health=c.health.health_url,
            query=QUERY,
            fallback_revert=fallback_revert,
            keep_revert=keep_revert,
        )
    )
    return dataclasses.replace(c, pack=path)


def events(inc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in inc["timeline"] if e["kind"] == kind]


def slack_settings(fake: FakeSlack) -> dict[str, Any]:
    return {
        "slack_token": fake.token,
        "slack_api_url": fake.api_url,
        "slack_channel": CHANNEL,
        "notify_retry_base_s": 0.2,
    }


async def thread(fake: FakeSlack, inc: dict[str, Any]) -> list[SlackMessage]:
    """The incident's thread once every event it tells is in it."""
    told = [
        e
        for e in inc["timeline"]
        if e["kind"] in SLACK_REPLY_KINDS
        or (e["kind"].startswith("action.") and e["kind"] != "action.verify_dropped")
    ]

    async def complete() -> list[SlackMessage] | None:
        ts = inc["deliveries"]["slack"]["ts"]
        found = fake.replies(CHANNEL, ts)
        return found if len(found) >= len(told) else None

    replies = await eventually(complete, what=f"{len(told)} replies in the thread")
    assert len(replies) == len(told)
    return replies


async def test_a_verification_due_after_resolve_is_dropped_not_run(
    backend_settings, tmp_path: Path
) -> None:
    clock = ShiftableClock()
    async with (
        FakeSlack() as slack,
        cluster(tmp_path) as base,
        responder(
            with_pack(base),
            backend_settings,
            Overrides(clock=clock),
            notify=True,
            **slack_settings(slack),
        ) as svc,
    ):
        await svc.post_alertmanager(alert("Queue"))
        await settled(svc, "Queue", "action.applied")
        await svc.post_alertmanager(alert("Queue", status="resolved"))
        await settled(svc, "Queue", "action.reverted")
        # the settle time passes after the resolve: the verification falls due
        clock.advance(61)
        inc = await settled(svc, "Queue", "action.verify_dropped")
        [dropped] = events(inc, "action.verify_dropped")
        assert "the incident resolved" in dropped["detail"]
        # not run: without Prometheus it would have said "did not help" and called a human
        assert "action.unhelpful" not in kinds(inc)
        assert inc["actions"][0]["verified"] is None
        assert inc["needs_human"] is None
        # nothing of it in the thread, below the resolve
        texts = [r.text for r in await thread(slack, inc)]
        assert texts[-1].startswith(":leftwards_arrow_with_hook: *Reverted:*")
        assert not [t for t in texts if "verif" in t.lower()]


async def test_the_cooldown_is_kept_by_the_exact_change(backend_settings, tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as base,
        responder(c := with_pack(base), backend_settings) as svc,
    ):
        await svc.post_alertmanager(alert("Queue"))
        await settled(svc, "Queue", "action.applied")
        # another variable of the same Deployment: not held back by RATE_LIMIT_MODE's cooldown
        await svc.post_alertmanager(alert("Fallback"))
        inc = await settled(svc, "Fallback", "action.applied")
        assert c.env()["POSTHOG_FALLBACK"] == "true"
        assert inc["needs_human"] is None
        # the same change again (another incident) within the cooldown: refused, and the
        # runbook's step undone calls a human
        await svc.post_alertmanager(alert("QueueAgain"))
        inc = await settled(svc, "QueueAgain", "action.refused")
        [refused] = events(inc, "action.refused")
        assert "cooldown" in refused["detail"]
        assert "RATE_LIMIT_MODE=queue" in refused["detail"]
        assert "cooldown" in inc["needs_human"]
        assert "incident.needs_human" in kinds(inc)


async def test_an_undecided_incident_calls_a_human(backend_settings, tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as base,
        responder(with_pack(base), backend_settings) as svc,
    ):
        await svc.post_alertmanager(alert("NoBranchForThis"))
        inc = await settled(svc, "NoBranchForThis", "incident.needs_human")
        order = kinds(inc)
        assert order.index("incident.undecided") < order.index("incident.needs_human")
        assert "cannot choose a runbook branch" in inc["needs_human"]


async def test_revert_never_leaves_the_change_and_shows_its_undo(
    backend_settings, tmp_path: Path
) -> None:
    async with (
        FakeSlack() as slack,
        cluster(tmp_path) as base,
        responder(
            c := with_pack(base, keep_revert="revert: never"),
            backend_settings,
            notify=True,
            **slack_settings(slack),
        ) as svc,
    ):
        await svc.post_alertmanager(alert("Keep"))
        inc = await settled(svc, "Keep", "action.applied")
        assert inc["actions"][0]["revert_when"] == "never"
        await svc.post_alertmanager(alert("Keep", status="resolved"))
        inc = await settled(svc, "Keep", "action.revert_due")
        assert c.env()["LOG_LEVEL"] == "debug"  # left for a human
        assert "action.reverted" not in kinds(inc)
        [due] = events(inc, "action.revert_due")
        env = due["data"]["revert_patch"]["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "LOG_LEVEL", "value": "info"}]
        assert "LOG_LEVEL" in due["detail"]
        assert "to undo it send" in due["detail"]
        # and in the thread, for the human
        last = (await thread(slack, inc))[-1].text
        assert last.startswith(":leftwards_arrow_with_hook: *Revert due:*")
        assert '"value":"info"' in last


async def vendor_resolved(svc: Service, incident_id: str, clock: ShiftableClock) -> None:
    """What the vendor watch (issue 18, h2) writes when the vendor's incident is over, and
    the follow-up every written event gets."""
    store = svc.runtime.store
    now: datetime = clock.now()

    def mutate(state: IncidentState) -> IncidentChange | None:
        inc = state.incident
        if inc is None:
            return None
        event = TimelineEvent(
            seq=inc.events_count,
            at=max(now, inc.updated_at),
            kind=EventKind.VENDOR_RESOLVED,
            detail="PostHog's incident is resolved",
            data={"vendor": "PostHog", "url": "https://status.posthog.com"},
        )
        final = inc.model_copy(
            update={"events_count": inc.events_count + 1, "updated_at": event.at}
        )
        return IncidentChange(incident=final, events=(event,))

    await record_results(store, incident_id, [StageResult(mutators=(mutate,))])
    await store.schedule(TimerSignal.follow_up_now(incident_id, "vendor", now))

    async def followed_up() -> bool:
        view = await store.unprocessed(incident_id)
        return view is not None and not view.timeline

    await eventually(followed_up, what="vendor.resolved followed up")
    await svc.idle()


async def test_vendor_resolved_reverts_after_a_quiet_period_with_the_errors_gone(
    backend_settings, tmp_path: Path
) -> None:
    clock = ShiftableClock()
    async with ControlledExporter() as exporter:
        exporter.set_gauge(*GAUGE, 0.3)
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(QUERY, 0.29)
            async with (
                cluster(tmp_path) as base,
                responder(
                    c := with_pack(
                        base, fallback_revert="revert: vendor_resolved\n        revert_quiet_s: 600"
                    ),
                    backend_settings,
                    Overrides(clock=clock),
                    prometheus_url=prom.url,
                ) as svc,
            ):
                await svc.post_alertmanager(alert("Fallback"))
                inc = await settled(svc, "Fallback", "action.applied")
                assert inc["actions"][0]["revert_when"] == "vendor_resolved"
                # our alert resolves while the vendor's incident goes on: the fallback stays
                await svc.post_alertmanager(alert("Fallback", status="resolved"))
                inc = await settled(svc, "Fallback", "incident.resolved")
                assert c.env()["POSTHOG_FALLBACK"] == "true"

                # the vendor's incident is over; after the quiet period the errors are
                # still there: the revert waits another period
                await vendor_resolved(svc, inc["id"], clock)
                clock.advance(601)
                inc = await settled(svc, "Fallback", "action.revert_due")
                [waits] = events(inc, "action.revert_due")
                assert "waits" in waits["detail"]
                assert waits["data"]["check"] == 1
                assert c.env()["POSTHOG_FALLBACK"] == "true"

                # quiet now: the next check undoes it
                exporter.set_gauge(*GAUGE, 0.01)
                await prom.wait_for_samples(f"({QUERY}) < 0.02")
                clock.advance(601)
                inc = await settled(svc, "Fallback", "action.reverted")
                assert "POSTHOG_FALLBACK" not in c.env()
                [reverted] = events(inc, "action.reverted")
                assert "vendor's incident is over" in reverted["detail"]
                # never verified at the settle time: while the vendor is down the query
                # could only have said "did not help"
                assert "action.unhelpful" not in kinds(inc)
                assert inc["actions"][0]["reverted"] is True


async def test_vendor_resolved_waits_a_few_quiet_periods_then_calls_a_human(
    backend_settings, tmp_path: Path
) -> None:
    clock = ShiftableClock()
    async with ControlledExporter() as exporter:
        exporter.set_gauge(*GAUGE, 0.3)
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(QUERY, 0.29)
            async with (
                cluster(tmp_path) as base,
                responder(
                    c := with_pack(
                        base, fallback_revert="revert: vendor_resolved\n        revert_quiet_s: 60"
                    ),
                    backend_settings,
                    Overrides(clock=clock),
                    prometheus_url=prom.url,
                ) as svc,
            ):
                await svc.post_alertmanager(alert("Fallback"))
                inc = await settled(svc, "Fallback", "action.applied")
                # the vendor's incident is over while ours goes on, and the errors stay
                await vendor_resolved(svc, inc["id"], clock)
                for check in (1, 2, 3):
                    clock.advance(61)

                    async def told(n: int = check) -> dict[str, Any] | None:
                        [found] = await svc.incidents()
                        return found if len(events(found, "action.revert_due")) == n else None

                    inc = await eventually(told, what=f"revert check {check}")
                    await svc.idle()
                inc = await (await svc.client.get(f"/v1/incidents/{inc['id']}")).json()
                last = events(inc, "action.revert_due")[-1]
                assert last["data"]["last"] is True
                assert "undo it by hand" in last["detail"]
                assert "still in place" in inc["needs_human"]
                assert c.env()["POSTHOG_FALLBACK"] == "true"
                assert "action.reverted" not in kinds(inc)


def test_revert_and_revert_on_resolve_must_agree(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(
        PACK.format(
            health="http://127.0.0.1:1/health",
            query=QUERY,
            fallback_revert="revert: never\n        revert_on_resolve: true",
            keep_revert="revert: resolve",
        )
    )
    with pytest.raises(RuleLoadError, match="contradicts revert: never"):
        load_pack(pack)


def test_records_stored_before_revert_when_keep_their_policy() -> None:
    base = {
        "step": "s#0:set_env",
        "action": "set_env",
        "target": "production/posthog-integration",
        "verdict": "applied",
        "reason": "applied",
        "at": "2026-01-01T00:00:00Z",
    }
    on_resolve = ActionRecord.model_validate({**base, "revert_on_resolve": True})
    kept = ActionRecord.model_validate(base)
    assert (on_resolve.revert_when, kept.revert_when) == ("resolve", "never")
