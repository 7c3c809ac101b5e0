"""Issue 18, the vendor-incident fallback from the real vendor watch to its revert, through
the running service on Redis with the fake cluster, a loopback PostHog status page and a
real Prometheus for the verify query:

- applied, ``revert: vendor_resolved``: the watch sees PostHog resolve (``vendor.resolved``),
  and after the quiet period, the error ratio in bounds, the fallback is reverted on the
  cluster once; our alert resolving does not revert it, before or after;
- dry-run (the pack's ``dry_run``, or ``RESPONDER_DRY_RUN``): the timeline is complete all
  the same: when the policy's trigger comes (resolve; the vendor resolved and the quiet
  period's check; ``never``), the revert it would send is recorded, once, with the exact
  patch, and the cluster is never patched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from responder.domain.plans import REVERT_CHECKS
from responder.settings import Settings
from tests.support.fake_http import FakeStatuspage
from tests.support.mitigation import Cluster, alert, cluster, kinds, responder, settled
from tests.support.prometheus import ControlledExporter, running_prometheus
from tests.support.service import Service
from tests.support.waiting import eventually
from tests.test_watch import timers_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

GAUGE = ("posthog_error_ratio_now", {"service": "posthog-integration"})
QUERY = 'max(posthog_error_ratio_now{service="posthog-integration"})'

PACK = """
name: vendor-revert-test
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: {dry_run}
  probes:
    - {{type: vendor_status, url: "{page}", timeout_s: 2}}
