"""The OpenAPI 3.1 document served at ``/openapi.json``, built from the API's own models.

The schemas come from the pydantic models that parse requests and build responses, so the
document cannot drift from the code; a test checks that every route is described.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from responder import __version__
from responder.api import (
    AckRequest,
    Automation,
    ErrorBody,
    Health,
    HumanActRequest,
    IncidentDocument,
    IncidentList,
    IntakeResult,
    PauseRequest,
    Readiness,
    ReloadOutcome,
    RulesInForce,
)
from responder.domain.incident import IncidentStatus
from responder.domain.severity import Severity
from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.ingest.pagerduty import PagerDutyWebhook
from responder.report.postmortem import Postmortem

_REF = "#/components/schemas/{model}"
_INCIDENT_ID = {
    "name": "incident_id",
    "in": "path",
    "required": True,
    # as domain.incident.new_incident_id makes them; anything else answers 404
    "schema": {"type": "string", "pattern": "^inc-[0-9a-f]{18}$"},
}
# The read API: RESPONDER_READ_TOKEN or the admin token (see the "read" scheme)
_READ: list[dict[str, list[str]]] = [{"read": []}]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _list_filter(name: str, kind: type[StrEnum], description: str) -> dict[str, Any]:
    """A query parameter taking one or more of ``kind``'s values, comma-separated (given
    once: ``status=open,acked``)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{description} One value or several, comma-separated.",
        "style": "form",
        "explode": False,
        "schema": {
            "type": "array",
            "items": {"type": "string", "enum": [m.value for m in kind]},
            "minItems": 1,
        },
    }


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "Malformed JSON or a payload that fails validation; `field` names the culprit.",
        401: "No credentials (or no signature, or one that is not ASCII) where they are "
        "required; WWW-Authenticate says which.",
        403: "Wrong credentials or a signature that does not match.",
        404: "No such incident (or an id that cannot be one).",
        408: "The body did not arrive within RESPONDER_PAGERDUTY_READ_TIMEOUT_S; the "
        "connection is closed.",
        413: "Body larger than RESPONDER_MAX_BODY_BYTES (RESPONDER_PAGERDUTY_MAX_BODY_BYTES "
        "for PagerDuty).",
        409: "The incident cannot take it: resolved, or no approval waits for that step "
        "(or it was decided otherwise); `detail` says which.",
        415: "Content-Type is not JSON.",
        503: "The store is unreachable; nothing was queued. Retry after Retry-After seconds.",
    }
    return {str(c): _json(ErrorBody, meaning[c]) for c in codes}


_HTML: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}
_HTML_PAGE: dict[str, Any] = {"description": "The page.", **_HTML}


def _human_acts() -> dict[str, Any]:
    """The admin API's acts on one incident, as Slack's buttons do them."""
    acts = {
        "/v1/incidents/{incident_id}/pause": "Pause this incident's automatic actions",
        "/v1/incidents/{incident_id}/resume": "Let this incident's automatic actions run again",
        "/v1/incidents/{incident_id}/approvals/{step}/approve": "Approve a step waiting for it",
        "/v1/incidents/{incident_id}/approvals/{step}/reject": "Reject a step waiting for it",
    }
    step = {"name": "step", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        path: {
            "post": {
                "summary": summary,
                "security": [{"bearer": []}],
                "parameters": [_INCIDENT_ID, *([step] if "{step}" in path else [])],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(HumanActRequest)}},
                },
                "responses": {
                    "200": _json(IncidentDocument, "The incident, with the act applied."),
                    "202": _json(
                        IncidentDocument,
                        "Queued (durably) but no worker applied it within 5 s: the incident "
                        "as it still is; a worker applies it.",
                    ),
                    **_errors(400, 401, 403, 404, 409),
                },
            }
        }
        for path, summary in acts.items()
    }


