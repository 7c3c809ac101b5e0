"""The vendor's status page: an Atlassian Statuspage public JSON API."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from responder.adapters.http import FetchError, SharedSession, Unreachable, fetch
from responder.adapters.probes.health import CONNECT_SHARE
from responder.domain.facts import ProbeResult
from responder.domain.plans import VendorStatusProbe
from responder.render.words import plural

_OUTAGE = ("partial_outage", "major_outage")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Component(_Lenient):
    id: str = ""
    name: str
    status: str = "operational"


class _Incident(_Lenient):
    name: str
    status: str = ""
    impact: str = ""
    shortlink: str | None = None
    components: list[_Component] = []


class _Status(_Lenient):
    indicator: str = "none"
    description: str = ""


class _Page(_Lenient):
    name: str = ""
    url: str = ""


class _Summary(_Lenient):
    page: _Page = _Page()
    status: _Status
    components: list[_Component] = []
    incidents: list[_Incident] = []


class StatuspageProbe:
    kind = "vendor_status"

    def __init__(self, session: SharedSession) -> None:
        self._session = session

    async def run(self, spec: VendorStatusProbe) -> ProbeResult:
        url = spec.url.rstrip("/") + "/api/v2/summary.json"
        started = time.monotonic()
        try:
            answer = await fetch(
                self._session.get(),
                url,
                allow_hosts=spec.allow_hosts,
                follow_redirects=spec.follow_redirects,
                connect_timeout_s=spec.timeout_s * CONNECT_SHARE,
            )
        except Unreachable:
            # the runbook's "can't reach status page": a fact, so triage can say what to do
            return _failed(f"cannot reach {url}: unreachable", reachable=False)
        except FetchError as exc:
            return _failed(f"{url}: {exc}")
        if answer.status != 200:
            return _failed(f"HTTP {answer.status} from {url}")
        raw = answer.body
        try:
            summary = _Summary.model_validate_json(raw)
        except ValidationError as exc:
            kind = (
                "malformed JSON"
                if exc.errors()[0]["type"] == "json_invalid"
                else ("not a Statuspage summary")
            )
            return _failed(f"{kind} from {url}")
        return _result(summary, spec, url, round(time.monotonic() - started, 3))


def _failed(error: str, **facts: Any) -> ProbeResult:
    return ProbeResult(
        probe="vendor_status", ok=False, error=error, facts=facts, summary=f"vendor: {error}"
    )


def _result(summary: _Summary, spec: VendorStatusProbe, url: str, took_s: float) -> ProbeResult:
    wanted = set(spec.components)

    def relevant(component: _Component) -> bool:
        return not wanted or component.name in wanted

    affected = [c for c in summary.components if relevant(c) and c.status != "operational"]
    incidents = [
        i
        for i in summary.incidents
        if not wanted or not i.components or any(relevant(c) for c in i.components)
    ]
    incident = bool(incidents) or any(c.status in _OUTAGE for c in affected)
    facts: dict[str, Any] = {
        "incident": incident,
        "indicator": summary.status.indicator,
        "description": summary.status.description,
        "incidents": [
            {"name": i.name, "status": i.status, "impact": i.impact, "url": i.shortlink}
            for i in incidents
        ],
        "components_affected": [{"name": c.name, "status": c.status} for c in affected],
    }
    if incidents:
        text = f"vendor: {plural(len(incidents), 'open incident')}: " + "; ".join(
            i.name for i in incidents
        )
    elif affected:
        text = "vendor: " + ", ".join(f"{c.name} {c.status}" for c in affected)
    else:
        text = f"vendor: {summary.status.description or summary.status.indicator}"
    return ProbeResult(
        probe="vendor_status",
        ok=True,
        facts=facts,
        evidence={"url": url, "page": summary.page.name, "took_s": took_s},
        summary=text,
    )
