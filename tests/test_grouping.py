"""Intake names each alert's incident group, the key its signals are ordered by."""

from __future__ import annotations

from pathlib import Path

from responder.domain.signal import group_key_for
from responder.grouping import AlertGroups
from responder.rules.engine import RuleSet
from responder.rules.loader import load_pack

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ("alertname", "service")


def _rules(*names: str) -> RuleSet:
    return RuleSet(tuple(load_pack(ROOT / name) for name in names))


def test_packs_that_group_as_the_default_need_no_classification() -> None:
    rules = _rules("rules/posthog.yaml")
    groups = AlertGroups(rules=lambda: rules, default_group_by=DEFAULT)
    labels = {"alertname": "PostHogRateLimited", "service": "posthog-integration", "pod": "a"}
    assert groups("fp", labels, {}) == group_key_for(labels, DEFAULT)


def test_a_pack_with_its_own_group_by_groups_the_alerts_it_claims() -> None:
    rules = _rules("rules/posthog.yaml", "tests/fixtures/rules/good/billing.yaml")
    groups = AlertGroups(rules=lambda: rules, default_group_by=DEFAULT)
    billing = {"alertname": "InvoiceBacklog", "service": "billing", "tenant": "acme"}
    other = {"alertname": "DiskFull", "service": "db", "tenant": "acme"}
    assert groups("b", billing, {}) == '{alertname="InvoiceBacklog",tenant="acme"}'
    assert groups("o", other, {}) == '{alertname="DiskFull",service="db"}'


def test_an_alert_keeps_its_group_while_its_annotations_change() -> None:
    """Its firing and its resolve must be ordered together, even when a pack's matcher
    reads an annotation that changed in between; a reload decides afresh."""
    rules = _rules("tests/fixtures/rules/good/billing.yaml")
    current = [rules]
    groups = AlertGroups(rules=lambda: current[0], default_group_by=DEFAULT)
    labels = {"alertname": "InvoiceBacklog", "service": "billing", "tenant": "acme"}
    first = groups("fp", labels, {"summary": "backlog of 12"})
    assert groups("fp", dict(labels), {"summary": "resolved"}) == first
    current[0] = RuleSet(())  # reloaded without the pack: the default groups it now
    assert groups("fp", labels, {}) == group_key_for(labels, DEFAULT)
