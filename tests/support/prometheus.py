"""A real Prometheus (Debian's ``prometheus``, v2.42) scraping an exporter the test controls.

``ControlledExporter`` is an aiohttp server on a loopback port serving ``/metrics``; the test
sets, increments or grows its counters and gauges at any time::

    async with ControlledExporter() as exporter, running_prometheus([exporter]) as prom:
        exporter.set_counter("posthog_requests_total", {"service": "posthog-integration"}, 1000)
        exporter.grow("posthog_errors_total", {"status_code": "429"}, per_second=3.0)
        await prom.wait_for_samples("count_over_time(posthog_errors_total[10s])", 10)
        result = await prom.query("rate(posthog_errors_total[10s])")

``running_prometheus(targets)`` writes a ``prometheus.yml`` scraping the targets every
``scrape_interval`` into a temporary directory, starts the binary on a free loopback port,
waits for ``/-/ready`` and stops it (and removes the directory) at the end.

Timing, and a trap: ``rate(x[w])`` divides by the whole window ``w``, and a young Prometheus
has samples in only part of it. Until ``w`` is covered by samples, ``rate(x[1m])`` is about
``true rate * covered / 1m`` (a counter growing 3/s reads ~0.6/s after 12 s). So wait until
the window is full (``count_over_time(x[w]) >= w / scrape_interval``) and keep ``w`` short in
tests, or use ``irate``, or ratios of two rates over the same window (the under-coverage
cancels out).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tests.support.binaries import BinaryProcess, RunningBinary, running_binary
from tests.support.loopback import LoopbackServer
from tests.support.procs import free_port

BINARY = "prometheus"
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1)
# The classic text format (what generate_latest writes), as Prometheus 2.42 expects it.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelKey = tuple[tuple[str, str], ...]


def _key(labels: Mapping[str, str] | None) -> LabelKey:
    return tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items()))


# ------------------------------------------------------------------------------ exporter


@dataclass
class _Family:
    kind: str  # "counter" or "gauge"
    help: str
    series: dict[LabelKey, float] = field(default_factory=dict)


class _ExporterCollector(Collector):
    def __init__(self, families: dict[str, _Family]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for name, family in sorted(self._families.items()):
            metric: Metric
            if family.kind == "counter":
                metric = CounterMetricFamily(name, family.help)  # strips the _total suffix
            else:
                metric = GaugeMetricFamily(name, family.help)
            for labels, value in family.series.items():
                metric.add_sample(name, dict(labels), value)
            yield metric


class Growth:
    """A background task adding ``per_second`` to one counter, every ``tick_s``.

    Each tick adds ``per_second * seconds since the last tick``, so a late tick (a busy event
    loop) does not change the rate. ``per_second`` may be changed while it runs.
    """

    def __init__(
        self,
        exporter: ControlledExporter,
        name: str,
        labels: Mapping[str, str] | None,
        per_second: float,
        tick_s: float,
    ) -> None:
        self.name = name
        self.labels = dict(labels or {})
        self.per_second = per_second
        self.tick_s = tick_s
        self._exporter = exporter
        self._last = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"grow {name}{self.labels}"
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.catch_up()

    def catch_up(self) -> None:
        """Add what the time since the last addition is worth. Also called as a scrape is
        answered, so the value Prometheus reads is the rate times the time up to that very
        moment, not a staircase of ``tick_s`` steps: between two scrapes a second apart,
        a staircase of 0.25 s steps reads 3, 4 or 5 steps (an irate off by 25%) as ticks
        and scrapes drift against each other on a loaded machine."""
        if self._task.done():
            return
        now = time.monotonic()
        self._exporter.inc_counter(self.name, self.labels, self.per_second * (now - self._last))
        self._last = now

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def stop(self) -> None:
        """Stop growing; the counter keeps its value. Idempotent."""
        self._task.cancel()
        await asyncio.wait([self._task])
        if not self._task.cancelled() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]


class ControlledExporter(LoopbackServer):
    """``/metrics`` in the Prometheus text format, with values the test sets.

    Counter names must end in ``_total`` (as exposed); a name is either a counter or a gauge.
    Use as ``async with ControlledExporter() as exporter:``; it listens on 127.0.0.1 on a
    port the OS picks (no clash possible) and stops its growth tasks and server on exit.
    """

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.scrapes = 0  # GET /metrics answered
        self._families: dict[str, _Family] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_ExporterCollector(self._families))
        self._growths: list[Growth] = []

    # -- values

    def _family(self, name: str, kind: str) -> _Family:
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: counter names end in _total")
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(kind, f"{name} (ControlledExporter)")
        elif family.kind != kind:
            raise ValueError(f"{name!r} is a {family.kind}, not a {kind}")
        return family

    def set_counter(self, name: str, labels: Mapping[str, str] | None, value: float) -> None:
        """Set a counter (a lower value than before is a counter reset, as after a restart)."""
        if value < 0:
            raise ValueError("a counter is never negative")
        self._family(name, "counter").series[_key(labels)] = float(value)

    def inc_counter(self, name: str, labels: Mapping[str, str] | None, by: float = 1.0) -> None:
        if by < 0:
            raise ValueError("a counter only goes up; set_counter() to reset it")
        series = self._family(name, "counter").series
        series[_key(labels)] = series.get(_key(labels), 0.0) + by

    def set_gauge(self, name: str, labels: Mapping[str, str] | None, value: float) -> None:
        self._family(name, "gauge").series[_key(labels)] = float(value)

    def inc_gauge(self, name: str, labels: Mapping[str, str] | None, by: float = 1.0) -> None:
        series = self._family(name, "gauge").series
        series[_key(labels)] = series.get(_key(labels), 0.0) + by

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        family = self._families.get(name)
        return None if family is None else family.series.get(_key(labels))

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Stop exposing one series (Prometheus marks it stale at the next scrape)."""
        family = self._families.get(name)
        if family is not None:
            family.series.pop(_key(labels), None)
            if not family.series:
                del self._families[name]

    def grow(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        per_second: float,
        tick_s: float = 0.25,
    ) -> Growth:
        """Make a counter grow at ``per_second`` (from its current value, or 0) until stopped."""
        if per_second < 0:
            raise ValueError("a counter only goes up")
        self.inc_counter(name, labels, 0.0)  # exposed from now on, even before the first tick
        growth = Growth(self, name, labels, per_second, tick_s)
        self._growths.append(growth)
        return growth

    async def stop_growing(self) -> None:
        """Stop every growth task started by ``grow``."""
        growths, self._growths = self._growths, []
        for growth in growths:
            await growth.stop()

    def render(self) -> bytes:
        """What ``/metrics`` answers now."""
        return generate_latest(self._registry)

    # -- server

    @property
    def target(self) -> str:
        """``host:port``, as a Prometheus static_configs target."""
        return self.address

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        for growth in self._growths:
            growth.catch_up()  # the counters as of this scrape (see ``Growth.catch_up``)
        return web.Response(body=self.render(), headers={"Content-Type": TEXT_CONTENT_TYPE})

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def close(self) -> None:
        await self.stop_growing()
        await super().close()


