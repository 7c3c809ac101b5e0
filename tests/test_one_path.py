"""Every event of an incident takes one path: queued, applied by a worker, followed up.

An acknowledgement through the API is queued like a PagerDuty one (nothing writes the
incident beside the workers); what a notification sink did is written by the pipeline's
round and told to the other sinks by the next round of the same follow-up, not by a timer
of its own; a verification that says a step did not help is written by the pipeline, and
the mitigation stage undoes the step when its rule says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_notify import FakeSlack, FakeStatuspage
from tests.support.service import Service, example, running_service, started_now
from tests.support.waiting import eventually

LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"
ADMIN = {"Authorization": "Bearer admin-token"}


async def metric(svc: Service, name: str, **labels: str) -> float:
    """A sample's value on GET /metrics (0 when absent)."""
    resp = await svc.client.get("/metrics")
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def kinds(inc: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in inc["timeline"]]


async def test_an_api_ack_is_queued_and_a_worker_applies_it(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """With no worker running (an intake-only replica), the ack is accepted and queued,
    not written: 202 and the incident still open. A worker then applies it once and
    follows it up; a second ack of the taken incident changes nothing."""
    base = dict(redis_url=redis_url, redis_prefix=redis_prefix, admin_token="admin-token")
    async with running_service(make_settings(**base)) as worker:
        await worker.post_alertmanager(started_now(example(LIMITED))[0])
        await worker.idle()
        [inc] = await worker.incidents()
    async with running_service(make_settings(workers=0, **base)) as intake:
        resp = await intake.client.post(
            f"/v1/incidents/{inc['id']}/ack", json={"by": "Jane Doe"}, headers=ADMIN
        )
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["status"] == "open"
        [still] = await intake.incidents()
        assert still["status"] == "open"
        assert "incident.acknowledged" not in kinds(still)
        missing = await intake.client.post(
            "/v1/incidents/inc-000000000000000000/ack", json={"by": "Jane Doe"}, headers=ADMIN
        )
        assert missing.status == 404
    async with running_service(make_settings(**base)) as worker:
        await worker.idle()
        [taken] = await worker.incidents()
        assert taken["status"] == "acked"
        assert taken["acked_by"] == "Jane Doe"
        assert kinds(taken).count("incident.acknowledged") == 1
        # followed up by the worker like any change: the notifier was told
        await eventually(
            lambda: _async("incident.acknowledged" in worker.notifier.kinds()),
            what="ack followed up",
        )
        again = await worker.client.post(
            f"/v1/incidents/{inc['id']}/ack", json={"by": "Someone Else"}, headers=ADMIN
        )
        assert again.status == 200
        assert (await again.json())["acked_by"] == "Jane Doe"
        await worker.idle()
        [after] = await worker.incidents()
        assert kinds(after).count("incident.acknowledged") == 1


async def test_an_api_ack_answers_once_a_worker_applied_it(make_settings) -> None:
    """On the embedded defaults the ack is applied by the process's own worker before the
    answer: 200 with the incident acknowledged, told to the notifier."""
    async with running_service(make_settings(admin_token="admin-token")) as svc:
        await svc.post_alertmanager(started_now(example(LIMITED))[0])
        await svc.idle()
        [inc] = await svc.incidents()
        resp = await svc.client.post(
            f"/v1/incidents/{inc['id']}/ack", json={"by": "Jane Doe"}, headers=ADMIN
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert (body["status"], body["acked_by"]) == ("acked", "Jane Doe")
        event = next(e for e in body["timeline"] if e["kind"] == "incident.acknowledged")
        assert event["detail"] == "Acknowledged by Jane Doe through the API"
        assert await metric(svc, "responder_signal_processing_seconds_count", source="api") == 1


async def test_a_sink_failing_for_good_is_told_by_the_same_follow_up(
    make_settings, tmp_path: Path
) -> None:
    """The status page refuses the incident for good: its failure is written by the
    pipeline with the round, and the next round of the same follow-up tells it in the
    Slack thread. No timer is queued for it (before, each such record queued a follow-up
    timer of its own)."""
    async with FakeSlack() as slack, FakeStatuspage() as sp:
        sp.fail_with(422, {"error": "component not found"})
        settings = make_settings(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel="#posthog-incidents",
            statuspage_api_key=sp.api_key,
            statuspage_page_id=sp.page_id,
            statuspage_api_url=sp.api_url,
            statuspage_components=["cmp1"],
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(started_now(example(LIMITED))[0])

            async def told() -> list[str]:
                try:
                    roots = slack.roots("#posthog-incidents")
                except KeyError:  # the channel is created with its first message
                    return []
                if not roots:
                    return []
                replies = slack.replies("#posthog-incidents", roots[0].ts)
                return [m.text for m in replies if "Status page" in m.text]

            [reply] = await eventually(told, what="the status page's failure told in Slack")
            assert "component not found" in reply or "422" in reply
            await svc.idle()
            [inc] = await svc.incidents()
            failed = [
                e
                for e in inc["timeline"]
                if e["kind"] == "notification.failed" and e["data"].get("sink") == "statuspage"
            ]
            assert len(failed) == 1
            timers = await metric(svc, "responder_signal_processing_seconds_count", source="timer")
            assert timers == 0


async def _async(value: Any) -> Any:
    return value
