"""The route table: every path, its handler and the guard in front of it."""

from __future__ import annotations

from aiohttp import web

from responder.metrics import Metrics
from responder.web.admin import (
    ack_incident,
    approve_step,
    pause,
    pause_incident,
    reject_step,
    reload_rules,
    resume,
    resume_incident,
)
from responder.web.intake import alertmanager_webhook, counted_webhook, pagerduty_webhook
from responder.web.ops import healthz, metrics_handler, openapi, readyz
from responder.web.pages import add_page_routes
from responder.web.reads import (
    automation,
    get_evidence,
    get_incident,
    get_postmortem,
    list_incidents,
    list_rules,
    reader,
)
from responder.web.slack_interactions import slack_interactions


def add_routes(app: web.Application, metrics: Metrics) -> None:
    # each webhook counted by outcome; its credentials are checked in its handler
    app.router.add_post(
        "/v1/webhooks/alertmanager", counted_webhook("alertmanager", alertmanager_webhook)
    )
    app.router.add_post("/v1/webhooks/pagerduty", counted_webhook("pagerduty", pagerduty_webhook))
    # every read of incident data, the automation's state or the rules: reader
    app.router.add_get("/v1/incidents", reader(list_incidents))
    app.router.add_get("/v1/incidents/{incident_id}", reader(get_incident))
    app.router.add_get("/v1/incidents/{incident_id}/postmortem", reader(get_postmortem))
    app.router.add_get("/v1/incidents/{incident_id}/evidence", reader(get_evidence))
    app.router.add_get("/v1/rules", reader(list_rules))
    # the incident pages for people: the read API's rule, and its login form (pages.py)
    add_page_routes(app)
    # the admin routes check the admin token first thing in the handler (check_admin)
    app.router.add_post("/v1/admin/reload", reload_rules)
    app.router.add_get("/v1/automation", reader(automation))
    app.router.add_post("/v1/admin/pause", pause)
    app.router.add_post("/v1/admin/resume", resume)
    app.router.add_post("/v1/incidents/{incident_id}/ack", ack_incident)
    app.router.add_post("/v1/incidents/{incident_id}/pause", pause_incident)
    app.router.add_post("/v1/incidents/{incident_id}/resume", resume_incident)
    app.router.add_post("/v1/incidents/{incident_id}/approvals/{step}/approve", approve_step)
    app.router.add_post("/v1/incidents/{incident_id}/approvals/{step}/reject", reject_step)
    # Slack's signature is checked in the handler, and every outcome counted there
    app.router.add_post("/v1/slack/interactions", slack_interactions)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(metrics))
    app.router.add_get("/openapi.json", openapi)
