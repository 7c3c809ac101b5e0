"""Serving evidence bundles: many reads cost one build, a resolved incident's bundle is the
file written at resolve, builds run a few at a time with the pod-logs probe's pod cap, and
the service keeps answering while they run. The real app, the fake Kubernetes API (which
records and can hold requests) and a fake Prometheus (which records them)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from responder.app import Overrides
from responder.report.bundle import report_stem
from responder.report.bundle_cache import BundleCache
from tests.support.clock import ShiftableClock
from tests.support.loopback import LoopbackServer
from tests.support.mitigation import NS, SELECTOR, alert, cluster, responder, settled
from tests.support.service import Service
from tests.support.waiting import eventually
from tests.test_report import members, with_evidence_probes

LIST = rf"/api/v1/namespaces/{NS}/pods"
LOG = rf"/api/v1/namespaces/{NS}/pods/[^/]+/log"
RANGE = "/api/v1/query_range"


class FakePrometheus(LoopbackServer):
    """Prometheus's query API, answering empty results; ``paths`` of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def _build_app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            kind = "matrix" if request.path == RANGE else "vector"
            return web.json_response(
                {"status": "success", "data": {"resultType": kind, "result": []}}
            )

        app = web.Application()
        app.router.add_route("*", "/api/v1/{tail:.*}", answer)
        return app


async def opened(svc: Service, name: str) -> dict[str, Any]:
    await svc.post_alertmanager(alert(name))
    return await settled(svc, name, "triage.completed")


async def read(svc: Service, incident_id: str) -> bytes:
    resp = await svc.client.get(f"/v1/incidents/{incident_id}/evidence")
    body = await resp.read()
    assert resp.status == 200, body
    assert resp.content_type == "application/gzip"
    assert "Content-Encoding" not in resp.headers
    return body


async def healthy(svc: Service) -> None:
    resp = await svc.client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


@pytest.mark.timeout(60)
async def test_twenty_reads_of_an_open_incident_make_one_build_and_healthz_answers(
    make_settings: Any, tmp_path: Path
) -> None:
    async with FakePrometheus() as prom, cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        async with responder(c, make_settings, prometheus_url=prom.url) as svc:
            inc = await opened(svc, "Evidence")
            c.kube.clear_requests()
            prom.paths.clear()
            gate = c.kube.gate("GET", LIST)
            reads = [asyncio.create_task(read(svc, inc["id"])) for _ in range(20)]

            async def held() -> bool:
                return gate.held >= 1

            await eventually(held, what="the build's pod listing held")
            await healthy(svc)  # while the build waits on the cluster
            gate.open()
            bodies = await asyncio.gather(*reads)

            assert len(set(bodies)) == 1
            # the calls of one build: one listing, the two pods' logs, the rule's range query
            assert len(c.kube.requests_to("GET", LIST)) == 1
            assert len(c.kube.requests_to("GET", LOG)) == 2
            assert prom.paths.count(RANGE) == 1
            files = members(bodies[0])
            assert {f"logs/{NS}/posthog-integration-{n}.log" for n in range(2)} <= set(files)
            assert "prometheus/error_rate.json" in files


