"""The planners, pure: real incidents built through the domain transitions, the messages
each sink must get, what the comms status says at each step, and what alert data can (not)
do to a message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from responder.app import SHIPPED_TEMPLATES
from responder.domain.action import ActionRecord, Outcome
from responder.domain.decision import Decision, PlannedAction
from responder.domain.facts import ProbeResult
from responder.domain.incident import (
    Incident,
    IncidentAlert,
    IncidentChange,
    acknowledge,
    apply_alert,
    apply_pagerduty,
    apply_triage,
    classify,
    decide,
    open_incident,
    record_action,
)
from responder.domain.notification import (
    CommsStatus,
    DeliveryState,
    Outbound,
    comms_status,
    page_dedup_key,
)
from responder.domain.plans import SetEnv
from responder.domain.severity import DEFAULT_SEVERITIES, ErrorType, Severity
from responder.domain.signal import AlertSignal, AlertStatus, PagerDutyAgent, PagerDutySignal
from responder.domain.timeline import TimelineEvent
from responder.notify.context import public_context
from responder.notify.planners import (
    PagerDutyPlanner,
    Renderer,
    SlackPlanner,
    StatuspagePlanner,
)
from responder.render.templates import Templates
from responder.rules.loader import load_rules
from responder.settings import default_rules_paths

T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
RULES = load_rules(default_rules_paths())  # the shipped pack: its public words, its levels
RENDERER = Renderer(templates=Templates([SHIPPED_TEMPLATES]), rules=lambda: RULES)
STEP = "our-integration-rate-limit#0:set_env"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def signal(
    *,
    status: str = "firing",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> AlertSignal:
    return AlertSignal(
        fingerprint="fp-1",
        status=AlertStatus(status),
        labels=labels or {"alertname": "PostHogRateLimited", "service": "posthog-integration"},
        annotations=annotations or {"summary": "429 from PostHog"},
        starts_at=T0,
        received_at=T0,
    )


def decision(
    *,
    severity: Severity = Severity.P2,
    branch: str | None = None,
    actions: bool = False,
    notify: tuple[str, ...] = ("slack:#posthog-incidents",),
    page: bool = False,
) -> Decision:
    planned: tuple[PlannedAction, ...] = ()
    if actions:
        spec = SetEnv(
            type="set_env",
            namespace="production",
            deployment="posthog-integration",
            env={"POSTHOG_BATCH": "true"},
        )
        planned = (PlannedAction(rule="our-integration-rate-limit", spec=spec, dry_run=False),)
    return Decision(
        pack="posthog",
        rule="rate-limited",
        branch=branch,
        severity=severity,
        error_type=ErrorType.RATE_LIMIT,
        actions=planned,
        notify=notify,
        page=page,
    )


@dataclass
class Story:
    """An incident and the timeline its transitions wrote, one change at a time."""

    incident: Incident
    alert: IncidentAlert
    events: list[TimelineEvent] = field(default_factory=list)

    def then(self, change: IncidentChange | None) -> list[TimelineEvent]:
        assert change is not None, "the transition changed nothing"
        self.incident = change.incident
        self.events.extend(change.events)
        return list(change.events)


def opened(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **decided: object,
) -> Story:
    change = open_incident(
        incident_id="inc-0001",
        group_key='{alertname="PostHogRateLimited",service="posthog-integration"}',
        signal=signal(labels=labels, annotations=annotations),
        now=T0,
    )
    story = Story(change.incident, change.alerts[0], list(change.events))
    story.then(
        classify(
            story.incident,
            decision(**decided),  # type: ignore[arg-type]
            at(1),
            level=DEFAULT_SEVERITIES[Severity.P2],
        )
    )
    return story


def triage(story: Story, summary: str = "PostHog reports no incident") -> list[TimelineEvent]:
    result = ProbeResult(probe="vendor_status", ok=True, facts={"incident": False}, summary=summary)
    return story.then(apply_triage(story.incident, [result], at(10)))


def decide_set_env(story: Story) -> list[TimelineEvent]:
    chosen = decision(branch="our-integration-rate-limit", actions=True)
    return story.then(decide(story.incident, chosen, at(11), level=DEFAULT_SEVERITIES[Severity.P2]))


def record(verified: bool | None = None) -> ActionRecord:
    return ActionRecord(
        step=STEP,
        action="set_env",
        target="production/posthog-integration",
        verdict=Outcome.APPLIED,
        reason="applied",
        at=at(12),
        verified=verified,
    )


def apply_set_env(story: Story) -> list[TimelineEvent]:
    return story.then(
        record_action(
            story.incident,
            record(),
            at(12),
            kind="action.applied",
            detail="set_env on production/posthog-integration: applied",
        )
    )


def verify_set_env(story: Story) -> list[TimelineEvent]:
    return story.then(
        record_action(
            story.incident,
            record(verified=True),
            at(80),
            kind="action.verified",
            detail="set_env helped: error ratio 0.01 below 0.05",
            replace=True,
        )
    )


def resolve(story: Story) -> list[TimelineEvent]:
    return story.then(apply_alert(story.incident, story.alert, signal(status="resolved"), at(600)))


def link_pagerduty(story: Story, event_type: str = "incident.triggered") -> list[TimelineEvent]:
    pd = PagerDutySignal(
        event_id=f"E-{event_type}",
        event_type=event_type,
        occurred_at=at(20),
        incident_id="PD123",
        incident_key=page_dedup_key(story.incident.id),
        html_url="https://example.pagerduty.com/incidents/PD123",
        agent=PagerDutyAgent(summary="Jane Doe"),
        received_at=at(20),
    )
    return story.then(apply_pagerduty(story.incident, pd, at(20)))


def sent(state: DeliveryState, messages: list[Outbound]) -> DeliveryState:
    """The delivery state once every message went out, as the delivery loop keeps it."""
    for message in messages:
        refs = dict(state.refs)
        if message.marks:
            refs[message.marks] = True
        update: dict[str, object] = {"refs": refs}
        if message.shows:
            update["shows"] = message.shows
        if message.counts_as_update:
            update["updates"] = state.updates + 1
        state = state.model_copy(update=update)
    return state


def status_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("*Status:*"))


# --- comms status and the Slack root ------------------------------------------------------


def test_each_comms_status_change_edits_the_slack_root_once() -> None:
    story = opened()
    slack = SlackPlanner(renderer=RENDERER)
    first = slack.plan(story.incident, story.events, DeliveryState(), at(2))
    [root] = first
    assert (root.step, root.op, root.marks) == ("root", "post", "root")
    assert comms_status(story.incident) is CommsStatus.INVESTIGATING
    assert status_line(root.text) == "*Status:* INVESTIGATING"
    assert root.text.startswith("🟠 *P2 INCIDENT: PostHogRateLimited: 429 from PostHog*")
    state = sent(DeliveryState(), first)
    # a redelivery of the same events, once they are sent, plans nothing
    assert slack.plan(story.incident, [], state, at(2)) == []

    seen: list[str] = []
    steps = [
        (triage, CommsStatus.INVESTIGATING),  # findings, no mitigation yet
        (decide_set_env, CommsStatus.INVESTIGATING),  # planned is not applied
        (apply_set_env, CommsStatus.MITIGATING),
        (verify_set_env, CommsStatus.MONITORING),
        (resolve, CommsStatus.RESOLVED),
    ]
    previous = CommsStatus.INVESTIGATING
    for transition, expected in steps:
        events = transition(story)
        assert comms_status(story.incident) is expected, transition.__name__
        planned = slack.plan(story.incident, events, state, at(700))
        edits = [m for m in planned if m.op == "update"]
        if expected is previous:
            assert edits == [], transition.__name__
        else:
            [edit] = edits
            assert edit.step == f"update{state.updates + 1}"
            assert edit.counts_as_update  # the sink's count of edits moves on with it
            assert status_line(edit.text) == f"*Status:* {expected.value}"
            assert edit.shows["status"] == expected.value
            assert edit.blocks[0]["text"]["text"] == edit.text  # type: ignore[index]
            seen.append(expected.value)
        # the thread tells the events worth telling, each under its own step
        assert [m.step for m in planned if m.op == "reply"] == [
            f"e{e.seq}" for e in events if slack.tells(e)
        ]
        state = sent(state, planned)
        previous = expected
    assert seen == ["MITIGATING", "MONITORING", "RESOLVED"]
    assert state.updates == 3
    final = slack.root(story.incident, at(700))[0]
    assert final.startswith("✅")
    assert "*Current action:* None: resolved" in final


def test_a_branch_with_nothing_to_do_is_monitoring() -> None:
    story = opened()
    triage(story)
    chosen = decision(branch="vendor-incident")
    story.then(decide(story.incident, chosen, at(11), level=DEFAULT_SEVERITIES[Severity.P2]))
    assert comms_status(story.incident) is CommsStatus.MONITORING


def test_a_severity_change_edits_the_root_and_an_ack_names_the_commander() -> None:
    story = opened()
    slack = SlackPlanner(renderer=RENDERER)
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), T0))
    worse = decision(severity=Severity.P1)
    events = story.then(
        classify(story.incident, worse, at(30), level=DEFAULT_SEVERITIES[Severity.P1])
    )
    assert [e.kind for e in events] == ["incident.escalated"]
    planned = slack.plan(story.incident, events, state, at(30))
    assert [m.op for m in planned] == ["reply", "update"]
    edit = planned[-1]
    assert edit.text.startswith("🔴 *P1 INCIDENT:")
    assert status_line(edit.text) == "*Status:* INVESTIGATING"  # same status, new severity
    assert edit.shows["severity"] == "P1"
    state = sent(state, planned)

    events = story.then(
        acknowledge(story.incident, by="Jane Doe", at=at(40), now=at(40), via="in Slack")
    )
    planned = slack.plan(story.incident, events, state, at(40))
    assert [m.op for m in planned] == ["reply", "update"]
    assert "*Incident commander:* Jane Doe" in planned[-1].text
    assert planned[-1].step == "update2"


# --- channels and webhook mode ------------------------------------------------------------


def root_channel(planner: SlackPlanner, story: Story) -> object:
    [root] = planner.plan(story.incident, story.events, DeliveryState(), at(2))
    return root.fields["channel"]


def test_the_channel_comes_from_the_severity_map_then_the_rule_then_the_default() -> None:
    ruled = opened()  # the rule says slack:#posthog-incidents, the incident is P2
    unruled = opened(notify=())
    by_severity = SlackPlanner(renderer=RENDERER, channels={"P2": "#sev2", "P1": "#sev1"})
    other_severity = SlackPlanner(renderer=RENDERER, channels={"P1": "#sev1"})
    plain = SlackPlanner(renderer=RENDERER, default_channel="#fallback")
    assert root_channel(by_severity, ruled) == "#sev2"
    assert root_channel(other_severity, ruled) == "#posthog-incidents"
    assert root_channel(plain, ruled) == "#posthog-incidents"
    assert root_channel(plain, unruled) == "#fallback"
    assert root_channel(by_severity, unruled) == "#sev2"


def test_webhook_mode_posts_everything_without_threads_or_edits() -> None:
    story = opened()
    webhook = SlackPlanner(renderer=RENDERER, threads=False, edits=False)
    everything = webhook.plan(story.incident, story.events, DeliveryState(), at(2))
    state = sent(DeliveryState(), everything)
    for transition in (triage, decide_set_env, apply_set_env, verify_set_env, resolve):
        events = transition(story)
        planned = webhook.plan(story.incident, events, state, at(700))
        everything += planned
        state = sent(state, planned)
    assert any(m.step.startswith("e") for m in everything)  # the events were told
    ops = {m.op for m in everything}
    assert ops == {"post"}
    # the status changes still reach the channel, as messages of their own
    statuses = [
        status_line(m.text).split()[-1] for m in everything if m.step.startswith(("root", "upd"))
    ]
    assert statuses == ["INVESTIGATING", "MITIGATING", "MONITORING", "RESOLVED"]
    assert all(m.fields["channel"] == "#posthog-incidents" for m in everything)


# --- alert data stays inert -----------------------------------------------------------------

EVIL_LABEL = "<!channel> <https://evil.example|click> & {{ 7*7 }} {% raw %}"
EVIL_SUMMARY = "<!here> & {{ 7*7 }}"


def assert_inert(text: str) -> None:
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "<https://evil" not in text
    assert "&lt;!channel&gt;" in text
    assert "&lt;https://evil.example|click&gt;" in text
    assert "{{ 7*7 }}" in text  # printed as data, never evaluated
    assert "49" not in text
    assert "{% raw %}" in text
    # every & left is one of the escapes
    assert text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0


def test_label_values_render_inert_in_slack_text_and_blocks() -> None:
    story = opened(
        labels={"alertname": EVIL_LABEL, "service": "posthog-integration"},
        annotations={"summary": EVIL_SUMMARY, "impact": EVIL_LABEL},
    )
    slack = SlackPlanner(renderer=RENDERER)
    [root] = slack.plan(story.incident, story.events, DeliveryState(), at(2))
    assert_inert(root.text)
    assert "&lt;!here&gt;" in root.text
    section = root.blocks[0]
    assert section["type"] == "section"
    assert_inert(section["text"]["text"])  # type: ignore[index]
    assert "<!" not in json.dumps(root.blocks)
    state = sent(DeliveryState(), [root])
    # a thread reply quoting alert data (a probe's summary) is escaped too
    events = triage(story, summary=EVIL_LABEL)
    [reply] = slack.plan(story.incident, events, state, at(10))
    assert reply.op == "reply"
    assert_inert(reply.text)
    assert_inert(reply.blocks[0]["text"]["text"])  # type: ignore[index]


def test_the_pagerduty_link_in_the_root_is_only_an_https_url_of_the_incident() -> None:
    story = opened()
    link_pagerduty(story)
    slack = SlackPlanner(renderer=RENDERER)
    [root] = [m for m in slack.plan(story.incident, [], DeliveryState(), at(30))]
    context = json.dumps(root.blocks[1])
    assert "<https://example.pagerduty.com/incidents/PD123|PagerDuty>" in context
    bad = story.incident.model_copy(update={"pagerduty_url": "https://x.example|<!channel>"})
    [root] = slack.plan(bad, [], DeliveryState(), at(30))
    assert "<!channel>" not in json.dumps(root.blocks)
    assert "PagerDuty>" not in json.dumps(root.blocks)


# --- the status page says only public words -------------------------------------------------

PRIVATE = {
    "alertname": "PostHogRateLimitedInternalName",
    "service": "posthog-integration-internal",
    "instance": "10.42.7.13:9090",
    "namespace": "production-secret-ns",
    "pod": "posthog-integration-7d9f8-abcde",
}


def test_the_status_page_text_holds_no_label_annotation_action_or_fact() -> None:
    story = opened(
        labels=PRIVATE,
        annotations={"summary": "token sk-live-123 rejected", "runbook": "https://wiki.int/rb"},
    )
    triage(story, summary="vendor says db-primary-3 is down")
    decide_set_env(story)
    apply_set_env(story)
    planner = StatuspagePlanner(renderer=RENDERER, components=("cmp-1",))
    [created] = planner.plan(story.incident, story.events, DeliveryState(), at(30))
    assert (created.step, created.op) == ("create", "create")
    public = created.title + "\n" + created.text + "\n" + json.dumps(created.fields)
    private = [
        *PRIVATE.values(),
        "sk-live-123",
        "wiki.int",
        "db-primary-3",
        "set_env",
        "production/posthog-integration",
        "POSTHOG_BATCH",
        "rate-limited",
        "our-integration-rate-limit",
        story.incident.id,
        "inc-",
    ]
    for secret in private:
        assert secret not in public, secret
    # the pack's public words, the status, nothing else
    assert created.title == "PostHog integration issue"
    assert "We're experiencing issues with our PostHog integration." in created.text
    assert "Some users may experience delays in analytics data." in created.text
    assert "We have identified the issue and are applying a fix." in created.text
    assert created.fields == {
        "status": "identified",
        "components": {"cmp-1": "partial_outage"},
        "impact_override": "major",
    }
    context = public_context(story.incident, RULES.public(story.incident.pack), now=at(30))
    assert set(context) == {"service", "impact", "status", "started_at", "updated_at"}


def test_the_status_page_follows_status_and_resolves_with_components_operational() -> None:
    story = opened(notify=())
    planner = StatuspagePlanner(renderer=RENDERER, components=("cmp-1",))
    state = sent(DeliveryState(), planner.plan(story.incident, story.events, DeliveryState(), T0))
    assert state.refs == {"create": True}
    state = state.model_copy(update={"refs": {"create": True, "id": "sp-1"}})
    assert planner.plan(story.incident, [], state, at(5)) == []  # nothing changed
    triage(story)
    decide_set_env(story)
    apply_set_env(story)
    [update] = planner.plan(story.incident, [], state, at(20))
    assert (update.step, update.fields["status"]) == ("update1", "identified")
    assert update.counts_as_update
    assert not update.leaves_shared
    state = sent(state, [update])
    resolve(story)
    [resolved] = planner.plan(story.incident, [], state, at(700))
    assert resolved.step == "resolve"
    assert not resolved.counts_as_update  # the last message: no update number of its own
    assert resolved.leaves_shared  # the incident leaves the page's shared incident with it
    assert resolved.fields["status"] == "resolved"
    assert resolved.fields["components"] == {"cmp-1": "operational"}
    assert "has been resolved" in resolved.text


def test_only_configured_severities_or_a_rule_naming_statuspage_get_a_public_incident() -> None:
    planner = StatuspagePlanner(renderer=RENDERER, severities=frozenset({"P1"}))
    p2 = opened(notify=())
    assert planner.plan(p2.incident, p2.events, DeliveryState(), T0) == []
    named = opened(notify=("statuspage",))
    assert [m.op for m in planner.plan(named.incident, named.events, DeliveryState(), T0)] == [
        "create"
    ]


# --- PagerDuty ------------------------------------------------------------------------------


def test_a_page_is_triggered_once_with_a_stable_dedup_key_and_resolved_with_it() -> None:
    story = opened(page=True, labels={"alertname": "PostHogDown", "service": "posthog-int"})
    pd = PagerDutyPlanner(renderer=RENDERER)
    [trigger] = pd.plan(story.incident, story.events, DeliveryState(), at(2))
    key = f"responder-{story.incident.id}"
    assert (trigger.op, trigger.step, trigger.marks) == ("trigger", "trigger", "triggered")
    assert trigger.fields["dedup_key"] == key == page_dedup_key(story.incident.id)
    assert trigger.fields["severity"] == "error"  # P2
    assert trigger.fields["component"] == "posthog-int"
    assert trigger.text.startswith("P2 PostHogDown: 429 from PostHog")
    state = sent(DeliveryState(), [trigger])
    events = triage(story)
    assert pd.plan(story.incident, events, state, at(10)) == []  # not again
    events = resolve(story)
    [resolved] = pd.plan(story.incident, events, state, at(600))
    assert (resolved.op, resolved.fields["dedup_key"]) == ("resolve", key)
    state = sent(state, [resolved])
    assert pd.plan(story.incident, [], state, at(601)) == []


def test_no_page_when_the_alert_already_pages_or_the_incident_is_linked() -> None:
    pd = PagerDutyPlanner(renderer=RENDERER)
    paged = opened(page=True, labels={"alertname": "A", "service": "s", "paged": "True"})
    assert pd.plan(paged.incident, paged.events, DeliveryState(), at(2)) == []
    custom = PagerDutyPlanner(renderer=RENDERER, paged_label="oncall_paged")
    assert pd.plan(paged.incident, [], DeliveryState(), at(2)) == []
    assert [m.op for m in custom.plan(paged.incident, [], DeliveryState(), at(2))] == ["trigger"]
    linked = opened(page=True)
    link_pagerduty(linked)
    assert linked.incident.pagerduty_incident_id == "PD123"
    assert [m for m in pd.plan(linked.incident, [], DeliveryState(), at(30))] == []
    not_asked = opened(page=False)
    assert pd.plan(not_asked.incident, not_asked.events, DeliveryState(), at(2)) == []
    no_routing_key = PagerDutyPlanner(renderer=RENDERER, events=False)
    asked = opened(page=True)
    assert no_routing_key.plan(asked.incident, asked.events, DeliveryState(), at(2)) == []
    # a resolve follows only a trigger responder sent
    resolve(asked)
    assert pd.plan(asked.incident, asked.events, DeliveryState(), at(700)) == []


def test_notes_on_the_linked_incident_for_triage_actions_and_the_handoff() -> None:
    story = opened()
    pd = PagerDutyPlanner(renderer=RENDERER)
    state = DeliveryState()
    # not linked yet: nothing to write on
    events = triage(story)
    assert pd.plan(story.incident, events, state, at(10)) == []
    link = link_pagerduty(story)
    [summary] = pd.plan(story.incident, link, state, at(20))
    assert summary.op == "note"
    assert summary.fields == {"incident_id": "PD123"}
    assert summary.text.startswith("[responder] Summary so far: P2 ")
    acted = decide_set_env(story) + apply_set_env(story)
    notes = pd.plan(story.incident, acted, state, at(30))
    assert [(m.op, m.step) for m in notes] == [
        ("note", f"e{e.seq}") for e in acted if e.kind.startswith("action.")
    ]
    assert notes[0].text == "[responder] set_env on production/posthog-integration: applied"
    ack = link_pagerduty(story, "incident.acknowledged")
    [handoff] = pd.plan(story.incident, ack, state, at(40))
    assert handoff.text.startswith("[responder] Handoff to Jane Doe: P2 ")
    assert "set_env on production/posthog-integration: applied" in handoff.text
    assert "The automation stops acting now and only reports." in handoff.text
    # the triage note, once linked
    triaged = opened()
    early = link_pagerduty(triaged)
    assert pd.plan(triaged.incident, early, state, at(45)) == []  # no summary before triage
    events = triage(triaged)
    [note] = pd.plan(triaged.incident, events, state, at(50))
    assert note.text.startswith("[responder] Triage findings for P2 ")
    assert "- PostHog reports no incident" in note.text
    # without an API key: no notes at all
    assert (
        PagerDutyPlanner(renderer=RENDERER, notes=False).plan(
            story.incident, link + acted + ack, state, at(60)
        )
        == []
    )


def test_an_ack_here_acknowledges_the_linked_pagerduty_incident_before_the_handoff() -> None:
    """Alertmanager paged PagerDuty itself; a person acknowledges in Slack: the linked
    incident is acknowledged through the REST API, once, then the handoff note."""
    story = opened()
    pd = PagerDutyPlanner(renderer=RENDERER)
    state = DeliveryState()
    triage(story)
    link_pagerduty(story)
    ack = story.then(
        acknowledge(
            story.incident,
            by="Jane Doe",
            at=at(40),
            now=at(40),
            via="in Slack",
            commander=True,
            source="slack",
        )
    )
    [event] = ack
    planned = pd.plan(story.incident, ack, state, at(40))
    assert [(m.op, m.step) for m in planned] == [
        ("acknowledge_incident", f"ack{event.seq}.incident"),
        ("note", f"e{event.seq}"),
    ]
    assert planned[0].fields == {"incident_id": "PD123"}
    assert planned[1].text.startswith("[responder] Handoff to Jane Doe: P2 ")
    # the same events planned again (a redelivery): the same step, sent once by its key
    assert pd.plan(story.incident, ack, state, at(40)) == planned
    # the webhook PagerDuty sends back names its REST user, who acknowledged it there:
    # nothing changes, and nothing more is planned
    echo = PagerDutySignal(
        event_id="E-echo",
        event_type="incident.acknowledged",
        occurred_at=at(42),
        incident_id="PD123",
        html_url="https://example.pagerduty.com/incidents/PD123",
        agent=PagerDutyAgent(summary="responder-bot", type="user_reference"),
        received_at=at(42),
    )
    assert apply_pagerduty(story.incident, echo, at(42)) is None
    assert story.incident.commander == "Jane Doe"
    # an ack made in PagerDuty is PagerDuty's own: the handoff note only
    there = opened()
    triage(there)
    link_pagerduty(there)
    ack_there = link_pagerduty(there, "incident.acknowledged")
    assert "incident.acknowledged" in [e.kind for e in ack_there]
    assert [m.op for m in pd.plan(there.incident, ack_there, state, at(40))] == ["note"]
    # without an API key: nothing to acknowledge it with
    assert [
        m.op
        for m in PagerDutyPlanner(renderer=RENDERER, notes=False).plan(
            story.incident, ack, state, at(40)
        )
    ] == []
