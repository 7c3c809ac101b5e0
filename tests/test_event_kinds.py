"""Timeline event kinds are ``EventKind`` members: one list, named once, stored as strings."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from responder.domain.model import to_stored_json
from responder.domain.timeline import EventKind, TimelineEvent

RESPONDER = Path(__file__).resolve().parent.parent / "responder"
FAMILIES = sorted({kind.split(".", 1)[0] for kind in EventKind})
# a quoted "family.what" string: what a kind looks like written out
KIND_LIKE = re.compile(r"""["'](?:""" + "|".join(FAMILIES) + r""")\.[a-z_]+["']""")

# Strings shaped like a kind that are something else.
NOT_KINDS = {
    "incident.json": "a file of the evidence bundle",
    "incident.severity": "a fact name rules read",
    "incident.error_type": "a fact name rules read",
    "incident.status": "a fact name rules read",
    "incident.acked": "a fact name rules read",
    "incident.triggered": "a PagerDuty webhook event type",
    "incident.annotated": "a PagerDuty webhook event type",
    "incident.assigned": "a PagerDuty webhook event type",
    "incident.reassigned": "a PagerDuty webhook event type",
    "incident.delegated": "a PagerDuty webhook event type",
    "incident.acknowledge": "a Slack button's action id",
    "incident.pause": "a Slack button's action id",
    "incident.resume": "a Slack button's action id",
    "action.approve": "a Slack button's action id",
    "action.reject": "a Slack button's action id",
}
# Where a string equal to a kind's value is not that kind: PagerDuty's webhook event
# types "incident.acknowledged" and "incident.resolved" share our kinds' names.
SAME_STRING_OTHER_MEANING = {
    ("domain/incident.py", "incident.acknowledged"),
    ("domain/incident.py", "incident.resolved"),
}


def _kind_strings(suffixes: tuple[str, ...]) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(RESPONDER.rglob("*")):
        if not path.name.endswith(suffixes):
            continue
        name = path.relative_to(RESPONDER).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found += [(name, number, m.group(0)[1:-1]) for m in KIND_LIKE.finditer(line)]
    return found


def test_every_kind_the_code_or_a_template_names_is_a_member() -> None:
    """A misspelt or new kind written as a string, in a module or a shipped template
    (templates compare the plain strings), fails here rather than when it is stored."""
    members = {kind.value for kind in EventKind}
    unknown = [
        f"{name}:{number}: {text}"
        for name, number, text in _kind_strings((".py", ".j2"))
        if text not in members and text not in NOT_KINDS
    ]
    assert not unknown, "not EventKind members (add them, or to NOT_KINDS): " + ", ".join(unknown)


def test_modules_name_kinds_by_member_not_by_string() -> None:
    members = {kind.value for kind in EventKind}
    written = [
        f"{name}:{number}: {text}"
        for name, number, text in _kind_strings((".py",))
        if text in members
        and name != "domain/timeline.py"
        and (name, text) not in SAME_STRING_OTHER_MEANING
    ]
    assert not written, "use EventKind members: " + ", ".join(written)


@pytest.mark.parametrize("kind", list(EventKind))
def test_a_stored_event_reads_back_as_its_member_and_writes_the_same_bytes(
    kind: EventKind,
) -> None:
    stored = (
        b'{"seq":3,"at":"2026-11-29T06:24:31Z","kind":"'
        + kind.value.encode()
        + b'","detail":"d","data":{"sink":"slack"}}'
    )
    event = TimelineEvent.model_validate_json(stored)
    assert event.kind is kind
    assert to_stored_json(event) == stored
    assert event.model_dump(mode="json")["kind"] == kind.value
    assert type(event.model_dump(mode="json")["kind"]) is str


def test_an_event_of_a_kind_no_version_wrote_does_not_load() -> None:
    """Every kind ever written is a member (the git history has no other), so a stored
    timeline reads strictly, like every other enum of a stored document."""
    with pytest.raises(ValidationError):
        TimelineEvent(
            seq=0,
            at=datetime(2026, 11, 29, tzinfo=UTC),
            kind="incident.exploded",  # type: ignore[arg-type]
            detail="d",
        )
