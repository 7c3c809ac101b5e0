"""Slack: the bot token works (``auth.test``) and the bot can post in each configured
channel (found, and the bot a member: ``conversations.info``)."""

from __future__ import annotations

import re
import ssl

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from responder.check.result import Result, fail, ok, skip
from responder.rules.engine import RuleSet
from responder.settings import Settings

NAME = "slack"
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")


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
    ids: dict[str, str] | None = None
    for channel in configured_channels(settings, rules):
        if not _CHANNEL_ID.match(channel) and ids is None:
            ids, problem = await _channel_ids(client)
            if problem is not None:
                results.append(problem)
                return results
        results.append(await _channel(client, channel, ids or {}, bot))
    return results


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
