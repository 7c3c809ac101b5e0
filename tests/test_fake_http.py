"""The loopback fakes of tests/support/fake_http.py answer as the real services do, in every
mode a test can switch them to (checked here with a plain aiohttp client)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage

COMPONENT_STATUSES = {
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def statuspage() -> AsyncIterator[FakeStatuspage]:
    async with FakeStatuspage() as fake:
        yield fake


@pytest.fixture
async def health() -> AsyncIterator[FakeHealthEndpoint]:
    async with FakeHealthEndpoint() as fake:
        yield fake


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


# ---------------------------------------------------------------------------- statuspage


def assert_page(page: dict[str, Any], fake: FakeStatuspage) -> None:
    assert set(page) == {"id", "name", "url", "time_zone", "updated_at"}
    assert page["id"] == fake.page_id
    assert page["name"] == "PostHog"
    assert page["url"] == fake.url
    assert page["time_zone"] == "Etc/UTC"


async def test_statuspage_all_operational(
    http: aiohttp.ClientSession, statuspage: FakeStatuspage
) -> None:
    status, body = await get_json(http, statuspage.url + "/api/v2/status.json")
    assert status == 200
    assert set(body) == {"page", "status"}
    assert_page(body["page"], statuspage)
    assert body["status"] == {"indicator": "none", "description": "All Systems Operational"}

    status, summary = await get_json(http, statuspage.url + "/api/v2/summary.json")
    assert status == 200
    assert set(summary) == {"page", "status", "components", "incidents", "scheduled_maintenances"}
    assert [c["name"] for c in summary["components"]] == [
        "API",
        "Event ingestion",
        "Feature flags",
        "App",
    ]
    for component in summary["components"]:
        assert {"id", "name", "status", "created_at", "updated_at", "position", "group"} <= set(
            component
        )
        assert component["status"] == "operational"
        assert component["page_id"] == statuspage.page_id
    assert summary["incidents"] == []
    assert summary["scheduled_maintenances"] == []

    status, unresolved = await get_json(http, statuspage.url + "/api/v2/incidents/unresolved.json")
    assert status == 200
    assert unresolved == {"page": summary["page"], "incidents": []}


async def test_statuspage_incident_on_named_components(
    http: aiohttp.ClientSession, statuspage: FakeStatuspage
) -> None:
    incident_id = statuspage.open_incident(
        "Elevated error rates on the API", components=["API", "Event ingestion"], impact="major"
    )
    _, summary = await get_json(http, statuspage.url + "/api/v2/summary.json")

    assert summary["status"] == {"indicator": "major", "description": "Partial System Outage"}
    by_name = {c["name"]: c["status"] for c in summary["components"]}
    assert by_name == {
        "API": "partial_outage",
        "Event ingestion": "partial_outage",
        "Feature flags": "operational",
        "App": "operational",
    }
    [incident] = summary["incidents"]
    assert incident["id"] == incident_id
    assert incident["name"] == "Elevated error rates on the API"
    assert incident["status"] == "investigating"
    assert incident["impact"] == "major"
    assert incident["shortlink"].startswith("https://")
    assert {"created_at", "updated_at", "resolved_at", "started_at"} <= set(incident)
    assert [c["name"] for c in incident["components"]] == ["API", "Event ingestion"]
    assert all(c["status"] == "partial_outage" for c in incident["components"])
    [update] = incident["incident_updates"]
    assert update["status"] == "investigating"
    assert update["incident_id"] == incident_id
    assert [
        (a["name"], a["old_status"], a["new_status"]) for a in update["affected_components"]
    ] == [
        ("API", "operational", "partial_outage"),
        ("Event ingestion", "operational", "partial_outage"),
    ]

    _, unresolved = await get_json(http, statuspage.url + "/api/v2/incidents/unresolved.json")
    assert [i["id"] for i in unresolved["incidents"]] == [incident_id]

    statuspage.update_incident(incident_id, status="monitoring", body="A fix is deployed.")
    _, unresolved = await get_json(http, statuspage.url + "/api/v2/incidents/unresolved.json")
    [incident] = unresolved["incidents"]
    assert incident["status"] == "monitoring"
    assert [u["status"] for u in incident["incident_updates"]] == ["monitoring", "investigating"]

    statuspage.resolve_incident(incident_id)
    _, summary = await get_json(http, statuspage.url + "/api/v2/summary.json")
    assert summary["incidents"] == []
    assert summary["status"]["indicator"] == "none"
    assert {c["status"] for c in summary["components"]} == {"operational"}
    assert statuspage.resolved[0]["status"] == "resolved"


async def test_statuspage_critical_incident_then_all_operational(
    http: aiohttp.ClientSession, statuspage: FakeStatuspage
) -> None:
    statuspage.open_incident("PostHog is down", components=["API", "App"], impact="critical")
    _, body = await get_json(http, statuspage.url + "/api/v2/status.json")
    assert body["status"] == {"indicator": "critical", "description": "Major Service Outage"}
    assert statuspage.component("API")["status"] == "major_outage"

    statuspage.all_operational()
    _, summary = await get_json(http, statuspage.url + "/api/v2/summary.json")
    assert summary["status"]["indicator"] == "none"
    assert summary["incidents"] == []
    assert {c["status"] for c in summary["components"]} == {"operational"}


async def test_statuspage_degraded_components_maintenance_and_override(
    http: aiohttp.ClientSession, statuspage: FakeStatuspage
) -> None:
    statuspage.degrade("Feature flags")
    _, summary = await get_json(http, statuspage.url + "/api/v2/summary.json")
    assert summary["status"] == {"indicator": "minor", "description": "Partially Degraded Service"}
    assert summary["incidents"] == []
    assert {c["name"]: c["status"] for c in summary["components"]}["Feature flags"] == (
        "degraded_performance"
    )
    assert {c["status"] for c in summary["components"]} <= COMPONENT_STATUSES

    statuspage.degrade("App", status="major_outage")
    _, body = await get_json(http, statuspage.url + "/api/v2/status.json")
    assert body["status"]["indicator"] == "critical"

    statuspage.all_operational()
    statuspage.schedule_maintenance("Database upgrade", components=["App"], status="in_progress")
    _, summary = await get_json(http, statuspage.url + "/api/v2/summary.json")
    assert summary["status"]["indicator"] == "maintenance"
    [maintenance] = summary["scheduled_maintenances"]
    assert maintenance["status"] == "in_progress"
    assert {"scheduled_for", "scheduled_until"} <= set(maintenance)
    assert [c["status"] for c in maintenance["components"]] == ["under_maintenance"]

    statuspage.set_status("minor", "Elevated latency")
    _, body = await get_json(http, statuspage.url + "/api/v2/status.json")
    assert body["status"] == {"indicator": "minor", "description": "Elevated latency"}

    with pytest.raises(KeyError, match="no component 'Nope'"):
        statuspage.degrade("Nope")


# ------------------------------------------------------------------------ health endpoint


async def test_health_document_follows_posthog_status(
    http: aiohttp.ClientSession, health: FakeHealthEndpoint
) -> None:
    status, body = await get_json(http, health.health_url)
    assert status == 200
    assert body == {
        "status": "ok",
        "services": {"posthog": {"status": "ok", "latency_ms": 42}, "db": {"status": "ok"}},
    }

    health.set_posthog("degraded", latency_ms=2500)
    _, body = await get_json(http, health.health_url)
    assert body["services"]["posthog"] == {"status": "degraded", "latency_ms": 2500}
    assert body["status"] == "degraded"

    health.set_posthog("down")
    _, body = await get_json(http, health.health_url)
    assert body["services"]["posthog"]["status"] == "down"
    assert body["services"]["db"] == {"status": "ok"}

    health.set_overall("down")
    _, body = await get_json(http, health.health_url)
    assert body["status"] == "down"

    health.all_ok()
    _, body = await get_json(http, health.health_url)
    assert body["status"] == "ok"
    assert body["services"]["posthog"]["status"] == "ok"


async def test_health_answers_a_chosen_status_with_a_json_body(
    http: aiohttp.ClientSession, health: FakeHealthEndpoint
) -> None:
    health.set_posthog("down")
    health.fail_with(503)
    async with http.get(health.health_url) as resp:
        assert resp.status == 503
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["services"]["posthog"]["status"] == "down"

    health.fail_with(500, {"error": "boom"}, times=1)
    assert await get_json(http, health.health_url) == (500, {"error": "boom"})
    status, body = await get_json(http, health.health_url)  # times=1: normal again
    assert status == 200
    assert body["services"]["posthog"]["status"] == "down"


# ------------------------------------------------------------------------ failure modes


@pytest.fixture(params=["statuspage", "health"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, str]]:
    """Each fake, with the URL a probe reads."""
    if request.param == "statuspage":
        async with FakeStatuspage() as statuspage:
            yield statuspage, statuspage.url + "/api/v2/summary.json"
    else:
        async with FakeHealthEndpoint() as health:
            yield health, health.health_url


async def test_respond_500(http: aiohttp.ClientSession, fake: tuple[Any, str]) -> None:
    service, url = fake
    service.fail_with(500)
    async with http.get(url) as resp:
        assert resp.status == 500
        await resp.read()
    service.respond_normally()
    async with http.get(url) as resp:
        assert resp.status == 200
        await resp.json()


async def test_statuspage_500_is_an_html_page(
    http: aiohttp.ClientSession, statuspage: FakeStatuspage
) -> None:
    statuspage.fail_with(500)
    async with http.get(statuspage.url + "/api/v2/status.json") as resp:
        assert resp.status == 500
        assert resp.content_type == "text/html"
        assert "500 Internal Server Error" in await resp.text()
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()


async def test_malformed_json_fails_to_parse(
    http: aiohttp.ClientSession, fake: tuple[Any, str]
) -> None:
    service, url = fake
    service.malformed()
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        text = await resp.text()
        with pytest.raises(json.JSONDecodeError):
            await resp.json()
    assert text.startswith("{")  # a truncated document, not an empty one

    service.malformed(b"<html>not json</html>", times=1)
    async with http.get(url) as resp:
        with pytest.raises(json.JSONDecodeError):
            await resp.json()
    async with http.get(url) as resp:  # times=1: well-formed again
        assert isinstance(await resp.json(), dict)


async def test_delay_triggers_a_client_timeout(
    http: aiohttp.ClientSession, fake: tuple[Any, str]
) -> None:
    service, url = fake
    service.slow(2.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
            await resp.read()
    assert time.monotonic() - started < 1.5

    service.slow(0.3)  # a patient client gets the normal answer
    started = time.monotonic()
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
        assert resp.status == 200
        assert isinstance(await resp.json(), dict)
    assert time.monotonic() - started >= 0.3


async def test_hang_triggers_a_client_timeout(
    http: aiohttp.ClientSession, fake: tuple[Any, str]
) -> None:
    service, url = fake
    service.hang()
    with pytest.raises(TimeoutError):
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
            await resp.read()
    service.respond_normally()
    status, _ = await get_json(http, url)
    assert status == 200


async def test_closing_releases_hung_requests(http: aiohttp.ClientSession) -> None:
    async with FakeHealthEndpoint() as health:
        health.hang()
        pending = asyncio.create_task(get_json(http, health.health_url))
        while not health.requests:
            await asyncio.sleep(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 1.5  # not aiohttp's shutdown timeout
    # a 503 text answer (not JSON) or a dropped connection: never a health document
    with pytest.raises(aiohttp.ClientError):
        await pending


async def test_requests_are_recorded(http: aiohttp.ClientSession, fake: tuple[Any, str]) -> None:
    service, url = fake
    service.hang(times=1)  # recorded whatever the mode
    with pytest.raises(TimeoutError):
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=0.2)):
            pass
    async with http.get(
        url, params={"probe": "vendor", "n": "2"}, headers={"X-Probe": "triage"}
    ) as resp:
        await resp.read()
    async with http.get(service.url + "/nope") as resp:
        assert resp.status == 404

    first, second, third = service.requests
    path = url.removeprefix(service.url)
    assert service.paths() == [path, path, "/nope"]
    assert first.query == {}
    assert second.method == "GET"
    assert second.query == {"probe": "vendor", "n": "2"}
    assert second.headers["x-probe"] == "triage"
    assert "aiohttp" in second.headers["User-Agent"].lower()
    assert first.at <= second.at <= third.at
