"""The command line, run as users run it: real processes, real exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import env_without_responder, free_port, serve_process
from tests.support.service import EXAMPLES

AM = EXAMPLES / "alertmanager"


def responder(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responder", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env_without_responder(), **(env or {})},
    )


@pytest.mark.parametrize(
    "args",
    [[], ["serve"], ["replay"], ["incidents"], ["incidents", "list"], ["incidents", "show"]],
)
def test_help_everywhere(args: list[str]) -> None:
    result = responder(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_bad_setting_is_one_line_and_exit_2() -> None:
    result = responder("serve", env={"RESPONDER_PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: invalid setting RESPONDER_PORT:")


def test_serve_refuses_an_open_intake_on_all_interfaces() -> None:
    result = responder("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.startswith("error: refusing to listen on 0.0.0.0 without credentials")


def test_serve_reports_a_port_in_use() -> None:
    with serve_process() as first:
        result = responder("serve", "--port", str(first.port))
        assert result.returncode == 1
        assert (
            result.stderr.strip()
            .splitlines()[-1]
            .startswith(f"error: cannot listen on 127.0.0.1:{first.port}")
        )


def test_serve_replay_and_incidents_against_a_running_service() -> None:
    token = "cli-test-token-123"
    with serve_process({"RESPONDER_ALERTMANAGER_TOKEN": token}) as svc:
        env = {"RESPONDER_ALERTMANAGER_TOKEN": token}
        result = responder(
            "replay",
            "--url",
            svc.url,
            str(AM / "posthog-rate-limited-429-firing.json"),
            str(AM / "posthog-rate-limited-429-firing.json"),
            env=env,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert '"accepted":1' in lines[0]
        assert '"repeated":1' in lines[1]

        import time

        deadline = time.monotonic() + 10
        while True:
            listed = responder("incidents", "list", "--url", svc.url, "--json")
            incidents = json.loads(listed.stdout)["incidents"]
            if incidents or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        [inc] = incidents
        table = responder("incidents", "list", "--url", svc.url)
        assert inc["id"] in table.stdout
        assert "PostHog rate-limits posthog-integration (HTTP 429)" in table.stdout
        assert " P2 " in table.stdout
        shown = responder("incidents", "show", inc["id"], "--url", svc.url)
        assert shown.returncode == 0
        assert "incident.opened" in shown.stdout
        missing = responder("incidents", "show", "inc-missing", "--url", svc.url)
        assert missing.returncode == 1
        assert missing.stderr.startswith("error: 404 from ")

        # without the token the replay is refused, and says so
        refused = responder(
            "replay", "--url", svc.url, str(AM / "posthog-rate-limited-429-firing.json")
        )
        assert refused.returncode == 1
        assert "401" in refused.stdout
        assert refused.stderr.startswith("error: 1 of 1 payloads were not accepted")

    # the service printed each incident event on standard output (console notifier)
    assert "incident.opened" in svc.stdout()
    # and logged JSON lines on standard error, without the token
    err = svc.stderr()
    assert token not in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    accepted = [r for r in records if r["event"] == "webhook accepted"]
    assert accepted
    assert all(len(r["request_id"]) == 32 for r in accepted)
    events = [r for r in records if r["event"] == "incident event"]
    assert events[0]["incident_id"] == inc["id"]
    refused_logs = [r for r in records if r["event"] == "webhook refused"]
    assert refused_logs[0]["status"] == 401


def test_replay_without_url_runs_an_in_process_service() -> None:
    result = responder(
        "replay",
        str(AM / "posthog-upstream-503-firing.json"),
        str(AM / "posthog-upstream-503-resolved.json"),
        str(EXAMPLES / "pagerduty" / "incident-triggered.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "incident.opened" in result.stdout
    assert "incident.resolved" in result.stdout
    summary = [ln for ln in result.stdout.splitlines() if ln.startswith("inc-")]
    statuses = sorted(ln.split()[1] for ln in summary)
    assert statuses == ["open", "resolved"]  # the 5xx incident, and the PagerDuty one


def test_replay_errors_are_one_line(tmp_path: Path) -> None:
    missing = responder("replay", str(tmp_path / "nope.json"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")
    assert "No such file" in missing.stderr
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": "world"}')
    result = responder("replay", str(odd))
    assert result.returncode == 1
    assert "neither an Alertmanager payload" in result.stderr


def test_incidents_list_says_when_the_service_is_not_there() -> None:
    result = responder("incidents", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach")
    assert result.stderr.strip().count("\n") == 0


def test_pause_and_resume_from_the_command_line() -> None:
    with serve_process({"RESPONDER_ADMIN_TOKEN": "adm-cli-1"}) as svc:
        env = {"RESPONDER_ADMIN_TOKEN": "adm-cli-1"}
        paused = responder("pause", "--reason", "deploy freeze", "--url", svc.url, env=env)
        assert paused.returncode == 0, paused.stderr
        assert "automation PAUSED by responder CLI: deploy freeze" in paused.stdout
        resumed = responder("resume", "--url", svc.url, env=env)
        assert resumed.returncode == 0
        assert "automation running" in resumed.stdout
        no_token = responder("pause", "--url", svc.url)
        assert no_token.returncode == 2
        assert no_token.stderr.startswith("error: the admin API needs a token")
        wrong = responder("pause", "--url", svc.url, "--token", "nope")
        assert wrong.returncode == 1
        assert wrong.stderr.startswith("error: 403 from")
