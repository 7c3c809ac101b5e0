"""``responder check``: every failure mode of every integration, driven against the real
thing or its loopback fake (real redis-server, real Prometheus, the Slack, Statuspage,
PagerDuty and Kubernetes fakes), each said in one line with its fix."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from responder.check.output import as_json, as_text
from responder.check.runner import run_checks
from responder.settings import Settings
from tests.support.fake_kube import running_fake_kube
from tests.support.fake_notify import FakePagerDuty, FakeSlack, FakeStatuspage
from tests.support.procs import env_without_responder, free_port, redis_server, serve_process
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.test_probe_pod_logs import kubeconfig


async def check_lines(**values: Any) -> list[str]:
    report = await run_checks(Settings(**values), limit_s=20)
    text = as_text(report)
    # the JSON says the same checks
    document = json.loads(as_json(report))
    assert len(document["checks"]) == len(report.results)
    return text.splitlines()


def line(lines: list[str], status: str, integration: str, text: str) -> str:
    """The one line of ``integration`` with ``status`` that says ``text``."""
    found = [ln for ln in lines if ln.startswith(f"{status:<5} {integration}: ") and text in ln]
    assert len(found) == 1, (status, integration, text, lines)
    return found[0]


def fails(lines: list[str], integration: str) -> list[str]:
    return [ln for ln in lines if ln.startswith(f"FAIL  {integration}: ")]


# ------------------------------------------------------------------------------------ redis


async def test_redis_ok_with_noeviction_and_warns_without_persistence(redis_url: str) -> None:
    lines = await check_lines(redis_url=redis_url)
    line(lines, "ok", "redis", "answers ping, version 7.")
    line(lines, "ok", "redis", "maxmemory-policy noeviction")
    warned = line(lines, "warn", "redis", "persistence: none")
    assert "fix: turn on AOF (appendonly yes)" in warned
    assert fails(lines, "redis") == []


async def test_redis_with_aof_is_ok() -> None:
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as server:
        lines = await check_lines(redis_url=server.url)
    line(lines, "ok", "redis", "persistence: AOF (appendfsync always)")


async def test_redis_that_evicts_fails_with_the_fix() -> None:
    with redis_server("--maxmemory-policy", "allkeys-lru") as server:
        lines = await check_lines(redis_url=server.url)
    failed = line(lines, "FAIL", "redis", "maxmemory-policy is allkeys-lru")
    assert "fix: set maxmemory-policy noeviction" in failed


async def test_redis_unreachable_names_the_address_never_the_password() -> None:
    port = free_port()
    lines = await check_lines(redis_url=f"redis://:hunter2pass@127.0.0.1:{port}/0")
    failed = line(lines, "FAIL", "redis", f"127.0.0.1:{port} unreachable")
    assert "fix: start Redis there, or point RESPONDER_REDIS_URL" in failed
    text = "\n".join(lines)
    assert "hunter2pass" not in text
    assert f"RESPONDER_REDIS_URL=redis://:****@127.0.0.1:{port}/0" in text


async def test_redis_refusing_our_password() -> None:
    with redis_server() as server:
        # set after start: the helper's readiness ping has no password
        admin = redis.Redis(port=server.port)
        admin.config_set("requirepass", "the-right-one")
        admin.close()
        url = server.url.replace("redis://", "redis://:the-wrong-one@")
        lines = await check_lines(redis_url=url)
    failed = line(lines, "FAIL", "redis", "refused our credentials")
    assert "fix: check the password in RESPONDER_REDIS_URL" in failed
    assert "the-wrong-one" not in "\n".join(lines)


# ------------------------------------------------------------------------------------ slack


async def test_slack_token_and_channels_ok() -> None:
    async with FakeSlack(channels=["incidents", "major"]) as slack:
        lines = await check_lines(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channels="P1=#major,P2=#incidents",
        )
    line(lines, "ok", "slack", "auth.test: token of responder")
    line(lines, "ok", "slack", "can post in #incidents")
    line(lines, "ok", "slack", "can post in #major")
    # the shipped pack's rules name #posthog-incidents, which this workspace lacks
    missing = line(lines, "FAIL", "slack", "channel #posthog-incidents not found")
    assert "fix: create #posthog-incidents" in missing
    assert len(fails(lines, "slack")) == 1


async def test_slack_token_refused() -> None:
    async with FakeSlack() as slack:
        lines = await check_lines(slack_token="xoxb-not-it", slack_api_url=slack.api_url)
    failed = line(lines, "FAIL", "slack", "auth.test refused the token (invalid_auth)")
    assert "fix: set RESPONDER_SLACK_TOKEN to the app's bot token" in failed
    assert "xoxb-not-it" not in "\n".join(lines)


async def test_slack_channel_missing_and_bot_not_member() -> None:
    async with FakeSlack(
        channels=["incidents"], missing_channels=["gone"], outside_channels=["private"]
    ) as slack:
        slack.add_channel("private")
        lines = await check_lines(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channels="P1=#gone,P2=#private",
        )
    line(lines, "ok", "slack", "can post in #incidents")
    missing = line(lines, "FAIL", "slack", "channel #gone not found")
    assert "fix: create #gone, or fix RESPONDER_SLACK_CHANNEL / RESPONDER_SLACK_CHANNELS" in missing
    outside = line(lines, "FAIL", "slack", "not a member of #private")
    assert "fix: invite it: /invite @responder in #private" in outside


async def test_slack_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/"
    lines = await check_lines(slack_token="xoxb-test", slack_api_url=url)
    failed = line(lines, "FAIL", "slack", f"{url} unreachable")
    assert "fix: check RESPONDER_SLACK_API_URL" in failed


SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


async def test_slack_scopes_and_request_url_when_the_buttons_are_on() -> None:
    async with FakeSlack(channels=["incidents"]) as slack:
        common = {
            "slack_token": slack.token,
            "slack_api_url": slack.api_url,
            "slack_channel": "#incidents",
            "rules": [],
            "slack_signing_secrets": SIGNING_SECRET,
        }
        lines = await check_lines(public_url="https://responder.example/", **common)
        line(lines, "ok", "slack", "the bot has the scopes it needs")
        line(
            lines,
            "ok",
            "slack",
            "Request URL https://responder.example/v1/slack/interactions",
        )
        assert fails(lines, "slack") == []

        # a group grant without usergroups:read: every press it grants would be refused
        slack.scopes = ["chat:write", "channels:read"]
        lines = await check_lines(slack_pause_by="S0000000042", **common)
        failed = line(lines, "FAIL", "slack", "lacks the usergroups:read scope")
        assert "RESPONDER_SLACK_PAUSE_BY names user groups" in failed
        assert "RESPONDER_SLACK_ACKNOWLEDGE_BY" not in failed
        assert "fix: add it on the Slack app's OAuth & Permissions page" in failed
        warned = line(lines, "warn", "slack", "lacks the files:write scope")
        assert "the error-rate graph is a link in the thread" in warned
        warned = line(lines, "warn", "slack", "RESPONDER_PUBLIC_URL is unset")
        assert "cannot link the incident page" in warned
        assert "fix: set RESPONDER_PUBLIC_URL" in warned
        assert SIGNING_SECRET not in "\n".join(lines)
        # users granted by id only: nothing to look up
        lines = await check_lines(**common)
        assert fails(lines, "slack") == []


async def test_slack_without_chat_write_fails_and_without_signing_secrets_buttons_are_off() -> None:
    async with FakeSlack(channels=["incidents"]) as slack:
        slack.scopes = ["files:write", "usergroups:read"]
        lines = await check_lines(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel="#incidents",
            slack_pause_by="S0000000042",
            rules=[],
        )
    failed = line(lines, "FAIL", "slack", "lacks the chat:write scope: nothing can be posted")
    assert "fix: add it on the Slack app's OAuth & Permissions page" in failed
    off = line(lines, "skip", "slack", "buttons off (RESPONDER_SLACK_SIGNING_SECRETS unset")
    assert "Request URL https://<host>/v1/slack/interactions" in off
    assert len(fails(lines, "slack")) == 1


async def test_slack_scopes_not_readable_warn_and_fail_nothing() -> None:
    async with FakeSlack(channels=["incidents"]) as slack:
        slack.scopes = None  # a proxy that drops the header
        lines = await check_lines(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel="#incidents",
            slack_signing_secrets=SIGNING_SECRET,
            slack_approve_by="S0000000042",
            public_url="https://responder.example",
            rules=[],
        )
    warned = line(lines, "warn", "slack", "the bot's scopes were not readable")
    assert "X-OAuth-Scopes" in warned
    assert "chat:write, files:write and usergroups:read" in warned
    assert fails(lines, "slack") == []


# ------------------------------------------------------------------------------- statuspage


async def test_statuspage_page_and_components() -> None:
    async with FakeStatuspage(components={"cmp1": "PostHog", "cmp2": "API"}) as page:
        base = f"{page.url}/v1"
        lines = await check_lines(
            statuspage_api_key=page.api_key,
            statuspage_page_id=page.page_id,
            statuspage_api_url=base,
            statuspage_components="cmp1,cmp9",
        )
        line(lines, "ok", "statuspage", "page page123 found, 2 components")
        line(lines, "ok", "statuspage", "component cmp1 (PostHog) exists")
        missing = line(lines, "FAIL", "statuspage", "component cmp9 is not on page page123")
        assert "fix: fix RESPONDER_STATUSPAGE_COMPONENTS: the page has cmp1 (PostHog)" in missing

        wrong_key = await check_lines(
            statuspage_api_key="not-the-key",
            statuspage_page_id=page.page_id,
            statuspage_api_url=base,
        )
        failed = line(wrong_key, "FAIL", "statuspage", "the API key is refused (401)")
        assert "fix: set RESPONDER_STATUSPAGE_API_KEY" in failed

        wrong_page = await check_lines(
            statuspage_api_key=page.api_key, statuspage_page_id="nopage", statuspage_api_url=base
        )
        failed = line(wrong_page, "FAIL", "statuspage", "page nopage not found for this key")
        assert "fix: set RESPONDER_STATUSPAGE_PAGE_ID" in failed


# -------------------------------------------------------------------------------- pagerduty


async def test_pagerduty_key_from_and_routing_key() -> None:
    async with FakePagerDuty(users=["oncall@example.com"]) as pd:
        assert pd.ca_file is not None
        common = {"pagerduty_api_url": pd.url, "ca_file": Path(pd.ca_file)}
        lines = await check_lines(
            pagerduty_api_key=pd.api_key,
            pagerduty_from="oncall@example.com",
            pagerduty_routing_key=pd.routing_key,
            **common,
        )
        line(lines, "ok", "pagerduty", "REST API key valid")
        line(lines, "ok", "pagerduty", "From oncall@example.com is a PagerDuty user")
        line(lines, "ok", "pagerduty", "routing key well formed")
        assert fails(lines, "pagerduty") == []

        wrong = await check_lines(
            pagerduty_api_key="wrong-key",
            pagerduty_from="oncall@example.com",
            pagerduty_routing_key="R0123",
            **common,
        )
        failed = line(wrong, "FAIL", "pagerduty", "the REST API key is refused (401)")
        assert "fix: set RESPONDER_PAGERDUTY_API_KEY to a REST API key" in failed
        failed = line(wrong, "FAIL", "pagerduty", "not an Events API v2 integration key")
        assert "(5 characters, 32 letters and digits expected)" in failed
        assert "fix: set RESPONDER_PAGERDUTY_ROUTING_KEY" in failed
        assert "wrong-key" not in "\n".join(wrong)

        stranger = await check_lines(
            pagerduty_api_key=pd.api_key, pagerduty_from="someone@example.com", **common
        )
        failed = line(stranger, "FAIL", "pagerduty", "From someone@example.com is not a user")
        assert "fix: set RESPONDER_PAGERDUTY_FROM" in failed


# ------------------------------------------------------------------------------- prometheus

BROKEN_QUERY_PACK = """
name: check-test
version: "1"
rules:
  - name: errors
    match: ['alertname="Errors"']
    probes:
      - type: prometheus
        queries:
          known: sum(rate(posthog_requests_total{service="{{ labels.service }}"}[5m]))
          broken: sum(rate(posthog_requests_total[5m])
          absent: rate(no_such_metric_total{service="{{ labels.service }}"}[5m])
"""


async def test_prometheus_urls_and_pack_queries(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(BROKEN_QUERY_PACK)
    async with ControlledExporter() as exporter, running_prometheus([exporter]) as prom:
        exporter.set_counter("posthog_requests_total", {"service": "posthog"}, 10)
        await prom.wait_for_samples("count_over_time(posthog_requests_total[1m])", 1)
        down = f"http://127.0.0.1:{free_port()}"
        lines = await check_lines(prometheus_url=f"{down},{prom.url}", rules=[pack])
        # the shipped pack's queries: posthog_errors_total is not exported here
        shipped = await check_lines(prometheus_url=prom.url)
    failed = line(lines, "FAIL", "prometheus", f"{down} unreachable")
    assert "fix: fix RESPONDER_PROMETHEUS_URL" in failed
    line(lines, "ok", "prometheus", f"{prom.url} answers queries")
    line(lines, "ok", "prometheus", "check-test/errors query known parses and its series exist")
    failed = line(lines, "FAIL", "prometheus", "check-test/errors query broken does not parse")
    assert "fix: fix the query in the pack" in failed
    failed = line(lines, "FAIL", "prometheus", "query absent: no series named no_such_metric_total")
    assert "fix: fix the metric name in the pack, or scrape the service" in failed
    failed = line(shipped, "FAIL", "prometheus", "query error_ratio: no series named")
    assert "posthog_errors_total" in failed
    assert "posthog_requests_total" not in failed


async def test_prometheus_password_in_its_url_is_masked() -> None:
    port = free_port()
    lines = await check_lines(prometheus_url=f"http://reader:pr0m-pass@127.0.0.1:{port}")
    assert "pr0m-pass" not in "\n".join(lines)
    assert f"  RESPONDER_PROMETHEUS_URL=http://reader:****@127.0.0.1:{port}" in lines
    line(lines, "FAIL", "prometheus", f"http://reader:****@127.0.0.1:{port} unreachable")


async def test_prometheus_unset_while_packs_query_it_warns() -> None:
    lines = await check_lines()
    warned = line(lines, "warn", "prometheus", "not configured, but the packs have")
    assert "fix: set RESPONDER_PROMETHEUS_URL" in warned


# ------------------------------------------------------------------------------- kubernetes


async def test_kubernetes_targets_and_access(tmp_path: Path) -> None:
    async with running_fake_kube() as kube:
        kube.add_deployment("production", "posthog-integration")
        kube.access_reviews.deny(namespace="production", resource="deployments/scale")
        lines = await check_lines(
            kubeconfig=kubeconfig(tmp_path / "kc", kube.url),
            action_allowlist="production/posthog-integration/scale,production/gone/set_env",
        )
    line(lines, "ok", "kubernetes", "deployment production/posthog-integration exists")
    missing = line(lines, "FAIL", "kubernetes", "deployment production/gone not found")
    assert "fix: fix the entry in RESPONDER_ACTION_ALLOWLIST" in missing
    denied = fails(lines, "kubernetes")
    assert any(
        "not allowed: get deployments/scale.apps posthog-integration in production" in ln
        for ln in denied
    ), denied
    assert all("fix: " in ln for ln in denied)


async def test_kubernetes_unreachable(tmp_path: Path) -> None:
    lines = await check_lines(
        kubeconfig=kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{free_port()}"),
        action_allowlist="production/posthog-integration/set_env",
    )
    failed = line(lines, "FAIL", "kubernetes", "cannot reach the cluster")
    assert "fix: set RESPONDER_KUBECONFIG" in failed


# ------------------------------------------------------------------------ packs, templates


async def test_broken_pack_and_template(tmp_path: Path) -> None:
    pack = tmp_path / "bad.yaml"
    pack.write_text('name: bad\nversion: "1"\nrules:\n  - name: r\n    matsh: []\n')
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "slack_root.mrkdwn.j2").write_text("{{ incident.no_such_thing.x }}")
    lines = await check_lines(rules=[pack], templates_dir=templates)
    failed = line(lines, "FAIL", "packs", "bad.yaml:")
    assert "fix: fix the pack (responder rules lint shows each problem)" in failed
    failed = line(lines, "FAIL", "templates", "slack_root")
    assert "fix: fix the template in RESPONDER_TEMPLATES_DIR" in failed


# ---------------------------------------------------------------------- the command itself


def responder(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responder", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env_without_responder(), **env},
    )


def test_command_exit_codes_json_and_masked_settings() -> None:
    with redis_server("--maxmemory-policy", "allkeys-lru") as server:
        env = {"RESPONDER_REDIS_URL": server.url, "RESPONDER_ADMIN_TOKEN": "adm1n-s3cret"}
        text = responder("check", env=env)
        machine = responder("check", "--json", env=env)
    assert text.returncode == 1, text.stderr
    out = text.stdout.splitlines()
    assert out[0].startswith("settings in force")
    assert "  RESPONDER_ADMIN_TOKEN=****" in out
    assert "adm1n-s3cret" not in text.stdout + text.stderr + machine.stdout
    line(out, "FAIL", "redis", "maxmemory-policy is allkeys-lru")
    assert out[-1].startswith("1 failed")

    assert machine.returncode == 1, machine.stderr
    document = json.loads(machine.stdout)
    assert document["ok"] is False
    assert document["settings"]["RESPONDER_ADMIN_TOKEN"] == "****"
    assert {
        "integration": "redis",
        "status": "FAIL",
        "what": "maxmemory-policy is allkeys-lru: Redis may evict our keys",
    }.items() <= next(c for c in document["checks"] if c["status"] == "FAIL").items()

    fine = responder("check", env={})
    assert fine.returncode == 0, fine.stdout + fine.stderr
    # the embedded defaults: the shipped pack queries a Prometheus that is not set
    assert fine.stdout.splitlines()[-1] == "0 failed, 1 warning"


def test_serve_banner_says_what_is_in_force() -> None:
    env = {
        "RESPONDER_DRY_RUN": "true",
        "RESPONDER_ACTION_ALLOWLIST": "production/posthog-integration/set_env",
    }
    with serve_process(env) as served:
        pass
    assert served.kept is not None
    banner = served.kept["stderr"]
    assert (
        "sinks: console (no Slack configured)  cluster: none  prometheus: none  "
        "allowlist: production/posthog-integration/set_env  "
        "dry-run: on (actions are only recorded)"
    ) in banner


def test_the_sinks_say_whether_slack_messages_carry_buttons() -> None:
    from pydantic import SecretStr

    from responder.check.in_force import sinks

    bot = {"slack_token": SecretStr("xoxb-1")}
    assert sinks(Settings(**bot)) == "slack (bot token, no buttons: no signing secret)"
    with_secret = Settings(**bot, slack_signing_secrets=[SecretStr("s")])
    assert sinks(with_secret) == "slack (bot token, buttons on)"
    hook = Settings(slack_webhook_url=SecretStr("https://hooks.slack.com/services/T/B/x"))
    assert sinks(hook) == "slack (incoming webhook)"


@pytest.mark.parametrize("integration", ["redis", "slack"])
async def test_a_hanging_integration_is_cut_off(integration: str) -> None:
    # a socket that listens and never accepts: connecting succeeds (the kernel's backlog),
    # no answer ever comes; the check says so within its limit
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        values: dict[str, Any] = (
            {"redis_url": f"redis://127.0.0.1:{port}/0", "redis_timeout_s": 60}
            if integration == "redis"
            else {"slack_token": "xoxb-x", "slack_api_url": f"http://127.0.0.1:{port}/api/"}
        )
        report = await run_checks(Settings(notify_timeout_s=60, **values), limit_s=1)
    lines = as_text(report).splitlines()
    failed = line(lines, "FAIL", integration, "no answer within 1 s")
    assert "fix: check the address and the network path" in failed