def build_openapi(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        AlertmanagerWebhook,
        PagerDutyWebhook,
        IntakeResult,
        ErrorBody,
        IncidentDocument,
        IncidentList,
        Health,
        Readiness,
        RulesInForce,
        ReloadOutcome,
        Automation,
        PauseRequest,
        AckRequest,
        HumanActRequest,
        Postmortem,
    ]
    _, schema = models_json_schema(
        [
            (m, "validation" if m in (AlertmanagerWebhook, PagerDutyWebhook) else "serialization")
            for m in models
        ],
        ref_template=_REF,
    )
    intake_errors = _errors(400, 401, 403, 413, 415, 503)
    paths: dict[str, Any] = {
        "/v1/webhooks/alertmanager": {
            "post": {
                "summary": "Alertmanager webhook receiver (payload version 4)",
                "security": [{"bearer": []}, {"basic": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(AlertmanagerWebhook)}},
                },
                "responses": {
                    "200": _json(IntakeResult, "Every signal is durably queued or counted."),
                    **intake_errors,
                },
            }
        },
        "/v1/webhooks/pagerduty": {
            "post": {
                "summary": "PagerDuty V3 webhook (X-PagerDuty-Signature verified)",
                "parameters": [
                    {
                        "name": "X-PagerDuty-Signature",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "v1=<hex HMAC-SHA256 of the raw body>, comma-separated "
                        "during a secret rotation. Required when secrets are configured.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(PagerDutyWebhook)}},
                },
                "responses": {
                    "200": _json(IntakeResult, "The event is queued, or a repeat is counted."),
                    **intake_errors,
                    **_errors(408),
                },
            }
        },
        "/v1/incidents": {
            "get": {
                "summary": "Incidents, newest first (opened-at, then id), a page at a time",
                "security": _READ,
                "parameters": [
                    _list_filter("status", IncidentStatus, "Any of these statuses."),
                    _list_filter("severity", Severity, "Any of these severities."),
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "Only incidents opened at or after this time "
                        "(RFC 3339, with an offset).",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Incidents per page at most.",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "The `next_cursor` of the previous page (same filters).",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(IncidentList, "A page of incidents and the next cursor."),
                    **_errors(400, 401, 403, 503),
                },
            }
        },
        "/v1/incidents/{incident_id}": {
            "get": {
                "summary": "One incident with its timeline",
                "security": _READ,
                "parameters": [_INCIDENT_ID],
                "responses": {
                    "200": _json(IncidentDocument, "The incident."),
                    **_errors(401, 403, 404, 503),
                },
            }
        },
        "/v1/incidents/{incident_id}/postmortem": {
            "get": {
                "summary": "The postmortem draft, filled from the incident",
                "security": _READ,
                "parameters": [
                    _INCIDENT_ID,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["markdown", "json"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Markdown, or with format=json its fields.",
                        "content": {
                            "text/markdown": {"schema": {"type": "string"}},
                            "application/json": {"schema": _ref(Postmortem)},
                        },
                    },
                    **_errors(401, 403, 404, 503),
                },
            }
        },
        "/v1/incidents/{incident_id}/evidence": {
            "get": {
                "summary": "The evidence bundle (tar.gz with a sha256 manifest), collected now",
                "security": _READ,
                "parameters": [_INCIDENT_ID],
                "responses": {
                    "200": {
                        "description": "The bundle.",
                        "content": {
                            "application/gzip": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **_errors(401, 403, 404, 503),
                },
            }
        },
        # the incident pages for people (web/pages.py): HTML, behind the read rule; the
        # login form's cookie reads as the read token does
        "/incidents": {
            "get": {
                "summary": "The incident list page (HTML), newest first, a page at a time",
                "security": _READ,
                "responses": {
                    "200": _HTML_PAGE,
                    "401": {"description": "The login form (HTML).", **_HTML},
                    "400": {"description": "A bad query (HTML).", **_HTML},
                },
            }
        },
        "/incidents/{incident_id}": {
            "get": {
                "summary": "The incident page (HTML): branch and why, facts, actions, "
                "approvals, messages, timeline",
                "security": _READ,
                "parameters": [_INCIDENT_ID],
                "responses": {
                    "200": _HTML_PAGE,
                    "401": {"description": "The login form (HTML).", **_HTML},
                    "404": {"description": "No such incident (HTML).", **_HTML},
                },
            }
        },
        "/incidents/login": {
            "get": {
                "summary": "The login form of the incident pages (HTML)",
                "responses": {"200": _HTML_PAGE},
            },
            "post": {
                "summary": "Log in with the read (or admin) token: sets the login cookie",
                "requestBody": {
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "token": {"type": "string"},
                                    "next": {"type": "string"},
                                },
                                "required": ["token"],
                            }
                        }
                    }
                },
                "responses": {
                    "303": {"description": "Logged in: to the page asked for (a local path)."},
                    "401": {"description": "Wrong token: the form again (HTML).", **_HTML},
                    "415": _json(ErrorBody, "Not a form (application/x-www-form-urlencoded)."),
                },
            },
        },
        "/v1/rules": {
            "get": {
                "summary": "The rule packs in force",
                "security": _READ,
                "responses": {
                    "200": _json(RulesInForce, "Packs, versions, rule names."),
                    **_errors(401, 403),
                },
            }
        },
        "/v1/admin/reload": {
            "post": {
                "summary": "Reload the rule packs (the old ones stay if any new one is invalid)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(ReloadOutcome, "The new packs are in force."),
                    "422": _json(ReloadOutcome, "Refused: the problems; the old packs stay."),
                    **_errors(401, 403),
                },
            }
        },
        "/v1/automation": {
            "get": {
                "summary": "Whether automation is paused, the budget used, the allowlist",
                "security": _READ,
                "responses": {
                    "200": _json(Automation, "The automation's state."),
                    **_errors(401, 403),
                },
            }
        },
        "/v1/admin/pause": {
            "post": {
                "summary": "Stop every automatic action, on every replica",
                "security": [{"bearer": []}],
                "requestBody": {"content": {"application/json": {"schema": _ref(PauseRequest)}}},
                "responses": {"200": _json(Automation, "Paused."), **_errors(400, 401, 403)},
            }
        },
        "/v1/admin/resume": {
            "post": {
                "summary": "Let automatic actions run again",
                "security": [{"bearer": []}],
                "responses": {"200": _json(Automation, "Running."), **_errors(401, 403)},
            }
        },
        "/v1/incidents/{incident_id}/ack": {
            "post": {
                "summary": "A human takes the incident: the automation only reports from now",
                "security": [{"bearer": []}],
                "parameters": [_INCIDENT_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(AckRequest)}},
                },
                "responses": {
                    "200": _json(IncidentDocument, "The incident, acknowledged (or resolved)."),
                    "202": _json(
                        IncidentDocument,
                        "The ack is queued (durably) but no worker applied it within 5 s: "
                        "the incident as it still is; a worker applies it.",
                    ),
                    **_errors(400, 401, 403, 404),
                },
            }
        },
        **_human_acts(),
        "/v1/slack/interactions": {
            "post": {
                "summary": "A press of an incident message's button, as Slack sends it",
                "description": "Slack's interactivity request: application/x-www-form-urlencoded "
                "with a `payload` field holding a `block_actions` interaction. Signed with "
                "one of RESPONDER_SLACK_SIGNING_SECRETS (X-Slack-Signature v0, its "
                "X-Slack-Request-Timestamp within 5 minutes), taken once across replicas. "
                "A presser not granted the act (RESPONDER_SLACK_*_BY) is told so in an "
                "ephemeral message, and nothing is queued; so is a presser whose incident "
                "responder no longer holds (expired, or another install's) or has resolved.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["payload"],
                                "properties": {"payload": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Queued, or refused or moot with an ephemeral; empty body."
                    },
                    "400": _json(ErrorBody, "Not a press of one of responder's buttons."),
                    "401": _json(
                        ErrorBody, "No signature, one that matches no secret, or out of time."
                    ),
                    "404": _json(ErrorBody, "No signing secret configured: the route is off."),
                    "409": _json(ErrorBody, "This signed request was taken before (a replay)."),
                    **_errors(413, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "responses": {"200": _json(Health, "Alive.")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the store is reachable",
                "responses": {
                    "200": _json(Readiness, "Ready: every check passed."),
                    "503": _json(Readiness, "Not ready: `failed` names the checks."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "Prometheus text format", "content": {"text/plain": {}}}
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                },
            }
        },
    }
    paths.update(extra_paths or {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "responder",
            "version": __version__,
            "description": "Automated first responder for production alerts.",
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Intake: RESPONDER_ALERTMANAGER_TOKEN. Admin routes: "
                    "RESPONDER_ADMIN_TOKEN.",
                },
                "basic": {"type": "http", "scheme": "basic"},
                "read": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "RESPONDER_READ_TOKEN, or RESPONDER_ADMIN_TOKEN. Not asked "
                    "when no read token is set and the service listens on loopback (or "
                    "RESPONDER_ALLOW_UNAUTHENTICATED_READS=true).",
                },
            },
        },
    }
