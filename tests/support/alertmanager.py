"""A real Alertmanager (Debian's ``prometheus-alertmanager``) for end-to-end tests.

``running_alertmanager(config)`` writes the config to a temporary directory, starts the
binary on a free loopback port with clustering off, waits for ``/-/ready`` and stops it
at the end. Alerts go in through Alertmanager's v2 API, as Prometheus would send them.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.binaries import BinaryProcess, running_binary

BINARY = "prometheus-alertmanager"


def webhook_config(
    url: str,
    *,
    token: str | None,
    group_by: Iterable[str] = ("alertname", "service"),
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "2s",
) -> dict[str, Any]:
    """An alertmanager.yml routing everything to one webhook receiver named "responder"."""
    webhook: dict[str, Any] = {"url": url, "send_resolved": True}
    if token is not None:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
    return {
        "route": {
            "receiver": "responder",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [{"name": "responder", "webhook_configs": [webhook]}],
    }


def rfc3339(at: datetime) -> str:
    """Millisecond precision, UTC, ``Z``: what Go's time parser reads back unchanged."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> datetime:
    """Now, truncated to milliseconds (the precision the alerts are sent with)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def firing_alert(
    labels: dict[str, str],
    *,
    starts_at: datetime,
    annotations: dict[str, str] | None = None,
    lasts: timedelta = timedelta(hours=1),
    generator_url: str = "http://prometheus.test/graph",
) -> dict[str, Any]:
    """A v2 API alert that fires from ``starts_at`` until ``lasts`` from now."""
    return {
        "labels": dict(labels),
        "annotations": dict(annotations or {}),
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(datetime.now(UTC) + lasts),
        "generatorURL": generator_url,
    }


def resolved_alert(alert: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
    """The same alert (same labels and ``startsAt``), ended at ``at`` (default: now)."""
    return {**alert, "endsAt": rfc3339(at or datetime.now(UTC))}


def sample_sum(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class Alertmanager(BinaryProcess):
    def __init__(
        self,
        *,
        port: int,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        session: aiohttp.ClientSession,
    ) -> None:
        super().__init__(port=port, proc=proc, log_path=log_path)
        self._session = session

    @property
    def base_url(self) -> str:
        return self.url

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        async with self._session.post(f"{self.base_url}/api/v2/alerts", json=alerts) as resp:
            body = await resp.text()
            assert resp.status == 200, f"POST /api/v2/alerts: {resp.status} {body}"

    async def alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's view of its alerts (``GET /api/v2/alerts``)."""
        async with self._session.get(f"{self.base_url}/api/v2/alerts") as resp:
            assert resp.status == 200, await resp.text()
            return list(await resp.json())

    async def metrics(self) -> str:
        async with self._session.get(f"{self.base_url}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()

    async def ready(self) -> bool:
        try:
            async with self._session.get(f"{self.base_url}/-/ready") as resp:
                await resp.read()
                return resp.status == 200
        except aiohttp.ClientError:
            return False


def _argv(workdir: Path, port: int) -> list[str]:
    return [
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]


@asynccontextmanager
async def running_alertmanager(
    config: dict[str, Any], *, ready_timeout_s: float = 15.0
) -> AsyncIterator[Alertmanager]:
    """Start Alertmanager with ``config``; yield it once ``/-/ready``; stop it afterwards."""

    def prepare(workdir: Path) -> None:
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        (workdir / "data").mkdir()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        def handle(run: BinaryProcess) -> Alertmanager:
            return Alertmanager(
                port=run.port, proc=run.proc, log_path=run.log_path, session=session
            )

        async def ready(run: BinaryProcess) -> bool:
            return await handle(run).ready()

        async with running_binary(
            BINARY,
            name="alertmanager",
            argv=_argv,
            prepare=prepare,
            ready=ready,
            ready_timeout_s=ready_timeout_s,
        ) as run:
            yield handle(run)
