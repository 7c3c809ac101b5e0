"""Each probe adapter against a loopback peer: fake Statuspage and health endpoint, a real
Prometheus scraping an exporter the test controls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from responder.adapters.http import SharedSession
from responder.adapters.probes.health import HttpHealthProbe
from responder.adapters.probes.prometheus import PrometheusQueryProbe
from responder.adapters.probes.vendor_status import StatuspageProbe
from responder.adapters.prometheus import PrometheusClient
from responder.domain.decision import PlannedProbe
from responder.domain.plans import HealthProbe, PrometheusProbe, VendorStatusProbe
from responder.redaction import Redactor
from responder.settings import Settings
from responder.triage.runner import run_probes
from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage
from tests.support.procs import free_port
from tests.support.prometheus import ControlledExporter, running_prometheus


@pytest.fixture
async def session():
    shared = SharedSession()
    yield shared
    await shared.close()


# ------------------------------------------------------------------------ vendor status


async def vendor(page: FakeStatuspage, session: SharedSession, **kw):
    spec = VendorStatusProbe(type="vendor_status", url=page.url, **kw)
    return await StatuspageProbe(session).run(spec)


async def test_vendor_all_operational_is_no_incident(session) -> None:
    async with FakeStatuspage() as page:
        result = await vendor(page, session)
        assert result.ok
        assert result.facts["incident"] is False
        assert result.facts["indicator"] == "none"
        assert result.facts["incidents"] == []
        assert page.paths() == ["/api/v2/summary.json"]


async def test_vendor_open_incident_is_named_with_its_link(session) -> None:
    async with FakeStatuspage() as page:
        page.open_incident("Elevated API error rates", components=["API"], impact="major")
        result = await vendor(page, session)
        assert result.facts["incident"] is True
        assert result.facts["indicator"] == "major"
        [incident] = result.facts["incidents"]
        assert incident["name"] == "Elevated API error rates"
        assert incident["url"].startswith("http")
        assert {"name": "API", "status": "partial_outage"} in result.facts["components_affected"]
        assert "Elevated API error rates" in result.summary


async def test_vendor_incident_on_other_components_does_not_count_when_narrowed(session) -> None:
    async with FakeStatuspage() as page:
        page.open_incident("Feature flag delays", components=["Feature flags"], impact="minor")
        narrowed = await vendor(page, session, components=("API", "Event ingestion"))
        assert narrowed.facts["incident"] is False
        assert narrowed.facts["components_affected"] == []
        everything = await vendor(page, session)
        assert everything.facts["incident"] is True


async def test_vendor_degraded_component_without_incident_is_not_an_incident(session) -> None:
    async with FakeStatuspage() as page:
        page.degrade("API")
        result = await vendor(page, session)
        assert result.facts["incident"] is False
        assert result.facts["components_affected"] == [
            {"name": "API", "status": "degraded_performance"}
        ]


async def test_vendor_errors_are_failed_probes(session) -> None:
    async with FakeStatuspage() as page:
        page.fail_with(500)
        result = await vendor(page, session)
        assert (result.ok, result.error) == (False, f"HTTP 500 from {page.url}/api/v2/summary.json")
        page.malformed()
        result = await vendor(page, session)
        assert result.ok is False
        assert result.error.startswith("malformed JSON")
        page.respond_normally()
        page.fail_with(200, body={"hello": "world"})
        result = await vendor(page, session)
        assert result.error.startswith("not a Statuspage summary")


async def test_vendor_unreachable_is_a_failed_probe(session) -> None:
    spec = VendorStatusProbe(type="vendor_status", url=f"http://127.0.0.1:{free_port()}")
    result = await StatuspageProbe(session).run(spec)
    assert result.ok is False
    assert "cannot reach" in result.error


async def test_vendor_slow_page_times_out_within_the_probe_timeout(session) -> None:
    async with FakeStatuspage() as page:
        page.slow(5)
        spec = VendorStatusProbe(type="vendor_status", url=page.url, timeout_s=0.3)
        probes = {"vendor_status": StatuspageProbe(session)}
        [result] = await run_probes(
            [PlannedProbe(rule="r", spec=spec)], probes, budget_s=5, redact=Redactor()
        )
        assert (result.ok, result.error) == (False, "timed out after 0.3s")


# ------------------------------------------------------------------------------ health


async def health(endpoint: FakeHealthEndpoint, session: SharedSession, **kw):
    spec = HealthProbe(
        type="health", url=endpoint.health_url, json_path=".services.posthog.status", **kw
    )
    return await HttpHealthProbe(session).run(spec)


@pytest.mark.parametrize(
    ("status", "ok", "verdict"),
    [("ok", True, "ok"), ("degraded", False, "degraded"), ("down", False, "down")],
)
async def test_health_reads_the_json_path(session, status: str, ok: bool, verdict: str) -> None:
    async with FakeHealthEndpoint() as endpoint:
        endpoint.set_posthog(status)
        result = await health(endpoint, session)
        assert result.ok
        assert (result.facts["ok"], result.facts["status"]) == (ok, verdict)
        assert result.facts["status_code"] == 200
        assert result.facts["latency_ms"] >= 0


async def test_health_503_with_a_body_reads_the_body(session) -> None:
    async with FakeHealthEndpoint() as endpoint:
        endpoint.set_posthog("down")
        endpoint.fail_with(503)
        result = await health(endpoint, session)
        assert (result.facts["ok"], result.facts["status"], result.facts["status_code"]) == (
            False,
            "down",
            503,
        )


async def test_health_500_without_json_is_down(session) -> None:
    async with FakeHealthEndpoint() as endpoint:
        endpoint.fail_with(500, body="Internal Server Error", content_type="text/plain")
        result = await health(endpoint, session)
        assert result.ok
        assert (result.facts["status"], result.facts["status_code"]) == ("down", 500)


async def test_health_malformed_json_is_a_failed_probe(session) -> None:
    async with FakeHealthEndpoint() as endpoint:
        endpoint.malformed()
        result = await health(endpoint, session)
        assert result.ok is False
        assert result.error.startswith("malformed JSON")


async def test_health_unreachable_endpoint_means_our_service_is_down(session) -> None:
    spec = HealthProbe(type="health", url=f"http://127.0.0.1:{free_port()}/health")
    result = await HttpHealthProbe(session).run(spec)
    assert result.ok
    assert (result.facts["ok"], result.facts["reachable"]) == (False, False)


async def test_health_slow_endpoint_times_out(session) -> None:
    async with FakeHealthEndpoint() as endpoint:
        endpoint.hang()
        spec = HealthProbe(type="health", url=endpoint.health_url, timeout_s=0.3)
        [result] = await run_probes(
            [PlannedProbe(rule="r", spec=spec)],
            {"health": HttpHealthProbe(session)},
            budget_s=5,
            redact=Redactor(),
        )
        assert (result.ok, result.error) == (False, "timed out after 0.3s")


# -------------------------------------------------------------------------- prometheus


PACK_QUERIES = {
    "error_ratio": (
        'sum(rate(posthog_errors_total{service="posthog-integration"}[5m]))'
        ' / sum(rate(posthog_requests_total{service="posthog-integration"}[5m]))'
    ),
    "errors_by_status_code": (
        'sum by (status_code) (rate(posthog_errors_total{service="posthog-integration"}[5m]))'
    ),
    "nothing": "sum(rate(no_such_metric_total[5m]))",
}


@pytest.mark.e2e
async def test_prometheus_probe_against_a_real_prometheus(session) -> None:
    svc = {"service": "posthog-integration"}
    async with ControlledExporter() as exporter:
        exporter.set_counter("posthog_requests_total", svc, 0)
        exporter.set_counter("posthog_errors_total", {**svc, "status_code": "429"}, 0)
        exporter.set_counter("posthog_errors_total", {**svc, "status_code": "500"}, 0)
        exporter.grow("posthog_requests_total", svc, per_second=20)
        exporter.grow("posthog_errors_total", {**svc, "status_code": "429"}, per_second=4)
        exporter.grow("posthog_errors_total", {**svc, "status_code": "500"}, per_second=2)
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(PACK_QUERIES["error_ratio"], 0.01)
            probe = PrometheusQueryProbe(PrometheusClient(prom.url, session))
            result = await probe.run(PrometheusProbe(type="prometheus", queries=PACK_QUERIES))
            assert result.ok
            assert result.facts["error_ratio"] == pytest.approx(0.3, abs=0.05)
            by_code = result.facts["errors_by_status_code"]
            assert set(by_code) == {"429", "500"}
            assert by_code["429"] > by_code["500"] > 0
            assert result.facts["nothing"] is None  # no data is not zero
            assert result.evidence["error_ratio"]["query"] == PACK_QUERIES["error_ratio"]
            assert result.evidence["error_ratio"]["result_type"] == "vector"

            bad = await probe.run(
                PrometheusProbe(type="prometheus", queries={"broken": "sum(rate(x[5m]"})
            )
            assert bad.ok is False
            assert "bad_data" in bad.error
            assert bad.evidence["broken"]["query"] == "sum(rate(x[5m]"


async def test_prometheus_probe_without_a_url_says_so() -> None:
    result = await PrometheusQueryProbe(None).run(
        PrometheusProbe(type="prometheus", queries={"q": "up"})
    )
    assert (result.ok, result.error) == (False, "RESPONDER_PROMETHEUS_URL is not set")


async def test_prometheus_unreachable_is_a_failed_probe(session) -> None:
    client = PrometheusClient(f"http://127.0.0.1:{free_port()}", session)
    result = await PrometheusQueryProbe(client).run(
        PrometheusProbe(type="prometheus", queries={"q": "up"})
    )
    assert result.ok is False
    assert "cannot reach Prometheus" in result.error


# ---------------------------------------------------------------- backup metrics


@pytest.mark.e2e
async def test_prometheus_urls_are_tried_in_order_and_the_facts_say_which_answered(
    session,
) -> None:
    """RESPONDER_PROMETHEUS_URL, comma-separated: the runbook's "metrics unavailable:
    check backup metrics". The first is down (nothing listens), then one answers 503
    (a Prometheus that is up but cannot serve), then the real one answers."""
    svc = {"service": "posthog-integration"}
    async with (
        ControlledExporter() as exporter,
        FakeHealthEndpoint() as unavailable,
    ):
        exporter.set_counter("posthog_requests_total", svc, 0)
        exporter.grow("posthog_requests_total", svc, per_second=20)
        unavailable.fail_with(503, {"status": "error", "errorType": "unavailable", "error": "x"})
        down = f"http://127.0.0.1:{free_port()}"
        async with running_prometheus([exporter]) as prom:
            # the counter once scraped (a rate would wait for two scrapes and more: what is
            # tested is which URL answers, not the query)
            await prom.wait_for_samples("sum(posthog_requests_total)", 1)
            settings = Settings(prometheus_url=f"{down}, {unavailable.url},{prom.url}")
            assert settings.prometheus_urls == [down, unavailable.url, prom.url]
            client = PrometheusClient(settings.prometheus_urls, session)
            probe = PrometheusQueryProbe(client)
            spec = PrometheusProbe(
                type="prometheus", queries={"rate": "sum(posthog_requests_total)"}
            )
            result = await probe.run(spec)
            assert result.ok, result.error
            assert result.facts["rate"] > 0
            assert result.facts["answered_by"] == prom.url
            assert result.facts["backup"] is True
            assert f"from the backup {prom.url}" in result.summary
            assert len(unavailable.requests) == 1

            # the first answers: no backup asked, and the facts say so
            first = await PrometheusQueryProbe(
                PrometheusClient([prom.url, unavailable.url], session)
            ).run(spec)
            assert (first.facts["answered_by"], first.facts["backup"]) == (prom.url, False)
            assert len(unavailable.requests) == 1

            # a query Prometheus refuses as such is not asked of the others
            bad = await PrometheusQueryProbe(
                PrometheusClient([prom.url, unavailable.url], session)
            ).run(PrometheusProbe(type="prometheus", queries={"broken": "sum(rate(x[5m]"}))
            assert bad.ok is False
            assert "bad_data" in (bad.error or "")
            assert len(unavailable.requests) == 1

        # none answers: the probe fails, naming each (metrics down)
        gone = await PrometheusQueryProbe(PrometheusClient([down, unavailable.url], session)).run(
            spec
        )
        assert gone.ok is False
        assert gone.error is not None
        assert "no Prometheus answered" in gone.error
        assert down in gone.error
        assert unavailable.url in gone.error


def test_prometheus_url_settings_keep_one_url_and_refuse_what_is_not_one() -> None:
    assert Settings(prometheus_url="http://prom:9090").prometheus_urls == ["http://prom:9090"]
    assert Settings().prometheus_urls == []
    with pytest.raises(ValidationError, match="is not an http"):
        Settings(prometheus_url="http://a:9090,prom-b:9090")
    with pytest.raises(ValidationError, match="no URL"):
        Settings(prometheus_url=" , ")


def test_a_query_named_as_the_probes_own_fact_is_refused() -> None:
    with pytest.raises(ValidationError, match="answered_by"):
        PrometheusProbe(type="prometheus", queries={"answered_by": "up"})
