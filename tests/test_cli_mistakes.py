"""Every user mistake found so far, made as a user makes it: a real process, one `error:`
line on standard error (no traceback) and exit code 2 (usage) or 1 (runtime)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import env_without_responder, free_port
from tests.support.service import EXAMPLES

PAYLOAD = str(EXAMPLES / "alertmanager" / "posthog-rate-limited-429-firing.json")


def responder(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responder", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env_without_responder(), **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_malformed_config_file_is_one_line_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "responder.yaml"
    config.write_text("workers: 2\nrules: [\n")
    line = one_error_line(
        responder("replay", PAYLOAD, env={"RESPONDER_CONFIG": str(config)}), code=2
    )
    assert line.startswith(f"error: RESPONDER_CONFIG={config}: line 3: ")


def test_a_config_file_that_is_not_a_mapping_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "responder.yaml"
    config.write_text("- workers: 2\n")
    line = one_error_line(
        responder("replay", PAYLOAD, env={"RESPONDER_CONFIG": str(config)}), code=2
    )
    assert line == (
        f"error: RESPONDER_CONFIG={config}: a list at the top; write a mapping of setting: value"
    )


def test_a_misspelt_key_in_the_config_file_says_which_was_meant(tmp_path: Path) -> None:
    config = tmp_path / "responder.yaml"
    config.write_text("wokers: 2\n")
    line = one_error_line(
        responder("replay", PAYLOAD, env={"RESPONDER_CONFIG": str(config)}), code=2
    )
    assert line == "error: unknown setting wokers (in RESPONDER_CONFIG); did you mean workers?"


@pytest.mark.parametrize(
    "args",
    [
        ["evidence", "inc-0123456789abcdef01", "-o", "{missing}/bundle.tar.gz"],
        ["postmortem", "inc-0123456789abcdef01", "-o", "{missing}/postmortem.md"],
        ["demo", "-o", "{missing}/reports"],
    ],
    ids=["evidence", "postmortem", "demo"],
)
def test_output_into_a_missing_directory_is_one_line_before_any_work(
    args: list[str], tmp_path: Path, closed_url: str
) -> None:
    missing = tmp_path / "no-such-dir"
    args = [a.format(missing=missing) for a in args]
    if args[0] != "demo":
        args += ["--url", closed_url]  # checked before the service is asked
    line = one_error_line(responder(*args), code=2)
    assert (
        line == f"error: {Path(args[3 if args[0] != 'demo' else 2])}: no such directory: {missing}"
    )
    assert not missing.exists()


def test_in_process_replay_with_redis_down_names_the_address_not_the_password() -> None:
    port = free_port()
    result = responder(
        "replay", PAYLOAD, env={"RESPONDER_REDIS_URL": f"redis://:hunter2-pw@127.0.0.1:{port}/0"}
    )
    line = one_error_line(result, code=1)
    assert line.startswith(f"error: cannot reach Redis at 127.0.0.1:{port}: nothing was replayed")
    assert "hunter2" not in result.stderr + result.stdout


def test_a_missing_pack_is_one_line(tmp_path: Path) -> None:
    # (replay and rules explain already said a missing file in one line)
    missing = tmp_path / "pack.yaml"
    result = responder("rules", "lint", str(missing))
    assert one_error_line(result, code=1) == f"error: {missing}: no such file or directory"


def test_a_missing_triage_pack_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "pack.yaml"
    result = responder("triage", "--pack", str(missing), "--label", "service=posthog")
    assert one_error_line(result, code=2) == f"error: {missing}: no such file"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"RESPONDER_WOKERS": "3"},
            "error: unknown variable RESPONDER_WOKERS: no such setting; "
            "did you mean RESPONDER_WORKERS?",
        ),
        (
            {"RESPONDER_REDIS_URL": "http://x"},
            "error: invalid setting RESPONDER_REDIS_URL: not a Redis URL (the scheme http://): "
            "write redis://[:password@]host:6379/0, rediss:// for TLS or "
            "unix:///path/redis.sock",
        ),
        (
            {"RESPONDER_LOG_LEVEL": "LOUD"},
            "error: invalid setting RESPONDER_LOG_LEVEL: 'LOUD' is not a log level: use DEBUG, "
            "INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            {"RESPONDER_SLACK_CHANNELS": "P1:#major"},
            "error: invalid setting RESPONDER_SLACK_CHANNELS: 'P1:#major': write SEVERITY=value, "
            "e.g. P1=#incidents",
        ),
        (
            {"RESPONDER_STATUSPAGE_PAGE_ID": "abc"},
            "error: invalid settings: RESPONDER_STATUSPAGE_API_KEY and "
            "RESPONDER_STATUSPAGE_PAGE_ID go together: set both or neither",
        ),
        (
            {"RESPONDER_TRIAGE_BUDGET_S": "40"},
            "error: invalid settings: RESPONDER_TRIAGE_BUDGET_S must be below "
            "RESPONDER_VISIBILITY_TIMEOUT_S: otherwise another worker claims an entry while "
            "its triage still runs",
        ),
        (
            {"RESPONDER_TEMPLATES_DIR": "/nonexistent/templates"},
            "error: invalid settings: RESPONDER_TEMPLATES_DIR: no such directory: "
            "/nonexistent/templates",
        ),
        (
            {"RESPONDER_KUBECONFIG": "/nonexistent/kubeconfig"},
            "error: invalid settings: RESPONDER_KUBECONFIG: no such file: /nonexistent/kubeconfig",
        ),
    ],
    ids=[
        "did-you-mean",
        "redis-scheme",
        "log-level",
        "channel-map",
        "pair",
        "span",
        "dir",
        "kubeconfig",
    ],
)
def test_a_wrong_setting_is_one_line_naming_the_variable(
    env: dict[str, str], expected: str
) -> None:
    assert one_error_line(responder("serve", env=env), code=2) == expected


def test_a_redis_url_error_never_shows_its_password() -> None:
    result = responder("serve", env={"RESPONDER_REDIS_URL": "http://u:hunter2-pw@redis:6379"})
    assert "RESPONDER_REDIS_URL" in one_error_line(result, code=2)
    assert "hunter2" not in result.stderr


def test_version_and_shell_completion() -> None:
    version = responder("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("responder ")
    completion = responder("--show-completion", "bash")
    assert completion.returncode == 0, completion.stderr
    assert "complete" in completion.stdout
