"""`responder triage`: the runbook's one-line health check, run from a shell.

The shipped pack's quick triage against a real Prometheus (scraping an exporter that plays
two integrations: one failing, one well), a fake PostHog status page, a fake health
endpoint and a fake Kubernetes API; the command runs as a user runs it (a child process,
no Redis configured) and must print a line per probe, the branch, and exit by health.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.fake_http import FakeHealthEndpoint, FakeStatuspage, FakeVendorApi
from tests.support.fake_kube import running_fake_kube
from tests.support.packs import posthog_pack
from tests.support.procs import env_without_responder
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.test_probe_pod_logs import kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FAILING = {"service": "posthog-integration"}  # 20% of its calls fail (429)
WELL = {"service": "shop-posthog"}  # no errors


@dataclass
class Triage:
    code: int
    lines: list[str]
    stderr: str


@dataclass
class World:
    page: FakeStatuspage
    health: FakeHealthEndpoint
    env: dict[str, str]
    pack: Path

    async def triage(self, *labels: str) -> Triage:
        args = [f"--label={label}" for label in labels]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "responder",
            "triage",
            "--pack",
            str(self.pack),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return Triage(proc.returncode, out.decode().splitlines(), err.decode())


@asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with ControlledExporter() as exporter:
        for svc in (FAILING, WELL):
            exporter.set_counter("posthog_requests_total", svc, 0)
            exporter.grow("posthog_requests_total", svc, per_second=20)
            exporter.set_counter("posthog_errors_total", {**svc, "status_code": "429"}, 0)
        exporter.grow("posthog_errors_total", {**FAILING, "status_code": "429"}, per_second=4)
        async with (
            running_prometheus([exporter]) as prom,
            FakeStatuspage() as page,
            FakeHealthEndpoint() as health,
            FakeVendorApi() as api,
            running_fake_kube() as kube,
        ):
            api.rate_limited(limit=600, remaining=0, reset=30, retry_after_s=30)
            ratio = (
                'sum(rate(posthog_errors_total{service="posthog-integration"}[5m]))'
                ' / sum(rate(posthog_requests_total{service="posthog-integration"}[5m]))'
            )
            await prom.wait_for_samples(ratio, 0.18)
            kube.add_pod(
                "production",
                "posthog-integration-7d9f",
                {"app": "posthog-integration"},
                logs=[(datetime.now(UTC) - timedelta(seconds=20), "ERROR capture: HTTP 429")],
            )
            pack = posthog_pack(
                tmp_path, status_page_url=page.url, health_url=health.health_url, api_url=api.url
            )
            # the second integration, well, is the pack's too
            text = pack.read_text()
            pack.write_text(
                text.replace(
                    "names: [posthog-integration]", "names: [posthog-integration, shop-posthog]"
                )
            )
            env = {
                **env_without_responder(),
                "RESPONDER_PROMETHEUS_URL": prom.url,
                "RESPONDER_KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", kube.url)),
                "RESPONDER_ACTION_ALLOWLIST": "production/*/*",
            }
            yield World(page, health, env, pack)


async def test_triage_prints_each_probe_the_branch_and_exits_by_health(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        # all well: the runbook's "likely resolved or intermittent", exit 0
        well = await w.triage("service=shop-posthog", "namespace=production")
        assert well.code == 0, (well.lines, well.stderr)
        assert [line.split()[0] for line in well.lines[:4]] == [
            "vendor_status",
            "health",
            "prometheus",
            "pod_logs",
        ]
        assert all(line.split()[1] == "healthy" for line in well.lines[:4]), well.lines
        assert "branch: intermittent (pack posthog)" in well.lines[4]
        assert well.lines[-1].startswith("health: healthy")

        # PostHog has an incident and our calls fail: the vendor branch, degraded, exit 1
        w.page.open_incident("Elevated API errors", components=["API"], impact="major")
        vendor = await w.triage(
            "service=posthog-integration", "namespace=production", "alertname=PostHogRateLimited"
        )
        assert vendor.code == 1, (vendor.lines, vendor.stderr)
        assert vendor.lines[0].split()[:2] == ["vendor_status", "degraded"]
        assert "Elevated API errors" in vendor.lines[0]
        assert "error_ratio=0.2" in vendor.lines[2]
        # the 429 rule's rate limit headers: a line of their own
        assert vendor.lines[4].split()[:2] == ["http", "degraded"]
        assert "rate limit: limit 600, remaining 0" in vendor.lines[4]
        assert "branch: vendor-incident (pack posthog); would do: set_env" in vendor.lines[5]
        assert vendor.lines[-1].startswith("health: degraded (P2, rate_limit)")

        # our service is down: exit 2
        w.health.set_posthog("down")
        down = await w.triage("service=shop-posthog", "namespace=production")
        assert down.code == 2, (down.lines, down.stderr)
        assert down.lines[1].split()[:2] == ["health", "down"]
        assert "branch: our-infrastructure" in down.lines[4]
        assert down.lines[-1].startswith("health: down")


async def test_triage_of_labels_no_pack_takes_is_an_error(tmp_path: Path) -> None:
    pack = posthog_pack(tmp_path, status_page_url="http://127.0.0.1:9", health_url="http://x/")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "responder",
        "triage",
        "--pack",
        str(pack),
        "--label",
        "service=billing",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_without_responder(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().startswith("error: nothing to triage for these labels")
