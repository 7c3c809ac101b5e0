"""The rule lint: what a valid pack can still get wrong, caught before 03:00.

Each mistake is refused where every pack is loaded (``rules lint``, ``serve``, a reload)
with the file, the line, the rule and what to do; the facts each probe declares are held
to what the probes really yield; the shipped pack and its example facts pass.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from responder.adapters.http import SharedSession
from responder.adapters.probes.health import HttpHealthProbe
from responder.adapters.probes.pod_logs import PodLogsReader
from responder.adapters.probes.prometheus import PrometheusQueryProbe
from responder.adapters.probes.vendor_status import StatuspageProbe
from responder.adapters.prometheus import Answer, PrometheusClient
from responder.cli import cli
from responder.domain.facts import FACT_NAMESPACES, ProbeResult, merge_facts
from responder.domain.plans import (
    HealthProbe,
    PodLogsProbe,
    PrometheusProbe,
    VendorStatusProbe,
)
from responder.metrics import Metrics
from responder.ports import KubeGateway, PodInfo
from responder.redaction import Redactor
from responder.rules.engine import AlertInput
from responder.rules.facts import (
    INCIDENT_FACTS,
    FactsError,
    expand,
    probe_facts,
    probe_types,
)
from responder.rules.lint import never_matches
from responder.rules.loader import RuleLoadError, load_pack, load_rules
from responder.rules.registry import RuleRegistry
from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage
from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rules" / "posthog.yaml"
FACTS_DIR = ROOT / "rules" / "facts"

PROMETHEUS = """
  probes:
    - type: prometheus
      queries: {error_ratio: 'sum(rate(errors[5m])) / sum(rate(requests[5m]))'}
"""


def write(tmp_path: Path, text: str, name: str = "pack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(RuleLoadError) as caught:
        load_pack(path)
    return [str(p) for p in caught.value.problems]


def pack(rules: str, defaults: str = PROMETHEUS) -> str:
    """A pack: name, version, defaults (their probes), then the rules as given."""
    return (
        "name: linted\nversion: '1'\ndefaults:\n"
        + textwrap.indent(textwrap.dedent(defaults).strip("\n"), "  ")
        + "\nrules:\n"
        + textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ")
        + "\n"
    )


# ------------------------------------------------------------------- declared facts


@pytest.fixture
async def session():
    shared = SharedSession()
    yield shared
    await shared.close()


def declared(spec: Any) -> set[str]:
    """A probe's declared facts, without its namespace (as its result holds them)."""
    return {name.split(".", 1)[1] for name in spec.facts()}


def test_every_probe_type_has_a_namespace_and_declares_its_facts() -> None:
    assert set(probe_types()) == set(FACT_NAMESPACES)
    for kind, model in probe_types().items():
        if model is not PrometheusProbe:
            assert model.YIELDS, kind


async def test_vendor_status_yields_what_it_declares(session) -> None:
    async with FakeStatuspage() as page:
        page.open_incident("Elevated API error rates", components=["API"], impact="major")
        spec = VendorStatusProbe(type="vendor_status", url=page.url)
        result = await StatuspageProbe(session).run(spec)
    assert result.ok
    assert set(result.facts) == declared(spec) - {"error", *spec.FAILURE_FACTS}
    assert set(spec.facts()) == {f"vendor.{n}" for n in [*VendorStatusProbe.YIELDS, "error"]}


async def test_health_yields_what_it_declares_reachable_or_not(session) -> None:
    async with FakeHealthEndpoint() as endpoint:
        endpoint.set_posthog("ok")
        spec = HealthProbe(
            type="health", url=endpoint.health_url, json_path=".services.posthog.status"
        )
        answered = await HttpHealthProbe(session).run(spec)
    assert answered.ok
    assert set(answered.facts) == declared(spec) - {"error"}
    gone = HealthProbe(type="health", url=f"http://127.0.0.1:{free_port()}/health")
    unreachable = await HttpHealthProbe(session).run(gone)
    assert unreachable.ok
    assert set(unreachable.facts) <= declared(gone)
    assert "error" in unreachable.facts  # the unreachable answer names its error


