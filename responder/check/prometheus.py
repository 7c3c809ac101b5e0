"""Prometheus: each URL of ``RESPONDER_PROMETHEUS_URL`` answers, and each query of the
packs' ``prometheus`` probes parses and names series that exist."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp

from responder.check.in_force import masked_url
from responder.check.result import Result, fail, ok, skip, warn
from responder.domain.plans import PrometheusProbe
from responder.rules.engine import RuleSet
from responder.settings import Settings

NAME = "prometheus"
# a value from the alert ({{ labels.service }}) stands as a plain word: the query around it
# must parse whatever the alert says
_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# a metric name is what stands right before a selector's { or a range's [
_METRIC = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*(?=[{\[])")


def pack_queries(rules: RuleSet) -> Iterator[tuple[str, str, str]]:
    """(where, name, query) of each prometheus probe's queries, rules then pack defaults."""
    for pack in rules.packs:
        for rule in pack.rules:
            for spec in rule.spec.probes:
                if isinstance(spec, PrometheusProbe):
                    for name, query in spec.queries.items():
                        yield f"{pack.name}/{rule.name}", name, query
        for spec in pack.spec.defaults.probes:
            if isinstance(spec, PrometheusProbe):
                for name, query in spec.queries.items():
                    yield f"{pack.name}/defaults", name, query


def metric_names(query: str) -> list[str]:
    text = _QUOTED.sub('""', _TEMPLATE.sub("x", query))
    return list(dict.fromkeys(_METRIC.findall(text)))


async def _get(
    session: aiohttp.ClientSession, url: str, params: Any, tls: ssl.SSLContext | None
) -> tuple[int, Any]:
    async with session.get(url, params=params, ssl=tls if tls is not None else True) as answer:
        return answer.status, await answer.json(content_type=None)


async def check(
    settings: Settings, rules: RuleSet | None, *, tls: ssl.SSLContext | None = None
) -> list[Result]:
    urls = settings.prometheus_urls
    queries = list(pack_queries(rules)) if rules is not None else []
    if not urls:
        if queries:
            return [
                warn(
                    NAME,
                    f"not configured, but the packs have {len(queries)} prometheus queries: "
                    "their probes will report prometheus.reachable false",
                    "set RESPONDER_PROMETHEUS_URL",
                )
            ]
        return [skip(NAME, "not configured, and no pack queries it")]
    results: list[Result] = []
    answering: str | None = None
    timeout = aiohttp.ClientTimeout(total=settings.notify_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            base = url.rstrip("/")
            shown = masked_url(url)  # a password in the URL is not printed
            try:
                status, body = await _get(session, f"{base}/api/v1/query", {"query": "1"}, tls)
                reachable = status == 200 and body.get("status") == "success"
                why = f"answered {status}"
            except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as exc:
                reachable, why = False, f"unreachable ({type(exc).__name__})"
            if reachable:
                results.append(ok(NAME, f"{shown} answers queries"))
                answering = answering or base
            else:
                results.append(
                    fail(
                        NAME,
                        f"{shown} {why}",
                        "fix RESPONDER_PROMETHEUS_URL (the server's base URL, e.g. "
                        "http://prometheus:9090) or the network path to it",
                    )
                )
        if answering is None:
            return results
        for where, name, query in queries:
            results.append(await _query(session, answering, where, name, query, tls))
    return results


async def _query(
    session: aiohttp.ClientSession,
    base: str,
    where: str,
    name: str,
    query: str,
    tls: ssl.SSLContext | None,
) -> Result:
    label = f"{where} query {name}"
    shown = _TEMPLATE.sub("x", query)
    status, body = await _get(session, f"{base}/api/v1/query", {"query": shown}, tls)
    if status != 200:
        error = body.get("error") if isinstance(body, dict) else None
        return fail(
            NAME,
            f"{label} does not parse: {error or status}",
            "fix the query in the pack (try it in Prometheus's expression browser)",
        )
    missing = []
    for metric in metric_names(query):
        status, body = await _get(session, f"{base}/api/v1/series", {"match[]": metric}, tls)
        if status != 200 or not body.get("data"):
            missing.append(metric)
    if missing:
        return fail(
            NAME,
            f"{label}: no series named {', '.join(missing)} in {masked_url(base)}",
            "fix the metric name in the pack, or scrape the service that exports it",
        )
    return ok(NAME, f"{label} parses and its series exist")
