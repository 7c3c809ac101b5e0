"""Slack interactions, the pure part: a button press (Slack's ``block_actions`` payload)
read into a ``Press``, and whether its presser may do what the button does.

Who may press what is configuration (``RESPONDER_SLACK_*_BY``): Slack user ids, user-group
ids (their members asked of Slack through the ``SlackPeople`` port, kept a minute), or
``*``. The signature, the replay check and the answer are the web layer's
(``web/slack_interactions.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from responder.domain.signal import HumanAct
from responder.ports import Clock, SlackLookupError, SlackPeople
from responder.settings import Settings, env_name

# The buttons' action ids (the incident messages' blocks name them so) and what each does.
ACTS: dict[str, HumanAct] = {
    "incident.acknowledge": "acknowledge",
    "incident.pause": "pause",
    "incident.resume": "resume",
    "action.approve": "approve",
    "action.reject": "reject",
}
# The setting that grants each act (pause and resume go together, as approve and reject).
GRANTS: dict[HumanAct, str] = {
    "acknowledge": "slack_acknowledge_by",
    "pause": "slack_pause_by",
    "resume": "slack_pause_by",
    "approve": "slack_approve_by",
    "reject": "slack_approve_by",
}
# How a person reads each act in a refusal.
_ACT_WORDS: dict[HumanAct, str] = {
    "acknowledge": "acknowledge incidents",
    "pause": "pause an incident's automation",
    "resume": "resume an incident's automation",
    "approve": "approve automatic actions",
    "reject": "reject automatic actions",
}
# Members of a user group are asked of Slack at most this often (a press waits for them).
GROUP_MEMBERS_TTL_S = 60.0
_INCIDENT_ID = re.compile(r"inc-[0-9a-f]{18}", re.ASCII)
# A step as the mitigation stage names it (``<branch>#<index>:<action type>``): printable,
# one line, bounded; it is only looked up among the incident's approvals, never a key.
_STEP = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


class InvalidPress(ValueError):
    """Not a press of one of our buttons: the reason, for the log and the 400 answer."""


class _Lenient(BaseModel):
    # Slack adds fields to its payloads: what we do not read is ignored
    model_config = ConfigDict(extra="ignore")


class SlackUser(_Lenient):
    id: str = Field(min_length=1, max_length=64)
    username: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)
    team_id: str | None = None


class SlackChannel(_Lenient):
    id: str = Field(min_length=1, max_length=64)


class SlackContainer(_Lenient):
    message_ts: str | None = None


class SlackAction(_Lenient):
    action_id: str
    value: str | None = Field(None, max_length=2000)
    block_id: str | None = None
    action_ts: str | None = None


class BlockActions(_Lenient):
    """Slack's ``block_actions`` interaction payload, what we read of it."""

    type: str
    user: SlackUser
    channel: SlackChannel | None = None
    container: SlackContainer | None = None
    actions: list[SlackAction] = Field(min_length=1)
    trigger_id: str | None = Field(None, max_length=200)
    response_url: str | None = None


class ButtonValue(BaseModel):
    """A button's ``value``: JSON naming the incident, and for an approval its step."""

    model_config = ConfigDict(extra="ignore")

    incident: str
    step: str | None = None


@dataclass(frozen=True, slots=True)
class Press:
    """One press of one of our buttons."""

    act: HumanAct
    incident_id: str
    step: str | None
    user_id: str
    # who pressed, as the timeline shows them: their handle, else their name, else the id
    by: str
    channel_id: str | None
    trigger_id: str | None