class _Prometheus:
    """Answers every instant query with one series, or with several for `by` queries."""

    async def query(self, query: str, *, timeout_s: float) -> dict[str, Any]:
        if " by " in query:
            return {
                "resultType": "vector",
                "result": [
                    {"metric": {"status_code": "429"}, "value": [0, "1.5"]},
                    {"metric": {"status_code": "503"}, "value": [0, "0.5"]},
                ],
            }
        return {"resultType": "vector", "result": [{"metric": {}, "value": [0, "0.2"]}]}

    async def answer(self, query: str, *, timeout_s: float) -> Answer:
        data = await self.query(query, timeout_s=timeout_s)
        return Answer(data=data, url="http://prometheus:9090", backup=False)


async def test_prometheus_yields_one_fact_per_query_name() -> None:
    spec = PrometheusProbe(
        type="prometheus",
        queries={"error_ratio": "a / b", "by_code": "sum by (status_code) (rate(x[5m]))"},
    )
    result = await PrometheusQueryProbe(cast(PrometheusClient, _Prometheus())).run(spec)
    assert result.ok
    assert (
        set(result.facts)
        == declared(spec) - {"error", *spec.FAILURE_FACTS}
        == {"error_ratio", "by_code", "answered_by", "backup"}
    )
    # a map by label values: the declaration lets conditions read into it
    assert result.facts["by_code"] == {"429": 1.5, "503": 0.5}
    assert spec.facts()["prometheus.by_code"] is True


class _Kube:
    async def list_pods(self, *, namespace: str, selector: str) -> list[PodInfo]:
        return [PodInfo(name=f"pod-{i}", namespace=namespace, containers=("app",)) for i in (1, 2)]

    async def read_log(
        self, *, namespace: str, pod: str, container: str | None, since_s: int, tail_lines: int
    ) -> str:
        return "ok\nERROR posthog said no\n"


async def test_pod_logs_yields_what_it_declares() -> None:
    spec = PodLogsProbe(type="pod_logs", namespace="production", selector="app=x")
    result = await PodLogsReader(cast(KubeGateway, _Kube()), Redactor([])).run(spec)
    assert result.ok
    assert set(result.facts) == declared(spec) - {"error", *spec.FAILURE_FACTS}
    assert result.facts["matching_lines"] == 2


def test_a_failed_probe_leaves_its_declared_error_fact() -> None:
    for kind in probe_types():
        facts = merge_facts([ProbeResult(probe=kind, ok=False, error="boom")])
        [(space, values)] = facts.items()
        assert isinstance(values, dict)
        assert {f"{space}.{name}" for name in values} == {f"{space}.error"}
    specs = [
        VendorStatusProbe(type="vendor_status", url="u"),
        HealthProbe(type="health", url="u"),
        PrometheusProbe(type="prometheus", queries={"q": "up"}),
        PodLogsProbe(type="pod_logs", namespace="n", selector="a=b"),
    ]
    for spec in specs:
        assert f"{FACT_NAMESPACES[spec.type]}.error" in spec.facts()


def test_the_engine_sets_the_incident_facts_it_declares(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: classify
              match: ['alertname="X"']
              classify: {severity: P2, error_type: auth}
              continue: true
            - name: branch
              match: ['alertname="X"']
              when: ["incident.severity == P2", "incident.error_type == auth"]
              notify: [console]
            """
        ),
    )
    evaluation = load_rules([path]).evaluate(AlertInput(labels={"alertname": "X"}), {})
    assert evaluation.decision.branch == "branch"
    assert {"incident.severity", "incident.error_type"} <= set(INCIDENT_FACTS)


# ------------------------------------------------------------------- a. unknown facts


def test_a_misspelt_fact_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: api-failing
              match: ['alertname="X"']
              when: ["promethues.error_ratio > 0.05"]
              notify: [console]
            """
        ),
    )
    assert problems(path) == [
        f"{path}:10: rule 'api-failing': when[0]: unknown fact promethues.error_ratio "
        "(no probe of this pack yields it); did you mean prometheus.error_ratio?"
    ]


