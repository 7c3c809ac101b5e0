"""Compiled rule packs and their evaluation.

Rules are walked in order, pack after pack, like Alertmanager's routes: a rule matches
when all its matchers match the alert and all its conditions hold on the facts; the first
matching rule that classifies sets severity, error type and title; every matching rule
adds its probes, actions and channels; a matching rule without ``continue`` ends the walk.
Facts under ``incident.`` are the incident's own, with the classification of this walk.

A pack with a ``scope`` sees only the alerts in it, and takes every one of them: what no
rule says of such an alert comes from the alert itself (``rules.inference``): the error
type from its labels, name or text, the severity from the runbook's table by error type;
the alert's own ``severity`` label may raise the severity, never lower it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue, TypeAdapter, ValidationError

from responder.domain.decision import Decision, PlannedAction, PlannedProbe
from responder.domain.plans import ActionSpec, ProbeSpec
from responder.domain.severity import DEFAULT_SEVERITIES, ErrorType, Severity, SeverityLevel
from responder.render.templates import Template, TemplateProblem
from responder.rules.conditions import Condition, Outcome
from responder.rules.inference import infer_error_type, raised_by_label, severity_for
from responder.rules.interpolation import PlanProblem, SpecFiller
from responder.rules.matchers import Matcher
from responder.rules.schema import Flapping, Pack, PublicInfo, Rule

PROBE_ADAPTER: TypeAdapter[Any] = TypeAdapter(ProbeSpec)
ACTION_ADAPTER: TypeAdapter[Any] = TypeAdapter(ActionSpec)


@dataclass(frozen=True)
class AlertInput:
    """What rules see of a signal."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: str = "alertmanager"

    def context(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "source": self.source,
        }


@dataclass(frozen=True)
class CompiledErrorType:
    fixed: ErrorType | None
    kind: str = ""  # label | annotation
    name: str = ""
    cases: tuple[tuple[re.Pattern[str], ErrorType], ...] = ()
    default: ErrorType = ErrorType.UNKNOWN

    def resolve(self, alert: AlertInput) -> tuple[ErrorType, str]:
        if self.fixed is not None:
            return self.fixed, "fixed by the rule"
        values = alert.labels if self.kind == "label" else alert.annotations
        text = values.get(self.name, "")
        for regex, error_type in self.cases:
            hit = regex.fullmatch(text) if self.kind == "label" else regex.search(text)
            if hit:
                return error_type, f"{self.kind} {self.name}={text!r} matches {regex.pattern!r}"
        if not self.cases and text in ErrorType.__members__.values():
            return ErrorType(text), f"{self.kind} {self.name} names it"
        return self.default, f"{self.kind} {self.name}={text!r}: no case matched, default"


@dataclass(frozen=True)
class CompiledRule:
    pack: CompiledPack
    spec: Rule
    matchers: tuple[Matcher, ...]
    conditions: tuple[Condition, ...]
    title: Template | None
    error_type: CompiledErrorType | None
    templates: Mapping[str, Template]  # every template string of the rule's probes/actions

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CompiledScope:
    names: frozenset[str]
    first: str | None  # the integration's name when none is found in the labels
    labels: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    excepted: tuple[Matcher, ...] = ()

    def claims(self, alert: AlertInput) -> tuple[str, str | None] | None:
        """Why ``alert`` is in scope (``app="posthog-integration"``, or the matcher that
        took it) and the integration's name; ``None`` when it is not. The name is always
        one of the pack's, never a label's value: templates may put it in URLs."""
        labels = alert.labels
        for name in self.labels:
            value = labels.get(name)
            if value is not None and value in self.names:
                return f'{name}="{value}"', value
        for matcher in self.matchers:
            if matcher.matches(labels, alert.annotations, alert.source):
                if any(m.matches(labels, alert.annotations, alert.source) for m in self.excepted):
                    return None  # another's alert that only mentions us
                return matcher.text, self.first
        return None


