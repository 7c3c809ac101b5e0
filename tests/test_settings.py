"""Settings: environment, secret files, YAML file, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from responder.settings import ConfigError, Settings


def test_defaults_are_the_embedded_ones() -> None:
    s = Settings()
    assert (s.host, s.port, s.redis_url) == ("127.0.0.1", 8080, None)
    assert s.group_by == ["alertname", "service"]
    assert s.max_body_bytes == 1024 * 1024
    assert not s.intake_has_credentials


def test_environment_variables_use_the_responder_prefix(monkeypatch) -> None:
    monkeypatch.setenv("RESPONDER_PORT", "9191")
    monkeypatch.setenv("RESPONDER_REDIS_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("RESPONDER_GROUP_BY", "alertname, namespace ,service")
    monkeypatch.setenv("RESPONDER_PAGERDUTY_WEBHOOK_SECRETS", "one,two")
    s = Settings()
    assert s.port == 9191
    assert s.group_by == ["alertname", "namespace", "service"]
    assert [x.get_secret_value() for x in s.pagerduty_webhook_secrets] == ["one", "two"]
    assert "pw" in s.secret_values()


def test_secret_from_a_file(monkeypatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    monkeypatch.setenv("RESPONDER_ALERTMANAGER_TOKEN_FILE", str(token))
    s = Settings()
    assert s.alertmanager_token is not None
    assert s.alertmanager_token.get_secret_value() == "from-a-file"


def test_missing_secret_file_names_the_variable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESPONDER_ALERTMANAGER_TOKEN_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="RESPONDER_ALERTMANAGER_TOKEN_FILE"):
        Settings()


def test_yaml_file_named_by_responder_config(monkeypatch, tmp_path: Path) -> None:
    config = tmp_path / "responder.yaml"
    config.write_text("port: 9300\nworkers: 2\ngroup_by: [alertname]\n")
    monkeypatch.setenv("RESPONDER_CONFIG", str(config))
    monkeypatch.setenv("RESPONDER_WORKERS", "7")  # the environment wins over the file
    s = Settings()
    assert (s.port, s.workers, s.group_by) == (9300, 7, ["alertname"])


def test_unknown_key_in_the_yaml_file_is_refused(monkeypatch, tmp_path: Path) -> None:
    config = tmp_path / "responder.yaml"
    config.write_text("prot: 9300\n")
    monkeypatch.setenv("RESPONDER_CONFIG", str(config))
    with pytest.raises(ValidationError, match="prot"):
        Settings()


def test_missing_config_file_is_an_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESPONDER_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="no such file"):
        Settings()


def test_basic_auth_needs_both_halves() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(alertmanager_username="am")


def test_waits_that_outlast_the_visibility_timeout_are_refused() -> None:
    Settings(visibility_timeout_s=10, triage_budget_s=5, batch_wait_s=4.9)
    with pytest.raises(ValidationError, match="triage_budget_s must be below"):
        Settings(visibility_timeout_s=10, triage_budget_s=10)
    # an entry is unacknowledged while its batch fills, then while its triage runs
    with pytest.raises(ValidationError, match="batch_wait_s plus triage_budget_s"):
        Settings(visibility_timeout_s=10, triage_budget_s=8, batch_wait_s=2)


def test_secrets_do_not_show_in_repr() -> None:
    s = Settings(alertmanager_token="tok-secret-value", pagerduty_webhook_secrets="pd-secret-1")
    assert "tok-secret-value" not in repr(s)
    assert "pd-secret-1" not in str(s.model_dump())
