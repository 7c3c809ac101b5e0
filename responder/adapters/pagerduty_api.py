"""PagerDuty through the ``pagerduty`` package: notes on incidents and their
acknowledgement (REST API v2), and alerts (Events API v2).

The package is synchronous (httpx2), so every call runs in a worker thread. Its own retry
loops would sleep in that thread (429 without limit by default): they are cut down to one
immediate retry, no sleep, and the delivery layer does the waiting, honouring Retry-After.
Error messages are built here from the status alone: the package's own may quote part of
the key.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pagerduty import EventsApiV2Client, RestApiV2Client
from pagerduty.errors import Error as PagerDutyError
from pagerduty.errors import HttpError
from pydantic import JsonValue

from responder.domain.notification import Outbound
from responder.ports import DeliveryError, NoThreadLookup
from responder.render.inert import one_line

T = TypeVar("T")


def _tame(client: Any, timeout_s: float) -> None:
    # Each send is bounded: two requests at most (the package retries a 429 once, at
    # once), each within the timeout, no sleeping; transport errors raise at once.
    client.timeout = timeout_s
    client.retry = {429: 1}
    client.sleep_timer = 0.0
    client.max_network_attempts = 0


def _marker(message: Outbound) -> str:
    return f"[ref {message.fields['key']}]"


class PagerDutySink(NoThreadLookup):  # the Events API cannot be read back
    name = "pagerduty"

    def __init__(
        self,
        *,
        api_key: str | None,
        from_email: str | None,
        api_url: str,
        events_url: str,
        routing_key: str | None,
        timeout_s: float,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        # a thread stuck past the delivery timeout must not post later: keep under it
        per_request = max(0.5, timeout_s / 2.5)
        self._rest: RestApiV2Client | None = None
        self._events: EventsApiV2Client | None = None
        if api_key:
            self._rest = RestApiV2Client(
                api_key, default_from=from_email, base_url=api_url, verify=verify
            )
            _tame(self._rest, per_request)
        if routing_key:
            self._events = EventsApiV2Client(routing_key, base_url=events_url, verify=verify)
            _tame(self._events, per_request)

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except HttpError as exc:
            response = exc.response
            if response is None:
                raise DeliveryError(f"{what}: no answer", retryable=True) from None
            status = response.status_code
            retry_after = response.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            if status == 429:
                raise DeliveryError(
                    f"{what}: rate limited (HTTP 429)", retryable=True, retry_after_s=wait
                ) from None
            detail = _error_message(response)
            # 401/403: a key to fix (retried meanwhile); other 4xx: refused as sent
            raise DeliveryError(
                f"{what}: HTTP {status}{detail}",
                retryable=status >= 500 or status in (401, 403, 408),
                retry_after_s=wait,
            ) from None
        except PagerDutyError as exc:
            cause = exc.__cause__
            kind = type(cause).__name__ if cause is not None else "error"
            raise DeliveryError(f"{what}: {kind} (no answer)", retryable=True) from None

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        fields = message.fields
        if message.op == "note":
            rest = self._rest
            if rest is None:
                return {}
            incident = str(fields["incident_id"])
            content = f"{message.text}\n{_marker(message)}"
            await self._call(
                f"POST /incidents/{incident}/notes",
                lambda: rest.rpost(
                    f"/incidents/{incident}/notes", json={"note": {"content": content}}
                ),
            )
            return {}
        if message.op == "acknowledge_incident":
            # (a name of its own: the note's lambda above must see its client as not None)
            api = self._rest
            if api is None:
                return {}
            incident = str(fields["incident_id"])
            # idempotent at PagerDuty: acknowledging an acknowledged incident changes
            # nothing; a resolved one answers 400 ("Incident Already Resolved"): refused
            # for good as a 4xx not about the key is, its reason on the timeline, no retry
            await self._call(
                f"PUT /incidents/{incident}",
                lambda: api.rput(
                    f"/incidents/{incident}",
                    json={"incident": {"type": "incident_reference", "status": "acknowledged"}},
                ),
            )
            return {}
        events = self._events
        if events is None:
            return {}
        key = str(fields["dedup_key"])
        if message.op == "trigger":
            details = fields.get("custom_details")
            # the summary and these are one-line fields of the alert PagerDuty shows
            payload = {
                k: one_line(str(fields[k]))
                for k in ("component", "group", "class")
                if fields.get(k)
            }
            await self._call(
                "Events API trigger",
                lambda: events.trigger(
                    summary=one_line(message.text),
                    source=str(fields.get("source") or "responder"),
                    dedup_key=key,
                    severity=str(fields.get("severity") or "error"),
                    payload=payload or None,
                    custom_details=details if isinstance(details, dict) else None,
                ),
            )
            return {"dedup_key": key}
        if message.op == "resolve":
            await self._call("Events API resolve", lambda: events.resolve(key))
            return {}
        if message.op == "acknowledge":
            await self._call("Events API acknowledge", lambda: events.acknowledge(key))
            return {}
        raise DeliveryError(f"unknown PagerDuty operation {message.op}", retryable=False)

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        if message.op != "note" or self._rest is None:
            # events are idempotent by their dedup key, an incident's ack by its status:
            # sent again
            return None
        rest = self._rest
        incident = str(message.fields["incident_id"])
        notes = await self._call(
            f"GET /incidents/{incident}/notes", lambda: rest.rget(f"/incidents/{incident}/notes")
        )
        marker = _marker(message)
        if isinstance(notes, list) and any(marker in str(n.get("content", "")) for n in notes):
            return {}
        return None

    async def close(self) -> None:
        for client in (self._rest, self._events):
            if client is not None:
                await asyncio.to_thread(client.close)


def _error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            # REST's reasons ("Incident Already Resolved") say more than its message
            # ("Invalid Input Provided"): a few of them, each one line, kept short
            reasons = error.get("errors")
            told = (
                "; ".join(one_line(str(r))[:120] for r in reasons[:3])
                if isinstance(reasons, list)
                else ""
            )
            return f" ({error['message']}: {told})" if told else f" ({error['message']})"
        if body.get("message"):
            return f" ({body['message']})"
    return ""
