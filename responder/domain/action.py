"""Automatic actions: guard verdicts, and the record of what an action did to its target."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, JsonValue, model_validator

from responder.domain.decision import PlannedAction
from responder.domain.model import Frozen


class Verdict(Frozen):
    """One guard's answer: may the action go ahead, and why (or why not)."""

    guard: str
    ok: bool
    reason: str


class Outcome(StrEnum):
    APPLIED = "applied"  # the change is on the target
    IN_PLACE = "in_place"  # the target already was as the action wanted: nothing sent
    DRY_RUN = "dry_run"  # the exact change was recorded, nothing was sent
    REFUSED = "refused"  # a guard said no
    SKIPPED = "skipped"  # nothing to do (e.g. the secret was not rotated)
    FAILED = "failed"  # the cluster refused or failed
    REVERTED = "reverted"
    NEEDS_HUMAN = "needs_human"


class ActionRecord(Frozen):
    """What one step of an incident's plan did, with the target before and after."""

    step: str
    action: str
    target: str
    verdict: Outcome
    reason: str
    at: datetime
    dry_run: bool = False
    before: dict[str, JsonValue] = Field(default_factory=dict)
    after: dict[str, JsonValue] = Field(default_factory=dict)
    patch: JsonValue = None
    revert_on_resolve: bool = False  # the same as ``revert_when == "resolve"``
    # when the automation undoes it (``plans.RevertWhen``): on resolve, once the vendor's
    # incident is over and the action's verify query stays in bounds, or never (a human)
    revert_when: Literal["resolve", "vendor_resolved", "never"] = "never"
    reversible: bool = False
    verified: bool | None = None  # None: not verified (yet, or no verification asked)
    reverted: bool = False
    # the target after the revert; ``before`` and ``after`` stay what the action did
    reverted_state: dict[str, JsonValue] | None = None
    verdicts: tuple[Verdict, ...] = ()
    planned: PlannedAction | None = None  # what the rule asked for (verification, revert)
    # the person who approved this step (a rule's ``approval:``), and through what
    # ("slack", "api"); None: it ran on the rule's and the allowlist's pre-approval alone
    approved_by: str | None = None
    approved_via: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _policy_of_older_records(cls, data: Any) -> Any:
        # records stored before ``revert_when`` said it with ``revert_on_resolve`` only
        if isinstance(data, dict) and "revert_when" not in data:
            return {**data, "revert_when": "resolve" if data.get("revert_on_resolve") else "never"}
        return data
