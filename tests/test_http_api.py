"""The read side of the HTTP API, health, metrics, and the OpenAPI document."""

from __future__ import annotations

from responder.app import create_app
from tests.support.service import Service, example


async def test_healthz_is_ok(service: Service) -> None:
    resp = await service.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_checks_the_store_the_consumers_and_the_queue(service: Service) -> None:
    resp = await service.client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["failed"]) == ("ready", [])
    assert body["checks"]["store"] == "ok"
    workers = service.runtime.settings.workers
    assert body["checks"]["consumers"] == f"{workers} of {workers} consumer loops running"
    assert body["checks"]["queue"].startswith("oldest unhandled signal")


async def test_incident_by_id_has_its_timeline(service: Service) -> None:
    await service.post_alertmanager(example("alertmanager/posthog-upstream-503-firing.json"))
    await service.idle()
    [listed] = await service.incidents()
    resp = await service.client.get(f"/v1/incidents/{listed['id']}")
    assert resp.status == 200
    one = await resp.json()
    assert one == listed
    for key in (
        "id",
        "status",
        "group_key",
        "severity",
        "error_type",
        "rule",
        "alerts",
        "facts",
        "actions",
        "timeline",
        "opened_at",
        "acked_at",
        "resolved_at",
    ):
        assert key in one
    assert set(one["timeline"][0]) >= {"at", "kind", "detail"}


async def test_unknown_incident_is_a_json_404(service: Service) -> None:
    resp = await service.client.get("/v1/incidents/inc-nope")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not found"


async def test_bad_filters_are_400(service: Service) -> None:
    resp = await service.client.get("/v1/incidents?status=sleeping")
    assert resp.status == 400
    assert (await resp.json())["field"] == "status"
    for limit in ("0", "1001", "ten"):
        resp = await service.client.get(f"/v1/incidents?limit={limit}")
        assert resp.status == 400
        assert (await resp.json())["field"] == "limit"


async def test_limit_keeps_the_newest(service: Service) -> None:
    for path in ("posthog-rate-limited-429", "posthog-upstream-503", "posthog-high-latency"):
        await service.post_alertmanager(example(f"alertmanager/{path}-firing.json"))
        await service.idle()
    resp = await service.client.get("/v1/incidents?limit=2")
    rules = [i["rule"] for i in (await resp.json())["incidents"]]
    assert rules == ["high-latency", "upstream-errors"]


async def test_unknown_route_and_wrong_method_answer_json(service: Service) -> None:
    resp = await service.client.get("/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"] == "Not Found"
    resp = await service.client.get("/v1/webhooks/alertmanager")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert (await resp.json())["error"] == "Method Not Allowed"


async def test_request_id_is_echoed_or_made(service: Service) -> None:
    resp = await service.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await service.client.get("/healthz")
    assert len(resp.headers["X-Request-Id"]) == 32


async def test_metrics_cover_webhooks_signals_queue_and_processing(service: Service) -> None:
    payload = example("alertmanager/posthog-rate-limited-429-firing.json")
    await service.post_alertmanager(payload)
    await service.post_alertmanager(payload)
    await service.idle()
    resp = await service.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'responder_webhooks_total{outcome="accepted",source="alertmanager"} 2.0' in text
    assert 'responder_signals_total{outcome="new",source="alertmanager"} 1.0' in text
    assert 'responder_signals_total{outcome="repeat",source="alertmanager"} 1.0' in text
    assert "responder_queue_depth 0.0" in text
    assert "responder_queue_pending 0.0" in text
    assert "responder_queue_dead_letters 0.0" in text
    assert 'responder_signal_processing_seconds_count{source="alertmanager"} 1.0' in text
    assert 'responder_incident_events_total{kind="incident.opened"} 1.0' in text


async def test_two_apps_in_one_process_keep_separate_metrics(make_settings) -> None:
    # one registry per app: building a second app must not clash with the first
    create_app(make_settings())
    create_app(make_settings())


async def test_openapi_describes_every_route(service: Service) -> None:
    resp = await service.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    app = service.client.app
    assert app is not None
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource else ""
        assert path in doc["paths"], path
        assert route.method.lower() in doc["paths"][path], (path, route.method)
    schemas = doc["components"]["schemas"]
    for name in (
        "AlertmanagerWebhook",
        "PagerDutyWebhook",
        "IntakeResult",
        "ErrorBody",
        "IncidentDocument",
        "IncidentList",
    ):
        assert name in schemas
    body = doc["paths"]["/v1/webhooks/alertmanager"]["post"]
    assert set(body["responses"]) >= {"200", "400", "401", "403", "413", "415", "503"}
    assert "alerts" in schemas["AlertmanagerWebhook"]["properties"]
