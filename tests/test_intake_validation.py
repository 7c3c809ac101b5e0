"""Webhook payloads: what intake accepts, what it refuses, and that a refusal queues nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.support.service import EXAMPLES, Service, example, running_service

AM = "alertmanager/posthog-rate-limited-429-firing.json"


async def assert_nothing_queued(service: Service) -> None:
    assert service.runtime.queue is not None
    stats = await service.runtime.queue.stats()
    assert (stats.depth, stats.pending) == (0, 0)
    page = await service.runtime.store.list_incidents()  # type: ignore[union-attr]
    assert page.incidents == []


@pytest.fixture
async def intake(backend_settings):
    # no workers: whatever intake queues stays visible in the queue
    async with running_service(backend_settings(workers=0)) as svc:
        yield svc


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("alertmanager/*.json"))
)
async def test_every_alertmanager_example_is_accepted(intake: Service, path: str) -> None:
    resp = await intake.post_alertmanager(example(path))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {"accepted": 1, "changed": 0, "repeated": 0, "truncated_alerts": 0}


async def test_unknown_fields_zero_end_time_and_empty_generator_url_are_accepted(
    intake: Service,
) -> None:
    payload = example(AM)
    payload["notification_reason"] = "first notification"
    payload["routeLabels"] = {}
    payload["truncatedAlerts"] = 3
    alert = payload["alerts"][0]
    alert["generatorURL"] = ""
    alert["endsAt"] = "0001-01-01T00:00:00Z"
    alert["somethingNew"] = {"nested": True}
    resp = await intake.post_alertmanager(payload)
    assert resp.status == 200
    assert (await resp.json())["truncated_alerts"] == 3
    stats = await intake.runtime.queue.stats()  # type: ignore[union-attr]
    assert stats.depth == 1


async def test_nanosecond_timestamps_are_parsed(intake: Service) -> None:
    payload = example(AM)
    payload["alerts"][0]["startsAt"] = "2026-11-29T03:02:11.482913374+01:00"
    resp = await intake.post_alertmanager(payload)
    assert resp.status == 200


async def test_alert_without_fingerprint_gets_one_from_its_labels(intake: Service) -> None:
    payload = example(AM)
    del payload["alerts"][0]["fingerprint"]
    first = await (await intake.post_alertmanager(payload)).json()
    again = await (await intake.post_alertmanager(payload)).json()
    assert (first["accepted"], again["repeated"]) == (1, 1)


def _broken(mutate) -> dict:
    payload = copy.deepcopy(example(AM))
    mutate(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_broken(lambda p: p.update(version="3")), "version"),
        (_broken(lambda p: p.pop("version")), "version"),
        (_broken(lambda p: p.pop("alerts")), "alerts"),
        (_broken(lambda p: p.update(alerts={"not": "a list"})), "alerts"),
        (_broken(lambda p: p["alerts"][0].pop("status")), "alerts.0.status"),
        (_broken(lambda p: p["alerts"][0].update(status="burning")), "alerts.0.status"),
        (_broken(lambda p: p["alerts"][0].pop("labels")), "alerts.0.labels"),
        (
            _broken(lambda p: p["alerts"][0]["labels"].update(severity=3)),
            "alerts.0.labels.severity",
        ),
        (_broken(lambda p: p["alerts"][0].update(startsAt="yesterday")), "alerts.0.startsAt"),
        (_broken(lambda p: p.update(truncatedAlerts=-1)), "truncatedAlerts"),
    ],
    ids=[
        "wrong-version",
        "no-version",
        "no-alerts",
        "alerts-not-list",
        "no-status",
        "bad-status",
        "no-labels",
        "label-not-string",
        "bad-time",
        "negative-truncated",
    ],
)
async def test_invalid_payload_is_400_naming_the_field(
    intake: Service, payload: dict, field: str
) -> None:
    resp = await intake.post_alertmanager(payload)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "invalid payload"
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    await assert_nothing_queued(intake)


@pytest.mark.parametrize("raw", ['{"version": "4", "alerts": [', "not json at all", ""])
async def test_malformed_json_is_400(intake: Service, raw: str) -> None:
    resp = await intake.post_alertmanager(raw)
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed JSON"
    await assert_nothing_queued(intake)


async def test_json_that_is_not_an_object_is_400(intake: Service) -> None:
    resp = await intake.post_alertmanager("[1, 2]")
    assert resp.status == 400
    assert (await resp.json())["field"] == "body"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/jsonx", "multipart/form-data; boundary=json"]
)
async def test_non_json_content_type_is_415(intake: Service, content_type: str) -> None:
    resp = await intake.post_alertmanager(
        json.dumps(example(AM)), headers={"Content-Type": content_type}
    )
    assert resp.status == 415
    body = await resp.json()
    assert body["error"] == "unsupported media type"
    assert content_type.partition(";")[0] in body["detail"]
    await assert_nothing_queued(intake)


async def test_missing_content_type_is_415(intake: Service) -> None:
    resp = await intake.client.post(
        "/v1/webhooks/alertmanager",
        data=json.dumps(example(AM)).encode(),
        skip_auto_headers=["Content-Type"],
    )
    assert resp.status == 415
    assert (await resp.json())["error"] == "unsupported media type"
    await assert_nothing_queued(intake)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/vnd.alerts+json"],
)
async def test_json_media_types_are_accepted(intake: Service, content_type: str) -> None:
    resp = await intake.post_alertmanager(
        json.dumps(example(AM)), headers={"Content-Type": content_type}
    )
    assert resp.status == 200, await resp.text()


async def test_body_over_the_limit_is_413(backend_settings) -> None:
    async with running_service(backend_settings(workers=0, max_body_bytes=4096)) as svc:
        payload = example(AM)
        payload["alerts"][0]["annotations"]["description"] = "x" * 5000
        resp = await svc.post_alertmanager(payload)
        assert resp.status == 413
        assert (await resp.json())["error"] == "payload too large"
        await assert_nothing_queued(svc)
        # just under the limit still goes through
        payload["alerts"][0]["annotations"]["description"] = "x" * 100
        assert (await svc.post_alertmanager(payload)).status == 200


async def test_default_limit_is_one_mebibyte(intake: Service) -> None:
    payload = example(AM)
    payload["alerts"][0]["annotations"]["description"] = "x" * (1024 * 1024)
    resp = await intake.post_alertmanager(payload)
    assert resp.status == 413


@pytest.mark.parametrize("path", sorted(p.name for p in (EXAMPLES / "pagerduty").glob("*.json")))
async def test_every_pagerduty_example_is_accepted(intake: Service, path: str) -> None:
    body = (EXAMPLES / "pagerduty" / path).read_bytes()
    resp = await intake.post_pagerduty(body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"event": {"id": "E1"}}', "invalid payload"),
        (b'{"nothing": true}', "invalid payload"),
        (b'{"event": ', "malformed JSON"),
    ],
)
async def test_invalid_pagerduty_payload_is_400(intake: Service, body: bytes, error: str) -> None:
    resp = await intake.post_pagerduty(body)
    assert resp.status == 400
    assert (await resp.json())["error"] == error
    await assert_nothing_queued(intake)


def test_examples_cover_every_runbook_case() -> None:
    names = {p.name for p in Path(EXAMPLES / "alertmanager").glob("*.json")}
    for case in (
        "api-unreachable",
        "rate-limited-429",
        "auth-failure-401",
        "auth-failure-403",
        "upstream-500",
        "upstream-503",
        "high-latency",
    ):
        for status in ("firing", "resolved"):
            assert f"posthog-{case}-{status}.json" in names
