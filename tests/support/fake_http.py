"""Loopback fakes of the HTTP services triage reads: a vendor's Atlassian Statuspage and our
integration's health endpoint. Each is an aiohttp server in the test's event loop, on
127.0.0.1 and a port the OS picks, used as an async context manager::

    async with FakeStatuspage() as status, FakeHealthEndpoint() as health:
        status.open_incident("Elevated API errors", components=["API"], impact="major")
        health.set_posthog("down")
        health.fail_with(503)            # 503, with the health document as its JSON body
        status.slow(2.0)                 # answers after 2 s: a client timeout of 1 s fires
        ...
        assert status.requests[0].path == "/api/v2/summary.json"

The content (components, incidents, services) and the failure mode are independent: a
failure mode (``fail_with``, ``malformed``, ``slow``, ``hang``) applies to every request
(or to the next ``times`` ones) until ``respond_normally()``. Every request is recorded in
``.requests`` (method, path, query, headers), whatever the mode.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.support.recording import Mode, RecordedRequest, RecordingFake


def _now() -> str:
    """Statuspage's timestamps: ISO 8601, milliseconds, UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    """A Statuspage-like id: 12 lowercase letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


class _FakeService(RecordingFake):
    """The failure modes both fakes answer (status, malformed JSON, slow, hang)."""

    def fail_with(
        self,
        status: int = 500,
        body: Any = None,
        *,
        content_type: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status``. ``body``: a dict or list is sent as JSON, str or bytes as they
        are (``content_type`` defaults to text/html); None: this fake's default error body."""
        self._mode = Mode(
            "status", status=status, body=body, content_type=content_type, remaining=times
        )

    def malformed(self, body: bytes | None = None, *, times: int | None = None) -> None:
        """Answer 200 ``application/json`` with a body that is not JSON: by default the normal
        body cut in half (a truncated transfer)."""
        self._mode = Mode("malformed", body=body, remaining=times)

    def slow(self, delay_s: float, *, times: int | None = None) -> None:
        """Answer normally, after ``delay_s`` seconds."""
        self._mode = Mode("slow", delay_s=delay_s, remaining=times)

    def hang(self, *, times: int | None = None) -> None:
        """Never answer (until the client gives up or the fake closes)."""
        self._mode = Mode("hang", remaining=times)

    def _failure_response(self, mode: Mode, recorded: RecordedRequest) -> web.Response:
        body = mode.body if mode.body is not None else self._default_error_body(mode.status)
        if isinstance(body, dict | list):
            return web.json_response(body, status=mode.status)
        return web.Response(
            body=body.encode() if isinstance(body, str) else body,
            status=mode.status,
            content_type=mode.content_type or "text/html",
        )

    def _default_error_body(self, status: int) -> Any:
        reason = web.Response(status=status).reason
        return f"<html><body><h1>{status} {reason}</h1></body></html>\n"

    async def _answer(
        self, mode: Mode, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        response = await handler(request)
        if mode.kind != "malformed":
            return response
        assert isinstance(response, web.Response)
        raw = mode.body
        if raw is None:
            normal = bytes(response.body) if isinstance(response.body, bytes) else b"{}"
            raw = normal[: max(1, len(normal) // 2)]
        return web.Response(body=raw, status=200, content_type="application/json")


# ---------------------------------------------------------------------------- statuspage

ComponentStatus = Literal[
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"
]
Impact = Literal["none", "minor", "major", "critical"]
IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
MaintenanceStatus = Literal["scheduled", "in_progress", "verifying", "completed"]

_IMPACTS: tuple[Impact, ...] = ("none", "minor", "major", "critical")
_COMPONENT_INDICATOR: dict[str, Impact] = {
    "operational": "none",
    "under_maintenance": "none",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
_DESCRIPTION: dict[str, str] = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}
# What an incident of each impact does to its components unless told otherwise.
_IMPACT_COMPONENT_STATUS: dict[str, ComponentStatus] = {
    "none": "operational",
    "minor": "degraded_performance",
    "major": "partial_outage",
    "critical": "major_outage",
}
DEFAULT_COMPONENTS = ("API", "Event ingestion", "Feature flags", "App")


class FakeStatuspage(_FakeService):
    """An Atlassian Statuspage's public JSON API (``GET /api/v2/status.json``,
    ``/api/v2/summary.json``, ``/api/v2/incidents/unresolved.json``,
    ``/api/v2/components.json``).

    Starts all operational with ``components``. The overall ``status`` is derived the way
    Statuspage shows it (worst of open incidents' impact and components' statuses; an
    in-progress maintenance shows ``maintenance``) unless ``set_status`` overrides it.
    """

    def __init__(
        self,
        components: Iterable[str] = DEFAULT_COMPONENTS,
        *,
        name: str = "PostHog",
        page_url: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.page_id = _new_id()
        self.name = name
        self.page_url = page_url
        self.updated_at = _now()
        self._components: dict[str, dict[str, Any]] = {}
        self._incidents: dict[str, dict[str, Any]] = {}  # unresolved, oldest first
        self.resolved: list[dict[str, Any]] = []
        self._maintenances: dict[str, dict[str, Any]] = {}
        self._status_override: tuple[str, str] | None = None
        for position, component in enumerate(components, start=1):
            self.add_component(component, position=position)

    # -- content

    def _touch(self) -> str:
        self.updated_at = _now()
        return self.updated_at

    def add_component(
        self, name: str, status: ComponentStatus = "operational", *, position: int | None = None
    ) -> dict[str, Any]:
        at = self._touch()
        component = {
            "id": _new_id(),
            "name": name,
            "status": status,
            "created_at": at,
            "updated_at": at,
            "position": position or len(self._components) + 1,
            "description": None,
            "showcase": True,
            "start_date": None,
            "group_id": None,
            "page_id": self.page_id,
            "group": False,
            "only_show_if_degraded": False,
        }
        self._components[name] = component
        return component

    def component(self, name: str) -> dict[str, Any]:
        try:
            return self._components[name]
        except KeyError:
            raise KeyError(f"no component {name!r}; there are {list(self._components)}") from None

    def set_component_status(self, *names: str, status: ComponentStatus) -> None:
        at = self._touch()
        for name in names:
            component = self.component(name)
            component["status"] = status
            component["updated_at"] = at

    def degrade(self, *names: str, status: ComponentStatus = "degraded_performance") -> None:
        """Mark components degraded (or ``partial_outage``/``major_outage``), no incident."""
        self.set_component_status(*names, status=status)

    def all_operational(self) -> None:
        """Every component operational; no open incident, no maintenance, no status override.
        (The failure mode is separate: ``respond_normally()``.)"""
        for incident_id in list(self._incidents):
            self.resolve_incident(incident_id)
        self._maintenances.clear()
        self._status_override = None
        self.set_component_status(*self._components, status="operational")

    def set_status(self, indicator: str | None, description: str | None = None) -> None:
        """Override the page's overall status (``None`` derives it again)."""
        if indicator is None:
            self._status_override = None
        else:
            self._status_override = (indicator, description or _DESCRIPTION.get(indicator, ""))
        self._touch()

    def open_incident(
        self,
        name: str,
        *,
        components: Iterable[str] = (),
        impact: Impact = "major",
        status: IncidentStatus = "investigating",
        body: str = "We are investigating this issue.",
        component_status: ComponentStatus | None = None,
    ) -> str:
        """Open an incident affecting ``components`` (their status becomes
        ``component_status``, by default the one that goes with ``impact``); return its id."""
        new_status = component_status or _IMPACT_COMPONENT_STATUS[impact]
        affected = [self.component(c) for c in components]
        incident_id = _new_id()
        at = self._touch()
        changes = [
            {
                "code": c["id"],
                "name": c["name"],
                "old_status": c["status"],
                "new_status": new_status,
            }
            for c in affected
        ]
        self.set_component_status(*(c["name"] for c in affected), status=new_status)
        self._incidents[incident_id] = {
            "id": incident_id,
            "name": name,
            "status": status,
            "created_at": at,
            "updated_at": at,
            "monitoring_at": at if status == "monitoring" else None,
            "resolved_at": None,
            "impact": impact,
            "shortlink": f"https://stspg.io/{incident_id[:7]}",
            "started_at": at,
            "page_id": self.page_id,
            "incident_updates": [self._update(incident_id, status, body, changes or None)],
            "_components": [c["name"] for c in affected],
        }
        return incident_id

    def _update(
        self,
        incident_id: str,
        status: str,
        body: str,
        affected: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        at = self._touch()
        return {
            "id": _new_id(),
            "status": status,
            "body": body,
            "incident_id": incident_id,
            "created_at": at,
            "updated_at": at,
            "display_at": at,
            "affected_components": affected,
            "deliver_notifications": True,
            "custom_tweet": None,
            "tweet_id": None,
        }

    def incident(self, incident_id: str) -> dict[str, Any]:
        """An open incident as the API shows it."""
        return self._render_incident(self._incidents[incident_id])

    def update_incident(
        self,
        incident_id: str,
        *,
        status: IncidentStatus,
        body: str = "Update.",
        impact: Impact | None = None,
    ) -> None:
        incident = self._incidents[incident_id]
        update = self._update(incident_id, status, body)
        incident["incident_updates"].insert(0, update)  # newest first, as Statuspage lists
        incident["status"] = status
        incident["updated_at"] = update["created_at"]
        if status == "monitoring" and incident["monitoring_at"] is None:
            incident["monitoring_at"] = update["created_at"]
        if impact is not None:
            incident["impact"] = impact

    def resolve_incident(
        self, incident_id: str, *, body: str = "This incident has been resolved."
    ) -> None:
        """Resolve it: gone from the unresolved lists; its components are operational again
        unless another open incident affects them."""
        self.update_incident(incident_id, status="resolved", body=body)
        incident = self._incidents.pop(incident_id)
        incident["resolved_at"] = incident["updated_at"]
        self.resolved.append(self._render_incident(incident))
        still = {c for other in self._incidents.values() for c in other["_components"]}
        self.set_component_status(
            *(c for c in incident["_components"] if c not in still), status="operational"
        )

    def schedule_maintenance(
        self,
        name: str,
        *,
        components: Iterable[str] = (),
        status: MaintenanceStatus = "scheduled",
        starts_in_s: float = 3600.0,
        lasts_s: float = 3600.0,
    ) -> str:
        """Add a scheduled maintenance (``in_progress`` puts its components under
        maintenance and the page in ``maintenance``); return its id."""
        maintenance_id = _new_id()
        at = self._touch()
        start = datetime.now(UTC).timestamp() + starts_in_s

        def iso(ts: float) -> str:
            when = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
            return when.replace("+00:00", "Z")

        names = list(components)
        if status == "in_progress":
            self.set_component_status(*names, status="under_maintenance")
        self._maintenances[maintenance_id] = {
            "id": maintenance_id,
            "name": name,
            "status": status,
            "created_at": at,
            "updated_at": at,
            "monitoring_at": None,
            "resolved_at": None,
            "impact": "maintenance",
            "shortlink": f"https://stspg.io/{maintenance_id[:7]}",
            "started_at": at,
            "page_id": self.page_id,
            "scheduled_for": iso(start),
            "scheduled_until": iso(start + lasts_s),
            "incident_updates": [self._update(maintenance_id, status, "Scheduled maintenance.")],
            "_components": names,
        }
        return maintenance_id

    # -- documents

    def _render_incident(self, incident: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in incident.items() if not k.startswith("_")}
        shown["components"] = [dict(self._components[c]) for c in incident["_components"]]
        return shown

    def page(self) -> dict[str, Any]:
        return {
            "id": self.page_id,
            "name": self.name,
            "url": self.page_url or self.url,
            "time_zone": "Etc/UTC",
            "updated_at": self.updated_at,
        }

    def status(self) -> dict[str, str]:
        if self._status_override is not None:
            indicator, description = self._status_override
            return {"indicator": indicator, "description": description}
        from_incidents = [i["impact"] for i in self._incidents.values()]
        from_components = [_COMPONENT_INDICATOR[c["status"]] for c in self._components.values()]
        worst = max([*from_incidents, *from_components, "none"], key=_IMPACTS.index)
        if worst == "none":
            if any(m["status"] == "in_progress" for m in self._maintenances.values()):
                return {"indicator": "maintenance", "description": "Service Under Maintenance"}
            return {"indicator": "none", "description": _DESCRIPTION["none"]}
        if worst == "minor" and not from_incidents:
            return {"indicator": "minor", "description": "Partially Degraded Service"}
        return {"indicator": worst, "description": _DESCRIPTION[worst]}

    def components(self) -> list[dict[str, Any]]:
        return [dict(c) for c in sorted(self._components.values(), key=lambda c: c["position"])]

    def unresolved_incidents(self) -> list[dict[str, Any]]:
        """Newest first, as the API lists them."""
        return [self._render_incident(i) for i in reversed(self._incidents.values())]

    def scheduled_maintenances(self) -> list[dict[str, Any]]:
        return [self._render_incident(m) for m in self._maintenances.values()]

    def summary(self) -> dict[str, Any]:
        return {
            "page": self.page(),
            "components": self.components(),
            "incidents": self.unresolved_incidents(),
            "scheduled_maintenances": self.scheduled_maintenances(),
            "status": self.status(),
        }

    # -- server

    def _routes(self, app: web.Application) -> None:
        async def status_json(_: web.Request) -> web.Response:
            return web.json_response({"page": self.page(), "status": self.status()})

        async def summary_json(_: web.Request) -> web.Response:
            return web.json_response(self.summary())

        async def unresolved_json(_: web.Request) -> web.Response:
            return web.json_response(
                {"page": self.page(), "incidents": self.unresolved_incidents()}
            )

        async def components_json(_: web.Request) -> web.Response:
            return web.json_response({"page": self.page(), "components": self.components()})

        app.router.add_get("/api/v2/status.json", status_json)
        app.router.add_get("/api/v2/summary.json", summary_json)
        app.router.add_get("/api/v2/incidents/unresolved.json", unresolved_json)
        app.router.add_get("/api/v2/components.json", components_json)


# ------------------------------------------------------------------------ health endpoint

ServiceStatus = Literal["ok", "degraded", "down"]


class FakeHealthEndpoint(_FakeService):
    """Our integration's health endpoint: ``GET /health`` answers 200 with::

        {"status": "ok", "services": {"posthog": {"status": "ok", "latency_ms": 42},
                                      "db": {"status": "ok"}}}

    The top-level ``status`` is ``ok`` when every service is ``ok``, else ``degraded``
    (``set_overall`` overrides it). ``fail_with(503)`` answers 503 with that same document.
    """

    def __init__(
        self, *, path: str = "/health", latency_ms: float = 42, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host=host)
        self.path = path
        self.services: dict[str, dict[str, Any]] = {
            "posthog": {"status": "ok", "latency_ms": latency_ms},
            "db": {"status": "ok"},
        }
        self._overall: str | None = None

    def set_service(self, name: str, status: str, **fields: Any) -> None:
        """Set (or add) ``services.<name>``: its status and any other fields."""
        service = self.services.setdefault(name, {})
        service["status"] = status
        service.update(fields)

    def set_posthog(self, status: ServiceStatus | str, *, latency_ms: float | None = None) -> None:
        """``services.posthog.status`` (``ok``/``degraded``/``down``), and its latency."""
        fields: dict[str, Any] = {} if latency_ms is None else {"latency_ms": latency_ms}
        self.set_service("posthog", status, **fields)

    def set_overall(self, status: str | None) -> None:
        """Override the top-level ``status`` (``None`` derives it from the services)."""
        self._overall = status

    def all_ok(self) -> None:
        for service in self.services.values():
            service["status"] = "ok"
        self._overall = None

    def document(self) -> dict[str, Any]:
        overall = self._overall
        if overall is None:
            ok = all(s.get("status") == "ok" for s in self.services.values())
            overall = "ok" if ok else "degraded"
        return {"status": overall, "services": json.loads(json.dumps(self.services))}

    def _default_error_body(self, status: int) -> Any:
        return self.document()

    @property
    def health_url(self) -> str:
        return self.url + self.path

    def _routes(self, app: web.Application) -> None:
        async def health(_: web.Request) -> web.Response:
            return web.json_response(self.document())

        app.router.add_get(self.path, health)


class FakeVendorApi(_FakeService):
    """A vendor's API as the runbook's "Check rate limit headers" sees it (``curl -v
    https://api.posthog.com | grep -i rate``): ``GET /`` answers 200, or what
    ``rate_limited`` sets: 429 with ``X-RateLimit-*`` and ``Retry-After`` headers."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.status = 200
        self.headers: dict[str, str] = {}

    def rate_limited(
        self, *, limit: int, remaining: int, reset: int, retry_after_s: int | None = None
    ) -> None:
        self.status = 429 if remaining <= 0 else 200
        self.headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }
        if retry_after_s is not None:
            self.headers["Retry-After"] = str(retry_after_s)

    def _routes(self, app: web.Application) -> None:
        async def root(_: web.Request) -> web.Response:
            return web.json_response(
                {"type": "throttled"} if self.status == 429 else {},
                status=self.status,
                # a header no probe asked for must not be kept
                headers={**self.headers, "Set-Cookie": "session=not-for-us"},
            )

        app.router.add_get("/", root)
