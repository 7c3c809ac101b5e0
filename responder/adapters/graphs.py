"""``IncidentGraphs`` through the app's Prometheus: the error-rate graph of an incident's
window for the incident page, from the same range query, window and step as the evidence
bundle (``adapters/evidence.py``).

A page reload must not hammer Prometheus: one graph per incident version is kept for
``ttl_s`` (the window of an open incident moves with time, so not longer), concurrent
readers of one version share one query, and at most ``MAX_ENTRIES`` graphs are kept. Each
query is bounded by the Prometheus client's timeout; a failure is logged and shown as no
graph, kept as long as a graph would be (a Prometheus in trouble is not asked again at
every reload).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

import structlog

from responder.adapters.evidence import incident_window, window_range
from responder.adapters.prometheus import PrometheusClient
from responder.ports import Clock, IncidentView
from responder.redaction import Redactor
from responder.report.graph import (
    Graph,
    branch_conditions,
    error_rate_graph,
    graph_query,
    graph_svg,
)
from responder.rules.engine import RuleSet

log = structlog.get_logger("responder.graphs")

MAX_ENTRIES = 64


class PrometheusGraphs:
    def __init__(
        self,
        *,
        prometheus: PrometheusClient,
        clock: Clock,
        rules: Callable[[], RuleSet],
        redact: Redactor,
        ttl_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._prometheus = prometheus
        self._clock = clock
        self._rules = rules
        self._redact = redact
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        # (incident, version) → (until when, on the monotonic clock; the shared build)
        self._kept: OrderedDict[tuple[str, int], tuple[float, asyncio.Task[str | None]]] = (
            OrderedDict()
        )

    async def svg(self, view: IncidentView) -> str | None:
        key = (view.incident.id, view.timeline[-1].seq if view.timeline else -1)
        now = self._clock.monotonic()
        kept = self._kept.get(key)
        if kept is None or kept[0] <= now:
            kept = (now + self._ttl_s, asyncio.ensure_future(self._build(view)))
            self._kept[key] = kept
            while len(self._kept) > MAX_ENTRIES:
                self._kept.popitem(last=False)
        self._kept.move_to_end(key)
        # shielded: a reader that gives up does not cancel the build the others wait for
        return await asyncio.shield(kept[1])

    async def graph(self, view: IncidentView) -> Graph | None:
        """The graph of the incident's window as it is now (not cached)."""
        found = graph_query(view.incident)
        if found is None:
            return None
        name, query = found
        start, end, step_s = incident_window(view.incident, self._clock.now())
        data = await window_range(
            self._prometheus,
            query,
            start=start,
            end=end,
            step_s=step_s,
            timeout_s=self._timeout_s,
        )
        graph = error_rate_graph(
            view,
            data,
            query=query,
            name=name,
            start=start,
            end=end,
            step_s=step_s,
            conditions=branch_conditions(self._rules(), view.incident),
        )
        return graph.texts_mapped(self._redact) if graph is not None else None

    async def _build(self, view: IncidentView) -> str | None:
        try:
            graph = await self.graph(view)
        except Exception as exc:  # noqa: BLE001 - the page shows no graph, and says so
            log.warning("no error-rate graph", incident_id=view.incident.id, error=str(exc))
            return None
        return graph_svg(graph) if graph is not None else None