def test_a_fact_of_a_probe_the_pack_lacks_says_which_probe_would(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: logs
              match: ['alertname="X"']
              when: ["logs.matching_lines > 10", "prometheus.latency_p99 > 2"]
              notify: [console]
            """
        ),
    )
    [logs, query] = problems(path)
    assert logs.endswith(
        "when[0]: unknown fact logs.matching_lines (no probe of this pack yields it); "
        "a pod_logs probe yields it: add one to defaults.probes or to this rule"
    )
    assert query.endswith(
        "when[1]: unknown fact prometheus.latency_p99 (no probe of this pack yields it); "
        "add a query named latency_p99 to a prometheus probe of the pack"
    )


def test_known_facts_pass_and_conditions_may_read_into_a_map(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: ok
              match: ['alertname="X"']
              when:
                - "prometheus.error_ratio > 0.05"
                - "prometheus.error_ratio.429 > 1"
                - "prometheus.error != x"
                - "incident.severity == P1"
                - "incident.acked == false"
              notify: [console]
            """
        ),
    )
    assert load_pack(path).rules
    bad = write(
        tmp_path,
        pack(
            """
            - name: into-a-number
              match: ['alertname="X"']
              when: ["incident.severity.level == 1", "vendor.incident == true"]
              notify: [console]
            """
        ),
        "bad.yaml",
    )
    found = problems(bad)
    assert [p.split(": ", 3)[3].split(" (")[0] for p in found] == [
        "unknown fact incident.severity.level",
        "unknown fact vendor.incident",
    ]


def test_probes_of_rules_that_run_with_it_count_and_others_do_not(tmp_path: Path) -> None:
    rules = """
        - name: health-first
          match: ['alertname="X"']
          probes: [{type: health, url: "http://x/health"}]
          continue: {cont}
        - name: needs-health
          match: ['alertname="Y"']
          when: ["health.ok == false"]
          notify: [console]
        """
    going = write(tmp_path, pack(rules.replace("{cont}", "true")), "going.yaml")
    assert load_pack(going).rules
    # without continue, an alert that matched it never reaches the later rule
    stopping = write(tmp_path, pack(rules.replace("{cont}", "false")), "stopping.yaml")
    [problem] = problems(stopping)
    assert "rule 'needs-health': when[0]: unknown fact health.ok" in problem
    # a later rule without conditions runs before triage: its probes count too
    later = write(
        tmp_path,
        pack(
            """
            - name: needs-health
              match: ['alertname="Y"']
              when: ["health.ok == false"]
              notify: [console]
            - name: health-later
              match: ['alertname="Y"']
              probes: [{type: health, url: "http://x/health"}]
            """
        ),
        "later.yaml",
    )
    assert load_pack(later).rules


# ---------------------------------------------------------------------- b. shadowing


def test_a_rule_shadowed_by_an_earlier_one_is_refused_naming_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: catch-all
              match: ['service = "posthog"']
              when: ["prometheus.error_ratio > 0.050"]
              notify: [console]
            - name: specific
              match: ['service="posthog"', 'alertname="PostHogRateLimited"']
              when: ["prometheus.error_ratio > 0.05", "incident.error_type == rate_limit"]
              notify: [console]
            """
        ),
    )
    assert problems(path) == [
        f"{path}:12: rule 'specific': never runs: rule 'catch-all' (line 8) comes first, "
        "matches every alert rule 'specific' matches and ends the walk "
        "(it has no `continue: true`)"
    ]


def test_no_shadow_with_continue_or_when_the_earlier_rule_asks_more(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: continues
              match: ['service="posthog"']
              notify: [console]
              continue: true
            - name: asks-more
              match: ['service="posthog"', 'alertname="A"']
              notify: [console]
            - name: other-value
              match: ['service="posthog"', 'alertname="B"']
              notify: [console]
            - name: other-condition
              match: ['service="posthog"', 'alertname="A"']
              when: ["prometheus.error_ratio > 0.5"]
              notify: [console]
            """
        ),
    )
    [problem] = problems(path)  # only the last: asks-more takes every alert it could get
    assert "rule 'other-condition': never runs: rule 'asks-more'" in problem


