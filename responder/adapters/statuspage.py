"""The Atlassian Statuspage management API: create, update and resolve our public incident.

``Authorization: OAuth <key>``; bodies wrapped as ``{"incident": {...}}``. Both 420 and
429 mean "rate limited" (Statuspage has used both) and carry Retry-After. Each incident
carries ``metadata.responder.key``, the idempotency key of its creation, so a worker that
died between creating and recording finds it among the unresolved ones.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp
from pydantic import JsonValue

from responder.adapters.http import SharedSession, maybe_sent
from responder.domain.notification import Outbound
from responder.ports import DeliveryError, OpenThread


class StatuspageSink:
    name = "statuspage"

    def __init__(
        self,
        *,
        http: SharedSession,
        api_url: str,
        api_key: str,
        page_id: str,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._http = http
        self._base = f"{api_url.rstrip('/')}/pages/{page_id}/incidents"
        self._headers = {"Authorization": f"OAuth {api_key}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    async def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        what = f"{method} {url.removeprefix(self._base) or '/'}"
        try:
            async with self._http.get().request(
                method,
                url,
                json=body,
                headers=self._headers,
                timeout=self._timeout,
                ssl=self._ssl,
            ) as response:
                text = await response.text()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"{what}: {type(exc).__name__}: {exc}", retryable=True, uncertain=maybe_sent(exc)
            ) from None
        if 200 <= status < 300:
            try:
                return json.loads(text) if text else {}
            except ValueError:
                raise DeliveryError(f"{what}: answer is not JSON", retryable=True) from None
        detail = f"{what}: HTTP {status} {text[:200]}".strip()
        wait = _seconds(retry_after)
        if status in (420, 429):
            raise DeliveryError(
                f"{what}: rate limited (HTTP {status})", retryable=True, retry_after_s=wait
            )
        # 401/403: a key to fix (retried meanwhile); 404: the page or incident is gone;
        # 400/422: the incident we send is refused as it is
        raise DeliveryError(
            detail, retryable=status >= 500 or status in (401, 403, 408), retry_after_s=wait
        )

    def _incident(self, message: Outbound) -> dict[str, Any]:
        fields = message.fields
        body: dict[str, Any] = {
            "status": fields["status"],
            "body": message.text,
            "deliver_notifications": True,
        }
        components = fields.get("components")
        if isinstance(components, dict) and components:
            body["components"] = components
            body["component_ids"] = list(components)
        if fields.get("impact_override"):
            body["impact_override"] = fields["impact_override"]
        if message.title:
            body["name"] = message.title[:255]
        return body

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        incident = self._incident(message)
        # the key of the message that created it (an update names the creating incident's:
        # one that took the page's incident over from a lost record makes it its own), and
        # the incident's group: found again by an incident whose record was lost
        key = str(message.fields["key"])
        mark = {"key": key if message.op == "create" else key.rpartition(":")[0] + ":create"}
        if message.fields.get("incident_group"):
            mark["group"] = str(message.fields["incident_group"])
        if message.shared:
            # the components' public incident: what an incident of any of their groups
            # takes over when the store lost its record
            mark["shared"] = message.shared.rpartition(":")[2]
        incident["metadata"] = {"responder": mark}
        if message.op == "create":
            created = await self._call("POST", self._base, {"incident": incident})
            return {"id": str(created["id"]), "shortlink": created.get("shortlink")}
        incident_id = refs.get("id")
        if not incident_id:
            return {}
        await self._call("PATCH", f"{self._base}/{incident_id}", {"incident": incident})
        return {}

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        if message.op != "create":
            # an update sets a status: one already in place was sent
            incident_id = refs.get("id")
            if not incident_id:
                return None
            current = await self._call("GET", f"{self._base}/{incident_id}")
            return {} if current.get("status") == message.fields.get("status") else None
        key = str(message.fields["key"])
        for found in await self._call("GET", f"{self._base}/unresolved"):
            meta = (found.get("metadata") or {}).get("responder") or {}
            if meta.get("key") == key:
                return {"id": str(found["id"]), "shortlink": found.get("shortlink")}
        return None

    async def find_open(self, message: Outbound, *, group: str, since: float) -> list[OpenThread]:
        if message.op != "create":
            return []
        if message.shared:
            shared = message.shared.rpartition(":")[2]
            return [
                t
                for t in await self.open_threads((), since=since)
                if t.shown.get("shared") == shared
            ]
        return [
            t for t in await self.open_threads((), since=since) if t.shown.get("group") == group
        ]

    async def open_threads(self, where: Collection[str], *, since: float) -> list[OpenThread]:
        """The page's unresolved incidents that we created (every one: the page lists
        them all, ``since`` is not needed)."""
        found: list[OpenThread] = []
        for listed in await self._call("GET", f"{self._base}/unresolved"):
            meta = (listed.get("metadata") or {}).get("responder") or {}
            if meta.get("key"):
                refs: dict[str, JsonValue] = {
                    "id": str(listed["id"]),
                    "shortlink": listed.get("shortlink"),
                }
                found.append(OpenThread(refs, str(meta["key"]), dict(meta)))
        return found

    async def mark_lost(self, thread: OpenThread, note: str) -> None:
        # the public page is not told about our records: the Slack thread and the log are
        return None

    async def close(self) -> None:
        return None  # the shared session is closed with the app


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
