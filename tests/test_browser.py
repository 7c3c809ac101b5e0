"""The incident pages as a person sees them: headless Chromium (Debian's ``chromium``,
driven by Playwright) against a real ``responder serve``.

The service runs the mitigation test pack on a fake cluster (``tests/support/mitigation``):
one alert is triaged, takes its branch, patches the Deployment, resolves and is reverted;
another carries markup in its labels. The browser logs in through the form, reads the
list and the incident page at desktop width and at a phone's (390 px), and follows the
postmortem link with the login cookie alone. Screenshots land in ``test-artifacts/``.

One service and one browser for the module: starting them is most of the time.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.support.mitigation import alert, cluster
from tests.support.procs import ServeProcess, serve_process
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import example

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# this machine's network is closed: no field trials, updates, sync or QUIC probing
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READ_TOKEN = "browser-read-token-1"
# the error ratio the page draws: the action's verify query (the pack has no triage query)
# (no label matcher: the test pack writes the query inside a double-quoted YAML string)
RATIO = "posthog_error_ratio"
# a range step of the incident window (40 minutes: 15 s steps) must fall after the first
# sample, or the window holds no point yet
STEP_S = 15.0
EVIL = '<b id="injected">bold</b><img src=x onerror="document.title=1">'
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class World:
    served: ServeProcess
    env: dict[str, str]
    incident: dict[str, Any]  # applied, resolved, reverted
    hostile: dict[str, Any]  # markup in its labels

    @property
    def url(self) -> str:
        return self.served.url


def _call(url: str, *, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {READ_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


async def _incident_with(base: str, alertname: str, kind: str) -> dict[str, Any]:
    """The incident of ``alertname`` once its timeline has ``kind`` (polled: the service
    is another process)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = await asyncio.to_thread(_call, base + "/v1/incidents")
        for inc in listed["incidents"]:
            if inc["labels"].get("alertname") == alertname and any(
                e["kind"] == kind for e in inc["timeline"]
            ):
                return dict(inc)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{alertname}: no {kind} within 30 s")