SHADOW = (
    "never runs: rule 'earlier' (line 8) comes first, matches every alert rule 'later' "
    "matches and ends the walk (it has no `continue: true`)"
)


def earlier_and_later(earlier: str, later: str, between: str = "") -> str:
    """A pack whose rule `earlier` (line 8) comes before rule `later`: each given as the
    keys of a flow mapping (match, when, continue), notifying the console."""
    rules = [f"- {{name: earlier, {earlier}, notify: [console]}}"]
    rules += [between] if between else []
    rules += [f"- {{name: later, {later}, notify: [console]}}"]
    return pack("\n".join(rules))


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # a regex that takes the later rule's exact value (anchored, as the engine does)
        ("""match: ['alertname=~"PostHog.*"']""", """match: ['alertname="PostHogAuthFailures"']"""),
        (
            """match: ['alertname=~"PostHogAuth.*"']""",
            """match: ['alertname="PostHogAuthFailures"', 'severity="page"']""",
        ),
        ("""match: ['alertname!~"Other.*"']""", """match: ['alertname="PostHogAuthFailures"']"""),
        ("""match: ['alertname!="Other"']""", """match: ['alertname=~"PostHog.*"']"""),
        # a regex that takes every value of the later rule's regex
        ("""match: ['alertname=~".*"']""", """match: ['alertname=~"PostHogAuth.*"']"""),
        ("""match: ['alertname=~"PostHog.*"']""", """match: ['alertname=~"PostHogAuth.*"']"""),
        ("""match: ['alertname=~"PostHog.*"']""", """match: ['alertname=~"PostHog.*Failures"']"""),
        ("""match: ['alertname!~"PostHog.*"']""", """match: ['alertname!~"Post.*"']"""),
        (
            """match: ['annotations.summary=~"(?s).*rate limit.*"']""",
            """match: ['annotations.summary=~"PostHog rate limit.*"']""",
        ),
        # a looser threshold on the same fact
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.01']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.05']""",
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio >= 0.01']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.01']""",
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.01']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio >= 0.05']""",
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio < 0.5']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio <= 0.1']""",
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio <= 0.5']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio < 0.5']""",
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.01']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio == 0.05']""",
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio != 0']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0']""",
        ),
        # both at once, and a later rule that asks more
        (
            """match: ['alertname=~"PostHog.*"'], when: ['prometheus.error_ratio > 0.01']""",
            """match: ['alertname="PostHogAuthFailures"'],
               when: ['prometheus.error_ratio > 0.05', 'incident.error_type == auth']""",
        ),
    ],
    ids=[
        "regex-takes-value",
        "regex-takes-value-later-asks-more",
        "not-regex-takes-value",
        "not-equal-takes-regex",
        "dot-star-takes-regex",
        "prefix-takes-longer-prefix",
        "prefix-takes-glob",
        "not-regex-refuses-less",
        "annotation-anywhere-takes-prefix",
        "gt-looser",
        "ge-takes-gt",
        "gt-takes-ge",
        "lt-takes-le",
        "le-takes-lt",
        "gt-takes-eq",
        "ne-takes-gt",
        "regex-and-threshold",
    ],
)
def test_a_rule_shadowed_by_a_covering_regex_or_a_looser_threshold_is_refused(
    tmp_path: Path, earlier: str, later: str
) -> None:
    path = write(tmp_path, earlier_and_later(earlier, later))
    assert problems(path) == [f"{path}:9: rule 'later': {SHADOW}"]


@pytest.mark.parametrize(
    ("earlier", "later", "between", "labels", "annotations", "facts"),
    [
        # the earlier rule goes on
        (
            """match: ['alertname=~"PostHog.*"'], continue: true""",
            """match: ['alertname="PostHogAuthFailures"']""",
            "",
            {"alertname": "PostHogAuthFailures"},
            {},
            None,
        ),
        # the earlier regex does not take the later rule's value or regex
        (
            """match: ['alertname=~"PostHogRate.*"']""",
            """match: ['alertname="PostHogAuthFailures"']""",
            "",
            {"alertname": "PostHogAuthFailures"},
            {},
            None,
        ),
        (  # anchored at both ends: `PostHog` is not found inside the name
            """match: ['alertname=~"PostHog"']""",
            """match: ['alertname="PostHogAuthFailures"']""",
            "",
            {"alertname": "PostHogAuthFailures"},
            {},
            None,
        ),
        (
            """match: ['alertname=~"PostHogAuth.*"']""",
            """match: ['alertname=~"PostHog.*"']""",
            "",
            {"alertname": "PostHogRateLimited"},
            {},
            None,
        ),
        (
            """match: ['alertname=~"PostHog.+"']""",
            """match: ['alertname=~"PostHog.*"']""",
            "",
            {"alertname": "PostHog"},
            {},
            None,
        ),
        (
            """match: ['alertname!~"Post.*"']""",
            """match: ['alertname!~"PostHog.*"']""",
            "",
            {"alertname": "PostOffice"},
            {},
            None,
        ),
        (  # without (?s) the earlier `.*` stops at a newline; the later one's does not
            """match: ['annotations.summary=~".*limit.*"']""",
            """match: ['annotations.summary=~"(?s)rate.*limit.*"']""",
            "",
            {"alertname": "A"},
            {"summary": "rate\nlimit"},
            None,
        ),
        # a different label
        (
            """match: ['job=~"PostHog.*"']""",
            """match: ['alertname="PostHogAuthFailures"']""",
            "",
            {"alertname": "PostHogAuthFailures", "job": "node"},
            {},
            None,
        ),
        # the earlier threshold is the stricter one
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.05']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.01']""",
            "",
            {"service": "posthog"},
            {},
            {"prometheus": {"error_ratio": 0.03}},
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.05']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio >= 0.05']""",
            "",
            {"service": "posthog"},
            {},
            {"prometheus": {"error_ratio": 0.05}},
        ),
        (
            """match: ['service="posthog"'], when: ['prometheus.error_ratio < 0.5']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio > 0.1']""",
            "",
            {"service": "posthog"},
            {},
            {"prometheus": {"error_ratio": 0.7}},
        ),
        (  # `== 1` also holds for true, which no ordering takes
            """match: ['service="posthog"'], when: ['prometheus.error_ratio >= 1']""",
            """match: ['service="posthog"'], when: ['prometheus.error_ratio == 1']""",
            "",
            {"service": "posthog"},
            {},
            {"prometheus": {"error_ratio": True}},
        ),
        (  # a rule between them that goes on changes the incident's severity
            """match: ['service="posthog"'], when: ['incident.severity == P1']""",
            """match: ['service="posthog"', 'alertname="Big"'],
               when: ['incident.severity == P1']""",
            "- {name: raise, match: ['alertname=\"Big\"'], classify: {severity: P1}, "
            "continue: true}",
            {"service": "posthog", "alertname": "Big"},
            {},
            {},
        ),
    ],
    ids=[
        "earlier-continues",
        "regex-other-prefix",
        "regex-anchored",
        "narrower-regex-first",
        "dot-plus-not-dot-star",
        "not-regex-refuses-more",
        "dot-star-stops-at-newline",
        "different-label",
        "stricter-threshold-first",
        "gt-before-ge",
        "opposite-directions",
        "eq-1-holds-for-true",
        "incident-changed-between",
    ],
)
def test_no_shadow_when_an_alert_can_reach_the_later_rule(
    tmp_path: Path,
    earlier: str,
    later: str,
    between: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    facts: dict[str, Any] | None,
) -> None:
    path = write(tmp_path, earlier_and_later(earlier, later, between))
    rules = load_rules([path])  # lints: refuses the pack on any problem
    alert = AlertInput(labels=labels, annotations=annotations)
    assert "later" in rules.evaluate(alert, facts).decision.matched  # it does run