# ---------------------------------------------------------------------------- prometheus


class PrometheusQueryError(AssertionError):
    """Prometheus answered a query with ``"status": "error"`` (a bad query, say)."""


Sample = tuple[dict[str, str], float]  # (labels, value) of one series of an instant vector


class Prometheus(BinaryProcess):
    def __init__(
        self,
        *,
        port: int,
        proc: subprocess.Popen[bytes],
        workdir: Path,
        log_path: Path,
        session: aiohttp.ClientSession,
    ) -> None:
        super().__init__(port=port, proc=proc, log_path=log_path)
        self.workdir = workdir
        self._session = session

    async def query(self, promql: str, *, at: float | None = None) -> dict[str, Any]:
        """``GET /api/v1/query``: Prometheus's JSON answer as it is, errors included
        (``{"status": "error", "errorType": "bad_data", ...}`` for a bad query)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        async with self._session.get(f"{self.url}/api/v1/query", params=params) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            return body

    async def vector(self, promql: str, *, at: float | None = None) -> list[Sample]:
        """The query's instant vector as ``[(labels, value), ...]``; a scalar result is one
        sample without labels. Raises ``PrometheusQueryError`` when the query fails."""
        body = await self.query(promql, at=at)
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{promql}: {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusQueryError(f"{promql}: not an instant vector: {data['resultType']}")
        return [(dict(s["metric"]), float(s["value"][1])) for s in data["result"]]

    async def value(self, promql: str) -> float | None:
        """The single value of a query (``None`` when it has no series; an error when more)."""
        samples = await self.vector(promql)
        if len(samples) > 1:
            raise PrometheusQueryError(f"{promql}: {len(samples)} series, expected one")
        return samples[0][1] if samples else None

    async def wait_for_samples(
        self,
        promql: str,
        min_value: float = -math.inf,
        timeout_s: float = 20.0,
        *,
        min_series: int = 1,
        interval_s: float = 0.25,
    ) -> list[Sample]:
        """Poll ``promql`` until at least ``min_series`` series have a value >= ``min_value``
        (NaN never counts); return the last vector. Fails at once on a query error and after
        ``timeout_s`` with the last result and the binary's log tail."""
        deadline = time.monotonic() + timeout_s
        last: list[Sample] = []
        while True:
            last = await self.vector(promql)
            if sum(1 for _, v in last if v >= min_value) >= min_series:
                return last
            if time.monotonic() >= deadline:
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"{BINARY} exited ({self.proc.returncode}):\n{self.log()}")
            await asyncio.sleep(interval_s)
        tail = "\n".join(self.log().splitlines()[-20:])
        raise AssertionError(
            f"{promql}: not {min_series} series >= {min_value} within {timeout_s}s "
            f"(last: {last!r})\n{BINARY} log tail:\n{tail}"
        )

    async def targets(self) -> list[dict[str, Any]]:
        """``GET /api/v1/targets``: the active targets (``health``, ``lastError``, ...)."""
        async with self._session.get(f"{self.url}/api/v1/targets") as resp:
            body = await resp.json()
            return list(body["data"]["activeTargets"])

    async def ready(self) -> bool:
        try:
            async with self._session.get(f"{self.url}/-/ready", timeout=_PROBE_TIMEOUT) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):  # not listening, or not answering
            return False

    async def _is_ours(self) -> bool:
        """The server on our port runs on our TSDB directory (not someone else's server)."""
        try:
            url = f"{self.url}/api/v1/status/flags"
            async with self._session.get(url, timeout=_PROBE_TIMEOUT) as resp:
                if resp.status != 200:
                    return False
                flags = (await resp.json())["data"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return False
        return bool(flags.get("storage.tsdb.path") == str(self.workdir / "data"))


def prometheus_config(
    targets: Iterable[str],
    *,
    scrape_interval: str = "1s",
    job: str = "exporter",
    labels: Mapping[str, str] | None = None,
    rule_files: Iterable[str] = (),
    alertmanagers: Iterable[str] = (),
) -> dict[str, Any]:
    """A prometheus.yml scraping ``targets`` (``host:port``) as one job, its series
    labelled with ``labels``; evaluating ``rule_files`` (beside it) and sending the alerts
    to ``alertmanagers`` (``host:port``)."""
    static: dict[str, Any] = {"targets": list(targets)}
    if labels:
        static["labels"] = dict(labels)
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "metrics_path": "/metrics",
                "static_configs": [static],
            }
        ],
    }
    if rule_files := list(rule_files):
        config["rule_files"] = rule_files
    if alertmanagers := list(alertmanagers):
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
    return config


