"""The shipped PostHog pack adapted to another integration by its one `names:` line.

The pack's header and the README promise that a team whose integration is not called
``posthog-integration`` edits the `names:` line of `scope` and nothing else. So here the
shipped pack is copied with only that line changed (a text substitution, as a person would
edit it), and everything it plans for an alert of the renamed integration (the triage
probes, the actions, their verify queries) must name the new integration, never the old.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from responder.domain.decision import Decision
from responder.rules.engine import AlertInput, RuleSet
from responder.rules.loader import load_rules

SHIPPED = Path(__file__).resolve().parents[1] / "rules" / "posthog.yaml"
OLD_NAME = "posthog-integration"
NEW_NAME = "acme-analytics"
NAMES_LINE = re.compile(r"^(?P<indent>\s+)names: \[posthog-integration\]$", re.MULTILINE)


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    text = SHIPPED.read_text()
    # the one line the header tells people to edit, and only it
    assert len(NAMES_LINE.findall(text)) == 1, "the pack's `names:` line changed"
    edited = NAMES_LINE.sub(rf"\g<indent>names: [{NEW_NAME}]", text)
    assert [a for a, b in zip(text.splitlines(), edited.splitlines(), strict=True) if a != b] == [
        f"  names: [{OLD_NAME}]"
    ]
    path = tmp_path_factory.mktemp("pack") / "posthog.yaml"
    path.write_text(edited)
    return load_rules([path])


def decide(rules: RuleSet, labels: dict[str, str], facts: dict[str, Any]) -> Decision:
    evaluation = rules.evaluate(AlertInput(labels={"namespace": "production", **labels}), facts)
    assert evaluation.problems == []  # every probe and action was planned
    return evaluation.decision


def probe_queries(decision: Decision) -> list[str]:
    [prometheus] = [p.spec for p in decision.probes if p.spec.type == "prometheus"]
    return list(prometheus.queries.values())


def verify_query(decision: Decision) -> str:
    [action] = decision.actions
    assert action.spec.verify is not None
    return action.spec.verify.query


FAILING = {"prometheus": {"error_ratio": 0.2}, "health": {"ok": True}}


@pytest.mark.parametrize(
    ("labels", "scope_label", "vendor_incident", "branch"),
    [
        # the integration named in `app`, the status in a label: the auth branch
        (
            {"alertname": "PostHogAuthFailures", "app": NEW_NAME, "status_code": "401"},
            "app",
            False,
            "our-integration-auth",
        ),
        # ... in `service`: the rate-limit branch
        (
            {"alertname": "PostHogRateLimited", "service": NEW_NAME, "status_code": "429"},
            "service",
            False,
            "our-integration-rate-limit",
        ),
        # ... in `container`, while PostHog shows an incident: the fallback
        (
            {"alertname": "AnalyticsCallsFailing", "container": NEW_NAME, "code": "503"},
            "container",
            True,
            "vendor-incident",
        ),
    ],
)
def test_triage_and_verify_queries_follow_the_names_line(
    renamed: RuleSet,
    labels: dict[str, str],
    scope_label: str,
    vendor_incident: bool,
    branch: str,
) -> None:
    decision = decide(renamed, labels, {**FAILING, "vendor": {"incident": vendor_incident}})
    assert decision.reasons["scope"] == f'pack posthog: {scope_label}="{NEW_NAME}"'
    assert decision.branch == branch
    # the metrics carry the integration in `service`, whatever label its alert used
    queries = probe_queries(decision)
    assert len(queries) == 3
    for query in queries:
        assert f'service="{NEW_NAME}"' in query, query
    assert f'service="{NEW_NAME}"' in verify_query(decision)
    # the health endpoint, the pods read and the Deployment acted on follow too
    specs = {p.spec.type: p.spec for p in decision.probes}
    assert specs["health"].url == f"http://{NEW_NAME}.production.svc.cluster.local/health"
    assert specs["pod_logs"].selector == f"app={NEW_NAME}"
    assert [a.spec.deployment for a in decision.actions] == [NEW_NAME]
    # and nothing planned still names the old integration
    planned = json.dumps([p.spec.model_dump(mode="json") for p in decision.probes])
    planned += json.dumps([a.spec.model_dump(mode="json") for a in decision.actions])
    assert OLD_NAME not in planned


def test_an_alert_that_only_names_posthog_is_the_renamed_integrations(renamed: RuleSet) -> None:
    """No label names the integration (the scope's `any`): the first name is used."""
    decision = decide(
        renamed,
        {"alertname": "PostHogRateLimited", "status_code": "429"},
        {**FAILING, "vendor": {"incident": False}},
    )
    assert decision.reasons["scope"] == 'pack posthog: alertname=~"(?is).*posthog.*"'
    assert decision.branch == "our-integration-rate-limit"
    assert all(f'service="{NEW_NAME}"' in q for q in probe_queries(decision))
    assert f'service="{NEW_NAME}"' in verify_query(decision)


def test_the_old_name_is_another_service_once_renamed(renamed: RuleSet) -> None:
    """The scope's `except` does not keep the shipped name: after the edit, an alert whose
    `service` is ``posthog-integration`` is another service's that only mentions PostHog."""
    evaluation = renamed.evaluate(
        AlertInput(labels={"alertname": "PostHogRateLimited", "service": OLD_NAME})
    )
    assert evaluation.decision.pack is None
