"""The Slack Web API calls of the interactions route (``SlackPeople``), through slack-sdk
with the bot token: ``usergroups.users.list`` (who a user-group grant names) and
``chat.postEphemeral`` (a refusal only its presser sees).

Apart from the sink (``adapters/slack.py``): these answer a person now, not an incident's
thread later, so they are neither retried nor recorded; a failure is the caller's to say.
"""

from __future__ import annotations

import ssl

import aiohttp
from slack_sdk.errors import SlackApiError

from responder.adapters.slack import web_client
from responder.ports import SlackLookupError


def _reason(method: str, exc: BaseException) -> SlackLookupError:
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = str(response.get("error", "")) if isinstance(response.data, dict) else ""
        status = response.status_code
        if status == 429:
            return SlackLookupError(f"{method}: rate limited by Slack")
        return SlackLookupError(f"{method}: {error or f'HTTP {status}'}")
    # no exception text: an aiohttp error may quote the URL, and the URL is the API base
    return SlackLookupError(f"{method}: {type(exc).__name__} (Slack not reached in time)")


class SlackWebPeople:
    def __init__(
        self, *, token: str, base_url: str, timeout_s: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        # a person waits: one answer or a reason, not a retry loop (the cache and the
        # next press are the retry)
        self._client = web_client(
            token=token, base_url=base_url, timeout_s=timeout_s, ssl_context=ssl_context
        )

    async def group_members(self, group_id: str) -> frozenset[str]:
        method = "usergroups.users.list"
        try:
            response = await self._client.usergroups_users_list(usergroup=group_id)
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
            raise _reason(method, exc) from None
        users = response.get("users")
        if not isinstance(users, list):
            raise SlackLookupError(f"{method}: no users in Slack's answer")
        return frozenset(str(u) for u in users)

    async def tell_privately(self, *, channel: str, user: str, text: str) -> None:
        method = "chat.postEphemeral"
        try:
            await self._client.chat_postEphemeral(channel=channel, user=user, text=text)
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
            raise _reason(method, exc) from None

    async def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None and not session.closed:
            await session.close()
