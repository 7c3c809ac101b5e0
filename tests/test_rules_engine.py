"""Evaluating rule packs: matchers, the walk (continue), classification, conditions on
facts, templated parameters, dry-run resolution, severities and group_by.

The packs are tests/fixtures/rules/good/*.yaml (read them alongside) and, for a few
focused cases, small packs written here.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import pytest

from responder.domain.severity import DEFAULT_SEVERITIES, ErrorType, Severity
from responder.rules.conditions import ConditionError, parse_condition
from responder.rules.engine import AlertInput, Evaluation, RuleSet
from responder.rules.loader import load_rules
from responder.rules.matchers import MatcherError, parse_matcher

GOOD = Path(__file__).parent / "fixtures" / "rules" / "good"


def packs(*names: str) -> RuleSet:
    return load_rules([GOOD / f"{name}.yaml" for name in names])


def inline(tmp_path: Path, text: str, name: str = "inline.yaml") -> RuleSet:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_rules([path])


def checkout(alertname: str = "CheckoutSlow", **labels: str) -> AlertInput:
    return AlertInput(
        labels={
            "alertname": alertname,
            "service": "checkout",
            "namespace": "prod",
            "cluster": "eu-1",
            **labels,
        }
    )


def trace_of(evaluation: Evaluation, rule: str) -> Any:
    [step] = [t for t in evaluation.trace if t.rule == rule]
    return step


# --------------------------------------------------------------------------- matchers

NO_LABELS: dict[str, str] = {}
POSTHOG = {"alertname": "PostHog"}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="PostHog"', POSTHOG, True),
        ('alertname="Post"', POSTHOG, False),
        ('alertname!="PostHog"', POSTHOG, False),
        ('alertname!="Post"', POSTHOG, True),
        # regular expressions are anchored at both ends
        ('alertname=~"Post"', POSTHOG, False),
        ('alertname=~"Hog"', POSTHOG, False),
        ('alertname=~"ostHo"', POSTHOG, False),
        ('alertname=~"Post.*"', POSTHOG, True),
        ('alertname=~".*Hog"', POSTHOG, True),
        ('alertname=~"Post|Other"', POSTHOG, False),  # the anchors hold the whole alternation
        ('alertname=~"Other|PostHog"', POSTHOG, True),
        ('alertname!~"Post"', POSTHOG, True),
        ('alertname!~"Post.*"', POSTHOG, False),
        ('status_code=~"4\\\\d\\\\d"', {"status_code": "429"}, True),
        ('status_code=~"4\\\\d\\\\d"', {"status_code": "4290"}, False),
        # a missing label reads as the empty string
        ('team=""', NO_LABELS, True),
        ('team!=""', NO_LABELS, False),
        ('team=~".*"', NO_LABELS, True),
        ('team=~".+"', NO_LABELS, False),
        ('team!~".+"', NO_LABELS, True),
        ('team="platform"', NO_LABELS, False),
        ('team!="platform"', NO_LABELS, True),
        ('team=""', {"team": "platform"}, False),
        # unquoted values and spaces around the operator
        ("alertname=PostHog", POSTHOG, True),
        ('  alertname  =  "PostHog"  ', POSTHOG, True),
        ('alertname="Post\\"Hog"', {"alertname": 'Post"Hog'}, True),
    ],
)
def test_matcher_on_labels(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels, {}, "alertmanager") is expected


def test_matcher_on_annotations_reads_annotations_not_labels() -> None:
    m = parse_matcher('annotations.summary=~".*429.*"')
    assert m.matches({}, {"summary": "rate limited: HTTP 429"}, "alertmanager")
    assert not m.matches({"summary": "HTTP 429"}, {}, "alertmanager")
    assert not m.matches({}, {"description": "HTTP 429"}, "alertmanager")
    missing = parse_matcher('annotations.runbook_url=""')
    assert missing.matches({}, {}, "alertmanager")
    assert not missing.matches({}, {"runbook_url": "https://x"}, "alertmanager")


def test_matcher_on_source() -> None:
    m = parse_matcher('__source__="pagerduty"')
    assert m.matches({}, {}, "pagerduty")
    assert not m.matches({}, {}, "alertmanager")
    # a label of that name is not the source
    assert not m.matches({"__source__": "pagerduty"}, {}, "alertmanager")
    assert parse_matcher('__source__!~"alert.*"').matches({}, {}, "pagerduty")


@pytest.mark.parametrize(
    "text",
    ["alertname", 'alertname="A', 'alertname ~ "A"', '"A"', 'alert name="A"', 'a=~"(x"'],
)
def test_bad_matchers_are_refused(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matcher(text)


def test_matchers_through_the_engine(tmp_path: Path) -> None:
    rules = inline(
        tmp_path,
        """
        name: anchors
        version: "1"
        rules:
          - name: prefix-only
            match: ['alertname=~"Post"']
            classify: {severity: P1}
          - name: whole-name
            match: ['alertname=~"Post.*"', 'team=""']
            classify: {severity: P4}
        """,
    )
    evaluation = rules.evaluate(AlertInput(labels={"alertname": "PostHog"}))
    assert evaluation.decision.matched == ("whole-name",)
    assert evaluation.decision.severity is Severity.P4
    first = trace_of(evaluation, "prefix-only")
    assert not first.matched
    assert [(m.text, m.passed, m.actual) for m in first.matchers] == [
        ('alertname=~"Post"', False, "PostHog")
    ]
    second = trace_of(evaluation, "whole-name")
    assert [(m.passed, m.actual) for m in second.matchers] == [(True, "PostHog"), (True, "")]


def test_annotations_and_source_through_the_engine() -> None:
    rules = packs("sources")
    paged = rules.evaluate(
        AlertInput(
            labels={"alertname": "DiskFull", "team": "storage"},
            annotations={
                "summary": "disk full on db-1",
                "runbook_url": "https://runbooks.example.com/disk",
            },
            source="pagerduty",
        )
    )
    d = paged.decision
    assert d.matched == ("paged", "runbook-linked")
    assert d.severity is Severity.P1
    assert d.title == "Paged: disk full on db-1"
    assert d.notify == ("slack:#runbooks",)

    # from Alertmanager, with the runbook on another host, and without a team label
    plain = rules.evaluate(
        AlertInput(
            labels={"alertname": "DiskFull"},
            annotations={"runbook_url": "https://runbooks.example.com.evil.test/disk"},
        )
    )
    assert plain.decision.matched == ("unowned",)
    assert plain.decision.rule is None
    assert plain.decision.notify == ("console",)


# ------------------------------------------------------------------------- the walk


def test_a_rule_without_continue_ends_the_walk() -> None:
    evaluation = packs("shop").evaluate(checkout())
    d = evaluation.decision
    assert d.matched == ("checkout-slow", "checkout-latency-type", "checkout-fallback")
    assert "never-reached" not in d.matched
    # the walk stopped: the rule after checkout-fallback was not even tried
    assert [t.rule for t in evaluation.trace][-1] == "checkout-fallback"
    assert evaluation.trace[-1].ended_walk
    assert "never-reached" not in [t.rule for t in evaluation.trace]
    assert [t.ended_walk for t in evaluation.trace if t.matched] == [False, False, True]
    # the fallback added its channel after the channels of the rules that continued
    assert d.notify == ("slack:#checkout-perf", "pagerduty")


def test_continue_lets_later_rules_add_actions_and_channels() -> None:
    evaluation = packs("shop").evaluate(checkout(), {"prometheus": {"error_ratio": 0.2}})
    d = evaluation.decision
    assert d.matched == ("checkout-slow", "checkout-latency-type", "scale-out")
    assert d.branch == "scale-out"
    # scale-out has no continue: the fallback is not reached
    assert "checkout-fallback" not in d.matched
    assert [(a.rule, a.spec.type) for a in d.actions] == [
        ("scale-out", "scale"),
        ("scale-out", "rollout_restart"),
    ]
    # a channel already there is not repeated
    assert d.notify == ("slack:#checkout-perf", "slack:#checkout")
    # the pack's default probes first, then the rules'
    assert [(p.rule, p.spec.type) for p in d.probes] == [
        ("defaults", "health"),
        ("checkout-slow", "prometheus"),
    ]


def test_continue_true_accumulates_and_false_stops(tmp_path: Path) -> None:
    text = """
        name: chain
        version: "1"
        rules:
          - name: a
            match: ['alertname="X"']
            actions:
              - {type: page_human, reason: first}
            notify: ["slack:#a"]
            continue: {cont}
          - name: b
            match: ['alertname=~"X|Y"']  # not only X: the lint refuses a rule never reached
            actions:
              - {type: page_human, reason: second}
            notify: ["slack:#b"]
        """
    alert = AlertInput(labels={"alertname": "X"})
    going = inline(tmp_path, text.replace("{cont}", "true"), "go.yaml").evaluate(alert).decision
    assert going.matched == ("a", "b")
    assert [a.spec.reason for a in going.actions] == ["first", "second"]  # type: ignore[union-attr]
    assert going.notify == ("slack:#a", "slack:#b")
    stopped = inline(tmp_path, text.replace("{cont}", "false"), "stop.yaml").evaluate(alert)
    assert stopped.decision.matched == ("a",)
    assert [a.spec.reason for a in stopped.decision.actions] == ["first"]  # type: ignore[union-attr]
    assert stopped.decision.notify == ("slack:#a",)


def test_the_walk_goes_on_to_the_next_pack() -> None:
    rules = packs("sources", "billing")
    d = rules.evaluate(
        AlertInput(labels={"alertname": "PaymentTimeout", "service": "billing", "team": "pay"})
    ).decision
    assert d.matched == ("any-timeout", "payment-timeout")


# -------------------------------------------------------------------- classification


def test_the_first_rule_setting_a_field_sets_it() -> None:
    d = packs("shop").evaluate(checkout()).decision
    # severity and title from checkout-slow; checkout-latency-type's P4 and title ignored,
    # but its error type is the first one set
    assert d.severity is Severity.P2
    assert d.title == "Checkout slow in prod"
    assert d.error_type is ErrorType.LATENCY
    assert d.rule == "checkout-slow"
    assert d.pack == "shop"


def test_a_rule_on_facts_placed_first_raises_the_severity_alone() -> None:
    evaluation = packs("shop").evaluate(checkout(), {"prometheus": {"error_ratio": 0.7}})
    d = evaluation.decision
    assert d.severity is Severity.P1
    assert d.rule == "escalate"
    # a rule on facts that only classifies (an escalation) is not a branch of the tree
    assert d.branch is None
    assert d.title == "Checkout slow in prod"
    assert d.error_type is ErrorType.LATENCY
    assert d.matched == ("escalate", "checkout-slow", "checkout-latency-type", "checkout-fallback")
    assert d.facts_used == {"prometheus.error_ratio > 0.5": 0.7}


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        ("401", ErrorType.AUTH),
        ("403", ErrorType.AUTH),
        ("503", ErrorType.UPSTREAM_5XX),
        ("5031", ErrorType.UNKNOWN),  # a label case matches the whole value
        ("1503", ErrorType.UNKNOWN),
        ("429", ErrorType.UNKNOWN),  # no case: the default
        (None, ErrorType.UNKNOWN),
    ],
)
def test_error_type_from_a_label(status_code: str | None, expected: ErrorType) -> None:
    labels = {} if status_code is None else {"status_code": status_code}
    d = packs("shop").evaluate(checkout("CheckoutErrors", **labels)).decision
    assert d.error_type is expected
    assert d.severity is Severity.P3
    assert d.rule == "checkout-errors"


def test_error_type_from_an_annotation_is_searched(tmp_path: Path) -> None:
    rules = inline(
        tmp_path,
        """
        name: annot
        version: "1"
        rules:
          - name: by-description
            match: ['alertname="Upstream"']
            classify:
              severity: P2
              error_type:
                from: annotation:description
                cases: [{match: '\\b50[03]\\b', type: upstream_5xx}]
                default: unreachable
        """,
    )

    def error_type(description: str) -> ErrorType:
        alert = AlertInput(
            labels={"alertname": "Upstream"}, annotations={"description": description}
        )
        return rules.evaluate(alert).decision.error_type

    assert error_type("12% of calls returned 503 Service Unavailable") is ErrorType.UPSTREAM_5XX
    assert error_type("calls returned 5030") is ErrorType.UNREACHABLE
    assert error_type("") is ErrorType.UNREACHABLE


def test_nothing_matched_gives_the_defaults() -> None:
    d = packs("shop").evaluate(AlertInput(labels={"alertname": "Other", "service": "x"})).decision
    assert d.matched == ()
    assert d.rule is None
    assert d.pack is None
    assert d.severity is Severity.P3
    assert d.error_type is ErrorType.UNKNOWN
    assert d.title == "Other"
    assert d.group_by == ()
    assert d.probes == ()
    assert d.notify == ()


# ------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("x == 1", 1.0, True),
        ("x == 1", 2, False),
        ("x == down", "down", True),
        ("x == true", True, True),
        ("x == false", True, False),
        ("x != down", "up", True),
        ("x != down", "down", False),
        ("x != 0.5", 0.5, False),
        ("x > 0.5", 0.7, True),
        ("x > 0.5", 0.5, False),
        ("x >= 0.5", 0.5, True),
        ("x >= 0.5", 0.4, False),
        ("x < 3", 2, True),
        ("x < 3", 3, False),
        ("x <= 3", 3, True),
        ("x <= 3", 3.1, False),
        ("x in [down, degraded]", "degraded", True),
        ("x in [down, degraded]", "up", False),
        ("x in [429, 503]", 503, True),
        ("x not in [down, degraded]", "up", True),
        ("x not in [down, degraded]", "down", False),
        ("x  not   in [a]", "b", True),
        # ordering needs numbers on both sides: a string, a bool or NaN never compares
        ("x > 5", "10", False),
        ("x < 5", "1", False),
        ("x <= 5", "1", False),
        ("x >= 0", True, False),
        ("x > 0", math.nan, False),
        ("x < 0", math.nan, False),
    ],
)
def test_condition_operators(text: str, value: Any, expected: bool) -> None:
    outcome = parse_condition(text).evaluate({"x": value})
    assert outcome.holds is expected
    assert outcome.value is value or outcome.value == value


@pytest.mark.parametrize("facts", [{}, {"a": 5}, {"a": {"c": 1}}, {"a": None}])
def test_a_missing_fact_makes_a_condition_false(facts: dict[str, Any]) -> None:
    for text in ("a.b > 1", "a.b == 1", "a.b != 1", "a.b not in [1]"):
        outcome = parse_condition(text).evaluate(facts)
        assert outcome.holds is False, text
        assert outcome.why == "a.b is not known"


@pytest.mark.parametrize(
    "text",
    ["x", "x ==", "x > high", "x >= true", "x in down", "x not in 3", "x >> 1", "1x == 2"],
)
def test_bad_conditions_are_refused(text: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(text)


def test_a_missing_fact_means_the_rule_does_not_match() -> None:
    evaluation = packs("shop").evaluate(checkout(), {"vendor": {"incident": False}})
    d = evaluation.decision
    assert "escalate" not in d.matched
    assert "scale-out" not in d.matched
    assert d.branch is None
    assert d.matched[-1] == "checkout-fallback"
    [(first, first_outcome), (second, second_outcome)] = trace_of(
        evaluation, "scale-out"
    ).conditions
    assert (first, first_outcome.holds) == ("incident.error_type == latency", True)
    assert (second, second_outcome.holds) == ("prometheus.error_ratio <= 0.5", False)
    assert second_outcome.why == "prometheus.error_ratio is not known"


def test_a_string_fact_never_orders_against_a_number() -> None:
    d = packs("shop").evaluate(checkout(), {"prometheus": {"error_ratio": "0.7"}}).decision
    assert "escalate" not in d.matched
    assert "scale-out" not in d.matched
    assert d.severity is Severity.P2


def test_incident_facts_see_the_classification_of_the_same_walk() -> None:
    rules = packs("shop")
    facts = {"prometheus": {"error_ratio": 0.2}}
    slow = rules.evaluate(checkout("CheckoutSlow"), facts)
    assert "scale-out" in slow.decision.matched
    [(_, outcome), _] = trace_of(slow, "scale-out").conditions
    assert outcome.value == "latency"
    # the 5xx errors are classified upstream_5xx: the latency branch does not apply
    errors = rules.evaluate(checkout("CheckoutErrors", status_code="503"), facts)
    assert errors.decision.error_type is ErrorType.UPSTREAM_5XX
    assert "scale-out" not in errors.decision.matched
    [(_, outcome), _] = trace_of(errors, "scale-out").conditions
    assert outcome.value == "upstream_5xx"
    assert not outcome.holds


def test_rules_with_conditions_wait_for_triage(tmp_path: Path) -> None:
    rules = inline(
        tmp_path,
        """
        name: waits
        version: "1"
        rules:
          - name: classify
            match: ['alertname="X"']
            classify: {severity: P2}
            continue: true
          - name: on-severity
            match: ['alertname="X"']
            when: ["incident.severity == P2"]
            notify: ["slack:#p2"]
        """,
    )
    alert = AlertInput(labels={"alertname": "X"})
    before = rules.evaluate(alert)  # facts=None: before triage
    assert before.decision.matched == ("classify",)
    assert before.decision.branch is None
    [(text, outcome)] = trace_of(before, "on-severity").conditions
    assert (text, outcome.holds) == ("incident.severity == P2", False)
    assert outcome.why == "no facts yet (before triage)"
    # with facts, even none, the condition is evaluated (on this walk's classification)
    after = rules.evaluate(alert, {})
    assert after.decision.matched == ("classify", "on-severity")
    assert after.decision.branch == "on-severity"
    assert after.decision.notify == ("slack:#p2",)


def test_shop_before_triage_has_no_branch() -> None:
    evaluation = packs("shop").evaluate(checkout())
    assert evaluation.decision.branch is None
    assert evaluation.decision.facts_used == {}
    for rule in ("escalate", "scale-out"):
        step = trace_of(evaluation, rule)
        assert not step.matched
        assert step.conditions
        assert all(o.why == "no facts yet (before triage)" for _, o in step.conditions)


# -------------------------------------------------------------------------- templates


def test_templated_parameters_are_filled_from_labels() -> None:
    d = packs("shop").evaluate(checkout(namespace="staging"), {"prometheus": {"error_ratio": 0.1}})
    d = d.decision
    scale = d.actions[0].spec
    assert scale.type == "scale"
    assert scale.namespace == "staging"
    assert scale.deployment == "checkout"
    assert scale.replicas == 4  # type: ignore[union-attr]
    health, p99 = (p.spec for p in d.probes)
    assert health.url == "http://checkout.shop.internal/health"  # type: ignore[union-attr]
    assert p99.queries == {  # type: ignore[union-attr]
        "p99": 'latency_p99{namespace="staging"}',
        "error_ratio": 'checkout:error_ratio:rate5m{namespace="staging"}',
    }
    assert d.title == "Checkout slow in staging"

    billing = packs("billing").evaluate(
        AlertInput(labels={"alertname": "InvoiceBacklog", "service": "billing", "tenant": "acme"})
    )
    assert billing.problems == []
    b = billing.decision
    assert b.title == "Invoices stuck for acme"
    assert [a.spec.deployment for a in b.actions] == ["invoicer-acme", "invoicer"]  # type: ignore[union-attr]


def test_a_template_failing_at_render_time_is_a_problem_not_a_crash() -> None:
    alert = AlertInput(labels={"alertname": "CheckoutSlow", "service": "checkout"})  # no namespace
    evaluation = packs("shop").evaluate(alert, {"prometheus": {"error_ratio": 0.2}})
    d = evaluation.decision
    problems = evaluation.problems
    assert any(
        p.startswith("rule scale-out: action scale not planned:") and "namespace" in p
        for p in problems
    ), problems
    assert any(
        p.startswith("rule checkout-slow: probe prometheus not planned:") and "namespace" in p
        for p in problems
    ), problems
    assert any(p.startswith("rule checkout-slow: title:") for p in problems), problems
    # the rest of the plan stands: the action without a template, the default probe
    assert [(a.spec.type, a.spec.namespace) for a in d.actions] == [("rollout_restart", "shop")]
    assert [p.spec.type for p in d.probes] == ["health"]
    assert "{{" not in d.title
    assert d.severity is Severity.P2
    assert d.branch == "scale-out"


def test_a_default_probe_template_failure_is_reported(tmp_path: Path) -> None:
    rules = inline(
        tmp_path,
        """
        name: defaults-fail
        version: "1"
        defaults:
          probes:
            - {type: health, url: "http://{{ labels.service }}/health"}
            - {type: vendor_status, url: "https://status.example.com"}
        rules:
          - name: r
            match: ['alertname="X"']
            classify: {severity: P2}
        """,
    )
    evaluation = rules.evaluate(AlertInput(labels={"alertname": "X"}))
    assert [p.spec.type for p in evaluation.decision.probes] == ["vendor_status"]
    [problem] = evaluation.problems
    assert problem.startswith("rule defaults: probe health not planned:")
    assert "service" in problem


# --------------------------------------------------------------------------- dry run


def test_dry_run_of_the_fixtures() -> None:
    shop = packs("shop").evaluate(checkout(), {"prometheus": {"error_ratio": 0.2}}).decision
    # rule says false, the rollout_restart action says true; the pack default is true
    assert [(a.spec.type, a.dry_run) for a in shop.actions] == [
        ("scale", False),
        ("rollout_restart", True),
    ]
    billing = (
        packs("billing")
        .evaluate(
            AlertInput(labels={"alertname": "InvoiceBacklog", "service": "billing", "tenant": "a"})
        )
        .decision
    )
    # the pack default is false, the set_env action says true
    assert [(a.spec.type, a.dry_run) for a in billing.actions] == [
        ("rollout_restart", False),
        ("set_env", True),
    ]


@pytest.mark.parametrize(
    ("pack_default", "rule", "action", "expected"),
    [
        (None, None, None, True),  # a new pack only says what it would do
        (False, None, None, False),
        (True, None, None, True),
        (True, False, None, False),
        (False, True, None, True),
        (True, False, True, True),
        (False, True, False, False),
        (None, None, False, False),
    ],
)
def test_dry_run_resolution(
    tmp_path: Path,
    pack_default: bool | None,
    rule: bool | None,
    action: bool | None,
    expected: bool,
) -> None:
    def yaml_bool(value: bool) -> str:
        return "true" if value else "false"

    lines = ["name: dry", 'version: "1"']
    if pack_default is not None:
        lines += ["defaults:", f"  dry_run: {yaml_bool(pack_default)}"]
    lines += ["rules:", "  - name: r", "    match: ['alertname=\"X\"']"]
    if rule is not None:
        lines.append(f"    dry_run: {yaml_bool(rule)}")
    lines += ["    actions:", "      - type: page_human", "        reason: look"]
    if action is not None:
        lines.append(f"        dry_run: {yaml_bool(action)}")
    path = tmp_path / "dry.yaml"
    path.write_text("\n".join(lines) + "\n")
    [planned] = load_rules([path]).evaluate(AlertInput(labels={"alertname": "X"})).decision.actions
    assert planned.dry_run is expected


# ------------------------------------------------------------ severities and group_by


def test_pack_severities_override_the_defaults() -> None:
    rules = packs("shop", "billing")
    shop_p2 = rules.severity_level("shop", Severity.P2)
    assert shop_p2.definition == "Checkout degraded"
    assert shop_p2.response_time == "< 30 min"
    assert shop_p2.respond_within_s == 1800
    assert rules.severity_level("shop", Severity.P1) == DEFAULT_SEVERITIES[Severity.P1]
    billing_p1 = rules.severity_level("billing", Severity.P1)
    assert (billing_p1.definition, billing_p1.respond_within_s) == ("Money is being lost", 300)
    # one pack's table does not leak into another's
    assert rules.severity_level("billing", Severity.P2) == DEFAULT_SEVERITIES[Severity.P2]
    assert rules.severity_level("nope", Severity.P2) == DEFAULT_SEVERITIES[Severity.P2]
    assert rules.severity_level(None, Severity.P1) == DEFAULT_SEVERITIES[Severity.P1]
    assert DEFAULT_SEVERITIES[Severity.P2].definition == "Degraded service"


def test_group_by_probes_and_channels_come_from_the_classifying_pack() -> None:
    rules = packs("sources", "shop", "billing")
    d = rules.evaluate(
        AlertInput(labels={"alertname": "PaymentTimeout", "service": "billing", "team": "pay"})
    ).decision
    # sources set the error type, billing the severity: billing classified it
    assert d.matched == ("any-timeout", "payment-timeout")
    assert d.pack == "billing"
    assert d.rule == "payment-timeout"
    assert d.severity is Severity.P2
    assert d.error_type is ErrorType.LATENCY
    assert d.group_by == ("alertname", "tenant")
    assert d.notify == ("console",)  # billing's default channels (no rule named one)
    assert d.probes == ()  # billing has no default probes; shop's are not used

    s = rules.evaluate(checkout(team="shop")).decision
    assert s.pack == "shop"
    assert s.group_by == ("alertname", "cluster")


def test_default_channels_only_when_no_rule_named_one(tmp_path: Path) -> None:
    rules = inline(
        tmp_path,
        """
        name: chan
        version: "1"
        defaults: {notify: ["slack:#default"]}
        rules:
          - name: quiet
            match: ['alertname="Quiet"']
            classify: {severity: P4}
          - name: loud
            match: ['alertname="Loud"']
            classify: {severity: P1}
            notify: [pagerduty]
        """,
    )
    quiet = rules.evaluate(AlertInput(labels={"alertname": "Quiet"})).decision
    loud = rules.evaluate(AlertInput(labels={"alertname": "Loud"})).decision
    assert quiet.notify == ("slack:#default",)
    assert loud.notify == ("pagerduty",)
    assert quiet.group_by == ("alertname", "service")  # the format's default


def test_classify_is_the_decision_of_evaluate_and_remembers_it(tmp_path: Path) -> None:
    rules = inline(
        tmp_path,
        """
        name: titles
        version: "1"
        rules:
          - name: errors
            match: ['alertname="Errors"', 'annotations.summary=~".+"']
            classify:
              severity: P2
              title: "{{ labels.service }}: {{ annotations.summary }}"
          - name: rest
            match: ['alertname=~".+"']
            classify: {severity: P4}
        """,
    )
    alerts = [
        AlertInput(labels={"alertname": "Errors", "service": s}, annotations={"summary": t})
        for s in ("api", "web")
        for t in ("500s", "503s")
    ] + [
        AlertInput(labels={"alertname": "Errors", "service": "api"}),
        AlertInput(labels={"alertname": "Other"}, source="pagerduty"),
    ]
    for alert in alerts:
        assert rules.classify(alert) == rules.evaluate(alert).decision
    # every label and annotation is part of what is remembered: titles differ
    titles = {rules.classify(a).title for a in alerts[:4]}
    assert titles == {"api: 500s", "api: 503s", "web: 500s", "web: 503s"}
    assert rules.classify(alerts[0]) is rules.classify(AlertInput(**vars(alerts[0])))
    assert rules.evaluate(alerts[0], explain=False).trace == []


def test_classify_skips_rules_by_their_label_gate_and_decides_as_the_full_walk(
    tmp_path: Path,
) -> None:
    # classify refuses a rule on its first label="value" matcher before walking the rest;
    # a gate must never refuse what the full walk (evaluate with its trace) would match
    rules = inline(
        tmp_path,
        """
        name: gates
        version: "1"
        rules:
          - name: by-source
            match: ['__source__="pagerduty"', 'alertname="Paged"']
            classify: {severity: P1}
          - name: by-annotation
            match: ['annotations.runbook="posthog"', 'service="api"']
            classify: {severity: P2}
          - name: missing-team
            match: ['alertname=~"Team.*"', 'team=""']
            classify: {severity: P3}
            continue: true
          - name: team-web
            match: ['team="web"', 'alertname!="Quiet"']
            classify: {severity: P2}
          - name: no-gate
            match: ['alertname=~".+"']
            classify: {severity: P4}
        """,
    )
    alerts = [
        AlertInput(labels={"alertname": "Paged"}, source="pagerduty"),
        AlertInput(labels={"alertname": "Paged"}),
        AlertInput(labels={"alertname": "X", "service": "api"}, annotations={"runbook": "posthog"}),
        AlertInput(labels={"alertname": "X", "service": "web"}, annotations={"runbook": "posthog"}),
        AlertInput(labels={"alertname": "TeamDown"}),
        AlertInput(labels={"alertname": "TeamDown", "team": ""}),
        AlertInput(labels={"alertname": "TeamDown", "team": "web"}),
        AlertInput(labels={"alertname": "Quiet", "team": "web"}),
        AlertInput(labels={"alertname": "Loud", "team": "db"}),
    ]
    decisions = [rules.classify(a) for a in alerts]
    assert decisions == [rules.evaluate(a).decision for a in alerts]
    assert [d.rule for d in decisions] == [
        "by-source",
        "no-gate",
        "by-annotation",
        "no-gate",
        "missing-team",
        "missing-team",
        "team-web",
        "no-gate",
        "no-gate",
    ]