# ---------------------------------------------------------------------- c. templates


def test_a_template_naming_an_unknown_variable_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: typo
              match: ['alertname="X"']
              classify: {severity: P2, title: "Down in {{ label.namespace }}"}
              actions:
                - {type: rollout_restart, namespace: "{{ incident.namespace }}",
                   deployment: "{{ source.nope }}"}
            """
        ),
    )
    assert problems(path) == [
        f"{path}:10: rule 'typo': classify.title: template 'Down in {{{{ label.namespace }}}}': "
        "unknown name label (templates see annotations, labels, source); did you mean labels?",
        f"{path}:12: rule 'typo': actions[0].namespace: template "
        "'{{ incident.namespace }}': unknown name incident (templates see annotations, labels, "
        "source)",
        f"{path}:13: rule 'typo': actions[0].deployment: template '{{{{ source.nope }}}}': "
        "source has no attribute nope",
    ]


def test_any_label_and_annotation_and_local_names_are_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            """
            - name: fine
              match: ['alertname="X"']
              classify:
                severity: P2
                title: >-
                  {{ labels.whatever | default('x') }} {{ annotations.summary }}
                  {{ labels['odd-name'] }} {{ source | upper }} {{ source.upper() }}
                  {% for k, v in labels.items() %}{{ k }}={{ v.strip() }}{% endfor %}
                  {% set n = labels.service %}{{ n.lower() }} {{ range(3) | list }}
            """,
            defaults="""
              probes:
                - {type: health, url: "http://{{ labels.service }}.{{ labels.namespace }}/h"}
            """,
        ),
    )
    assert load_pack(path).rules
    bad = write(
        tmp_path,
        pack(
            "- {name: x, match: ['alertname=\"X\"'], notify: [console]}",
            defaults="""
              probes:
                - {type: health, url: "http://{{ lables.service }}/h"}
            """,
        ),
        "bad.yaml",
    )
    [problem] = problems(bad)
    assert problem.endswith("did you mean labels?")
    assert f"{bad}:5: defaults.probes[0].url: template" in problem


# ----------------------------------------------------------------------- d. regexes


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("a^b", "`^` comes after text"),
        ("(x|y)+^z", "`^` comes after text"),
        (r"x\Ay", "`\\A` comes after text"),
        ("$x", "after `$` only a final newline may come"),
        ("x$.", "after `$` only a final newline may come"),
        (r"x\Zy", "it needs text after the end of the text"),
        (r"[^\s\S]", "a character class that matches no character"),
        (r"[^\d\D]+", "a character class that matches no character"),
        ("(?!)", "the empty negative lookaround `(?!)` never holds"),
        ("a(?=^b)", "the lookahead can never hold"),
        ("(a^b|c^d)", "`^` comes after text"),
    ],
)
def test_regexes_that_can_never_match(pattern: str, why: str) -> None:
    reason = never_matches(pattern)
    assert reason is not None
    assert why in reason, reason
    assert re.search(pattern, "a b c x y z\nabc\n" * 3) is None  # really never


@pytest.mark.parametrize(
    "pattern",
    [
        "^a$",
        "a|^b",
        "(x|^b)c",
        "b*^a",
        "(?m)a\n^b",
        "(?m:a$\nb)",
        "x$\n",
        "(?s)x$.",
        "40[13]",
        r"\b5(\d\d|xx)\b|Internal Server Error",
        "PostHog(APIUnreachable|Errors|Metrics(Absent|Missing))",
        "(?i)error",
        "(a)?^b",
        r"(a)\1",
        "",
    ],
)
def test_regexes_that_can_match_are_not_flagged(pattern: str) -> None:
    assert never_matches(pattern) is None


def test_a_newline_where_the_text_is_a_single_line() -> None:
    assert never_matches("a\nb", single_line=True) == (
        "it needs a newline, and the text it reads is a single line"
    )
    assert never_matches("a[\n]b|c\n", single_line=True) is not None
    assert never_matches("a\nb") is None  # an annotation may hold several lines
    assert never_matches("a\n?b|c", single_line=True) is None


def test_impossible_regexes_in_a_pack_are_refused_where_they_are(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pack(
            r"""
            - name: regexes
              match:
                - 'alertname=~"PostHog^Errors"'
                - 'team!~"[^\\s\\S]"'
                - 'annotations.description=~"(?s).*\n.*"'
                - 'instance=~"a\nb"'
              classify:
                severity: P2
                error_type:
                  from: label:status_code
                  cases: [{match: "429$x", type: rate_limit}]
            """,
            defaults="""
              probes:
                - {type: pod_logs, namespace: prod, selector: app=x, pattern: "error\\nat"}
            """,
        ),
    )
    found = problems(path)
    assert found == [
        f"{path}:9: rule 'regexes': match[0]: regular expression 'PostHog^Errors' can never "
        "match (`^` comes after text, and without `(?m)` it matches only at the start): the "
        "rule never matches",
        f"{path}:10: rule 'regexes': match[1]: regular expression '[^\\\\s\\\\S]' can never "
        "match (a character class that matches no character): the matcher always holds",
        f"{path}:12: rule 'regexes': match[3]: regular expression 'a\\nb' can never match "
        "(it needs a newline, and the text it reads is a single line): the rule never matches",
        f"{path}:17: rule 'regexes': classify.error_type.cases[0].match: regular expression "
        "'429$x' can never match (after `$` only a final newline may come, and it needs other "
        "text there): this case is never chosen",
        f"{path}:5: defaults.probes[0].pattern: regular expression 'error\\nat' can never "
        "match (it needs a newline, and the text it reads is a single line): the probe never "
        "finds a line",
    ]


# ---------------------------------------------------- the shipped pack, serve, reload


def test_the_shipped_pack_passes_the_lint() -> None:
    compiled = load_pack(SHIPPED)
    assert compiled.rules


def test_every_problem_of_a_file_at_once_and_serve_and_reload_refuse(tmp_path: Path) -> None:
    good = write(tmp_path, pack("- {name: a, match: ['alertname=\"A\"'], notify: [console]}"))
    registry = RuleRegistry([good], Metrics())
    good.write_text(
        pack(
            """
            - name: a
              match: ['alertname="A"']
              when: ["vendor.incidnet == true"]
              notify: [console]
            - name: b
              match: ['alertname="A"']
              when: ["vendor.incidnet == true"]
              classify: {title: "{{ label.x }}"}
            """,
            defaults=PROMETHEUS + "    - {type: vendor_status, url: 'https://status.x'}\n",
        )
    )
    result = registry.reload()
    assert not result.ok
    assert [re.sub(r"^.*?:\d+: ", "", p) for p in result.problems] == [
        "rule 'a': when[0]: unknown fact vendor.incidnet (no probe of this pack yields it); "
        "did you mean vendor.incident?",
        "rule 'b': when[0]: unknown fact vendor.incidnet (no probe of this pack yields it); "
        "did you mean vendor.incident?",
        "rule 'b': never runs: rule 'a' (line 9) comes first, matches every alert rule 'b' "
        "matches and ends the walk (it has no `continue: true`)",
        "rule 'b': classify.title: template '{{ label.x }}': unknown name label (templates "
        "see annotations, labels, source); did you mean labels?",
    ]
    assert [r.name for r in registry().rules()] == ["a"]  # the old rules stay in force
    with pytest.raises(RuleLoadError):
        RuleRegistry([good], Metrics())  # serve refuses to start


def test_rules_lint_exits_1_naming_the_problem(tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        pack(
            """
            - name: typo
              match: ['alertname="X"']
              when: ["promethues.error_ratio > 0.05"]
              notify: [console]
            """
        ),
    )
    result = CliRunner().invoke(cli, ["rules", "lint", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {bad}:10: rule 'typo': when[0]: unknown fact promethues.error_ratio "
        "(no probe of this pack yields it); did you mean prometheus.error_ratio?\n"
    )
    shipped = CliRunner().invoke(cli, ["rules", "lint", str(SHIPPED)])
    assert shipped.exit_code == 0, shipped.stderr


# -------------------------------------------------------------- facts written by hand


def test_dotted_and_nested_facts_are_merged() -> None:
    assert expand(
        {
            "prometheus.error_ratio": 0.2,
            "prometheus": {"errors_by_status_code": {429: 1.0}},
            "vendor": {"incident": False, "components.api": "ok"},
        }
    ) == {
        "prometheus": {"error_ratio": 0.2, "errors_by_status_code": {"429": 1.0}},
        "vendor": {"incident": False, "components": {"api": "ok"}},
    }
    for twice in (
        {"vendor.incident": True, "vendor": {"incident": False}},
        {"vendor": True, "vendor.incident": True},
        {"vendor.incident.x": 1, "vendor.incident": True},
    ):
        with pytest.raises(FactsError):
            expand(twice)


def test_explain_reads_dotted_facts(tmp_path: Path) -> None:
    facts = tmp_path / "facts.yaml"
    facts.write_text("prometheus.error_ratio: 0.3\nvendor:\n  incident: false\n")
    payload = ROOT / "examples" / "alertmanager" / "posthog-rate-limited-429-firing.json"
    result = CliRunner().invoke(cli, ["rules", "explain", str(payload), "--facts", str(facts)])
    assert result.exit_code == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    facts_line = next(line for line in lines if line.startswith("facts: "))
    assert json.loads(facts_line.removeprefix("facts: ")) == {
        "prometheus": {"error_ratio": 0.3},
        "vendor": {"incident": False},
    }
    assert "branch     our-integration-rate-limit" in lines
    facts.write_text("vendor.incident: true\nvendor:\n  incident: false\n")
    clash = CliRunner().invoke(cli, ["rules", "explain", str(payload), "--facts", str(facts)])
    assert clash.exit_code == 1
    assert clash.stderr == f"error: {facts}: vendor.incident is given twice\n"


FACT_FILES = sorted(FACTS_DIR.glob("*.yaml"))


def _branches() -> set[str]:
    """The branches of the shipped decision tree: rules on facts that do something."""
    return {
        r.name
        for r in load_pack(SHIPPED).rules
        if r.spec.when and (r.spec.actions or r.spec.notify or r.spec.probes)
    }


def test_every_branch_of_the_shipped_tree_has_its_example_facts() -> None:
    assert {f.stem for f in FACT_FILES} == _branches()


@pytest.mark.parametrize("path", FACT_FILES, ids=[f.stem for f in FACT_FILES])
def test_example_facts_pick_their_branch(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    command = re.search(r"^#\s+(responder rules explain .*)$", text, re.MULTILINE)
    assert command is not None, f"{path.name} shows no `responder rules explain` command"
    args = shlex.split(command.group(1))[1:]
    assert args[-2:] == ["--facts", f"rules/facts/{path.name}"]
    args = [str(ROOT / a) if a.startswith(("examples/", "rules/")) else a for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert f"branch     {path.stem}" in lines, result.stdout
    assert not any(line.startswith("problem") for line in lines), result.stdout
    # every fact of the example is one the pack's quick triage really yields
    facts = expand(json.loads(next(x for x in lines if x.startswith("facts: "))[7:]))
    # (the defaults' probes and those a rule adds, as the 429 rule's rate limit headers)
    shipped = load_pack(SHIPPED)
    yielded = probe_facts(
        [*shipped.spec.defaults.probes, *(p for r in shipped.rules for p in r.spec.probes)]
    )
    written = {f"{space}.{name}" for space, values in facts.items() for name in values}
    assert written <= set(yielded), written - set(yielded)
