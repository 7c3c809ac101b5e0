"""What ``approval:`` may say in a pack, how the guards read a person's pause and a
person's approval, and the page an expired approval sends (pure: no service)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from responder.domain.incident import Approval, acknowledge, expire_approval, request_approval
from responder.domain.notification import DeliveryState
from responder.domain.plans import PageHuman, RestartIfSecretRotated, SetEnv
from responder.mitigate.guards import check
from responder.notify.planners import PagerDutyPlanner
from responder.rules.loader import RuleLoadError, load_rules
from tests.test_mitigation_guards import NOW, guard_input
from tests.test_notify_planners import RENDERER, at, decide_set_env, opened, triage

TARGET = {"namespace": "production", "deployment": "posthog-integration"}


def test_every_cluster_action_takes_approval_none_by_default() -> None:
    spec = SetEnv(type="set_env", env={"A": "1"}, **TARGET)
    assert (spec.approval, spec.approval_timeout_s) == ("none", None)
    required = SetEnv(type="set_env", env={"A": "1"}, approval="required", **TARGET)
    assert required.approval == "required"
    unsure = RestartIfSecretRotated(
        type="restart_if_secret_rotated", secret="s", approval="when_unsure", **TARGET
    )
    assert unsure.approval == "when_unsure"
    # page_human changes nothing in the cluster: nothing to approve
    with pytest.raises(ValidationError, match="approval"):
        PageHuman.model_validate({"type": "page_human", "reason": "r", "approval": "required"})


def test_when_unsure_is_refused_on_an_action_without_its_own_check() -> None:
    with pytest.raises(ValidationError, match="when_unsure needs an action that checks"):
        SetEnv(type="set_env", env={"A": "1"}, approval="when_unsure", **TARGET)


def test_a_pack_with_when_unsure_on_set_env_fails_with_its_file_and_line(tmp_path: Path) -> None:
    pack = tmp_path / "bad.yaml"
    pack.write_text(
        'name: bad\nversion: "1"\nrules:\n'
        "  - name: fallback\n"
        "    match: ['service=\"x\"']\n"
        "    actions:\n"
        "      - type: set_env\n"
        "        namespace: production\n"
        "        deployment: posthog-integration\n"
        '        env: {POSTHOG_FALLBACK: "true"}\n'
        "        approval: when_unsure\n"
    )
    with pytest.raises(RuleLoadError) as raised:
        load_rules([pack])
    message = str(raised.value)
    assert f"{pack}:7: rule 'fallback'" in message
    assert "when_unsure needs an action that checks its own precondition" in message


def test_a_person_pausing_the_incident_is_a_pause() -> None:
    verdicts = check(guard_input(incident_paused_by="Lee Lead"))
    assert [(v.guard, v.ok) for v in verdicts] == [("paused", False)]
    assert verdicts[0].reason == "automation of this incident is paused by Lee Lead"
    # and a global pause is said first, as before
    assert check(guard_input())[0].ok


def test_an_approved_step_passes_the_ack_but_no_other_guard() -> None:
    approved = check(guard_input(acked_by="Dana Oncall", approved_by="Sam Second"))
    assert all(v.ok for v in approved)
    assert "Sam Second approved this step" in approved[1].reason
    assert not check(guard_input(acked_by="Dana Oncall"))[1].ok
    paused = check(guard_input(incident_paused_by="Lee Lead", approved_by="Sam Second"))
    assert paused[-1].guard == "paused"
    off_list = check(guard_input(allowlist=("staging/*/*",), approved_by="Sam Second"))
    assert off_list[-1].guard == "allowlist"
    cooling = check(
        guard_input(cooldown_until=NOW + timedelta(minutes=1), approved_by="Sam Second")
    )
    assert cooling[-1].guard == "cooldown"


def expired_story(*, acked: bool = False):  # type: ignore[no-untyped-def]
    story = opened()
    triage(story)
    decide_set_env(story)
    approval = Approval(
        step="our-integration-rate-limit#0:set_env",
        action="set_env",
        target="production/posthog-integration",
        change="would send {}",
        requested_at=at(12),
        expires_at=at(912),
    )
    story.then(request_approval(story.incident, approval, at(12)))
    if acked:
        story.then(acknowledge(story.incident, by="Dana Oncall", at=at(20), now=at(20), via="x"))
    return story, story.then(expire_approval(story.incident, approval.step, at(912)))


def test_an_expired_approval_pages_the_on_call_unless_someone_has_the_incident() -> None:
    pd = PagerDutyPlanner(renderer=RENDERER)
    story, events = expired_story()
    [page] = pd.plan(story.incident, events, DeliveryState(), at(913))
    assert (page.op, page.marks) == ("trigger", "triggered")
    assert page.text.startswith("[approval expired] ")
    assert page.fields["severity"] == "critical"
    # already paged (by the rule's page): a re-page under its own key
    [repage] = pd.plan(story.incident, events, DeliveryState(refs={"triggered": True}), at(913))
    assert str(repage.marks).startswith("repage")
    # once someone has taken the incident, they decide: no page
    story, events = expired_story(acked=True)
    assert pd.plan(story.incident, events, DeliveryState(), at(913)) == []
