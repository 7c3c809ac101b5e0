"""Notification settings: https-only PagerDuty URLs, severity maps and lists from the
environment, pairs that go together, and secrets that never show."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from responder.adapters.http import SharedSession
from responder.app import build_channels, build_renderer
from responder.cli import cli
from responder.notify.planners import SlackPlanner
from responder.rules.engine import RuleSet
from responder.settings import Settings

SECRETS = {
    "slack_token": "xoxb-slack-secret-0001",
    "slack_webhook_url": "https://hooks.slack.com/services/T0/B0/hook-secret-0002",
    "statuspage_api_key": "sp-key-secret-0003",
    "pagerduty_api_key": "pd-api-secret-0004",
    "pagerduty_routing_key": "pd-routing-secret-0005",
}
WITH_SECRETS = {
    **SECRETS,
    "statuspage_page_id": "page-1",
    "pagerduty_from": "oncall@example.com",
}


def assert_no_secret(text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, name
        assert value[:12] not in text, name  # not even a truncated repr of it


# --- PagerDuty URLs -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pagerduty_events_url", "pagerduty_api_url"])
@pytest.mark.parametrize(
    "url", ["http://events.pagerduty.com", "events.pagerduty.com", "ftp://x", ""]
)
def test_pagerduty_urls_must_be_https(name: str, url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{name: url})
    [error] = caught.value.errors()
    assert error["loc"] == (name,)
    assert "accepts https:// URLs only" in error["msg"]


def test_https_pagerduty_urls_are_kept() -> None:
    s = Settings(
        pagerduty_events_url="https://127.0.0.1:8443/events",
        pagerduty_api_url="https://pd.internal.example",
    )
    assert s.pagerduty_events_url == "https://127.0.0.1:8443/events"
    assert s.pagerduty_api_url == "https://pd.internal.example"
    assert Settings().pagerduty_events_url == "https://events.pagerduty.com"


def test_an_http_events_url_is_one_line_naming_the_variable_and_exit_2() -> None:
    result = CliRunner().invoke(
        cli, ["serve"], env={"RESPONDER_PAGERDUTY_EVENTS_URL": "http://events.pagerduty.com"}
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: invalid setting RESPONDER_PAGERDUTY_EVENTS_URL: "
        "the PagerDuty client accepts https:// URLs only"
    )


# --- Slack channels by severity -------------------------------------------------------------


def test_slack_channels_by_severity_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RESPONDER_SLACK_CHANNELS", "P1=#a, P2 = #b ,")
    s = Settings()
    assert s.slack_channels == {"P1": "#a", "P2": "#b"}
    assert Settings().slack_channels == {"P1": "#a", "P2": "#b"}
    monkeypatch.delenv("RESPONDER_SLACK_CHANNELS")
    assert Settings().slack_channels == {}


def test_slack_channels_from_the_yaml_file_as_a_mapping(monkeypatch, tmp_path: Path) -> None:
    config = tmp_path / "responder.yaml"
    config.write_text("slack_channels:\n  P1: '#major'\n  P3: C0123\n")
    monkeypatch.setenv("RESPONDER_CONFIG", str(config))
    assert Settings().slack_channels == {"P1": "#major", "P3": "C0123"}


def test_the_severity_map_reaches_the_slack_planner() -> None:
    web = Settings(slack_token="xoxb-x", slack_channels="P1=#major", slack_channel="#minor")
    [slack] = build_channels(web, build_renderer(web, RuleSet), SharedSession())
    assert slack.name == "slack"
    assert isinstance(slack.planner, SlackPlanner)
    assert slack.planner.channels == {"P1": "#major"}
    assert slack.planner.default_channel == "#minor"
    assert (slack.planner.threads, slack.planner.edits) == (True, True)
    hook = Settings(slack_webhook_url="https://hooks.example/x", slack_channels="P2=#b")
    [slack] = build_channels(hook, build_renderer(hook, RuleSet), SharedSession())
    assert isinstance(slack.planner, SlackPlanner)
    assert slack.planner.channels == {"P2": "#b"}
    assert (slack.planner.threads, slack.planner.edits) == (False, False)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("P1", "write SEVERITY=value"),
        ("P1=", "write SEVERITY=value"),
        ("=#a", "write SEVERITY=value"),
        ("P1=#a,P5=#b", "unknown severity P5"),
        ("critical=#a", "unknown severity critical"),
    ],
)
def test_bad_slack_channels_are_refused(monkeypatch, value: str, says: str) -> None:
    monkeypatch.setenv("RESPONDER_SLACK_CHANNELS", value)
    with pytest.raises(ValidationError, match=says) as caught:
        Settings()
    assert caught.value.errors()[0]["loc"] == ("slack_channels",)


# --- Statuspage -----------------------------------------------------------------------------


def test_statuspage_severities_and_component_status_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RESPONDER_STATUSPAGE_SEVERITIES", "P1, P3")
    monkeypatch.setenv("RESPONDER_STATUSPAGE_COMPONENTS", "cmp1,cmp2")
    monkeypatch.setenv(
        "RESPONDER_STATUSPAGE_COMPONENT_STATUS", "P1=major_outage,P2=degraded_performance"
    )
    s = Settings()
    assert s.statuspage_severities == ["P1", "P3"]
    assert s.statuspage_components == ["cmp1", "cmp2"]
    assert s.statuspage_component_status == {
        "P1": "major_outage",
        "P2": "degraded_performance",
    }


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("STATUSPAGE_SEVERITIES", "P1,P0", "unknown severity P0"),
        ("STATUSPAGE_SEVERITIES", "critical", "unknown severity critical"),
        ("STATUSPAGE_COMPONENT_STATUS", "P1=on_fire", "unknown component status on_fire"),
        ("STATUSPAGE_COMPONENT_STATUS", "P1=Major_Outage", "unknown component status"),
        ("STATUSPAGE_COMPONENT_STATUS", "P9=major_outage", "unknown severity P9"),
        ("STATUSPAGE_COMPONENT_STATUS", "major_outage", "write SEVERITY=value"),
    ],
)
def test_bad_statuspage_values_are_refused(monkeypatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(f"RESPONDER_{name}", value)
    with pytest.raises(ValidationError, match=says) as caught:
        Settings()
    assert caught.value.errors()[0]["loc"] == (name.lower(),)


def test_an_unknown_component_status_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(statuspage_component_status="P1=down")
    assert "use degraded_performance, major_outage, operational" in str(caught.value)


def test_settings_that_go_together() -> None:
    with pytest.raises(ValidationError, match="statuspage_api_key and statuspage_page_id"):
        Settings(statuspage_api_key="k")
    with pytest.raises(ValidationError, match="statuspage_api_key and statuspage_page_id"):
        Settings(statuspage_page_id="p")
    with pytest.raises(ValidationError, match="pagerduty_api_key needs pagerduty_from"):
        Settings(pagerduty_api_key="k")
    Settings(pagerduty_routing_key="k")  # the Events API needs no user


def test_templates_dir_and_ca_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="templates_dir: no such directory"):
        Settings(templates_dir=tmp_path / "nope")
    with pytest.raises(ValidationError, match="ca_file: no such file"):
        Settings(ca_file=tmp_path / "nope.pem")
    assert Settings(templates_dir=tmp_path).templates_dir == tmp_path


# --- secrets --------------------------------------------------------------------------------


def test_notification_secrets_never_show_in_repr_str_or_a_dump() -> None:
    s = Settings(**WITH_SECRETS)
    assert_no_secret(repr(s))
    assert_no_secret(str(s))
    assert_no_secret(str(s.model_dump()))
    assert_no_secret(s.model_dump_json())
    # and yet they are there, for the sinks and for redaction
    assert s.slack_token is not None
    assert s.slack_token.get_secret_value() == SECRETS["slack_token"]
    assert set(SECRETS.values()) <= set(s.secret_values())


@pytest.mark.parametrize(
    "broken",
    [
        {"pagerduty_events_url": "http://events.pagerduty.com"},
        {"slack_channels": "P7=#x"},
        {"statuspage_page_id": None},  # the key without its page: a model-wide error
        {"pagerduty_from": None},
        {"notify_timeout_s": 0},
        {"unknown_knob": 1},
    ],
)
def test_notification_secrets_never_show_in_error_messages(broken: dict[str, object]) -> None:
    values = {**WITH_SECRETS, **broken}
    with pytest.raises(ValidationError) as caught:
        Settings(**{k: v for k, v in values.items() if v is not None})
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))


def test_secrets_from_the_environment_never_show_in_error_messages(monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(f"RESPONDER_{name.upper()}", value)
    # no statuspage page id, no PagerDuty user: the settings are refused
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert_no_secret(str(caught.value))
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid setting")
    assert_no_secret(result.output)