def read_press(payload_json: str) -> Press:
    """The press a ``payload`` form field describes, or ``InvalidPress`` saying why not."""
    try:
        payload = BlockActions.model_validate_json(payload_json)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidPress(f"{where}: {first['msg']}") from None
    if payload.type != "block_actions":
        raise InvalidPress(f"an interaction of type {payload.type[:40]!r}, not block_actions")
    action = payload.actions[0]
    act = ACTS.get(action.action_id)
    if act is None:
        raise InvalidPress(f"no button of ours has the action id {action.action_id[:80]!r}")
    try:
        value = ButtonValue.model_validate_json(action.value or "")
    except ValidationError:
        raise InvalidPress("the button's value is not JSON naming an incident") from None
    if _INCIDENT_ID.fullmatch(value.incident) is None:
        raise InvalidPress("the button's incident is not an incident id (inc- and 18 hex digits)")
    step = value.step
    if act in ("approve", "reject"):
        if step is None or _STEP.fullmatch(step) is None:
            raise InvalidPress("an approval's button names no step, or not a step name")
    else:
        step = None
    user = payload.user
    return Press(
        act=act,
        incident_id=value.incident,
        step=step,
        user_id=user.id,
        by=user.username or user.name or user.id,
        channel_id=payload.channel.id if payload.channel else None,
        trigger_id=payload.trigger_id,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    # why not, for the presser (which setting grants it, or what failed)
    reason: str = ""


@dataclass
class SlackAccess:
    """Who may press what (the settings' grants), deciding each press; user groups'
    members asked of Slack through ``people`` (None: no bot token, so no group lookups)
    and kept ``GROUP_MEMBERS_TTL_S`` in this process. A cache per process is fine here: a
    member added to a group is let in within a minute on every replica."""

    grants: dict[HumanAct, tuple[str, ...]]
    people: SlackPeople | None
    clock: Clock
    _members: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, *, people: SlackPeople | None, clock: Clock) -> SlackAccess:
        grants = {act: tuple(getattr(settings, name)) for act, name in GRANTS.items()}
        return cls(grants=grants, people=people, clock=clock)

    async def decide(self, press: Press) -> Verdict:
        granted = self.grants[press.act]
        setting = env_name(GRANTS[press.act])
        if "*" in granted or press.user_id in granted:
            return Verdict(True)
        refused = Verdict(
            False,
            f"You may not {_ACT_WORDS[press.act]} here: {setting} does not name you or a "
            "group of yours. Ask whoever runs responder to add you.",
        )
        groups = [g for g in granted if g.startswith("S")]
        if not groups:
            return refused
        if self.people is None:
            return Verdict(
                False,
                f"{setting} grants {_ACT_WORDS[press.act]} to user groups, and their members "
                "cannot be looked up without a bot token (RESPONDER_SLACK_TOKEN).",
            )
        for group in groups:
            try:
                members = await self._group_members(group)
            except SlackLookupError as exc:
                return Verdict(
                    False,
                    f"Could not check whether you may {_ACT_WORDS[press.act]}: Slack did not "
                    f"say who is in {group} ({exc}). Try again in a moment.",
                )
            if press.user_id in members:
                return Verdict(True)
        return refused

    async def _group_members(self, group: str) -> frozenset[str]:
        assert self.people is not None
        now = self.clock.monotonic()
        cached = self._members.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        members = await self.people.group_members(group)
        self._members[group] = (now + GROUP_MEMBERS_TTL_S, members)
        return members


def already_decided_text(*, state: str, by: str | None, at: str) -> str:
    """What a presser of Approve or Reject is told when the step was decided before."""
    if state == "expired":
        return f"This approval expired at {at}: the step does not run."
    return f"Already {state} by {by or 'someone'} at {at}."


def unknown_incident_text(*, retention_s: int) -> str:
    """What a presser is told when the store holds no incident of the button's id."""
    return (
        "This incident is no longer known to responder: resolved incidents are kept "
        f"{_span(retention_s)} (RESPONDER_INCIDENT_RETENTION_S), or its message came from "
        "another responder. Nothing was done."
    )


def already_resolved_text(*, at: str) -> str:
    """What a presser is told when the incident was resolved before the press."""
    return f"This incident was already resolved at {at}: nothing was done."


def _span(seconds: int) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
