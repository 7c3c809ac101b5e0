"""``responder rules lint | test | explain``, run as rule authors run them: real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.procs import env_without_responder

ROOT = Path(__file__).resolve().parents[1]
AM = ROOT / "examples" / "alertmanager"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"
GOOD = FIXTURES / "good"
BAD = FIXTURES / "bad"


def responder(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responder", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_without_responder(),
    )


# ---------------------------------------------------------------------------------- lint


def test_lint_the_shipped_rules() -> None:
    result = responder("rules", "lint")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith("ok: ")
    assert re.search(r"rules/posthog\.yaml: pack posthog \S+, \d+ rules$", line), line


def test_lint_good_fixtures_names_every_pack() -> None:
    result = responder("rules", "lint", str(GOOD))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ok: {GOOD / 'billing.yaml'}: pack billing 3, 2 rules",
        f"ok: {GOOD / 'shop.yaml'}: pack shop 1.0, 7 rules",
        f"ok: {GOOD / 'sources.yaml'}: pack sources 0.1, 4 rules",
    ]


def test_lint_a_bad_pack_prints_every_problem_with_file_and_line() -> None:
    path = BAD / "three_schema_problems.yaml"
    result = responder("rules", "lint", str(path))
    assert result.returncode == 1
    assert "ok:" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    pattern = re.compile(rf"^error: {re.escape(str(path))}:(\d+): ")
    numbers = []
    for line in lines:
        m = pattern.match(line)
        assert m, line
        numbers.append(int(m.group(1)))
    assert sorted(numbers) == [3, 7, 11]
    assert any("rule 'two': notify:" in line for line in lines)


def test_lint_a_good_and_a_bad_pack_fails_and_names_the_bad_one() -> None:
    bad = BAD / "matcher_bad_regex.yaml"
    result = responder("rules", "lint", str(GOOD / "shop.yaml"), str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines
    assert all(line.startswith(f"error: {bad}:5: rule 'broken-regex': ") for line in lines), lines


def test_lint_with_no_pack_files(tmp_path: Path) -> None:
    result = responder("rules", "lint", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no rule pack files found"


# ---------------------------------------------------------------------------------- test

PASSING = """\
rule_files: [{shop}]
tests:
  - name: slow checkout before triage
    alert:
      labels: {{alertname: CheckoutSlow, service: checkout, namespace: prod}}
    expect:
      severity: P2
      error_type: latency
      rule: checkout-slow
      title: Checkout slow in prod
      matched: [checkout-slow, checkout-latency-type, checkout-fallback]
      notify: ["slack:#checkout-perf", pagerduty]
  - name: slow checkout with a low error ratio scales out
    alert:
      labels: {{alertname: CheckoutSlow, service: checkout, namespace: prod}}
    facts: {{prometheus: {{error_ratio: 0.2}}}}
    expect:
      branch: scale-out
      actions:
        - {{type: scale, namespace: prod, replicas: 4, dry_run: false, rule: scale-out}}
        - {{type: rollout_restart, dry_run: true}}
      probes:
        - {{type: health, url: "http://checkout.shop.internal/health"}}
        - {{type: prometheus}}
"""

FAILING = """\
rule_files: [{shop}]
tests:
  - name: this expectation is wrong
    alert:
      labels: {{alertname: CheckoutSlow, service: checkout, namespace: prod}}
    expect:
      severity: P1
      error_type: latency
  - name: this one is right
    alert:
      labels: {{alertname: CheckoutSlow, service: checkout, namespace: prod}}
    expect:
      severity: P2