@pytest.mark.timeout(60)
async def test_a_resolved_incident_serves_the_bundle_written_at_resolve_with_no_outside_call(
    make_settings: Any, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    async with FakePrometheus() as prom, cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        async with responder(c, make_settings, prometheus_url=prom.url, reports_dir=reports) as svc:
            inc = await opened(svc, "Evidence")
            await svc.post_alertmanager(alert("Evidence", status="resolved"))
            done = await settled(svc, "Evidence", "report.written")
            [written] = [e for e in done["timeline"] if e["kind"] == "report.written"]
            on_disk = Path(written["data"]["evidence"]).read_bytes()
            c.kube.clear_requests()
            prom.paths.clear()

            bodies = await asyncio.gather(*(read(svc, inc["id"]) for _ in range(20)))

            assert all(body == on_disk for body in bodies)
            assert c.kube.requests == []
            assert prom.paths == []


@pytest.mark.timeout(60)
async def test_evidence_reads_the_logs_of_at_most_ten_pods(
    make_settings: Any, tmp_path: Path
) -> None:
    async with FakePrometheus() as prom, cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        now = datetime.now(UTC)
        for n in range(2, 50):  # the cluster has pods 0 and 1
            c.kube.add_pod(
                NS,
                f"posthog-integration-{n}",
                SELECTOR,
                started_at=now - timedelta(hours=1),
                logs=[(now - timedelta(seconds=30), "ERROR posthog 429")],
            )
        async with responder(c, make_settings, prometheus_url=prom.url) as svc:
            inc = await opened(svc, "Evidence")
            c.kube.clear_requests()

            files = members(await read(svc, inc["id"]))

            # the pods that logged the errors when triage read them (its probe reads 10
            # pods at most; 2 of those had no error line): those, by name, and no more
            triaged = [n for n in files if n.startswith("logs/") and n.endswith(".at-triage.log")]
            assert len(triaged) == 8
            read_now = [
                n
                for n in files
                if n.startswith("logs/") and n.endswith(".log") and not n.endswith(".at-triage.log")
            ]
            assert len(c.kube.requests_to("GET", LOG)) == len(read_now) == 8
            assert not c.kube.requests_to("GET", LIST)  # no listing: the names are known


@pytest.mark.timeout(90)
async def test_builds_of_different_incidents_run_two_at_a_time_while_healthz_answers(
    make_settings: Any, tmp_path: Path
) -> None:
    async with FakePrometheus() as prom, cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        async with responder(c, make_settings, prometheus_url=prom.url) as svc:
            incidents = [await opened(svc, f"Evidence{n}") for n in range(5)]
            c.kube.clear_requests()
            gate = c.kube.gate("GET", LIST)
            reads = [asyncio.create_task(read(svc, inc["id"])) for inc in incidents]
            for n in range(len(incidents)):
                waiting = min(2, len(incidents) - n)

                async def full(waiting: int = waiting) -> bool:
                    return gate.held >= waiting

                await eventually(full, what=f"{waiting} builds held")
                await healthy(svc)
                gate.admit(1)
            bodies = await asyncio.gather(*reads)

            assert gate.max_held == 2  # never more than two builds at the cluster at once
            assert gate.passed == 5
            assert len(set(bodies)) == 5
            assert len(c.kube.requests_to("GET", LOG)) == 5 * 2


@pytest.mark.timeout(60)
async def test_a_cached_bundle_lasts_a_minute_or_until_the_incident_changes(
    make_settings: Any, tmp_path: Path
) -> None:
    clock = ShiftableClock()
    async with FakePrometheus() as prom, cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        async with responder(
            c, make_settings, Overrides(clock=clock), prometheus_url=prom.url
        ) as svc:
            inc = await opened(svc, "Evidence")
            c.kube.clear_requests()

            def builds() -> int:
                return len(c.kube.requests_to("GET", LIST))

            first = await read(svc, inc["id"])
            assert await read(svc, inc["id"]) == first
            assert builds() == 1
            clock.advance(59)
            await read(svc, inc["id"])
            assert builds() == 1
            clock.advance(2)  # older than a minute: the window has grown since
            await read(svc, inc["id"])
            assert builds() == 2

            # another alert joins: a new event, a new bundle
            await svc.post_alertmanager(alert("Evidence", instance="pod-2"))
            await settled(svc, "Evidence", "alert.joined")
            c.kube.clear_requests()
            files = members(await read(svc, inc["id"]))
            assert builds() == 1
            assert "alert.joined" in {e["kind"] for e in json.loads(files["timeline.json"])}
            await read(svc, inc["id"])
            assert builds() == 1


# ------------------------------------------------------------------ the cache on its own


class Builds:
    """Build functions whose bundles say which build made them."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    def of(self, name: str, *, fail: bool = False) -> Any:
        async def build() -> bytes:
            self.started.append(name)
            await self.release.wait()
            if fail:
                raise RuntimeError(f"{name} failed")
            return f"{name}#{len(self.started)}".encode()

        return build


async def test_the_cache_keeps_the_last_few_bundles_and_never_a_failure() -> None:
    now = [0.0]
    cache = BundleCache(monotonic=lambda: now[0], max_entries=2, max_bytes=1000)
    b = Builds()
    assert await cache.get("a", 1, b.of("a"), expires=True) == b"a#1"
    assert await cache.get("b", 1, b.of("b"), expires=False) == b"b#2"
    assert await cache.get("a", 1, b.of("a"), expires=True) == b"a#1"  # a is now the newest
    await cache.get("c", 1, b.of("c"), expires=True)  # pushes b out
    assert len(cache) == 2
    assert await cache.get("b", 1, b.of("b"), expires=False) == b"b#4"
    assert b.started == ["a", "b", "c", "b"]

    with pytest.raises(RuntimeError, match="d failed"):
        await cache.get("d", 1, b.of("d", fail=True), expires=True)
    assert await cache.get("d", 1, b.of("d"), expires=True) == b"d#6"

    # a bundle bigger than the whole cache is served, not kept
    assert await cache.get("e", 1, lambda: _const(b"x" * 1001), expires=True) == b"x" * 1001
    assert cache.cached_bytes <= 1000


def test_a_report_file_is_named_by_a_safe_incident_id_only() -> None:
    assert report_stem("inc-01a24ae9", 12) == "inc-01a24ae9-12"
    for hostile in ("../../etc/passwd", "a/b", "..", ".hidden", "inc\n1", "inc 1", "x" * 300):
        assert report_stem(hostile, 1) is None, hostile


async def _const(data: bytes) -> bytes:
    return data


async def test_readers_of_one_version_share_one_build_even_when_one_hangs_up() -> None:
    cache = BundleCache(monotonic=lambda: 0.0)
    b = Builds()
    b.release.clear()
    readers = [asyncio.create_task(cache.get("a", 7, b.of("a"), expires=True)) for _ in range(5)]

    async def started() -> bool:
        return b.started == ["a"]

    await eventually(started, what="the build started")
    readers[0].cancel()  # its client went away: the build goes on for the others
    b.release.set()
    results = await asyncio.gather(*readers[1:])
    assert results == [b"a#1"] * 4
    assert b.started == ["a"]
    assert cache.builds == 1


@pytest.mark.timeout(60)
async def test_evidence_reads_no_logs_outside_the_allowlisted_namespaces(
    make_settings: Any, tmp_path: Path
) -> None:
    async with FakePrometheus() as prom, cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        c.pack.write_text(
            c.pack.read_text().replace("namespace: production,", "namespace: kube-system,")
        )
        c.kube.add_pod("kube-system", "coredns-0", SELECTOR, logs=[(datetime.now(UTC), "token=x")])
        async with responder(c, make_settings, prometheus_url=prom.url) as svc:
            inc = await opened(svc, "Evidence")
            c.kube.clear_requests()

            files = members(await read(svc, inc["id"]))

            assert c.kube.requests_to("GET", r"/api/v1/namespaces/kube-system/.*") == []
            assert not [name for name in files if name.startswith("logs/")]
            errors = json.loads(files["errors.json"])
            assert any("not one the action allowlist names" in e["error"] for e in errors), errors
