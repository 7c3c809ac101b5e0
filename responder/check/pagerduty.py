"""PagerDuty: the REST key is valid, ``From`` is one of the account's users (notes are
refused otherwise), and the Events API routing key is well formed (checking it further
would page someone)."""

from __future__ import annotations

import re
import ssl

import aiohttp

from responder.check.result import Result, fail, ok, skip
from responder.settings import Settings

NAME = "pagerduty"
ACCEPT = "application/vnd.pagerduty+json;version=2"
_ROUTING_KEY = re.compile(r"^[A-Za-z0-9]{32}$")


async def check(settings: Settings, *, tls: ssl.SSLContext | None = None) -> list[Result]:
    if settings.pagerduty_api_key is None and settings.pagerduty_routing_key is None:
        return [skip(NAME, "not configured: no pages and no notes")]
    results: list[Result] = []
    if settings.pagerduty_api_key is not None:
        results += await _rest(settings, tls)
    if settings.pagerduty_routing_key is not None:
        results.append(_routing_key(settings.pagerduty_routing_key.get_secret_value()))
    return results


def _routing_key(key: str) -> Result:
    if _ROUTING_KEY.match(key):
        return ok(NAME, "routing key well formed (32 characters)")
    return fail(
        NAME,
        f"the routing key is not an Events API v2 integration key ({len(key)} characters, "
        "32 letters and digits expected)",
        "set RESPONDER_PAGERDUTY_ROUTING_KEY to the Integration Key of the service's "
        "Events API v2 integration",
    )


async def _rest(settings: Settings, tls: ssl.SSLContext | None) -> list[Result]:
    assert settings.pagerduty_api_key is not None
    sender = settings.pagerduty_from or ""
    headers = {
        "Authorization": f"Token token={settings.pagerduty_api_key.get_secret_value()}",
        "Accept": ACCEPT,
    }
    url = f"{settings.pagerduty_api_url.rstrip('/')}/users"
    timeout = aiohttp.ClientTimeout(total=settings.notify_timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                url,
                params={"query": sender},
                headers=headers,
                ssl=tls if tls is not None else True,
            ) as answer,
        ):
            status = answer.status
            body = await answer.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [
            fail(
                NAME,
                f"{settings.pagerduty_api_url} unreachable ({type(exc).__name__})",
                "check RESPONDER_PAGERDUTY_API_URL, RESPONDER_CA_FILE and the egress to PagerDuty",
            )
        ]
    if status in (401, 403):
        return [
            fail(
                NAME,
                f"the REST API key is refused ({status})",
                "set RESPONDER_PAGERDUTY_API_KEY to a REST API key (Integrations → API "
                "Access Keys) that may write notes",
            )
        ]
    users = body.get("users") if isinstance(body, dict) else None
    if status != 200 or not isinstance(users, list):
        return [fail(NAME, f"listing users answered {status}", "retry; check PagerDuty's status")]
    results = [ok(NAME, "REST API key valid")]
    emails = {str(u.get("email", "")).lower() for u in users if isinstance(u, dict)}
    if sender.lower() in emails:
        results.append(ok(NAME, f"From {sender} is a PagerDuty user"))
    else:
        results.append(
            fail(
                NAME,
                f"From {sender} is not a user of this PagerDuty account: notes are refused",
                "set RESPONDER_PAGERDUTY_FROM to the email of a PagerDuty user",
            )
        )
    return results
