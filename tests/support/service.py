"""A responder app running on a loopback port inside the test's event loop."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from responder.app import RUNTIME, Overrides, Runtime, create_app
from responder.domain.incident import IncidentChange
from responder.settings import Settings
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    """An example payload by file name (``alertmanager/...`` or ``pagerduty/...``)."""
    return json.loads((EXAMPLES / name).read_text())


def started_now(*payloads: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of Alertmanager ``payloads`` whose alerts started now, one time for all (a
    firing and its resolve stay one alert). The examples' alerts started long before any
    test's service did, as an alert whose records a lost store might have held would have
    (``Store.records_since``): the sinks are then first asked for a thread to take over,
    one request more than a test of their failures may expect."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    copies = copy.deepcopy(list(payloads))
    for payload in copies:
        for alert in payload["alerts"]:
            alert["startsAt"] = now
    return copies


def _wrap(body: bytes | str) -> bytes | str | io.BytesIO:
    # aiohttp warns about large raw bodies; a BytesIO is streamed with its length.
    raw = body.encode() if isinstance(body, str) else body
    return io.BytesIO(raw) if len(raw) > 64 * 1024 else body


class RecordingNotifier:
    """Keeps every change the pipeline reports, in order."""

    def __init__(self) -> None:
        self.changes: list[IncidentChange] = []

    async def incident_changed(self, change: IncidentChange) -> None:
        self.changes.append(change)

    def kinds(self) -> list[str]:
        return [e.kind for c in self.changes for e in c.events]


class Service:
    def __init__(
        self, client: TestClient[Any, Any], runtime: Runtime, notifier: RecordingNotifier
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.notifier = notifier

    @property
    def base_url(self) -> str:
        return str(self.client.make_url(""))

    async def post_alertmanager(
        self, payload: dict[str, Any] | bytes | str, headers: dict[str, str] | None = None
    ) -> ClientResponse:
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return await self.client.post("/v1/webhooks/alertmanager", data=_wrap(body), headers=hdrs)

    async def post_pagerduty(
        self, body: bytes, headers: dict[str, str] | None = None
    ) -> ClientResponse:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return await self.client.post("/v1/webhooks/pagerduty", data=_wrap(body), headers=hdrs)

    async def idle(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued signal has been handled and acknowledged."""
        queue = self.runtime.queue
        assert queue is not None

        async def drained() -> bool:
            stats = await queue.stats()
            return stats.depth == 0 and stats.pending == 0

        await eventually(drained, timeout_s=timeout_s, what="queue drained")

    async def incidents(self, status: str | None = None) -> list[dict[str, Any]]:
        path = "/v1/incidents" + (f"?status={status}" if status else "")
        resp = await self.client.get(path)
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["incidents"])


@asynccontextmanager
async def running_service(
    settings: Settings,
    overrides: Overrides | None = None,
    *,
    notify: bool = False,
    port: int | None = None,
) -> AsyncIterator[Service]:
    """``notify``: the service's own notification delivery (the sinks its settings
    configure) instead of a ``RecordingNotifier``. ``port``: listen on this loopback port
    (one given to an Alertmanager started before the service), else on a free one."""
    notifier = RecordingNotifier()
    overrides = overrides or Overrides()
    if overrides.notifier is None and not notify:
        overrides.notifier = notifier
    app = create_app(settings, overrides=overrides)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    try:
        yield Service(client, app[RUNTIME], notifier)
    finally:
        await client.close()
