"""docs/configuration.md is what docs/configuration.py renders from the settings model:
every setting, once, under its concern, with its default and description; a stale file
fails here (and `make docs` rewrites it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from responder.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "docs" / "configuration.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_configuration_doc_is_what_the_settings_model_renders() -> None:
    checked = _script("--check")
    assert checked.returncode == 0, checked.stderr


def test_every_setting_is_documented_once_under_a_concern() -> None:
    text = DOC.read_text()
    rows = re.findall(r"^\| `(RESPONDER_[A-Z0-9_]+)`", text, flags=re.M)
    wanted = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert wanted <= set(rows)
    assert len(rows) == len(set(rows))  # once each
    for concern in ("## Redis and durability", "## Slack", "## PagerDuty", "## Triage"):
        assert concern in text
    slack = text.split("## Slack", 1)[1].split("\n## ", 1)[0]
    assert "| `RESPONDER_SLACK_CHANNEL` | `#incidents` |" in slack
    # a checkout-independent default, and secrets marked as such
    assert "| `RESPONDER_RULES` | `rules/` |" in text
    assert "`RESPONDER_SLACK_TOKEN` (secret; `_FILE` too) | unset |" in slack
    assert str(ROOT) not in text


def test_the_readme_points_to_the_configuration_doc_instead_of_a_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/configuration.md" in readme
    assert "| `RESPONDER_REDIS_TIMEOUT_S` |" not in readme  # the table lives in the doc
