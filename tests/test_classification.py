"""Classification in the pipeline: every alert goes through the rules in force."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from responder.ingest.pagerduty import sign
from tests.support.procs import serve_process
from tests.support.service import EXAMPLES, example, running_service
from tests.test_cli import responder

EXPECTED = {
    "posthog-api-unreachable": ("P1", "unreachable", "api-unreachable"),
    "posthog-auth-failure-401": ("P1", "auth", "auth-failures"),
    "posthog-auth-failure-403": ("P1", "auth", "auth-failures"),
    "posthog-rate-limited-429": ("P2", "rate_limit", "rate-limited"),
    "posthog-upstream-500": ("P2", "upstream_5xx", "upstream-errors"),
    "posthog-upstream-503": ("P2", "upstream_5xx", "upstream-errors"),
    "posthog-high-latency": ("P2", "latency", "high-latency"),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
async def test_each_runbook_case_is_classified_through_the_http_intake(
    backend_settings, case: str
) -> None:
    async with running_service(backend_settings()) as svc:
        await svc.post_alertmanager(example(f"alertmanager/{case}-firing.json"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert (inc["severity"], inc["error_type"], inc["rule"]) == EXPECTED[case]
        assert inc["pack"] == "posthog"
        classified = inc["timeline"][1]
        assert classified["kind"] == "incident.classified"
        assert classified["data"]["rule"] == EXPECTED[case][2]
        # a 429 also reads PostHog's rate-limit headers (the limit-increase figures)
        rate_limit_headers = ["http"] if EXPECTED[case][1] == "rate_limit" else []
        assert [p["spec"]["type"] for p in inc["planned_probes"]] == [
            "vendor_status",
            "health",
            "prometheus",
            "pod_logs",
            *rate_limit_headers,
        ]
        assert inc["planned_probes"][3]["spec"]["namespace"] == "production"
        assert inc["notify"] == ["slack:#posthog-incidents"]


def write_pack(path: Path, *, version: str = "1", p1_alert: str = "Worst") -> Path:
    path.write_text(
        f"""
name: escalation-test
version: "{version}"
defaults:
  group_by: [service]
  dry_run: false
rules:
  - name: worst
    match: ['alertname="{p1_alert}"']
    classify: {{severity: P1, error_type: unreachable}}
  - name: middling
    match: ['alertname="Middling"']
    classify: {{severity: P2}}
    actions:
      - {{type: page_human, reason: "look at it"}}
  - name: mild
    match: ['alertname="Mild"']
    classify: {{severity: P3, error_type: latency, title: "Mild {{{{ labels.service }}}}"}}