@dataclass
class CompiledPack:
    spec: Pack
    source: str  # the file it came from
    rules: tuple[CompiledRule, ...] = ()
    default_probe_templates: Mapping[str, Template] = field(default_factory=dict)
    scope: CompiledScope | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def severity_level(self, severity: Severity) -> SeverityLevel:
        return self.spec.severities.get(severity, DEFAULT_SEVERITIES[severity])


@dataclass(frozen=True)
class MatcherResult:
    text: str
    passed: bool
    actual: str


@dataclass(frozen=True)
class RuleTrace:
    """How one rule fared, for ``responder rules explain`` and the timeline."""

    pack: str
    rule: str
    matchers: tuple[MatcherResult, ...]
    conditions: tuple[tuple[str, Outcome], ...]
    matched: bool
    ended_walk: bool


@dataclass
class Evaluation:
    decision: Decision
    trace: list[RuleTrace]
    problems: list[str]


# Pre-triage decisions a rule set remembers (see RuleSet.classify): enough for every alert
# of a busy estate, bounded for an alert storm of ever-new label values.
_DECISIONS_KEPT = 4096


class RuleSet:
    """The packs in force, in order. Immutable: a reload builds a new one."""

    def __init__(self, packs: tuple[CompiledPack, ...] = ()) -> None:
        self.packs = packs
        # Each rule with its gate: most alerts of an estate match no rule of a pack, and
        # one dict lookup refuses them (a walk through every matcher of every rule cost
        # ~50 µs per new alert, the largest part of classifying it).
        self._gated = tuple((rule, _gate(rule)) for rule in self.rules())
        # Each probe and action compiled for filling once, not per alert (see _Planner).
        self._rule_probes = {
            id(rule): tuple(_Planner(s, rule.templates, PROBE_ADAPTER) for s in rule.spec.probes)
            for rule in self.rules()
        }
        self._rule_actions = {
            id(rule): tuple(_Planner(s, rule.templates, ACTION_ADAPTER) for s in rule.spec.actions)
            for rule in self.rules()
        }
        self._default_probes = {
            id(pack): tuple(
                _Planner(s, pack.default_probe_templates, PROBE_ADAPTER)
                for s in pack.spec.defaults.probes
            )
            for pack in packs
        }
        self._decisions: dict[
            tuple[str, frozenset[tuple[str, str]], frozenset[tuple[str, str]]], Decision
        ] = {}
        # Before triage, an alert no pack takes and no rule matches (most of an estate's)
        # gets the default decision, titled by its alertname: one per title, not one
        # validated model per new alert.
        self._unmatched: dict[str, Decision] = {}

    def classify(self, alert: AlertInput) -> Decision:
        """``evaluate(alert).decision``, without the trace, for the worker's every signal.

        Before triage, an alert's source, labels and annotations decide everything (the
        templates see nothing else) and the rule set never changes, so the decisions of
        the alerts seen last are kept: a repeat or a resolve of a known alert costs a
        lookup. A reload builds a new rule set, with nothing remembered.
        """
        key = (alert.source, frozenset(alert.labels.items()), frozenset(alert.annotations.items()))
        decision = self._decisions.get(key)
        if decision is None:
            decision = self.evaluate(alert, explain=False).decision
            if len(self._decisions) >= _DECISIONS_KEPT:
                del self._decisions[next(iter(self._decisions))]  # the oldest
            self._decisions[key] = decision
        return decision

    def rules(self) -> Iterator[CompiledRule]:
        for pack in self.packs:
            yield from pack.rules

    def severity_level(self, pack: str | None, severity: Severity) -> SeverityLevel:
        for compiled in self.packs:
            if compiled.name == pack:
                return compiled.severity_level(severity)
        return DEFAULT_SEVERITIES[severity]

    def rule(self, pack: str | None, name: str | None) -> CompiledRule | None:
        """A rule by pack and name (an incident's branch), if it is still in force."""
        for compiled in self.packs:
            if compiled.name == pack:
                return next((r for r in compiled.rules if r.name == name), None)
        return None

    def flapping(self, pack: str | None) -> Flapping:
        """When a pack's alerts flap (the defaults for alerts no pack classified)."""
        for compiled in self.packs:
            if compiled.name == pack:
                return compiled.spec.flapping
        return Flapping()

    def public(self, pack: str | None) -> PublicInfo:
        """What a pack lets the public status page say (a default when it says nothing)."""
        for compiled in self.packs:
            if compiled.name == pack:
                return compiled.spec.public
        return PublicInfo()

    def evaluate(
        self, alert: AlertInput, facts: Mapping[str, Any] | None = None, *, explain: bool = True
    ) -> Evaluation:
        """Walk the rules. ``facts=None``: before triage, so rules with conditions wait.

        ``explain=False``: no trace (the rules' matchers stop at the first that fails); the
        decision is the same.
        """
        ctx = alert.context()
        # per pack with a scope: why the alert is in it (and the integration), or None
        claims: dict[str, tuple[str, str | None] | None] = {}
        claimed: CompiledPack | None = None  # the first pack whose scope takes the alert
        error_source = ""  # what set the error type
        trace: list[RuleTrace] = []
        problems: list[str] = []
        classifier: CompiledRule | None = None  # the rule that set the severity
        severity: Severity | None = None
        error_type: ErrorType | None = None
        title: str | None = None
        branch: str | None = None
        matched: list[str] = []
        probes: list[PlannedProbe] = []
        actions: list[PlannedAction] = []
        notify: list[str] = []
        page = False
        used: dict[str, JsonValue] = {}
        view: dict[str, Any] = dict(facts or {})
        labels, annotations, source = alert.labels, alert.annotations, alert.source
        # a pack's rules are consecutive: its scope is looked at with its first rule, and
        # an alert out of it skips the others with one comparison each
        entered: CompiledPack | None = None
        skipped: CompiledPack | None = None
        for rule, gate in self._gated:
            results: tuple[MatcherResult, ...] = ()
            if rule.pack is skipped and not explain:
                continue
            scope = rule.pack.scope
            if scope is not None and rule.pack is not entered:
                entered = rule.pack
                claim = claims[entered.name] = scope.claims(alert)
                if claim is None:
                    skipped = entered
                else:
                    ctx["integration"] = claim[1]
                    claimed = claimed or entered
            if rule.pack is skipped:
                if explain:
                    out = (MatcherResult("scope", False, "not in the pack's scope"),)
                    trace.append(RuleTrace(rule.pack.name, rule.name, out, (), False, False))
                continue
            if not explain and gate is not None and labels.get(gate[0], "") != gate[1]:
                continue  # fails a matcher: the trace, when asked for, shows which
            if explain:
                results = tuple(
                    MatcherResult(
                        m.text,
                        m.matches(labels, annotations, source),
                        m.value_of(labels, annotations, source),
                    )
                    for m in rule.matchers
                )
                ok = all(r.passed for r in results)
            else:
                ok = all(m.matches(labels, annotations, source) for m in rule.matchers)
            outcomes: tuple[tuple[str, Outcome], ...] = ()
            if ok and rule.conditions:
                if facts is None:
                    outcomes = tuple(
                        (c.text, Outcome(False, "no facts yet (before triage)"))
                        for c in rule.conditions
                    )
                else:
                    if scope is not None and not view.get("incident", {}).get("error_type"):
                        # the classification so far, with what the alert says of itself
                        # where no rule and no fact said it
                        known = view.get("incident", {})
                        said = error_type or infer_error_type(labels, annotations).error_type
                        view["incident"] = {
                            "severity": (severity or severity_for(said)).value,
                            **known,
                            "error_type": said.value,
                        }
                    outcomes = tuple((c.text, c.evaluate(view)) for c in rule.conditions)
                ok = all(o.holds for _, o in outcomes)
            ends = ok and not rule.spec.continue_
            if explain:
                trace.append(RuleTrace(rule.pack.name, rule.name, results, outcomes, ok, ends))
            if not ok:
                continue
            matched.append(rule.name)
            for text, outcome in outcomes:
                used[text] = outcome.value
            if rule.conditions and (rule.spec.actions or rule.spec.notify or rule.spec.probes):
                # a branch of the decision tree does something; a rule on facts that only
                # classifies (an escalation) is not one
                branch = rule.name
            spec = rule.spec.classify
            if spec is not None:
                if severity is None and spec.severity is not None:
                    classifier, severity = rule, spec.severity
                if error_type is None and rule.error_type is not None:
                    found, why = rule.error_type.resolve(alert)
                    # a case that finds nothing leaves the type to the next rule, or to
                    # what the alert says; a rule that fixes `unknown` means it
                    if found is not ErrorType.UNKNOWN or rule.error_type.fixed is not None:
                        error_type, error_source = found, f"rule {rule.name}: {why}"
                if title is None and rule.title is not None:
                    title = _render_title(rule, ctx, problems) or None
                view["incident"] = {
                    **view.get("incident", {}),
                    **({"severity": severity.value} if severity else {}),
                    **({"error_type": error_type.value} if error_type else {}),
                }
            probes += _plan_probes(rule.name, self._rule_probes[id(rule)], ctx, problems)
            actions += _plan_actions(rule, self._rule_actions[id(rule)], ctx, problems)
            notify += [c for c in rule.spec.notify if c not in notify]
            page = page or rule.spec.page
            if ends:
                break
        if not matched and claimed is None and facts is None:
            return Evaluation(decision=self._default(alert), trace=trace, problems=problems)
        pack = classifier.pack if classifier else claimed
        reasons: dict[str, str] = {}
        if claimed is not None:
            claim = claims[claimed.name]
            assert claim is not None
            reasons["scope"] = f"pack {claimed.name}: {claim[0]}"
            ctx["integration"] = claim[1]
        if pack is not None and pack.scope is not None:
            # an alert of the pack: what no rule said, the alert says
            if error_type is None:
                inferred = infer_error_type(labels, annotations)
                error_type, error_source = inferred.error_type, inferred.route
            if severity is None:
                # the runbook's table, unless the alert's own label says worse (a rule's
                # severity stands: the rule is the runbook's word for that alert)
                severity = severity_for(error_type)
                reasons["severity"] = f"runbook table: {error_type.value} is {severity.value}"
                severity, raised = raised_by_label(severity, labels)
                if raised:
                    reasons["severity"] += f"; raised to {severity.value} by {raised}"
            elif classifier is not None:
                reasons["severity"] = f"rule {classifier.name}"
        if error_source:
            reasons["error_type"] = error_source
        if pack is not None:
            defaults = _plan_probes("defaults", self._default_probes[id(pack)], ctx, problems)
            probes = [p for p in defaults if p not in probes] + probes
            if not notify:
                notify = list(pack.spec.defaults.notify)
        refused = [p for p in problems if f"not planned: {_REFUSED}" in p]
        if refused:
            # an alert's value that would have steered a probe or an action: said on the
            # incident (the classification's reasons), not only in `rules explain`
            reasons["refused"] = "; ".join(refused)
        decision = Decision(
            pack=pack.name if pack else None,
            rule=classifier.name if classifier else None,
            branch=branch,
            severity=severity or Severity.P3,
            error_type=error_type or ErrorType.UNKNOWN,
            title=title or alert.labels.get("alertname", "alert"),
            group_by=pack.spec.defaults.group_by if pack else (),
            matched=tuple(matched),
            probes=_unique(probes),
            actions=tuple(actions),
            notify=tuple(notify),
            page=page,
            facts_used=used,
            reasons=reasons,
        )
        return Evaluation(decision=decision, trace=trace, problems=problems)

    def _default(self, alert: AlertInput) -> Decision:
        """The decision of an alert no pack takes and no rule matched, before triage
        (what ``evaluate`` would build: every field its default, the title the
        alertname)."""
        title = alert.labels.get("alertname", "alert")
        decision = self._unmatched.get(title)
        if decision is None:
            decision = Decision(title=title)
            if len(self._unmatched) >= _DECISIONS_KEPT:
                del self._unmatched[next(iter(self._unmatched))]  # the oldest
            self._unmatched[title] = decision
        return decision


