"""What the rules decided for an alert: severity, error type, and the planned work."""

from __future__ import annotations

from pydantic import Field, JsonValue

from responder.domain.model import Frozen
from responder.domain.plans import ActionSpec, ProbeSpec
from responder.domain.severity import ErrorType, Severity


class PlannedProbe(Frozen):
    rule: str
    spec: ProbeSpec


class PlannedAction(Frozen):
    rule: str
    spec: ActionSpec
    dry_run: bool = Field(description="Resolved from the action, the rule and the pack.")


class Decision(Frozen):
    """The outcome of walking the rules for one alert (and, after triage, its facts).

    ``rule`` is the rule that set the severity; ``branch`` the last matching rule with
    conditions on facts that plans something (the decision tree's branch; a rule on facts
    that only classifies, an escalation, is not one); ``matched`` every rule that matched,
    in order.
    """

    pack: str | None = None
    rule: str | None = None
    branch: str | None = None
    severity: Severity = Severity.P3
    error_type: ErrorType = ErrorType.UNKNOWN
    title: str = ""
    group_by: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()
    probes: tuple[PlannedProbe, ...] = ()
    actions: tuple[PlannedAction, ...] = ()
    notify: tuple[str, ...] = ()
    page: bool = False  # a matching rule says page the on-call
    facts_used: dict[str, JsonValue] = Field(default_factory=dict)
    # what decided, for people: "scope" (the pack that took the alert, and why),
    # "error_type" (a rule, or the label, name or text it was read from), "severity"
    reasons: dict[str, str] = Field(default_factory=dict)
