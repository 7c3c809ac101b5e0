"""Our integration's health endpoint, read at a JSON path."""

from __future__ import annotations

import json
import time
from typing import Any

from responder.adapters.http import Fetched, FetchError, SharedSession, Unreachable, fetch
from responder.domain.facts import ProbeResult
from responder.domain.plans import HealthProbe, HttpProbe
from responder.render.words import value_text


def read_path(doc: Any, path: str) -> tuple[bool, Any]:
    """``.services.posthog.status`` (jq-like; ``.a[0].b`` for lists); (found, value)."""
    current = doc
    for part in path.strip(".").replace("]", "").replace("[", ".").split("."):
        if part == "":
            continue
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


# The share of the probe's timeout its connection may take: a connection that does not
# come in time is "unreachable", like one refused, before the probe's own timeout fires.
CONNECT_SHARE = 0.8


async def fetch_probe_url(session: SharedSession, spec: HealthProbe | HttpProbe) -> Fetched:
    """The probe's URL, fetched as a probe may (``fetch``): within its allowed hosts and
    redirect rule, its connection within its share of the probe's timeout."""
    return await fetch(
        session.get(),
        spec.url,
        allow_hosts=spec.allow_hosts,
        follow_redirects=spec.follow_redirects,
        connect_timeout_s=spec.timeout_s * CONNECT_SHARE,
    )


class HttpHealthProbe:
    kind = "health"

    def __init__(self, session: SharedSession) -> None:
        self._session = session

    async def run(self, spec: HealthProbe) -> ProbeResult:
        started = time.monotonic()
        try:
            answer = await fetch_probe_url(self._session, spec)
        except Unreachable:
            # Unreachable is an answer: our service is not healthy (the decision tree's "no").
            # Refused, timed out or unknown name: the same words, so the answer tells
            # nothing of which ports are open.
            return ProbeResult(
                probe="health",
                ok=True,
                facts={"ok": False, "status": "down", "reachable": False, "error": "unreachable"},
                evidence={"url": spec.url},
                summary="health: unreachable",
            )
        except FetchError as exc:
            return ProbeResult(
                probe="health", ok=False, error=f"{spec.url}: {exc}", summary=f"health: {exc}"
            )
        raw, status_code = answer.body, answer.status
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        found, value = read_path(doc, spec.json_path) if doc is not None else (False, None)
        if not found:
            if 200 <= status_code < 300:
                what = "malformed JSON" if doc is None else f"no value at {spec.json_path}"
                return ProbeResult(
                    probe="health",
                    ok=False,
                    error=f"{what} from {spec.url}",
                    summary=f"health: {what}",
                )
            value = None
        text = str(value).lower() if value is not None else ""
        if text in spec.ok_values and 200 <= status_code < 300:
            status = "ok"
        elif text in spec.degraded_values or (text in spec.ok_values and status_code < 500):
            status = "degraded"
        else:
            status = "down"
        return ProbeResult(
            probe="health",
            ok=True,
            facts={
                "ok": status == "ok",
                "status": status,
                "value": value,
                "status_code": status_code,
                "latency_ms": latency_ms,
                "reachable": True,
            },
            evidence={"url": spec.url, "json_path": spec.json_path},
            # the value read only when it says more than the status it gave
            summary=f"health: {status} ("
            + (f"{spec.json_path} = {value_text(value)}, " if text != status else "")
            + f"HTTP {status_code})",
        )
