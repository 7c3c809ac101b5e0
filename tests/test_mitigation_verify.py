"""Verification after the settle time, against a real Prometheus: helped, or not (then a
human is called and, when the rule says so, the action is undone)."""

from __future__ import annotations

import pytest

from tests.support.mitigation import alert, cluster, kinds, responder, settled
from tests.support.prometheus import ControlledExporter, running_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

QUERY = 'max(posthog_rate_limited_ratio{service=\\"posthog-integration\\"})'
GAUGE = ("posthog_rate_limited_ratio", {"service": "posthog-integration"})


async def test_verification_helped_and_not_helped(make_settings, tmp_path) -> None:
    async with ControlledExporter() as exporter:
        exporter.set_gauge(*GAUGE, 0.01)
        async with running_prometheus([exporter]) as prom:
            await prom.wait_for_samples(QUERY.replace('\\"', '"'), 0.0)

            # helped: the ratio is low after the settle time
            async with (
                cluster(tmp_path / "a", verify_query=QUERY) as c,
                responder(c, make_settings, prometheus_url=prom.url) as svc,
            ):
                await svc.post_alertmanager(alert("SetEnv"))
                inc = await settled(svc, "SetEnv", "action.verified")
                [action] = inc["actions"]
                assert action["verified"] is True
                verified = next(e for e in inc["timeline"] if e["kind"] == "action.verified")
                assert verified["data"]["value"] == pytest.approx(0.01)
                assert inc["needs_human"] is None

            # not helped: the ratio stays high; the rule says revert_if_unhelpful
            exporter.set_gauge(*GAUGE, 0.2)
            await prom.wait_for_samples(QUERY.replace('\\"', '"'), 0.19)
            async with (
                cluster(tmp_path / "b", verify_query=QUERY, revert_if_unhelpful=True) as c,
                responder(c, make_settings, prometheus_url=prom.url) as svc,
            ):
                await svc.post_alertmanager(alert("SetEnv"))
                inc = await settled(svc, "SetEnv", "action.reverted")
                [action] = inc["actions"]
                assert (action["verified"], action["reverted"]) == (False, True)
                assert "did not help" in inc["needs_human"]
                assert "RATE_LIMIT_MODE" not in c.env()
                order = kinds(inc)
                assert (
                    order.index("action.applied")
                    < order.index("action.unhelpful")
                    < order.index("action.reverted")
                )
                assert len(c.patches()) == 2  # the action, and its undoing


async def test_without_prometheus_a_verification_cannot_say_it_helped(
    make_settings, tmp_path
) -> None:
    async with cluster(tmp_path, verify_query=QUERY) as c, responder(c, make_settings) as svc:
        await svc.post_alertmanager(alert("SetEnv"))
        inc = await settled(svc, "SetEnv", "action.unhelpful")
        assert inc["actions"][0]["verified"] is False
        assert "RESPONDER_PROMETHEUS_URL is not set" in inc["needs_human"]
