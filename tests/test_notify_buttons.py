"""What people see and press in Slack, planned (pure): the root's buttons follow the
incident's state, an approval request shows the exact change with Approve and Reject and
is edited once decided, and without interactivity (an incoming webhook, no signing
secret) nothing has a button and the messages say why and how to answer instead. Alert
and rule text in any of it (a step, a target, a change, a person's name) stays inert."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from responder.domain.incident import (
    Approval,
    Incident,
    acknowledge,
    decide_approval,
    expire_approval,
    pause_automation,
    request_approval,
    resume_automation,
)
from responder.domain.notification import DeliveryState, Outbound
from responder.domain.timeline import TimelineEvent
from responder.notify.outbound_text import OutboundText
from responder.notify.planners import (
    BUTTON_VALUE_MAX,
    PATCH_MAX,
    PagerDutyPlanner,
    SlackPlanner,
    approval_ref,
    console_planner,
)
from tests.test_notify_planners import (
    EVIL_LABEL,
    RENDERER,
    STEP,
    Story,
    assert_inert,
    at,
    link_pagerduty,
    opened,
    resolve,
    sent,
)

PUBLIC_URL = "https://responder.example"
PAGE = f"<{PUBLIC_URL}/incidents/inc-0001|Incident page>"
NO_SECRET = "interactivity is not configured (no RESPONDER_SLACK_SIGNING_SECRETS)"
NO_TOKEN = "an incoming webhook cannot take button presses (no RESPONDER_SLACK_TOKEN)"
PATCH = {
    "spec": {
        "template": {
            "spec": {"containers": [{"name": "app", "env": [{"name": "BATCH", "value": "1"}]}]}
        }
    }
}


def interactive() -> SlackPlanner:
    return SlackPlanner(renderer=RENDERER, buttons=True, public_url=PUBLIC_URL)


def without_secret() -> SlackPlanner:
    return SlackPlanner(renderer=RENDERER, no_buttons=NO_SECRET, public_url=PUBLIC_URL)


def webhook() -> SlackPlanner:
    return SlackPlanner(
        renderer=RENDERER, threads=False, edits=False, no_buttons=NO_TOKEN, public_url=PUBLIC_URL
    )


def blocks_of(message: Outbound, kind: str) -> list[dict[str, Any]]:
    return [b for b in message.blocks if b["type"] == kind]


def buttons(message: Outbound) -> list[str]:
    """The action ids of the message's buttons, in order."""
    return [
        str(e["action_id"])  # type: ignore[index,call-overload]
        for block in blocks_of(message, "actions")
        for e in block["elements"]
    ]


def button(message: Outbound, action_id: str) -> dict[str, Any]:
    [found] = [
        e
        for block in blocks_of(message, "actions")
        for e in block["elements"]
        if e["action_id"] == action_id
    ]
    return found


def context_text(message: Outbound) -> str:
    return " ".join(e["text"] for b in blocks_of(message, "context") for e in b["elements"])


def approval(step: str = STEP, target: str = "production/posthog-integration") -> Approval:
    return Approval(
        step=step,
        action="set_env",
        target=target,
        change="set_env BATCH=1",
        requested_at=at(20),
        expires_at=at(20) + timedelta(minutes=15),
    )


def ask(story: Story, wanted: Approval | None = None, **data: JsonValue) -> list[TimelineEvent]:
    data.setdefault("patch", PATCH)
    return story.then(request_approval(story.incident, wanted or approval(), at(20), **data))


def after(story: Story, events: list[TimelineEvent]) -> tuple[Incident, list[TimelineEvent]]:
    """The incident once ``events`` happened, and them (a transition is applied first)."""
    return story.incident, events


def delivered(state: DeliveryState, messages: list[Outbound]) -> DeliveryState:
    """``sent``, and what the Slack sink answers for a reply it keeps (its ts and key)."""
    state = sent(state, messages)
    refs = dict(state.refs)
    for n, message in enumerate(messages):
        keeps = message.fields.get("keeps")
        if isinstance(keeps, str):
            refs[keeps] = {"ts": f"1700000000.{n:06d}", "key": f"inc-0001:notify:slack:{n}"}
    return state.model_copy(update={"refs": refs})


# --- the root -----------------------------------------------------------------------------