def _gate(rule: CompiledRule) -> tuple[str, str] | None:
    """A label and the value a rule requires of it (its first ``label="value"`` matcher):
    an alert whose label differs cannot match the rule."""
    for matcher in rule.matchers:
        if matcher.op == "=" and matcher.on_label:
            return matcher.name, matcher.value
    return None


def _unique(probes: list[PlannedProbe]) -> tuple[PlannedProbe, ...]:
    seen: list[Any] = []
    out = []
    for probe in probes:
        if probe.spec not in seen:
            seen.append(probe.spec)
            out.append(probe)
    return tuple(out)


def _render_title(rule: CompiledRule, ctx: Mapping[str, Any], problems: list[str]) -> str:
    if rule.title is None:
        return ""
    try:
        return rule.title.render(ctx).strip()
    except TemplateProblem as exc:
        problems.append(f"rule {rule.name}: title: {exc}")
        return ""


class _Planner:
    """One probe or action of a pack, ready to plan for an alert: its spec dumped and its
    templates placed once (``SpecFiller``); one without templates is filled and validated
    once, as it is the same for every alert."""

    def __init__(
        self, spec: Any, templates: Mapping[str, Template], adapter: TypeAdapter[Any]
    ) -> None:
        self.spec = spec
        self._filler = SpecFiller(spec.model_dump(), templates)
        self._adapter = adapter
        self._fixed: Any = None  # the spec filled and validated, when it has no templates
        self._fixed_problem: str | None = None  # or why that fails
        if self._filler.constant:
            try:
                self._fixed = adapter.validate_python(self._filler.fill({}))
            except (PlanProblem, ValidationError) as exc:
                self._fixed_problem = _said(exc)

    def fill(self, ctx: Mapping[str, Any]) -> Any:
        """The spec filled and validated; ``_Unplanned`` saying why it cannot be."""
        if self._fixed is not None:
            return self._fixed
        if self._fixed_problem is not None:
            raise _Unplanned(self._fixed_problem)
        try:
            return self._adapter.validate_python(self._filler.fill(ctx))
        except (TemplateProblem, PlanProblem, ValidationError) as exc:
            raise _Unplanned(_said(exc)) from None


