"""Instant queries against Prometheus; each result becomes ``prometheus.<name>``."""

from __future__ import annotations

import math
from typing import Any

from responder.adapters.prometheus import Answer, PrometheusClient, PrometheusError
from responder.domain.facts import ProbeResult
from responder.domain.plans import ANSWERED_BY, BACKUP, REACHABLE, PrometheusProbe
from responder.render.words import value_text

# Evidence keeps the raw result, capped: a query over many series must not bloat an event.
_MAX_SERIES_KEPT = 50


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def value_of(data: dict[str, Any]) -> Any:
    """A fact from a query result: one number for a scalar or a single series, a mapping of
    label values to numbers for several series, ``None`` for no data (or NaN/Inf)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return _number(result[1])
    if kind != "vector" or not isinstance(result, list) or not result:
        return None
    if len(result) == 1:
        return _number(result[0].get("value", [None, None])[1])
    values = {}
    for series in result:
        labels = series.get("metric", {})
        key = ",".join(str(v) for _, v in sorted(labels.items())) or "{}"
        values[key] = _number(series.get("value", [None, None])[1])
    return values


class PrometheusQueryProbe:
    kind = "prometheus"

    def __init__(self, client: PrometheusClient | None) -> None:
        self._client = client

    async def run(self, spec: PrometheusProbe) -> ProbeResult:
        if self._client is None:
            return ProbeResult(
                probe="prometheus",
                ok=False,
                error="RESPONDER_PROMETHEUS_URL is not set",
                summary="prometheus: not configured",
            )
        facts: dict[str, Any] = {}
        evidence: dict[str, Any] = {}
        shown_values: dict[str, Any] = {}  # what the summary prints of each fact
        errors = []
        answered: list[Answer] = []
        refused = False  # a Prometheus answered, refusing a query: it is not down
        for name, query in spec.queries.items():
            try:
                answer = await self._client.answer(query, timeout_s=spec.timeout_s)
            except PrometheusError as exc:
                refused = refused or exc.answered
                errors.append(f"{name}: {exc}")
                evidence[name] = {"query": query, "error": str(exc)}
                continue
            answered.append(answer)
            data = answer.data
            facts[name] = value_of(data)
            shown_values[name] = _shown(data, facts[name])
            result = data.get("result")
            kept = result[:_MAX_SERIES_KEPT] if isinstance(result, list) else result
            evidence[name] = {
                "query": query,
                "result_type": data.get("resultType"),
                "result": kept,
                "answered_by": answer.url,
            }
        if not facts:
            return ProbeResult(
                probe="prometheus",
                ok=False,
                error="; ".join(errors),
                # none answered at all: the runbook's "metrics unavailable"
                facts={} if refused else {REACHABLE: False},
                evidence=evidence,
                summary=f"prometheus: {'; '.join(errors)}",
            )
        shown = ", ".join(f"{k}={value_text(v)}" for k, v in shown_values.items())
        # which Prometheus answered (the first query's; a backup when any came from one):
        # numbers from a backup are read knowing the first was down
        backup = any(a.backup for a in answered)
        facts[ANSWERED_BY] = answered[0].url
        facts[BACKUP] = backup
        return ProbeResult(
            probe="prometheus",
            ok=True,
            facts=facts,
            evidence=evidence,
            summary=f"prometheus: {shown}"
            + (f" (from the backup {answered[0].url})" if backup else "")
            + (f" (failed: {'; '.join(errors)})" if errors else ""),
        )


def _shown(data: dict[str, Any], fact: Any) -> Any:
    """What the summary prints of a query's answer: the fact, but a lone series that has
    labels (``sum by (status_code)`` with one code erroring) with its labels, so the line
    says which code, as it does for several."""
    result = data.get("result")
    if isinstance(fact, dict) or not isinstance(result, list) or len(result) != 1:
        return fact
    labels = result[0].get("metric") or {}
    if not labels:
        return fact
    return {",".join(str(v) for _, v in sorted(labels.items())): fact}