def _hostile_alert() -> dict[str, Any]:
    payload = copy.deepcopy(example("alertmanager/posthog-rate-limited-429-firing.json"))
    a = payload["alerts"][0]
    a["labels"] = {"alertname": "Hostile", "service": EVIL, "instance": EVIL}
    a["annotations"] = {"summary": EVIL}
    a["fingerprint"] = ""
    return payload


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where the screenshots go: ``test-artifacts/browser/`` at the repo root (ignored by
    git, kept by CI as the test's artefacts)."""
    path = ROOT / "test-artifacts" / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("browser")
    async with (
        ControlledExporter() as exporter,
        running_prometheus([exporter]) as prom,
        cluster(tmp / "cluster", verify_query=RATIO) as c,
    ):
        exporter.set_gauge("posthog_error_ratio", {"service": "posthog-integration"}, 0.01)
        await prom.wait_for_samples(RATIO, 0.01)
        first_sample = time.monotonic()
        env = {
            "RESPONDER_PROMETHEUS_URL": prom.url,
            "RESPONDER_RULES": str(c.pack),
            "RESPONDER_TRIAGE": "true",
            "RESPONDER_KUBECONFIG": str(c.kubeconfig),
            "RESPONDER_ACTION_ALLOWLIST": "production/posthog-integration/*",
            "RESPONDER_VISIBILITY_TIMEOUT_S": "3",
            "RESPONDER_TRIAGE_BUDGET_S": "1.5",
            "RESPONDER_READ_TOKEN": READ_TOKEN,
            "RESPONDER_REPORTS_DIR": str(tmp / "reports"),
            "RESPONDER_LOG_LEVEL": "WARNING",
        }
        # the fakes answer from this loop: the service is started from a thread, so that
        # its start-up checks against the fake cluster are answered meanwhile
        starting = serve_process(env)
        served = await asyncio.to_thread(starting.__enter__)
        try:
            hook = served.url + "/v1/webhooks/alertmanager"
            await asyncio.to_thread(_call, hook, body=alert("SetEnv"))
            await _incident_with(served.url, "SetEnv", "action.applied")
            await asyncio.to_thread(_call, hook, body=alert("SetEnv", status="resolved"))
            await _incident_with(served.url, "SetEnv", "action.reverted")
            incident = await _incident_with(served.url, "SetEnv", "report.written")
            await asyncio.to_thread(_call, hook, body=_hostile_alert())
            hostile = await _incident_with(served.url, "Hostile", "incident.unclassified")
            await asyncio.sleep(max(0.0, first_sample + STEP_S - time.monotonic()))
            yield World(served, env, incident, hostile)
        finally:
            await asyncio.to_thread(starting.__exit__, None, None, None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (no cookie) a test at a time, at desktop width."""
    context = await browser.new_context(viewport=DESKTOP)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
def shots(artifacts: Path, request: pytest.FixtureRequest) -> Path:
    return artifacts / request.node.name


async def log_in(page: Page, world: World, path: str = "/incidents") -> None:
    """Through the form, as a person: the page asked for answers 401 with it."""
    first = await page.goto(world.url + path)
    assert first is not None
    assert first.status == 401
    await page.fill("input[name=token]", READ_TOKEN)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert page.url == world.url + path


async def fits_the_width(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def smallest_font_px(page: Page) -> float:
    """The smallest font size of any element that shows text."""
    return float(
        await page.evaluate(
            """() => Math.min(...[...document.body.querySelectorAll('*')]
                .filter(e => e.getClientRects().length && [...e.childNodes].some(
                    n => n.nodeType === Node.TEXT_NODE && n.textContent.trim()))
                .map(e => parseFloat(getComputedStyle(e).fontSize)))"""
        )
    )


async def test_without_a_login_the_pages_answer_401_with_the_form(
    world: World, page: Page, shots: Path
) -> None:
    for path in ("/incidents", f"/incidents/{world.incident['id']}"):
        resp = await page.goto(world.url + path)
        assert resp is not None
        assert resp.status == 401, path
        assert await page.locator("input[name=token][type=password]").is_visible()
        assert world.incident["title"] not in await page.inner_text("body")
    await page.fill("input[name=token]", "not-the-token")
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert await page.locator(".problem").inner_text() == "Wrong token."
    await page.screenshot(path=f"{shots}-login.png", full_page=True)
    assert await page.context.cookies() == []


async def test_a_person_reads_the_list_and_the_incident_after_logging_in(
    world: World, page: Page, shots: Path
) -> None:
    inc = world.incident
    await log_in(page, world)
    row = page.locator("tr", has=page.locator(f"a[href='/incidents/{inc['id']}']"))
    cells = await row.locator("td").all_inner_texts()
    assert cells[:3] == [inc["id"], "P2", "resolved"]
    assert cells[4] == "queue-requests"
    opened, acked, resolved = cells[5:8]
    assert opened.endswith(" UTC")
    assert acked == "—"  # nobody acknowledged it
    assert resolved.endswith(" UTC")
    await page.screenshot(path=f"{shots}-list.png", full_page=True)
    async with page.expect_navigation():
        await page.click(f"a[href='/incidents/{inc['id']}']")
    summary = await page.locator("dl.summary").inner_text()
    assert "Severity\nP2" in summary
    assert "Status\nresolved" in summary
    assert "Branch\nqueue-requests" in summary
    action = page.locator(".action").first
    heading = await action.locator("h3").inner_text()
    assert heading.endswith(": set_env on production/posthog-integration — applied"), heading
    before = json.loads(await action.locator("pre.before").inner_text())
    after = json.loads(await action.locator("pre.after").inner_text())
    assert before == {"containers": {"app": {"RATE_LIMIT_MODE": None}}}
    assert after == {"containers": {"app": {"RATE_LIMIT_MODE": "queue"}}}
    timeline = await page.locator("ol.timeline").inner_text()
    assert "action.applied" in timeline
    assert "action.reverted" in timeline
    assert "incident.resolved" in timeline
    why = await page.inner_text("body")
    assert "health.ok == false" in why  # the condition that chose the branch
    # the error-rate graph of the window, drawn from the real Prometheus: its line, and
    # the alert, the action and the resolve marked (listed under the plot)
    graph = page.locator("figure.graph svg")
    assert await graph.is_visible()
    assert (await graph.bounding_box() or {}).get("width", 0) > 300
    assert await graph.locator(".series").count() >= 1
    marks = await graph.locator("text").all_text_contents()
    assert any("alert" in t.lower() for t in marks), marks
    assert any("set_env" in t for t in marks), marks
    assert any("resolve" in t.lower() for t in marks), marks
    assert await fits_the_width(page)
    await page.screenshot(path=f"{shots}-incident.png", full_page=True)
    # the postmortem link works with the login cookie alone (no bearer header)
    href = await page.get_attribute("a:text('Postmortem draft')", "href")
    assert href == f"/v1/incidents/{inc['id']}/postmortem"
    answer = await page.context.request.get(world.url + href)
    assert answer.status == 200
    assert (await answer.text()).startswith("## Incident: ")
    href = await page.get_attribute("a:text('Evidence bundle (.tar.gz)')", "href")
    assert href == f"/v1/incidents/{inc['id']}/evidence"
    bundle = await page.context.request.get(world.url + href)
    assert bundle.status == 200
    assert bundle.headers["content-type"] == "application/gzip"


async def test_the_pages_fit_a_phone_without_scrolling_sideways(
    world: World, browser: Browser, shots: Path
) -> None:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, device_scale_factor=2)
    try:
        page = await context.new_page()
        await log_in(page, world)
        assert await fits_the_width(page)
        assert await smallest_font_px(page) >= 14
        await page.screenshot(path=f"{shots}-list.png", full_page=True)
        await page.goto(f"{world.url}/incidents/{world.incident['id']}")
        assert await page.locator("meta[name=viewport]").count() == 1
        assert await fits_the_width(page)
        assert await smallest_font_px(page) >= 14
        # the patch and the wide tables scroll inside their own box, not the page
        patch = page.locator("pre.after").first
        assert await patch.is_visible()
        await page.screenshot(path=f"{shots}-incident.png", full_page=True)
    finally:
        await context.close()


async def test_markup_in_an_alert_shows_as_text(world: World, page: Page, shots: Path) -> None:
    await log_in(page, world, f"/incidents/{world.hostile['id']}")
    assert await page.locator("#injected").count() == 0
    assert await page.locator("img").count() == 0
    assert await page.locator("script").count() == 0
    assert EVIL in await page.inner_text("body")
    assert await page.title() != "1"
    await page.screenshot(path=f"{shots}.png", full_page=True)
