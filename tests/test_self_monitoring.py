"""Responder's self-monitoring: its own alert rules (deploy/prometheus/responder-alerts.yml),
the Prometheus Operator Component that ships them (deploy/kubernetes/monitoring/) and the
Grafana dashboard (deploy/grafana/responder.json), checked with the tools that read them
(promtool, kubectl kustomize) and against the /metrics of a running service.

Needs ``promtool``, ``prometheus`` and ``kubectl`` (which ``make test`` expects); without
them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from responder.settings import Settings
from tests.support.mitigation import alert, cluster, responder, settled
from tests.support.prometheus import running_prometheus
from tests.support.service import running_service
from tests.support.slack_signing import button_press, form_body, signed_headers
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
RULES_YML = ROOT / "deploy" / "prometheus" / "responder-alerts.yml"
RULES_TEST_YML = ROOT / "deploy" / "prometheus" / "responder-alerts.test.yml"
COMPONENT = ROOT / "deploy" / "kubernetes" / "monitoring"
BASE = ROOT / "deploy" / "kubernetes"
RENDERER = ROOT / "deploy" / "prometheus_rule.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "responder.json"

# The failures issues 19 and 21 ask responder to alert on about itself, and the alert for
# each.
FAILURES = {
    "no replica scraped": "ResponderAbsent",
    "no consumer loop runs": "ResponderNoConsumers",
    "workers not consuming": "ResponderWorkersNotConsuming",
    "queue lag": "ResponderQueueStale",
    "queue full": "ResponderQueueFull",
    "dead letters": "ResponderDeadLetters",
    "consumer loops failing": "ResponderConsumerErrors",
    "a sink's circuit open": "ResponderSinkCircuitOpen",
    "notifications failing for good": "ResponderNotificationsFailed",
    "notifications retried": "ResponderNotificationsRetrying",
    "actions refused by budget": "ResponderActionBudgetSpent",
    # and issue 21's: Slack presses refused as an attack or a misconfiguration would be
    "slack presses forged or replayed": "ResponderSlackPressesForged",
    "slack presses stale": "ResponderSlackPressesStale",
}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed (see the module's docstring)", pytrace=False)
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for group in yaml.safe_load(RULES_YML.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] not in found, rule["alert"]
            found[rule["alert"]] = rule
    return found


def unit_tests() -> Iterator[dict[str, Any]]:
    for case in yaml.safe_load(RULES_TEST_YML.read_text())["tests"]:
        yield from case["alert_rule_test"]


# ------------------------------------------------------------------ PromQL metric names

# What PromQL can say besides a metric name: keywords, and aggregation operators (which
# ``sum by (x) (...)`` writes without a "(" after their name).
KEYWORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers that are neither
    functions nor keywords, once label matchers, label lists of by/on/..., range and
    offset durations, strings and Grafana's variables are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text
    )  # label lists
    text = re.sub(r"\boffset\s+\S+", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # $__rate_interval, ${datasource}
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        after = text[match.end() :].lstrip()
        if after.startswith("(") or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def rule_expressions() -> list[str]:
    return [r["expr"] for r in rules().values()]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            exprs.append(str(variable.get("query", "")))
    return exprs


# ------------------------------------------------------------------------- the rules


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    check = run(require("promtool"), "check", "rules", str(RULES_YML))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules())} rules found" in check.stdout
    result = run(
        require("promtool"), "test", "rules", RULES_TEST_YML.name, cwd=RULES_TEST_YML.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_failure_of_the_issue_has_an_alert_that_fires_and_stays_quiet_when_healthy(
    tmp_path: Path,
) -> None:
    assert set(FAILURES.values()) == set(rules())
    firing = {t["alertname"] for t in unit_tests() if t["exp_alerts"]}
    quiet = {t["alertname"] for t in unit_tests() if not t["exp_alerts"]}
    assert firing == set(rules())
    assert quiet == set(rules())
    # and the healthy responder's case asks every alert to stay quiet
    [healthy] = [
        c
        for c in yaml.safe_load(RULES_TEST_YML.read_text())["tests"]
        if c["name"].startswith("a healthy responder")
    ]
    assert {t["alertname"] for t in healthy["alert_rule_test"]} == set(rules())
    assert all(t["exp_alerts"] == [] for t in healthy["alert_rule_test"])
    # the unit tests can fail: against rules whose expressions can never be true, every
    # alert's firing expectation is reported missing
    doc = yaml.safe_load(RULES_YML.read_text())
    for rule in doc["groups"][0]["rules"]:
        rule["expr"] = f"({rule['expr']}) and on () vector(0) > 1"
    (tmp_path / RULES_YML.name).write_text(yaml.safe_dump(doc))
    shutil.copy(RULES_TEST_YML, tmp_path / RULES_TEST_YML.name)
    result = run(require("promtool"), "test", "rules", RULES_TEST_YML.name, cwd=tmp_path)
    assert result.returncode != 0
    for alertname in rules():
        assert f"alertname: {alertname}" in result.stdout + result.stderr, alertname


# ------------------------------------------------------------ the Kubernetes Component


def test_the_prometheus_rule_is_the_rendering_of_the_rules_file() -> None:
    check = run(sys.executable, str(RENDERER), "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    [rule] = [d for d in yaml.safe_load_all((COMPONENT / "prometheusrule.yaml").read_text()) if d]
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_YML.read_text())["groups"]


def test_the_rendering_check_fails_when_the_rules_file_changed(tmp_path: Path) -> None:
    """``--check`` compares with the rules as they are now: a copy of the repository's
    deploy/ whose rules gained one says the PrometheusRule is out of date."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "deploy", copy / "deploy")
    rules_yml = copy / "deploy" / "prometheus" / RULES_YML.name
    rules_yml.write_text(
        rules_yml.read_text() + "      - alert: ResponderSomethingNew\n        expr: vector(1)\n"
    )
    stale = run(sys.executable, str(copy / "deploy" / RENDERER.name), "--check", cwd=copy)
    assert stale.returncode == 1
    assert "make manifests" in stale.stdout + stale.stderr
    written = run(sys.executable, str(copy / "deploy" / RENDERER.name), cwd=copy)
    assert written.returncode == 0, written.stderr
    again = run(sys.executable, str(copy / "deploy" / RENDERER.name), "--check", cwd=copy)
    assert again.returncode == 0, again.stderr
    assert (
        "ResponderSomethingNew"
        in (copy / "deploy/kubernetes/monitoring/prometheusrule.yaml").read_text()
    )