class _Unplanned(Exception):
    pass


def _plan_probes(
    rule_name: str,
    planners: tuple[_Planner, ...],
    ctx: Mapping[str, Any],
    problems: list[str],
) -> list[PlannedProbe]:
    planned = []
    for planner in planners:
        try:
            filled = planner.fill(ctx)
        except _Unplanned as exc:
            problems.append(f"rule {rule_name}: probe {planner.spec.type} not planned: {exc}")
            continue
        planned.append(PlannedProbe(rule=rule_name, spec=filled))
    return planned


def _plan_actions(
    rule: CompiledRule,
    planners: tuple[_Planner, ...],
    ctx: Mapping[str, Any],
    problems: list[str],
) -> list[PlannedAction]:
    planned = []
    for planner in planners:
        spec = planner.spec
        try:
            filled = planner.fill(ctx)
        except _Unplanned as exc:
            problems.append(f"rule {rule.name}: action {spec.type} not planned: {exc}")
            continue
        dry_run = next(
            d
            for d in (spec.dry_run, rule.spec.dry_run, rule.pack.spec.defaults.dry_run)
            if d is not None
        )
        planned.append(PlannedAction(rule=rule.name, spec=filled, dry_run=dry_run))
    return planned


# What marks a problem as a value refused where it would land (``PlanProblem``): those are
# told on the incident (``reasons["refused"]``); a missing label is not news.
_REFUSED = "refused: "


def _said(exc: Exception) -> str:
    return f"{_REFUSED}{exc}" if isinstance(exc, PlanProblem) else str(exc)