"""


def test_rule_tests_that_pass(tmp_path: Path) -> None:
    tests = tmp_path / "shop_test.yaml"
    tests.write_text(PASSING.format(shop=GOOD / "shop.yaml"))
    result = responder("rules", "test", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "2 passed, 0 failed"


def test_rule_tests_that_fail_print_a_diff(tmp_path: Path) -> None:
    tests = tmp_path / "shop_test.yaml"
    tests.write_text(FAILING.format(shop=GOOD / "shop.yaml"))
    result = responder("rules", "test", str(tests))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"FAIL {tests}: this expectation is wrong" in out
    assert "this one is right" not in out
    stripped = [line.strip() for line in out.splitlines()]
    assert "severity:" in stripped
    assert "--- expected" in stripped
    assert "+++ got" in stripped
    assert "-P1" in stripped
    assert "+P2" in stripped
    # only the key that differs is reported
    assert "error_type:" not in stripped
    assert stripped[-1] == "1 passed, 1 failed"


def test_rule_tests_on_a_saved_payload_and_the_shipped_pack(tmp_path: Path) -> None:
    tests = tmp_path / "posthog_test.yaml"
    tests.write_text(
        f"rule_files: [{ROOT / 'rules' / 'posthog.yaml'}]\n"
        "tests:\n"
        "  - name: 429 from a saved payload\n"
        f"    payload: {AM / 'posthog-rate-limited-429-firing.json'}\n"
        "    facts: {prometheus: {error_ratio: 0.3}, vendor: {incident: false}}\n"
        "    expect:\n"
        "      severity: P2\n"
        "      error_type: rate_limit\n"
        "      branch: our-integration-rate-limit\n"
        "      actions: [{type: set_env, env: {RATE_LIMIT_MODE: queue}, dry_run: true}]\n"
    )
    result = responder("rules", "test", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_rule_tests_with_broken_rule_files_fail(tmp_path: Path) -> None:
    tests = tmp_path / "broken_test.yaml"
    bad = BAD / "bad_severity.yaml"
    tests.write_text(
        f"rule_files: [{bad}]\n"
        "tests:\n"
        "  - name: never runs\n"
        "    alert: {labels: {alertname: A}}\n"
        "    expect: {severity: P2}\n"
    )
    result = responder("rules", "test", str(tests))
    assert result.returncode == 1
    assert f"FAIL {tests}: (rule files)" in result.stdout
    assert f"{bad}:8: rule 'p5': classify.severity" in result.stdout


# ------------------------------------------------------------------------------- explain


def test_explain_a_payload_before_triage() -> None:
    result = responder("rules", "explain", str(AM / "posthog-rate-limited-429-firing.json"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = [line.strip() for line in out.splitlines()]
    assert out.startswith("alert PostHogRateLimited ")
    assert "facts: none (before triage)" in lines
    assert "rule posthog/rate-limited: MATCH, continue" in lines
    assert '+ alertname="PostHogRateLimited"' in lines
    assert 'scope      pack posthog: service="posthog-integration"' in lines
    assert "- alertname=\"PostHogAPIUnreachable\"   (is 'PostHogRateLimited')" in lines
    assert "- when prometheus.error_ratio > 0.5   (no facts yet (before triage))" in lines
    assert any(line.startswith("severity   P2 (") for line in lines), out
    assert "by rule rate-limited" in out
    assert (
        "error type rate_limit: rule rate-limited: label status_code='429' matches '429'" in lines
    )
    assert "branch     none: the decision tree needs triage facts" in lines
    assert "actions    none" in lines


def test_explain_with_facts_walks_the_decision_tree(tmp_path: Path) -> None:
    facts = tmp_path / "facts.yaml"
    facts.write_text("prometheus:\n  error_ratio: 0.3\nvendor:\n  incident: false\n")
    result = responder(
        "rules",
        "explain",
        str(AM / "posthog-rate-limited-429-firing.json"),
        "--facts",
        str(facts),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = [line.strip() for line in out.splitlines()]
    facts_line = next(line for line in lines if line.startswith("facts: "))
    assert json.loads(facts_line.removeprefix("facts: ")) == {
        "prometheus": {"error_ratio": 0.3},
        "vendor": {"incident": False},
    }
    assert "rule posthog/our-integration-rate-limit: MATCH (ends the walk)" in lines
    assert "branch     our-integration-rate-limit" in lines
    [action] = [line for line in lines if line.startswith("action ")]
    assert action.startswith("action     set_env [dry-run] ")
    params = json.loads(action.split("[dry-run] ", 1)[1])
    assert params["env"] == {"RATE_LIMIT_MODE": "queue"}
    assert params["namespace"] == "production"
    # the rules after the branch were not tried
    assert "rule posthog/intermittent" not in out


def test_explain_with_other_rules_uses_their_severity_table(tmp_path: Path) -> None:
    payload = tmp_path / "slow.json"
    payload.write_text(
        json.dumps(
            {
                "status": "firing",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {
                            "alertname": "CheckoutSlow",
                            "service": "checkout",
                            "namespace": "prod",
                        },
                        "annotations": {},
                    }
                ],
            }
        )
    )
    result = responder("rules", "explain", str(payload), "--rules", str(GOOD / "shop.yaml"))
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "severity   P2 (Checkout degraded, respond < 30 min) by rule checkout-slow" in lines, (
        result.stdout
    )
    assert "title      Checkout slow in prod" in lines
    assert "notify     slack:#checkout-perf, pagerduty" in lines


def test_explain_refuses_a_file_that_is_not_a_payload(tmp_path: Path) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": "world"}')
    result = responder("rules", "explain", str(odd))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {odd}: not an Alertmanager payload")

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = responder("rules", "explain", str(broken))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {broken}: ")

    missing = tmp_path / "missing.json"
    result = responder("rules", "explain", str(missing))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {missing}: ")


def test_explain_with_bad_rules_lists_their_problems(tmp_path: Path) -> None:
    bad = BAD / "condition_gt_not_number.yaml"
    result = responder(
        "rules",
        "explain",
        str(AM / "posthog-rate-limited-429-firing.json"),
        "--rules",
        str(bad),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}:6: rule 'gt-word': when[0]: condition 'prometheus.error_ratio > high': "
        "`>` needs a number"
    ]