def test_the_component_renders_over_the_base_and_scrapes_its_service(tmp_path: Path) -> None:
    """An overlay in another namespace adding the Component: the ServiceMonitor and the
    PrometheusRule land in that namespace, and the ServiceMonitor selects the responder
    Service by its labels and a port it has, at the path the service answers."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "ops",
                "resources": [os.path.relpath(BASE, overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    result = run(require("kubectl"), "kustomize", str(overlay))
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in objects}
    monitor = by_kind[("ServiceMonitor", "responder")]
    rule = by_kind[("PrometheusRule", "responder")]
    service = by_kind[("Service", "responder")]
    assert monitor["apiVersion"] == rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == rule["metadata"]["namespace"] == "ops"
    assert service["metadata"]["namespace"] == "ops"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_YML.read_text())["groups"]


# ---------------------------------------------------- names against a running service


def exported(text: str) -> tuple[set[str], set[str]]:
    """(the sample names of /metrics, every sample name its families declare): a counter
    ``x`` is sampled as ``x_total``, a histogram as ``x_bucket``/``x_sum``/``x_count``; a
    labelled family without a child yet declares its names without a sample."""
    sampled: set[str] = set()
    declared: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    for family in text_string_to_metric_families(text):
        sampled |= {s.name for s in family.samples}
        declared |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return sampled, sampled | declared


# Families the test's traffic leaves without a series (declared on /metrics all the same).
NOT_IN_THIS_TRAFFIC = {
    "responder_action_verifications_total",  # no verify query in the pack
    "responder_incidents_capped_total",  # no alert storm
    "responder_notification_seconds_bucket",  # the console sink is not timed
    "responder_pagerduty_unmatched_total",  # no PagerDuty webhook
    "responder_rule_reloads_total",  # no reload
    "responder_signal_failures_total",  # no signal failed
    "responder_signal_retries_total",  # no signal retried
}


async def scrape(base_url_get: Callable[[str], Any]) -> str:
    resp = await base_url_get("/metrics")
    assert resp.status == 200
    return str(await resp.text())


async def test_the_alerts_counters_are_exported_at_zero_before_their_first_event(
    make_settings: Callable[..., Settings],
) -> None:
    """Prometheus's increase() cannot count the first event of a series that appears with
    it: the children the alerts watch exist, at 0, from start-up."""
    async with running_service(make_settings(), notify=True) as svc:
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(await scrape(svc.client.get))
            for s in f.samples
        }
    for reason in ("failed", "max_deliveries", "unreadable"):
        assert samples[("responder_dead_lettered_total", (("reason", reason),))] == 0
    assert samples[("responder_action_refusals_total", (("guard", "budget"),))] == 0
    for outcome in ("forged", "replayed", "stale"):
        assert samples[("responder_slack_interactions_total", (("outcome", outcome),))] == 0
    # the console, the sink of a service without Slack
    assert samples[("responder_notification_circuit_open", (("sink", "console"),))] == 0
    for outcome in ("sent", "retry", "failed"):
        key = ("responder_notifications_total", (("outcome", outcome), ("sink", "console")))
        assert samples[key] == 0


async def test_every_metric_the_rules_and_the_dashboard_name_is_on_metrics(
    backend_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A service on Redis and a fake cluster, with a little traffic: an incident whose
    action is applied (triage, probes, notifications) and one whose action the spent
    budget refuses. Every metric the alert rules name is then sampled on /metrics, and
    every metric the dashboard names is exported there."""
    async with (
        cluster(tmp_path) as c,
        responder(c, backend_settings, notify=True, action_budget=1) as svc,
    ):
        await svc.post_alertmanager(alert("Restart"))
        await settled(svc, "Restart", "action.applied")
        await svc.post_alertmanager(alert("Scale"))
        inc = await settled(svc, "Scale", "action.refused")
        assert inc["actions"][0]["verdicts"][-1]["guard"] == "budget"
        text = await scrape(svc.client.get)
    sampled, declared = exported(text)
    assert re.search(r'^responder_action_refusals_total\{guard="budget"\} 1\.0$', text, re.M)

    in_rules = set().union(*map(metric_names, rule_expressions()))
    assert in_rules, "the rules name no metric"
    assert in_rules <= sampled, f"not sampled on /metrics: {sorted(in_rules - sampled)}"

    in_dashboard = set().union(*map(metric_names, dashboard_expressions()))
    assert len(in_dashboard) >= 20, sorted(in_dashboard)
    assert in_dashboard <= declared, f"not on /metrics: {sorted(in_dashboard - declared)}"
    # the traffic gave the others series: these wait for events it did not make
    assert in_dashboard - sampled <= NOT_IN_THIS_TRAFFIC, sorted(in_dashboard - sampled)


