"""Slack: the bot token works (``auth.test``), it holds the scopes what is configured needs
(read off ``auth.test``'s ``X-OAuth-Scopes`` header), the Request URL the app's
Interactivity must have when the buttons are on, and the bot can post in each configured
channel (found, and the bot a member: ``conversations.info``)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from responder.check.result import Result, fail, ok, skip, warn
from responder.ingest.slack import GRANTS
from responder.rules.engine import RuleSet
from responder.settings import Settings, env_name

NAME = "slack"
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")
_ADD_SCOPE = "add it on the Slack app's OAuth & Permissions page and reinstall the app"


def configured_channels(settings: Settings, rules: RuleSet | None = None) -> list[str]:
    """The default channel, those by severity, then those the packs' rules name
    (``slack:<channel>``; a direct message to ``@someone`` is not a channel to join), each
    once."""
    named = []
    for pack in rules.packs if rules is not None else ():
        for notify in (pack.spec.defaults.notify, *(r.spec.notify for r in pack.rules)):
            named += [n.removeprefix("slack:") for n in notify if n.startswith("slack:")]
    every = [settings.slack_channel, *settings.slack_channels.values(), *named]
    return list(dict.fromkeys(c for c in every if not c.startswith("@")))


def _error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


async def check(
    settings: Settings, rules: RuleSet | None = None, *, tls: ssl.SSLContext | None = None
) -> list[Result]:
    if settings.slack_token is None:
        if settings.slack_webhook_url is not None:
            return [ok(NAME, "incoming webhook configured (not checked: checking it would post)")]
        return [skip(NAME, "not configured: incidents are told on the console")]
    client = AsyncWebClient(
        token=settings.slack_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=max(1, int(settings.notify_timeout_s)),
        ssl=tls,
        retry_handlers=[],
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = _error(exc)
        return [
            fail(
                NAME,
                f"auth.test refused the token ({error})",
                "set RESPONDER_SLACK_TOKEN to the app's bot token (xoxb-…) from its "
                "OAuth & Permissions page",
            )
        ]
    except Exception as exc:  # noqa: BLE001 - unreachable, TLS, DNS: said, not raised
        return [
            fail(
                NAME,
                f"{settings.slack_api_url} unreachable ({_error(exc)})",
                "check RESPONDER_SLACK_API_URL and the egress to Slack",
            )
        ]
    bot = str(auth.get("user") or "the bot")
    results = [ok(NAME, f"auth.test: token of {bot} in {auth.get('team')}")]
    results += _scopes(settings, _granted_scopes(auth.headers))
    results.append(_interactivity(settings))
    ids: dict[str, str] | None = None
    for channel in configured_channels(settings, rules):
        if not _CHANNEL_ID.match(channel) and ids is None:
            ids, problem = await _channel_ids(client)
            if problem is not None:
                results.append(problem)
                return results
        results.append(await _channel(client, channel, ids or {}, bot))
    return results


def _granted_scopes(headers: Mapping[str, Any]) -> frozenset[str] | None:
    """The token's scopes as Slack lists them on every Web API answer (None: no header, as
    behind a proxy that drops it)."""
    raw = next((str(v) for k, v in headers.items() if k.lower() == "x-oauth-scopes"), None)
    if raw is None:
        return None
    return frozenset(s.strip() for s in raw.split(",") if s.strip())


def _group_grants(settings: Settings) -> list[str]:
    """The RESPONDER_SLACK_*_BY settings that name a user group (S…)."""
    return [
        env_name(name)
        for name in dict.fromkeys(GRANTS.values())
        if any(g.startswith("S") for g in getattr(settings, name))
    ]


def _scopes(settings: Settings, scopes: frozenset[str] | None) -> list[Result]:
    if scopes is None:
        return [
            warn(
                NAME,
                "the bot's scopes were not readable: auth.test answered without the "
                "X-OAuth-Scopes header (a proxy on the way drops it?)",
                "check on the Slack app's OAuth & Permissions page that the bot has "
                "chat:write, files:write and usergroups:read",
            )
        ]
    results = []
    if "chat:write" not in scopes:
        results.append(
            fail(NAME, "the bot lacks the chat:write scope: nothing can be posted", _ADD_SCOPE)
        )
    # the graph's upload does not depend on the buttons: any bot token posts it on resolve
    if "files:write" not in scopes:
        results.append(
            warn(
                NAME,
                "the bot lacks the files:write scope: the error-rate graph is a link in the "
                "thread instead of an image",
                _ADD_SCOPE,
            )
        )
    grouped = _group_grants(settings)
    if settings.slack_signing_secrets and grouped and "usergroups:read" not in scopes:
        results.append(
            fail(
                NAME,
                f"the bot lacks the usergroups:read scope while {', '.join(grouped)} "
                "names user groups (S…): their members cannot be looked up, so every "
                "press granted through a group is refused",
                f"{_ADD_SCOPE}, or name users (U…) there instead",
            )
        )
    if not results:
        results.append(ok(NAME, "the bot has the scopes it needs"))
    return results


def _interactivity(settings: Settings) -> Result:
    """Whether the buttons are on, and the Request URL Slack must send their presses to."""
    path = "/v1/slack/interactions"
    base = settings.public_url.rstrip("/") if settings.public_url else None
    if not settings.slack_signing_secrets:
        return skip(
            NAME,
            "buttons off (RESPONDER_SLACK_SIGNING_SECRETS unset: messages say how to answer "
            "through the admin API or the CLI); to turn them on, turn on Interactivity in "
            f"the Slack app with the Request URL {base or 'https://<host>'}{path} and set "
            "RESPONDER_SLACK_SIGNING_SECRETS to its signing secret",
        )
    if base is None:
        return warn(
            NAME,
            "buttons on, but RESPONDER_PUBLIC_URL is unset: the Request URL the Slack app "
            "must have cannot be told, and Slack's messages cannot link the incident page",
            "set RESPONDER_PUBLIC_URL to the URL Slack and people reach responder at; the "
            f"app's Interactivity Request URL is then that URL followed by {path}",
        )
    return ok(
        NAME,
        f"buttons on: the Slack app's Interactivity must have the Request URL {base}{path}",
    )


async def _channel_ids(client: AsyncWebClient) -> tuple[dict[str, str], Result | None]:
    """Channel names to ids (conversations.list, every page: bounded by a page count)."""
    ids: dict[str, str] = {}
    cursor = None
    for _ in range(100):
        try:
            page = await client.conversations_list(cursor=cursor, limit=200, exclude_archived=True)
        except SlackApiError as exc:
            return ids, fail(
                NAME,
                f"cannot list channels to find them by name ({_error(exc)})",
                "give the bot the channels:read scope, or name channels by id (C…) in "
                "RESPONDER_SLACK_CHANNEL and RESPONDER_SLACK_CHANNELS",
            )
        for found in page.get("channels") or []:
            ids[str(found["name"])] = str(found["id"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return ids, None


async def _channel(client: AsyncWebClient, channel: str, ids: dict[str, str], bot: str) -> Result:
    channel_id = channel if _CHANNEL_ID.match(channel) else ids.get(channel.removeprefix("#"))
    missing = fail(
        NAME,
        f"channel {channel} not found",
        f"create {channel}, or fix RESPONDER_SLACK_CHANNEL / RESPONDER_SLACK_CHANNELS "
        "(only public channels are found by name: name a private one by its id, C…)",
    )
    if channel_id is None:
        return missing
    try:
        info = await client.conversations_info(channel=channel_id)
    except SlackApiError as exc:
        if _error(exc) == "channel_not_found":
            return missing
        return fail(
            NAME,
            f"channel {channel}: conversations.info failed ({_error(exc)})",
            "give the bot the channels:read scope",
        )
    found = info.get("channel") or {}
    if found.get("is_archived"):
        return fail(NAME, f"channel {channel} is archived", f"unarchive {channel} or name another")
    if not found.get("is_member"):
        return fail(
            NAME,
            f"the bot is not a member of {channel}: it cannot post there",
            f"invite it: /invite @{bot} in {channel}",
        )
    return ok(NAME, f"can post in {channel}")