"""
    )
    return path


def alert(name: str, service: str = "svc") -> dict[str, Any]:
    payload = json.loads(json.dumps(example("alertmanager/posthog-high-latency-firing.json")))
    a = payload["alerts"][0]
    a["labels"] = {"alertname": name, "service": service}
    a["fingerprint"] = ""
    return payload


async def test_severity_escalates_and_never_drops_while_open(backend_settings, tmp_path) -> None:
    pack = write_pack(tmp_path / "pack.yaml")
    async with running_service(backend_settings(rules=[pack])) as svc:
        for name in ("Mild", "Worst", "Middling"):
            await svc.post_alertmanager(alert(name))
            await svc.idle()
        [inc] = await svc.incidents()
        assert inc["severity"] == "P1"
        assert inc["error_type"] == "latency"  # set by the first classification
        assert inc["title"] == "Mild svc"
        kinds = [e["kind"] for e in inc["timeline"]]
        assert kinds == [
            "incident.opened",
            "incident.classified",
            "alert.joined",
            "incident.escalated",
            "alert.joined",
        ]
        escalated = inc["timeline"][3]
        assert (escalated["data"]["previous"], escalated["data"]["severity"]) == ("P3", "P1")
        assert "respond < 15 min" in escalated["detail"]


async def test_forced_dry_run_overrides_the_pack(backend_settings, tmp_path) -> None:
    pack = write_pack(tmp_path / "pack.yaml")
    for forced in (False, True):
        async with running_service(backend_settings(rules=[pack], dry_run=forced)) as svc:
            await svc.post_alertmanager(alert("Middling", service=f"s{forced}"))
            await svc.idle()
            [inc] = [
                i for i in await svc.incidents() if i["group_key"] == f'{{service="s{forced}"}}'
            ]
            [planned] = inc["planned_actions"]
            assert planned["spec"]["type"] == "page_human"
            assert planned["dry_run"] is forced


async def test_admin_reload_swaps_good_rules_and_keeps_them_on_a_bad_one(
    backend_settings, tmp_path
) -> None:
    pack = write_pack(tmp_path / "pack.yaml")
    settings = backend_settings(rules=[pack], admin_token="adm-token-1")
    async with running_service(settings) as svc:
        client = svc.client
        assert (await client.post("/v1/admin/reload")).status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post("/v1/admin/reload", headers=wrong)).status == 403
        good = {"Authorization": "Bearer adm-token-1"}

        write_pack(pack, version="2", p1_alert="Disaster")
        resp = await client.post("/v1/admin/reload", headers=good)
        assert resp.status == 200
        body = await resp.json()
        assert body["ok"] is True
        assert body["packs"][0]["version"] == "2"

        pack.write_text(pack.read_text().replace("severity: P2", "severity: P7"))
        resp = await client.post("/v1/admin/reload", headers=good)
        assert resp.status == 422
        body = await resp.json()
        assert body["ok"] is False
        assert body["packs"][0]["version"] == "2"  # still in force
        assert any("pack.yaml:" in p and "middling" in p for p in body["problems"])

        # the rules in force still classify
        await svc.post_alertmanager(alert("Disaster"))
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["severity"] == "P1"
        listed = await (await client.get("/v1/rules")).json()
        assert listed["packs"][0]["rules"] == ["worst", "middling", "mild"]
        text = await (await client.get("/metrics")).text()
        assert 'responder_rule_reloads_total{outcome="ok"} 1.0' in text
        assert 'responder_rule_reloads_total{outcome="error"} 1.0' in text


async def test_admin_api_is_off_without_a_token(service) -> None:
    resp = await service.client.post(
        "/v1/admin/reload", headers={"Authorization": "Bearer anything"}
    )
    assert resp.status == 403
    assert "RESPONDER_ADMIN_TOKEN" in (await resp.json())["detail"]


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test server
        return dict(json.loads(resp.read()))


def test_sighup_reloads_the_rules_of_a_running_service(tmp_path) -> None:
    pack = write_pack(tmp_path / "pack.yaml")
    with serve_process({"RESPONDER_RULES": str(pack)}) as svc:
        assert _get(svc.url + "/v1/rules")["packs"][0]["version"] == "1"
        write_pack(pack, version="7")
        svc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _get(svc.url + "/v1/rules")["packs"][0]["version"] != "7":
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        assert svc.proc.poll() is None  # and it is still running


def test_serve_refuses_to_start_with_a_broken_pack(tmp_path) -> None:
    pack = write_pack(tmp_path / "pack.yaml")
    pack.write_text(
        pack.read_text().replace("match: ['alertname=\"Mild\"']", "match: ['alertname=~\"(\"']")
    )
    result = responder("serve", env={"RESPONDER_RULES": str(pack)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {pack}:")
    assert "rule 'mild'" in lines[0]
    assert "invalid regular expression" in lines[0]
    assert lines[-1].startswith("error: the rule packs have problems")


async def test_pagerduty_priority_sets_the_severity_of_its_own_incident(backend_settings) -> None:
    secret = (EXAMPLES / "pagerduty" / "webhook-secret.txt").read_text().strip()
    doc = json.loads((EXAMPLES / "pagerduty" / "incident-triggered.json").read_text())
    doc["event"]["data"]["incident_key"] = "paged-by-the-app"
    body = json.dumps(doc).encode()
    async with running_service(backend_settings(pagerduty_webhook_secrets=secret)) as svc:
        await svc.post_pagerduty(body, {"X-PagerDuty-Signature": sign(body, secret)})
        await svc.idle()
        [inc] = await svc.incidents()
        assert inc["severity"] == "P1"


def test_the_shipped_rule_tests_pass() -> None:
    """rules/tests: the PostHog pack's own unit tests, one per runbook branch and error type."""
    result = responder("rules", "test")
    assert result.returncode == 0, result.stdout
    passed = int(result.stdout.strip().splitlines()[-1].split()[0])
    assert passed >= 40