def test_the_root_shows_the_buttons_its_state_calls_for_and_none_once_resolved() -> None:
    story = opened()
    slack = interactive()
    [root] = slack.plan(story.incident, story.events, DeliveryState(), at(2))
    assert buttons(root) == ["incident.acknowledge", "incident.pause"]
    assert button(root, "incident.acknowledge")["value"] == '{"incident":"inc-0001"}'
    pause = button(root, "incident.pause")
    assert pause["value"] == '{"incident":"inc-0001"}'
    assert pause["confirm"]["title"] == {"type": "plain_text", "text": "Pause automation?"}
    assert "inc-0001" in pause["confirm"]["text"]["text"]
    assert {"confirm", "deny"} <= set(pause["confirm"])
    # the buttons sit between the root's text and its context line
    assert [b["type"] for b in root.blocks] == ["section", "actions", "context"]
    assert PAGE in context_text(root)
    state = sent(DeliveryState(), [root])

    def edit(events: list[TimelineEvent]) -> Outbound:
        nonlocal state
        planned = slack.plan(story.incident, events, state, at(60))
        state = sent(state, planned)
        [update] = [m for m in planned if m.op == "update"]
        return update

    paused = edit(story.then(pause_automation(story.incident, by="Jo", now=at(30), via="slack")))
    assert buttons(paused) == ["incident.acknowledge", "incident.resume"]
    assert "*Automation:* paused by Jo at 03:00 UTC" in paused.text
    assert "confirm" not in button(paused, "incident.resume")
    resumed = edit(story.then(resume_automation(story.incident, by="Jo", now=at(40), via="slack")))
    assert buttons(resumed) == ["incident.acknowledge", "incident.pause"]
    assert "*Automation:*" not in resumed.text
    acked = edit(
        story.then(
            acknowledge(
                story.incident, by="Jane Doe", at=at(50), now=at(50), via="in Slack", commander=True
            )
        )
    )
    assert buttons(acked) == ["incident.pause"]
    assert "*Incident commander:* Jane Doe" in acked.text
    final = edit(resolve(story))
    assert buttons(final) == []
    assert "No buttons" not in context_text(final)


def test_without_a_signing_secret_or_a_bot_token_no_button_and_the_root_says_why() -> None:
    for planner, why in ((without_secret(), NO_SECRET), (webhook(), NO_TOKEN)):
        story = opened()
        [root] = planner.plan(story.incident, story.events, DeliveryState(), at(2))
        assert buttons(root) == []
        assert f"No buttons: {why}" in context_text(root)
        assert PAGE in context_text(root)
        # the console says nothing of buttons: it never had any
        lines = console_planner(RENDERER).plan(story.incident, story.events, DeliveryState(), at(2))
        assert all("button" not in line.text.lower() for line in lines)
        assert not [b for line in lines for b in line.blocks if b["type"] == "actions"]


# --- approval requests --------------------------------------------------------------------


def test_an_approval_request_shows_the_exact_change_and_approve_and_reject() -> None:
    story = opened()
    slack = interactive()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    [request] = slack.plan(*after(story, ask(story)), state, at(20))
    assert request.op == "reply"
    assert request.text.startswith(
        ":raised_hand: *Approval needed:* set_env on production/posthog-integration, "
        "expires 03:15 UTC"
    )
    assert "*Change:* set_env BATCH=1" in request.text
    [code] = blocks_of(request, "rich_text")
    [pre] = code["elements"]
    assert pre["type"] == "rich_text_preformatted"
    assert json.loads(pre["elements"][0]["text"]) == PATCH  # the patch as Kubernetes gets it
    assert buttons(request) == ["action.approve", "action.reject"]
    approve, reject = button(request, "action.approve"), button(request, "action.reject")
    assert approve["style"] == "primary"
    assert reject["style"] == "danger"
    assert json.loads(approve["value"]) == {"incident": "inc-0001", "step": STEP}
    assert approve["value"] == reject["value"]
    assert "production/posthog-integration" in approve["confirm"]["text"]["text"]
    assert "confirm" not in reject
    # kept, to be edited once decided
    assert request.fields["keeps"] == approval_ref(STEP)


def test_an_approval_request_loses_its_buttons_once_decided_and_the_thread_says_who() -> None:
    for approve, outcome in ((True, "*Approved* by Jane Doe in Slack"), (False, "*Rejected*")):
        story = opened()
        slack = interactive()
        state = sent(
            DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2))
        )
        state = delivered(state, slack.plan(*after(story, ask(story)), state, at(20)))
        events = story.then(
            decide_approval(
                story.incident, STEP, approve=approve, by="Jane Doe", now=at(90), via="slack"
            )
        )
        reply, settle = slack.plan(story.incident, events, state, at(90))
        said = "*Approved* by Jane Doe in Slack" if approve else "*Rejected* by Jane Doe in Slack"
        assert said in reply.text
        assert reply.op == "reply"
        assert "keeps" not in reply.fields
        assert (settle.op, settle.step) == ("update", f"settle{events[0].seq}.0")
        assert settle.fields["edits"] == approval_ref(STEP)
        # not an edit of the root: its count and what it shows are left alone
        assert not settle.shows
        assert not settle.counts_as_update
        assert buttons(settle) == []
        assert settle.text.startswith(":raised_hand: *Approval needed:* set_env on")
        assert outcome in context_text(settle)
        assert "at 03:01 UTC" in context_text(settle)
        # told once: a redelivery of the same events, once sent, plans nothing new
        state = sent(state, [reply, settle])
        assert slack.plan(story.incident, [], state, at(91)) == []


