"""Our integration's health endpoint, read at a JSON path."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from responder.adapters.http import SharedSession
from responder.domain.facts import ProbeResult
from responder.domain.plans import HealthProbe


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


class HttpHealthProbe:
    kind = "health"

    def __init__(self, session: SharedSession) -> None:
        self._session = session

    async def run(self, spec: HealthProbe) -> ProbeResult:
        started = time.monotonic()
        try:
            async with self._session.get().get(spec.url) as resp:
                raw = await resp.read()
                status_code = resp.status
        except aiohttp.ClientConnectionError as exc:
            # Unreachable is an answer: our service is not healthy (the decision tree's "no").
            return ProbeResult(
                probe="health",
                ok=True,
                facts={
                    "ok": False,
                    "status": "down",
                    "reachable": False,
                    "error": type(exc).__name__,
                },
                evidence={"url": spec.url},
                summary=f"health: unreachable ({type(exc).__name__})",
            )
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
            summary=f"health: {status} ({spec.json_path} = {value!r}, HTTP {status_code}, "
            f"{latency_ms:g} ms)",
        )
