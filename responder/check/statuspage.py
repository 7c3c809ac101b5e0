"""Statuspage: the API key opens the page, and each configured component is on it."""

from __future__ import annotations

import ssl

import aiohttp

from responder.check.result import Result, fail, ok, skip
from responder.settings import Settings

NAME = "statuspage"


async def check(settings: Settings, *, tls: ssl.SSLContext | None = None) -> list[Result]:
    if settings.statuspage_api_key is None or settings.statuspage_page_id is None:
        return [skip(NAME, "not configured: no public status page incidents")]
    page = settings.statuspage_page_id
    url = f"{settings.statuspage_api_url.rstrip('/')}/pages/{page}/components"
    headers = {"Authorization": f"OAuth {settings.statuspage_api_key.get_secret_value()}"}
    timeout = aiohttp.ClientTimeout(total=settings.notify_timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, ssl=tls if tls is not None else True) as answer,
        ):
            status = answer.status
            body = await answer.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [
            fail(
                NAME,
                f"{settings.statuspage_api_url} unreachable ({type(exc).__name__})",
                "check RESPONDER_STATUSPAGE_API_URL and the egress to Statuspage",
            )
        ]
    if status == 401:
        return [
            fail(
                NAME,
                "the API key is refused (401)",
                "set RESPONDER_STATUSPAGE_API_KEY to a key from the page's API info page",
            )
        ]
    if status in (403, 404):
        return [
            fail(
                NAME,
                f"page {page} not found for this key ({status})",
                "set RESPONDER_STATUSPAGE_PAGE_ID to the page id in the page's API info",
            )
        ]
    if status != 200 or not isinstance(body, list):
        return [
            fail(
                NAME,
                f"listing the components answered {status}",
                "retry; check Statuspage's status",
            )
        ]
    names = {str(c.get("id")): str(c.get("name")) for c in body if isinstance(c, dict)}
    results = [ok(NAME, f"page {page} found, {len(names)} components")]
    for component in settings.statuspage_components:
        if component in names:
            results.append(ok(NAME, f"component {component} ({names[component]}) exists"))
        else:
            results.append(
                fail(
                    NAME,
                    f"component {component} is not on page {page}",
                    "fix RESPONDER_STATUSPAGE_COMPONENTS: the page has "
                    + (", ".join(f"{i} ({n})" for i, n in names.items()) or "no components"),
                )
            )
    return results