def test_an_expired_request_says_nobody_approved_and_the_on_call_is_paged() -> None:
    story = opened()
    slack = interactive()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    state = delivered(state, slack.plan(*after(story, ask(story)), state, at(20)))
    events = story.then(expire_approval(story.incident, STEP, at(20) + timedelta(minutes=16)))
    reply, settle = slack.plan(story.incident, events, state, at(1000))
    assert reply.text.startswith(":hourglass: *Nobody approved* set_env on production/")
    assert "by 03:15 UTC" in reply.text
    assert "paging the on-call" in reply.text
    assert "*Nobody approved* by 03:15 UTC" in context_text(settle)
    assert buttons(settle) == []


def test_a_request_left_open_when_the_incident_resolves_loses_its_buttons() -> None:
    story = opened()
    slack = interactive()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    state = delivered(state, slack.plan(*after(story, ask(story)), state, at(20)))
    planned = slack.plan(*after(story, resolve(story)), state, at(600))
    [settle] = [m for m in planned if m.fields.get("edits")]
    assert "the incident resolved" in context_text(settle)
    assert buttons(settle) == []


def test_a_request_decided_before_its_message_went_out_shows_the_outcome_at_once() -> None:
    """A delivery that waited (Slack down): the request and its answer are planned together;
    the request shows no button to press, and nothing is kept for an edit."""
    story = opened()
    slack = interactive()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    events = ask(story) + story.then(
        decide_approval(story.incident, STEP, approve=True, by="Jo", now=at(30), via="api")
    )
    request, answer = slack.plan(story.incident, events, state, at(30))
    assert buttons(request) == []
    assert "keeps" not in request.fields
    assert "*Approved* by Jo through the API" in context_text(request)
    assert "*Approved* by Jo through the API" in answer.text


def test_without_buttons_the_request_says_why_and_how_to_answer() -> None:
    for planner, why, op in ((without_secret(), NO_SECRET, "reply"), (webhook(), NO_TOKEN, "post")):
        story = opened()
        state = sent(
            DeliveryState(), planner.plan(story.incident, story.events, DeliveryState(), at(2))
        )
        [request] = planner.plan(*after(story, ask(story)), state, at(20))
        assert request.op == op
        assert buttons(request) == []
        said = context_text(request)
        assert f"No buttons: {why}." in said
        assert f"`responder incidents approve inc-0001 '{STEP}'` (or `reject`)" in said
        assert (
            "`POST /v1/incidents/inc-0001/approvals/our-integration-rate-limit%230%3Aset_env"
            "/approve` (or `/reject`)"
        ) in said
        assert PAGE in said
        assert blocks_of(request, "rich_text")  # the change is shown all the same
    # a webhook cannot edit: the answer is a message of its own, nothing is kept
    assert "keeps" not in request.fields
    events = story.then(
        decide_approval(story.incident, STEP, approve=True, by="Jo", now=at(30), via="api")
    )
    [answer] = webhook().plan(story.incident, events, sent(state, [request]), at(30))
    assert answer.op == "post"


def test_a_huge_patch_is_cut_visibly() -> None:
    story = opened()
    slack = interactive()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    huge = {"env": [{"name": f"VAR_{n}", "value": "x" * 40} for n in range(200)]}
    [request] = slack.plan(*after(story, ask(story, patch=huge)), state, at(20))
    [code] = blocks_of(request, "rich_text")
    text = code["elements"][0]["elements"][0]["text"]
    assert PATCH_MAX < len(text) < PATCH_MAX + 100
    assert text.splitlines()[-1].startswith("… (")
    assert "the whole patch is on the timeline" in text


def test_a_step_name_too_long_for_a_button_leaves_the_buttons_off_and_says_so() -> None:
    step = "rule#0:" + "s" * BUTTON_VALUE_MAX
    story = opened()
    slack = interactive()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    [request] = slack.plan(*after(story, ask(story, approval(step=step))), state, at(20))
    assert buttons(request) == []
    said = context_text(request)
    assert "the Approve and Reject buttons are left off" in said
    assert f"too long for a Slack button ({len(step)} characters)" in said
    assert "responder incidents approve inc-0001" in said


# --- alert and rule text stays inert --------------------------------------------------------

