"""The incident page's graph (``IncidentGraphs``) through a real Prometheus: the range
query of the incident's error ratio over the evidence's window and step, drawn as SVG;
asked once per incident version while it is kept, again for a new version or once kept
long enough."""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from responder.adapters.graphs import PrometheusGraphs
from responder.adapters.http import SharedSession
from responder.adapters.prometheus import PrometheusClient
from responder.domain.decision import PlannedProbe
from responder.domain.incident import Incident
from responder.domain.plans import PrometheusProbe
from responder.domain.timeline import TimelineEvent
from responder.ports import IncidentView
from responder.redaction import Redactor
from responder.rules.engine import RuleSet
from tests.support.prometheus import ControlledExporter, Prometheus, running_prometheus

pytestmark = pytest.mark.e2e

RATIO = 'posthog_error_ratio{service="posthog-integration"}'


class StoppedClock:
    """Now stands still (the window's end is one of the range query's steps); monotonic
    time moves when the test says."""

    def __init__(self, now: datetime) -> None:
        self.at = now
        self.monotonic_s = 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.monotonic_s

    async def sleep(self, seconds: float) -> None:
        self.monotonic_s += seconds


async def range_queries(prom: Prometheus) -> int:
    """How many range queries Prometheus answered (its own /metrics)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{prom.url}/metrics") as resp,
    ):
        text = await resp.text()
    found = re.search(
        r'^prometheus_http_requests_total\{code="200",handler="/api/v1/query_range"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return int(float(found.group(1))) if found else 0


@pytest.mark.timeout(60)
async def test_the_page_graph_asks_prometheus_once_per_incident_version() -> None:
    async with ControlledExporter() as exporter, running_prometheus([exporter]) as prom:
        exporter.set_gauge("posthog_error_ratio", {"service": "posthog-integration"}, 0.25)
        await prom.wait_for_samples(RATIO, 0.25)
        # a whole second just ahead: the window (40 minutes, 15 s steps) ends on a step
        clock = StoppedClock(datetime.fromtimestamp(math.ceil(time.time()), UTC))
        opened = clock.at - timedelta(minutes=10)
        probe = PrometheusProbe(type="prometheus", queries={"error_ratio": RATIO})
        view = IncidentView(
            incident=Incident(
                id="inc-000000000000000001",
                group_key="g",
                title="PostHog errors",
                opened_at=opened,
                updated_at=opened,
                planned_probes=(PlannedProbe(rule="r", spec=probe),),
            ),
            timeline=(TimelineEvent(seq=0, at=opened, kind="incident.opened", detail="x"),),
        )
        http = SharedSession()
        graphs = PrometheusGraphs(
            prometheus=PrometheusClient(prom.url, http),
            clock=clock,
            rules=RuleSet,
            redact=Redactor(),
        )
        try:
            before = await range_queries(prom)
            # a page loaded by two readers at once: one query
            first, second = await asyncio.gather(graphs.svg(view), graphs.svg(view))
            assert first is not None
            assert first == second
            assert first.startswith("<svg ")
            assert 'class="series"' in first  # Prometheus's sample, drawn
            assert "alert: incident opened" in first
            assert await range_queries(prom) == before + 1
            assert await graphs.svg(view) == first  # a reload: kept
            assert await range_queries(prom) == before + 1
            # a new version of the incident is asked again; so is one kept long enough
            event = TimelineEvent(seq=1, at=opened, kind="triage.completed", detail="y")
            newer = view.model_copy(update={"timeline": (*view.timeline, event)})
            assert await graphs.svg(newer) is not None
            assert await range_queries(prom) == before + 2
            clock.monotonic_s += 31
            await graphs.svg(newer)
            assert await range_queries(prom) == before + 3
            # a query with no sample in the window: no graph
            none = PrometheusProbe(type="prometheus", queries={"error_ratio": "absent_metric"})
            empty = view.model_copy(
                update={
                    "incident": view.incident.model_copy(
                        update={
                            "id": "inc-000000000000000002",
                            "planned_probes": (PlannedProbe(rule="r", spec=none),),
                        }
                    ),
                }
            )
            assert await graphs.svg(empty) is None
        finally:
            await http.close()