def test_the_name_check_catches_a_misspelt_dashboard_query() -> None:
    """The check above is not vacuous: names are read off PromQL as Prometheus reads them,
    and a dashboard query with one name misspelt names a metric nobody exports."""
    assert metric_names(
        "sum by (le, sink) (rate(responder_notification_seconds_bucket"
        '{sink!~"a|b"}[$__rate_interval]))'
        " / on () group_left sum(responder_x offset 5m) and vector(0) > bool 1"
    ) == {"responder_notification_seconds_bucket", "responder_x"}
    from prometheus_client import generate_latest

    from responder.metrics import Metrics

    _, declared = exported(generate_latest(Metrics().registry).decode())
    [query] = [e for e in dashboard_expressions() if "responder_notifications_total" in e]
    assert metric_names(query) <= declared
    typo = metric_names(query.replace("notifications_total", "notification_total"))
    assert typo == {"responder_notification_total"}
    assert not typo <= declared


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


# ------------------------------------------------- a real Prometheus on the real service


def grafana_free(expr: str) -> str:
    """A dashboard query as Grafana sends it to Prometheus, its variables filled in."""
    return expr.replace("$__rate_interval", "1m")


async def test_a_real_prometheus_evaluates_the_rules_and_queries_on_the_services_metrics(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Prometheus scrapes a service on Redis and a fake cluster and evaluates the alert
    rules: every rule evaluates without error on the service's real series, and the
    first refusal by a spent budget fires ResponderActionBudgetSpent (its counter was
    exported at 0 before, so increase() sees it); no other alert fires for the healthy
    service. Every dashboard query is PromQL Prometheus runs."""

    def on_redis(**values: Any) -> Settings:
        return make_settings(redis_url=redis_url, redis_prefix=redis_prefix, **values)

    rules_doc = yaml.safe_load(RULES_YML.read_text())
    async with (
        cluster(tmp_path) as c,
        responder(c, on_redis, notify=True, action_budget=1) as svc,
    ):
        target = svc.base_url.removeprefix("http://").rstrip("/")
        async with running_prometheus(
            [target], job="responder", rules={RULES_YML.name: rules_doc}
        ) as prom:
            # the budget counter's 0 is in Prometheus before the refusal
            await prom.wait_for_samples(
                'count_over_time(responder_action_refusals_total{guard="budget"}[1m])', 2
            )
            await svc.post_alertmanager(alert("Restart"))
            await settled(svc, "Restart", "action.applied")
            await svc.post_alertmanager(alert("Scale"))
            await settled(svc, "Scale", "action.refused")

            async def alerts() -> list[dict[str, Any]]:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{prom.url}/api/v1/alerts") as resp,
                ):
                    return list((await resp.json())["data"]["alerts"])

            async def budget_alert() -> list[dict[str, Any]] | None:
                found = await alerts()
                names = {a["labels"]["alertname"] for a in found}
                return found if "ResponderActionBudgetSpent" in names else None

            firing = await eventually(budget_alert, timeout_s=30, what="the budget alert")
            assert {a["labels"]["alertname"] for a in firing} == {"ResponderActionBudgetSpent"}
            [budget] = firing
            assert budget["state"] == "firing"  # no `for`: at once
            assert budget["labels"]["severity"] == "warning"

            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{prom.url}/api/v1/rules") as resp,
            ):
                groups = (await resp.json())["data"]["groups"]
            evaluated = {r["name"]: r for g in groups for r in g["rules"]}
            assert set(evaluated) == set(rules())
            for name, rule in evaluated.items():
                assert rule["health"] == "ok", (name, rule.get("lastError"))

            for expr in dashboard_expressions():
                body = await prom.query(grafana_free(expr))
                assert body["status"] == "success", (expr, body)
            # and a query of what the traffic made shows it: a signal handled once the
            # handled count's series is in Prometheus
            await svc.post_alertmanager(alert("Scale", status="resolved"))
            await svc.idle()
            [query] = [e for e in dashboard_expressions() if "processing_seconds_count" in e]
            handled = await prom.wait_for_samples(grafana_free(query), 1e-9)
            assert [labels["source"] for labels, _ in handled] == ["alertmanager"]


async def test_a_real_prometheus_fires_the_slack_alerts_on_the_first_forged_and_stale_press(
    make_settings: Callable[..., Settings],
) -> None:
    """Prometheus scrapes a service whose Slack interactions are on: its children at 0
    are in Prometheus before the first refusal, so one forged press fires
    ResponderSlackPressesForged and one signed press 10 minutes old fires
    ResponderSlackPressesStale; a press refused for an unknown presser fires neither."""
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    settings = make_settings(slack_signing_secrets=secret, slack_pause_by="U0000000002")
    rules_doc = yaml.safe_load(RULES_YML.read_text())
    async with running_service(settings) as svc:
        target = svc.base_url.removeprefix("http://").rstrip("/")
        async with running_prometheus(
            [target], job="responder", rules={RULES_YML.name: rules_doc}
        ) as prom:
            await prom.wait_for_samples(
                'count_over_time(responder_slack_interactions_total{outcome="forged"}[1m])', 2
            )
            body = form_body(button_press(action_id="incident.pause", incident="inc-" + "0" * 18))
            now_s = int(svc.runtime.clock.now().timestamp())
            for headers, status in (
                (signed_headers("not-our-secret", body, now_s), 401),
                (signed_headers(secret, body, now_s - 600), 401),
                (signed_headers(secret, body, now_s), 200),  # refused: not granted
            ):
                resp = await svc.client.post("/v1/slack/interactions", data=body, headers=headers)
                assert resp.status == status, await resp.text()

            async def slack_alerts() -> dict[str, dict[str, Any]] | None:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{prom.url}/api/v1/alerts") as resp,
                ):
                    found = {
                        a["labels"]["alertname"]: a for a in (await resp.json())["data"]["alerts"]
                    }
                wanted = {"ResponderSlackPressesForged", "ResponderSlackPressesStale"}
                return found if wanted <= set(found) else None

            firing = await eventually(slack_alerts, timeout_s=30, what="the Slack alerts")
    assert set(firing) == {"ResponderSlackPressesForged", "ResponderSlackPressesStale"}
    forged = firing["ResponderSlackPressesForged"]
    assert (forged["state"], forged["labels"]["outcome"]) == ("firing", "forged")
    assert firing["ResponderSlackPressesStale"]["state"] == "firing"
