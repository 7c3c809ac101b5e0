"""The shipped rule packs, with their probes aimed at loopback fakes for tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATUS_PAGE = "https://status.posthog.com"
HEALTH_URL = "http://{{ labels.service }}.{{ labels.namespace }}.svc.cluster.local/health"


def posthog_pack(tmp: Path, *, status_page_url: str, health_url: str) -> Path:
    """rules/posthog.yaml as shipped, but its status page and health endpoint are fakes."""
    text = (ROOT / "rules" / "posthog.yaml").read_text()
    assert STATUS_PAGE in text
    assert HEALTH_URL in text
    text = text.replace(STATUS_PAGE, status_page_url).replace(HEALTH_URL, health_url)
    path = tmp / "posthog.yaml"
    path.write_text(text)
    return path
