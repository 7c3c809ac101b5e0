"""The shipped rule packs, with their probes aimed at loopback fakes for tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATUS_PAGE = "https://status.posthog.com"
API = "https://api.posthog.com"  # the 429 rule's rate limit headers probe
# a port nothing listens on (refused at once): the discard port, on loopback
CLOSED = "http://127.0.0.1:9/"
# The health probe's URL in the shipped pack: by the integration's name (the pack's scope),
# as it now is, or by the alert's service label, as it was.
HEALTH_URLS = (
    "http://{{ integration }}.{{ labels.namespace }}.svc.cluster.local/health",
    "http://{{ labels.service }}.{{ labels.namespace }}.svc.cluster.local/health",
)
HEALTH_URL = HEALTH_URLS[0]


def posthog_pack(
    tmp: Path, *, status_page_url: str, health_url: str, api_url: str | None = None
) -> Path:
    """rules/posthog.yaml as shipped, but its status page, health endpoint and PostHog API
    (the 429 rule's rate limit headers) are fakes; without ``api_url`` the API is a closed
    loopback port (the probe fails as "unreachable", the plain 429 branch is taken): never
    the internet, and no request counted on the other fakes."""
    text = (ROOT / "rules" / "posthog.yaml").read_text()
    assert STATUS_PAGE in text
    assert f"url: {API}\n" in text, "the 429 rule's rate limit headers probe changed"
    text = text.replace(f"url: {API}\n", f"url: {api_url or CLOSED}\n")
    assert any(url in text for url in HEALTH_URLS), "the pack's health probe URL changed"
    text = text.replace(STATUS_PAGE, status_page_url)
    for url in HEALTH_URLS:
        text = text.replace(url, health_url)
    path = tmp / "posthog.yaml"
    path.write_text(text)
    return path