rules:
  - name: classify
    match: ['service="posthog-integration"']
    classify: {{severity: P2, error_type: upstream_5xx}}
    continue: true
  - name: vendor-incident
    match: ['alertname="Fallback"']
    when: ["vendor.incident == true"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{POSTHOG_FALLBACK: "true"}}
        revert: vendor_resolved
        revert_quiet_s: {quiet}
        verify: {{query: '{query}', below: 0.05}}
  - name: queue
    match: ['alertname="Queue"']
    when: ["vendor.incident == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{RATE_LIMIT_MODE: queue}}
        revert: resolve
  - name: keep
    match: ['alertname="Keep"']
    when: ["vendor.incident == false"]
    actions:
      - type: set_env
        namespace: production
        deployment: posthog-integration
        env: {{LOG_LEVEL: debug}}
        revert: never
"""

FALLBACK_UNDO = {
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "app", "env": [{"name": "POSTHOG_FALLBACK", "$patch": "delete"}]}
                ]
            }
        }
    }
}


def with_pack(
    c: Cluster, page: FakeStatuspage, *, dry_run: bool = False, quiet: float = 1
) -> Cluster:
    path = c.pack.parent / "vendor-revert.yaml"
    path.write_text(
        PACK.format(page=page.url, dry_run=str(dry_run).lower(), quiet=quiet, query=QUERY)
    )
    return dataclasses.replace(c, pack=path)


@pytest.fixture
def on_redis(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> Callable[..., Settings]:
    def make(**values: Any) -> Settings:
        return make_settings(redis_url=redis_url, redis_prefix=redis_prefix, **values)

    return make


@asynccontextmanager
async def prometheus(ratio: float) -> AsyncIterator[str]:
    """A real Prometheus scraping our error ratio, ``ratio`` now: its URL."""
    async with ControlledExporter() as exporter:
        exporter.set_gauge(*GAUGE, ratio)
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(QUERY, ratio - 0.001)
            yield prom.url


def events(inc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in inc["timeline"] if e["kind"] == kind]


def fallback_patches(c: Cluster) -> list[Any]:
    return [p for p in c.patches() if "POSTHOG_FALLBACK" in str(p.body)]


async def incident(svc: Service, name: str) -> dict[str, Any]:
    await svc.idle()
    [found] = [i for i in await svc.incidents() if i["labels"].get("alertname") == name]
    one = await (await svc.client.get(f"/v1/incidents/{found['id']}")).json()
    return dict(one)


async def test_the_vendor_watch_resolving_reverts_the_fallback_once_after_the_quiet_period(
    on_redis, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with (
        prometheus(0.01) as prom_url,
        FakeStatuspage() as page,
        cluster(tmp_path) as base,
    ):
        outage = page.open_incident("Elevated API error rates")
        async with responder(
            c := with_pack(base, page),
            on_redis,
            prometheus_url=prom_url,
            vendor_watch_interval_s=0.2,
        ) as svc:
            await svc.post_alertmanager(alert("Fallback"))
            inc = await settled(svc, "Fallback", "action.applied")
            assert c.env()["POSTHOG_FALLBACK"] == "true"
            assert inc["actions"][0]["revert_when"] == "vendor_resolved"
            assert await timers_of(redis_url, redis_prefix, "vendor_watch")

            # PostHog resolves it on its status page: the real watch tells it, and after
            # the quiet period, the error ratio in bounds, the fallback is switched off
            page.resolve_incident(outage)
            inc = await settled(svc, "Fallback", "action.reverted")
            assert "POSTHOG_FALLBACK" not in c.env()
            order = kinds(inc)
            assert order.index("vendor.resolved") < order.index("action.reverted")
            [resolved] = events(inc, "vendor.resolved")
            [reverted] = events(inc, "action.reverted")
            assert reverted["at"] >= resolved["at"]
            assert (
                "the vendor's incident is over and, after the quiet period" in (reverted["detail"])
            )
            assert f"{QUERY} = 0.01 (< 0.05)" in reverted["detail"]
            assert reverted["data"]["revert_patch"] == FALLBACK_UNDO
            assert inc["actions"][0]["reverted"] is True
            assert inc["status"] == "open"  # PostHog resolving does not resolve ours

            # our alert resolves after: nothing more is sent
            await svc.post_alertmanager(alert("Fallback", status="resolved"))
            inc = await settled(svc, "Fallback", "incident.resolved")
            inc = await incident(svc, "Fallback")
            assert len(events(inc, "action.reverted")) == 1
            assert len(fallback_patches(c)) == 2  # applied, reverted: once each
            assert "action.revert_due" not in kinds(inc)


async def test_our_alert_resolving_first_keeps_the_fallback_until_the_vendor_resolves(
    on_redis, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with (
        prometheus(0.01) as prom_url,
        FakeStatuspage() as page,
        cluster(tmp_path) as base,
    ):
        outage = page.open_incident("Elevated API error rates")
        async with responder(
            c := with_pack(base, page),
            on_redis,
            prometheus_url=prom_url,
            vendor_watch_interval_s=0.2,
        ) as svc:
            await svc.post_alertmanager(alert("Fallback"))
            await settled(svc, "Fallback", "action.applied")

            # our alert resolves while PostHog still shows its incident
            await svc.post_alertmanager(alert("Fallback", status="resolved"))
            inc = await settled(svc, "Fallback", "incident.resolved")
            assert c.env()["POSTHOG_FALLBACK"] == "true"
            assert "action.reverted" not in kinds(inc)
            assert len(fallback_patches(c)) == 1

            # the watch goes on: more rounds read the page after our resolve
            reads = len(page.requests)

            async def still_watched() -> bool:
                return len(page.requests) >= reads + 2

            await eventually(still_watched, what="the page read again after our resolve")
            assert await timers_of(redis_url, redis_prefix, "vendor_watch")
            inc = await incident(svc, "Fallback")
            assert "action.reverted" not in kinds(inc)
            assert c.env()["POSTHOG_FALLBACK"] == "true"

            page.resolve_incident(outage)
            inc = await settled(svc, "Fallback", "action.reverted")
            assert "POSTHOG_FALLBACK" not in c.env()
            order = kinds(inc)
            assert order.index("incident.resolved") < order.index("vendor.resolved")
            assert order.index("vendor.resolved") < order.index("action.reverted")
            inc = await incident(svc, "Fallback")
            assert len(events(inc, "action.reverted")) == 1
            assert len(fallback_patches(c)) == 2
            assert await timers_of(redis_url, redis_prefix, "vendor_watch") == []


async def test_a_dry_run_fallback_shows_its_revert_once_the_vendor_resolves(
    on_redis, tmp_path: Path
) -> None:
    async with (
        prometheus(0.01) as prom_url,
        FakeStatuspage() as page,
        cluster(tmp_path) as base,
    ):
        outage = page.open_incident("Elevated API error rates")
        async with responder(
            c := with_pack(base, page, dry_run=True),
            on_redis,
            prometheus_url=prom_url,
            vendor_watch_interval_s=0.2,
        ) as svc:
            await svc.post_alertmanager(alert("Fallback"))
            inc = await settled(svc, "Fallback", "action.dry_run")
            # our alert resolves first: the dry run's vendor watch goes on all the same
            await svc.post_alertmanager(alert("Fallback", status="resolved"))
            await settled(svc, "Fallback", "incident.resolved")
            page.resolve_incident(outage)
            await settled(svc, "Fallback", "vendor.resolved")

            async def revert_shown() -> dict[str, Any] | None:
                found = await incident(svc, "Fallback")
                return found if len(events(found, "action.dry_run")) == 2 else None

            inc = await eventually(revert_shown, what="the dry-run revert")
            step, revert = events(inc, "action.dry_run")
            order = kinds(inc)
            assert order.index("vendor.resolved") < revert["seq"]
            assert revert["detail"].startswith(
                "revert of set_env on production/posthog-integration (the vendor's incident is "
                "over and, after the quiet period, "
            )
            assert ": would send " in revert["detail"]
            assert revert["data"]["revert_patch"] == FALLBACK_UNDO
            assert revert["data"]["revert_of"] == step["data"]["step"]
            # the record: still a dry run, its revert shown (not shown twice), nothing undone
            [record] = inc["actions"]
            assert record["verdict"] == "dry_run"
            assert record["reverted"] is True
            assert record["reverted_state"] is None
            assert "action.reverted" not in order
            assert c.patches() == []  # the cluster was never touched
            assert inc["needs_human"] is None


async def test_a_dry_run_waits_like_a_live_one_when_the_quiet_check_has_no_data(
    on_redis, tmp_path: Path
) -> None:
    """Without Prometheus the quiet period's check reads nothing: as for an applied step,
    the revert waits (and says why), a few times, then would need a human; a dry run calls
    nobody, as there is nothing on the cluster to undo."""
    async with FakeStatuspage() as page, cluster(tmp_path) as base:
        outage = page.open_incident("Elevated API error rates")
        async with responder(
            c := with_pack(base, page, dry_run=True, quiet=0.3),
            on_redis,
            vendor_watch_interval_s=0.2,
        ) as svc:
            await svc.post_alertmanager(alert("Fallback"))
            await settled(svc, "Fallback", "action.dry_run")
            page.resolve_incident(outage)

            async def all_checks() -> dict[str, Any] | None:
                found = await incident(svc, "Fallback")
                due = events(found, "action.revert_due")
                return found if len(due) == REVERT_CHECKS else None

            inc = await eventually(all_checks, what=f"{REVERT_CHECKS} quiet checks")
            first, *_, last = events(inc, "action.revert_due")
            assert "(dry-run) waits" in first["detail"]
            assert "RESPONDER_PROMETHEUS_URL is not set" in first["detail"]
            assert first["data"]["dry_run"] is True
            assert last["data"]["last"] is True
            assert "would still be in place" in last["detail"]
            assert "a human would be called" in last["detail"]
            assert inc["needs_human"] is None
            assert len(events(inc, "action.dry_run")) == 1  # no revert shown: not quiet
            assert c.patches() == []


async def test_dry_run_reverts_at_resolve_and_the_undo_of_revert_never(
    on_redis, tmp_path: Path
) -> None:
    async with (
        FakeStatuspage() as page,
        cluster(tmp_path) as base,
        responder(
            c := with_pack(base, page),  # the pack is live: RESPONDER_DRY_RUN makes it dry
            on_redis,
            dry_run=True,
        ) as svc,
    ):
        await svc.post_alertmanager(alert("Queue"))
        await svc.post_alertmanager(alert("Keep"))
        await settled(svc, "Queue", "action.dry_run")
        await settled(svc, "Keep", "action.dry_run")
        await svc.post_alertmanager(alert("Queue", status="resolved"))
        await svc.post_alertmanager(alert("Keep", status="resolved"))
        await settled(svc, "Queue", "incident.resolved")
        await settled(svc, "Keep", "action.revert_due")

        # revert: resolve: the revert it would send, once
        queue = await incident(svc, "Queue")
        _, revert = events(queue, "action.dry_run")
        assert revert["detail"].startswith(
            "revert of set_env on production/posthog-integration (the incident resolved)"
            ": would send "
        )
        env = revert["data"]["revert_patch"]["spec"]["template"]["spec"]["containers"][0]
        assert env["env"] == [{"name": "RATE_LIMIT_MODE", "$patch": "delete"}]
        assert queue["actions"][0]["verdict"] == "dry_run"
        assert queue["actions"][0]["reverted"] is True

        # revert: never: the undo a human would send, as for an applied step
        keep = await incident(svc, "Keep")
        [due] = events(keep, "action.revert_due")
        assert "would stay (dry-run" in due["detail"]
        env = due["data"]["revert_patch"]["spec"]["template"]["spec"]["containers"][0]
        assert env["env"] == [{"name": "LOG_LEVEL", "value": "info"}]
        assert len(events(keep, "action.dry_run")) == 1

        assert c.patches() == []