EVIL_STEP = "rule#0:set_env <!channel>\n*Status:* RESOLVED \u202e` ``` & <https://evil.example|x>"
EVIL_NAME = "<!here> Jane <@U123> & <https://evil.example|click>"


def test_steps_targets_changes_and_names_cannot_forge_markup_or_change_a_button() -> None:
    story = opened()
    slack = interactive()
    webhooked = without_secret()
    state = sent(DeliveryState(), slack.plan(story.incident, story.events, DeliveryState(), at(2)))
    wanted = approval(step=EVIL_STEP, target=EVIL_LABEL).model_copy(update={"change": EVIL_LABEL})
    events = ask(story, wanted, patch={"value": "``` <!channel> ```"})
    [request] = slack.plan(story.incident, events, state, at(20))
    [told] = webhooked.plan(story.incident, events, state, at(20))
    state = delivered(state, [request])
    decided = story.then(
        decide_approval(
            story.incident, EVIL_STEP, approve=True, by=EVIL_NAME, now=at(30), via="slack"
        )
    )
    answer, settle = slack.plan(story.incident, decided, state, at(30))
    paused = story.then(pause_automation(story.incident, by=EVIL_NAME, now=at(40), via="slack"))
    planned = slack.plan(story.incident, paused, sent(state, [answer, settle]), at(40))
    outbound = OutboundText(redact=lambda text: text)
    for message in (request, told, answer, settle, *planned):
        # the patch's block is rich text, which Slack reads as plain text: checked below
        marked = [b for b in message.blocks if b["type"] != "rich_text"]
        everything = json.dumps(marked) + message.text
        # no mention, no link, no line of its own but ours
        for forged in ("<!channel>", "<!here>", "<@U123>", "<https://evil", "\n*Status:* RESOLVED"):
            assert forged not in everything, (message.step, forged)
        # what leaves for Slack is cleaned (CleanSink); the button still names the step
        cleaned = outbound.message(message)
        for block in blocks_of(cleaned, "actions"):
            for element in block["elements"]:
                pressed = json.loads(element["value"])
                assert pressed in (
                    {"incident": "inc-0001", "step": EVIL_STEP},
                    {"incident": "inc-0001"},
                )
                assert element["value"] == button(message, element["action_id"])["value"]
    assert_inert(request.text)
    assert "&lt;!channel&gt;" in context_text(told)  # the step, escaped, in the how-to
    # the patch is shown as it is, in a block Slack reads as plain text
    code = blocks_of(request, "rich_text")[0]["elements"][0]["elements"][0]
    assert code["type"] == "text"
    assert "``` <!channel> ```" in code["text"]
    assert buttons(request) == ["action.approve", "action.reject"]
    confirm = button(request, "action.approve")["confirm"]
    assert all(part["type"] == "plain_text" for part in confirm.values())
    assert "&lt;!here&gt; Jane &lt;@U123&gt;" in answer.text


# --- the console and PagerDuty --------------------------------------------------------------


def test_the_console_line_of_a_request_says_how_to_answer() -> None:
    story = opened()
    console = console_planner(RENDERER)
    lines = console.plan(*after(story, ask(story)), DeliveryState(), at(20))
    [request] = [m for m in lines if "approval_requested" in m.text]
    assert f"(answer: responder incidents approve inc-0001 '{STEP}', or reject)" in request.text
    events = story.then(pause_automation(story.incident, by="Jo", now=at(30), via="slack"))
    [line] = [
        m for m in console.plan(story.incident, events, DeliveryState(), at(30)) if m.step != "root"
    ]
    assert "automation.paused" in line.text
    assert "by Jo" in line.text


def test_pagerduty_notes_tell_requests_answers_expiries_and_pauses_with_who() -> None:
    story = opened()
    link_pagerduty(story)
    pagerduty = PagerDutyPlanner(renderer=RENDERER, events=False)
    events = ask(story)
    events += story.then(
        decide_approval(story.incident, STEP, approve=False, by="Jane Doe", now=at(30), via="slack")
    )
    events += story.then(pause_automation(story.incident, by="Jo", now=at(40), via="slack"))
    events += story.then(resume_automation(story.incident, by="Jo", now=at(50), via="slack"))
    notes = pagerduty.plan(story.incident, events, DeliveryState(), at(50))
    assert [n.op for n in notes] == ["note"] * 4
    request, rejected, paused, resumed = (n.text for n in notes)
    assert request.startswith("[responder] Approval needed for set_env on production/")
    assert "Change: set_env BATCH=1" in request
    assert f"responder incidents approve inc-0001 {STEP} (or reject)" in request
    assert "rejected by Jane Doe in Slack" in rejected
    assert "paused for this incident by Jo" in paused
    assert "resumed for this incident by Jo" in resumed
