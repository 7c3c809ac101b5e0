"""The real Prometheus (Debian's v2.42) scraping a ControlledExporter: the support in
tests/support/prometheus.py gives the PromQL answers a probe would get in production.

Timing: scrape_interval is 1s; Prometheus scrapes for the first time ~5s after it is ready,
and ``running_prometheus`` waits for that scrape. Every later wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tests.support.prometheus as prometheus_support
from tests.support.procs import free_port
from tests.support.prometheus import (
    ControlledExporter,
    PrometheusQueryError,
    running_prometheus,
)

pytestmark = pytest.mark.e2e

SERVICE = {"service": "posthog-integration"}
ERRORS = 'posthog_errors_total{service="posthog-integration"}'
REQUESTS = 'posthog_requests_total{service="posthog-integration"}'


def errors(code: str) -> dict[str, str]:
    return {**SERVICE, "status_code": code}


async def test_exporter_serves_what_the_test_sets() -> None:
    async with ControlledExporter() as exporter, aiohttp.ClientSession() as http:
        exporter.set_counter("posthog_requests_total", SERVICE, 1000)
        exporter.inc_counter("posthog_requests_total", SERVICE, 5)
        exporter.set_gauge("posthog_queue_depth", None, 7)
        exporter.inc_gauge("posthog_queue_depth", None, -2)
        exporter.set_counter("posthog_errors_total", errors("500"), 1)
        exporter.remove("posthog_errors_total", errors("500"))
        growth = exporter.grow("posthog_errors_total", errors("429"), per_second=40.0)

        await asyncio.sleep(0.6)
        await growth.stop()
        grown = exporter.value("posthog_errors_total", errors("429"))
        assert grown is not None
        assert 16 <= grown <= 32
        await asyncio.sleep(0.3)
        assert exporter.value("posthog_errors_total", errors("429")) == grown  # stopped

        async with http.get(exporter.url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["posthog_requests"].type == "counter"
        assert [(s.name, s.labels, s.value) for s in families["posthog_requests"].samples] == [
            ("posthog_requests_total", SERVICE, 1005.0)
        ]
        assert families["posthog_queue_depth"].type == "gauge"
        assert families["posthog_queue_depth"].samples[0].value == 5.0
        error_samples = families["posthog_errors"].samples
        assert [s.labels for s in error_samples] == [errors("429")]  # 500 was removed
        assert exporter.scrapes == 1

        with pytest.raises(ValueError, match="end in _total"):
            exporter.set_counter("posthog_requests", None, 1)
        with pytest.raises(ValueError, match="is a counter, not a gauge"):
            exporter.set_gauge("posthog_requests_total", SERVICE, 1)
        with pytest.raises(ValueError, match="only goes up"):
            exporter.inc_counter("posthog_requests_total", SERVICE, -1)


async def test_instant_query_returns_the_prometheus_json_shape() -> None:
    async with ControlledExporter() as exporter:
        exporter.set_gauge("posthog_queue_depth", SERVICE, 7)
        async with running_prometheus([exporter]) as prom:
            assert prom.url.startswith("http://127.0.0.1:")
            body = await prom.query("posthog_queue_depth")

            assert body["status"] == "success"
            assert body["data"]["resultType"] == "vector"
            [series] = body["data"]["result"]
            assert series["metric"] == {
                "__name__": "posthog_queue_depth",
                "instance": exporter.target,
                "job": "exporter",
                **SERVICE,
            }
            timestamp, value = series["value"]
            assert isinstance(timestamp, float)
            assert value == "7"

            assert await prom.value("posthog_queue_depth") == 7.0
            assert await prom.value("absent_metric_name") is None
            [target] = await prom.targets()
            assert target["health"] == "up"
            assert target["scrapeUrl"] == exporter.url

            bad = await prom.query("sum(")
            assert bad["status"] == "error"
            assert bad["errorType"] == "bad_data"
            with pytest.raises(PrometheusQueryError):
                await prom.vector("sum(")


async def test_rate_of_a_counter_growing_3_per_second() -> None:
    async with ControlledExporter() as exporter:
        exporter.set_counter("posthog_errors_total", errors("429"), 1000)
        exporter.grow("posthog_errors_total", errors("429"), per_second=3.0)
        async with running_prometheus([exporter], scrape_interval="1s") as prom:
            # irate: the last two samples, right after two scrapes.
            await prom.wait_for_samples(f"count_over_time({ERRORS}[1m])", 2)
            assert await prom.value(f"irate({ERRORS}[1m])") == pytest.approx(3.0, rel=0.15)

            # rate over a window: right once the window is full of samples (10 at 1s).
            await prom.wait_for_samples(f"count_over_time({ERRORS}[10s])", 10, timeout_s=20)
            assert await prom.value(f"rate({ERRORS}[10s])") == pytest.approx(3.0, rel=0.1)

            # The trap: rate() divides by the whole window, so a young Prometheus (~15s of
            # samples) reads a [1m] rate far below the true one.
            young_1m = await prom.value(f"rate({ERRORS}[1m])")
            assert young_1m is not None
            assert 0 < young_1m < 1.5


async def test_sum_by_status_code_gives_one_series_per_code() -> None:
    async with ControlledExporter() as exporter:
        exporter.grow("posthog_errors_total", errors("429"), per_second=2.0)
        exporter.grow("posthog_errors_total", errors("500"), per_second=1.0)
        exporter.set_counter("posthog_errors_total", errors("503"), 5)  # flat: rate 0
        exporter.grow(  # another service: filtered out by the selector
            "posthog_errors_total", {"service": "other", "status_code": "502"}, per_second=9.0
        )
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(f"count_over_time({ERRORS}[1m])", 3, min_series=3)
            query = f"sum by (status_code) (rate({ERRORS}[1m]))"
            by_code = {labels["status_code"]: value for labels, value in await prom.vector(query)}
            raw = await prom.query(query)

    assert set(by_code) == {"429", "500", "503"}
    # One series per code, labelled by the code alone (no job, instance or service).
    metrics = sorted((s["metric"] for s in raw["data"]["result"]), key=lambda m: m["status_code"])
    assert metrics == [{"status_code": "429"}, {"status_code": "500"}, {"status_code": "503"}]
    assert by_code["429"] > by_code["500"] > 0
    assert by_code["503"] == 0
    # Same window, same extrapolation: the ratio between codes is right early on.
    assert by_code["429"] / by_code["500"] == pytest.approx(2.0, rel=0.15)


async def test_ratio_between_two_counters() -> None:
    async with ControlledExporter() as exporter:
        # Both counting before the first scrape: same extrapolation for both rates.
        exporter.set_counter("posthog_requests_total", SERVICE, 1000)
        exporter.grow("posthog_requests_total", SERVICE, per_second=10.0)
        exporter.grow("posthog_errors_total", errors("429"), per_second=2.0)
        exporter.grow("posthog_errors_total", errors("500"), per_second=1.0)
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(f"count_over_time({REQUESTS}[1m])", 4)
            # The rule pack's error_ratio query (rules/posthog.yaml), as the probe sends it.
            ratio_5m = await prom.value(f"sum(rate({ERRORS}[5m])) / sum(rate({REQUESTS}[5m]))")
            ratio_1m = await prom.value(f"sum(rate({ERRORS}[1m])) / sum(rate({REQUESTS}[1m]))")
            only_429 = await prom.value(
                f'sum(rate(posthog_errors_total{{service="posthog-integration",'
                f'status_code="429"}}[1m])) / sum(rate({REQUESTS}[1m]))'
            )

    assert ratio_5m == pytest.approx(0.3, abs=0.03)
    assert ratio_1m == pytest.approx(0.3, abs=0.03)
    assert only_429 == pytest.approx(0.2, abs=0.03)


@pytest.fixture
def clashing_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The first port handed to the Prometheus support is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        ports = iter([port])
        monkeypatch.setattr(
            prometheus_support, "free_port", lambda: next(ports, None) or free_port()
        )
        yield port


async def test_port_clash_is_retried_and_everything_is_cleaned_up(clashing_port: int) -> None:
    async with running_prometheus([], wait_for_scrape=False) as prom:
        assert prom.port != clashing_port
        assert await prom.ready()
        assert "address already in use" in prom.log()
        proc, workdir = prom.proc, prom.workdir
    assert proc.poll() is not None  # stopped and reaped
    assert not workdir.exists()