def _argv(workdir: Path, port: int) -> list[str]:
    return [
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=info",
        # firing alerts go to Alertmanager again every second, not every minute
        "--rules.alert.resend-delay=1s",
    ]


@asynccontextmanager
async def running_prometheus(
    targets: Iterable[ControlledExporter | str],
    scrape_interval: str = "1s",
    *,
    job: str = "exporter",
    ready_timeout_s: float = 20.0,
    wait_for_scrape: bool = True,
    labels: Mapping[str, str] | None = None,
    rules: Mapping[str, Any] | None = None,
    alertmanagers: Iterable[str] = (),
) -> AsyncIterator[Prometheus]:
    """Start Prometheus scraping ``targets`` (exporters, or ``host:port`` strings) every
    ``scrape_interval``; yield it once ``/-/ready`` and (``wait_for_scrape``) once every
    target was scraped at least once (``up`` has a sample, 1 or 0); stop it and remove its
    files afterwards.

    Prometheus 2.42 starts scraping about 5 s after it is ready (its scrape manager applies
    new targets on a 5 s tick), so entering takes ~6 s with ``wait_for_scrape``.
    Series carry ``job=<job>`` and ``instance=<host:port>`` labels. On a port clash (the
    binary exits, or the port answers as someone else's server) it retries on another port.
    """
    addresses = [t.target if isinstance(t, ControlledExporter) else t for t in targets]
    rules = dict(rules or {})
    config = prometheus_config(
        addresses,
        scrape_interval=scrape_interval,
        job=job,
        labels=labels,
        rule_files=rules,
        alertmanagers=alertmanagers,
    )

    def prepare(workdir: Path) -> None:
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name, document in rules.items():
            (workdir / name).write_text(yaml.safe_dump(document, sort_keys=False))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        def handle(run: RunningBinary) -> Prometheus:
            return Prometheus(
                port=run.port,
                proc=run.proc,
                workdir=run.workdir,
                log_path=run.log_path,
                session=session,
            )

        async def ready_and_ours(run: RunningBinary) -> bool:
            prom = handle(run)
            return await prom.ready() and await prom._is_ours()

        async with running_binary(
            BINARY,
            name="prometheus",
            argv=_argv,
            prepare=prepare,
            ready=ready_and_ours,
            ready_timeout_s=ready_timeout_s,
            pick_port=free_port,  # looked up now: a test may replace it
        ) as run:
            prom = handle(run)
            if wait_for_scrape and addresses:
                await prom.wait_for_samples(
                    f'count(up{{job="{job}"}})',
                    len(set(addresses)),
                    timeout_s=ready_timeout_s,
                )
            yield prom
