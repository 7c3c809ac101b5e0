"""Slack sinks, through slack-sdk: the Web API (root message, thread replies, edits) with
a bot token, or an incoming webhook (messages only: no threads, no edits).

A reply the planner will edit later (an approval request, once decided) names a ref in
``fields["keeps"]``: the sink answers its ts (and its key) under that name, and an edit
naming it in ``fields["edits"]`` changes that reply instead of the root.

The clients retry nothing themselves: the delivery layer retries with backoff, honouring
Retry-After, and keeps the thread in order while it waits.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import JsonValue
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from responder.adapters.http import maybe_sent
from responder.domain.notification import Outbound
from responder.ports import DeliveryError, NoThreadLookup, OpenThread

METADATA_EVENT = "responder_message"
_MAX_LIST_PAGES = 20  # conversations.list pages read to find a channel by name
# Looking for a message sent before a crash: history (or thread) pages of this size, from
# the first try's time on, at most this many (newest first: a busy channel's 1,000 newest)
_FIND_PAGE_SIZE = 100
_MAX_FIND_PAGES = 10
# Our clock and Slack's may disagree: the history is read from this long before the try
_CLOCK_SKEW_S = 300.0
# What a root shows once nothing follows it any more: resolved, or its record lost (marked)
_RESOLVED = frozenset({"RESOLVED"})
_CLOSED = _RESOLVED | {"LOST"}
_TEXT_MAX = 39_000  # chat.update's text limit is 40,000

# ok:false errors worth another try: Slack's own trouble, and configuration an operator
# can fix while messages wait (a revoked token, the bot not in the channel). The others
# say the message itself is wrong, and trying it again would fail the same way.
_RETRYABLE_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
    }
)


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _api_error(method: str, exc: SlackApiError) -> DeliveryError:
    response = exc.response
    status = response.status_code
    error = str(response.get("error", "")) if isinstance(response.data, dict) else ""
    retry_after = _retry_after(response.headers)
    if status == 429 or error == "ratelimited":
        return DeliveryError(
            f"{method}: rate limited (HTTP {status})", retryable=True, retry_after_s=retry_after
        )
    if status >= 500:
        return DeliveryError(f"{method}: HTTP {status}", retryable=True, retry_after_s=retry_after)
    if error:
        return DeliveryError(f"{method}: {error}", retryable=error in _RETRYABLE_ERRORS)
    return DeliveryError(f"{method}: HTTP {status}", retryable=status in (408, 425))


def _metadata(message: Outbound, *, key: str | None = None) -> dict[str, Any]:
    # marks the message with its idempotency key, so that a worker that died between
    # posting and recording can be told it did post; a root also with its incident's group
    # and the status it shows, so that an incident whose record the store lost can find
    # its root again (find_open)
    payload: dict[str, Any] = {"key": key or str(message.fields["key"])}
    if message.fields.get("incident_group"):
        payload["group"] = str(message.fields["incident_group"])
    if message.shows.get("status"):
        payload["status"] = str(message.shows["status"])
    return {"event_type": METADATA_EVENT, "event_payload": payload}


# a bot that may not upload files: its graph is a link instead (asking again is no use)
_NO_UPLOADS = frozenset({"missing_scope", "not_allowed_token_type"})


def _has_upload(found: Mapping[str, Any], message: Outbound) -> bool:
    """Whether a message of the thread is the upload ``message`` made: Slack keeps no
    metadata on a file's message, so its file name (unique per upload) tells it."""
    if message.op != "upload":
        return False
    name = message.fields.get("filename")
    return any(isinstance(f, dict) and f.get("name") == name for f in found.get("files") or [])


def _kept(message: Outbound, ts: str) -> dict[str, JsonValue]:
    """A reply the planner edits later (``fields["keeps"]``): its ts and key under that
    name; any other: nothing to keep."""
    name = message.fields.get("keeps")
    if not isinstance(name, str) or not name:
        return {}
    return {name: {"ts": ts, "key": str(message.fields["key"])}}


def _root_key(update_key: str) -> str:
    # an edit keeps the root's own key in the metadata it rewrites (the planner's step of
    # a root is "root": SlackPlanner)
    return update_key.rpartition(":")[0] + ":root"


def web_client(
    *, token: str, base_url: str, timeout_s: float, ssl_context: ssl.SSLContext | None
) -> AsyncWebClient:
    """slack-sdk's client as every use of the bot token here wants it: no retry of its
    own (a sink's retries are scheduled by delivery with backoff; a person waiting on a
    press wants an answer or a reason, and the next press is the retry)."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=max(1, int(timeout_s)),
        ssl=ssl_context,
        retry_handlers=[],
    )


class SlackWebSink:
    """The Web API: ``chat.postMessage`` (root, replies in its thread), ``chat.update``."""

    name = "slack"

    def __init__(
        self, *, token: str, base_url: str, timeout_s: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._client = web_client(
            token=token, base_url=base_url, timeout_s=timeout_s, ssl_context=ssl_context
        )
        self._channel_ids: dict[str, str] = {}  # name → id, for find_sent

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        if message.op == "upload":
            return await self._upload_graph(message, refs)
        channel = str(refs.get("channel") or message.fields.get("channel") or "")
        root_ts = refs.get("ts")
        method = "chat.update" if message.op == "update" else "chat.postMessage"
        try:
            if message.op == "update" and message.fields.get("edits"):
                await self._edit_reply(message, refs, channel)
                return {}
            if message.op == "update":
                if not root_ts:
                    return {}  # the root was never posted (refused): nothing to edit
                await self._client.chat_update(
                    channel=channel,
                    ts=str(root_ts),
                    text=message.text,
                    blocks=message.blocks,
                    metadata=_metadata(message, key=_root_key(str(message.fields["key"]))),
                )
                return {}
            thread = str(root_ts) if message.op == "reply" and root_ts else None
            response = await self._client.chat_postMessage(
                channel=str(message.fields.get("channel") or channel)
                if message.marks == "root"
                else channel,
                text=message.text,
                blocks=message.blocks or None,
                thread_ts=thread,
                metadata=_metadata(message),
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise _api_error(method, exc) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"{method}: {type(exc).__name__}: {exc}", retryable=True, uncertain=maybe_sent(exc)
            ) from None
        if message.marks == "root":
            return {"channel": str(response["channel"]), "ts": str(response["ts"])}
        return _kept(message, str(response["ts"]))

    async def _edit_reply(
        self, message: Outbound, refs: Mapping[str, JsonValue], channel: str
    ) -> None:
        """The edit of a reply kept under ``fields["edits"]``; its metadata keeps the
        reply's own key (a lookup of that reply still finds it, and it never reads as a
        root). Nothing to edit when the reply was never posted (refused)."""
        kept = refs.get(str(message.fields["edits"]))
        if not isinstance(kept, dict) or not kept.get("ts"):
            return
        await self._client.chat_update(
            channel=channel,
            ts=str(kept["ts"]),
            text=message.text,
            blocks=message.blocks,
            metadata={
                "event_type": METADATA_EVENT,
                "event_payload": {"key": str(kept.get("key") or message.fields["key"])},
            },
        )

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        if message.op == "update":
            return None  # an edit is safe to make again
        key = str(message.fields["key"])
        # Bounded by time, not by count: every message since the first try (less the clock
        # skew), page after page, however many were posted after ours.
        after = message.fields.get("sent_after")
        oldest = (
            f"{max(float(after) - _CLOCK_SKEW_S, 0):.6f}"
            if isinstance(after, int | float)
            else None
        )
        cursor: str | None = None
        try:
            if message.marks == "root":
                # history needs the channel's id: a configured name is looked up first
                channel = await self._channel_id(str(message.fields.get("channel") or ""))
                if channel is None:
                    return None
            elif not refs.get("ts"):
                return None
            else:
                channel = str(refs["channel"])
            for _ in range(_MAX_FIND_PAGES):
                if message.marks == "root":
                    response = await self._client.conversations_history(
                        channel=channel,
                        include_all_metadata=True,
                        limit=_FIND_PAGE_SIZE,
                        oldest=oldest,
                        cursor=cursor,
                    )
                else:
                    response = await self._client.conversations_replies(
                        channel=channel,
                        ts=str(refs["ts"]),
                        include_all_metadata=True,
                        limit=_FIND_PAGE_SIZE,
                        oldest=oldest,
                        cursor=cursor,
                    )
                for found in response.get("messages") or []:
                    payload = (found.get("metadata") or {}).get("event_payload") or {}
                    if payload.get("key") == key or _has_upload(found, message):
                        if message.marks == "root":
                            return {"channel": channel, "ts": str(found["ts"])}
                        return _kept(message, str(found["ts"]))
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor or not response.get("has_more", True):
                    return None
        except SlackApiError as exc:
            raise _api_error("find message", exc) from None
        # more pages than we read since the first try: cannot tell, so it is sent again
        return None

    async def _upload_graph(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue]:
        """The error-rate graph's PNG (written by the report stage) into the thread, with
        ``files_upload_v2``. A bot without ``files:write`` (or a token that may not upload)
        gets a thread line linking to the incident page instead, once: asking again would
        be refused the same way."""
        channel, root_ts = str(refs.get("channel") or ""), refs.get("ts")
        if not channel or not root_ts:
            return {}  # the root was never posted (refused): no thread to put it in
        path = Path(str(message.fields.get("file") or ""))
        try:
            if path.suffix != ".png":
                raise OSError("not a graph's PNG")
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            # another replica's reports directory, or removed since: the link is left
            return await self._graph_link(message, channel, str(root_ts), why=None)
        try:
            await self._client.files_upload_v2(
                channel=channel,
                thread_ts=str(root_ts),
                file=data,
                filename=str(message.fields.get("filename") or path.name),
                title=message.title,
                alt_txt=str(message.fields.get("alt") or message.title),
            )
        except SlackApiError as exc:
            error = (
                str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
            )
            if error in _NO_UPLOADS:
                return await self._graph_link(message, channel, str(root_ts), why=error)
            raise _api_error("files.upload", exc) from None
        except SlackRequestError as exc:  # the upload URL refused the bytes
            raise DeliveryError(f"files.upload: {exc}", retryable=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"files.upload: {type(exc).__name__}: {exc}",
                retryable=True,
                uncertain=maybe_sent(exc),
            ) from None
        return {}

    async def _graph_link(
        self, message: Outbound, channel: str, root_ts: str, *, why: str | None
    ) -> dict[str, JsonValue]:
        page = str(message.fields.get("page") or "")
        where = (
            f"<{page}|on the incident page>"
            if page.startswith(("https://", "http://")) and not any(c in page for c in "<>| \n")
            else "beside the postmortem draft"
            + (" (the `.svg`)" if message.fields.get("draft_graph") else "")
        )
        reason = (
            " (the bot cannot upload files here: it needs Slack's `files:write` scope)"
            if why
            else ""
        )
        try:
            await self._client.chat_postMessage(
                channel=channel,
                thread_ts=root_ts,
                text=f"Error-rate graph of the incident's window: {where}{reason}",
                metadata=_metadata(message),
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise _api_error("chat.postMessage", exc) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"chat.postMessage: {type(exc).__name__}: {exc}",
                retryable=True,
                uncertain=maybe_sent(exc),
            ) from None
        return {}

    async def find_open(self, message: Outbound, *, group: str, since: float) -> list[OpenThread]:
        if message.marks != "root":
            return []
        where = str(message.fields.get("channel") or "")
        # one marked lost is taken over as well: its alert came again
        found = await self._open_roots(where, since, closed=_RESOLVED)
        return [t for t in found if t.shown.get("group") == group]

    async def open_threads(self, where: Collection[str], *, since: float) -> list[OpenThread]:
        found: dict[tuple[JsonValue, JsonValue], OpenThread] = {}
        for channel in where:  # a channel may be named twice (by name and by id)
            for thread in await self._open_roots(channel, since, closed=_CLOSED):
                found.setdefault((thread.refs["channel"], thread.refs["ts"]), thread)
        return list(found.values())

    async def mark_lost(self, thread: OpenThread, note: str) -> None:
        # read again just before the edit: an incident may have taken the thread over
        # since the channel was read (its key is then in the message's metadata)
        channel, ts = str(thread.refs["channel"]), str(thread.refs["ts"])
        try:
            response = await self._client.conversations_history(
                channel=channel,
                latest=ts,
                oldest=ts,
                inclusive=True,
                limit=1,
                include_all_metadata=True,
            )
        except SlackApiError as exc:
            raise _api_error("conversations.history", exc) from None
        now = next(iter(response.get("messages") or []), None)
        if (
            now is None
            or (now.get("metadata") or {}).get("event_payload", {}).get("key") != thread.key
        ):
            return
        payload = {**thread.shown, "status": "LOST"}
        text = f"{thread.shown.get('text') or ''}\n:warning: {note}"
        # its buttons go: they would act on an incident the store no longer holds
        blocks = [b for b in thread.shown.get("blocks") or [] if b.get("type") != "actions"]
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f":warning: {note}"}]}
        )
        payload.pop("text", None)
        payload.pop("blocks", None)
        try:
            await self._client.chat_update(
                channel=channel,
                ts=ts,
                text=text[:_TEXT_MAX],
                blocks=blocks,
                metadata={"event_type": METADATA_EVENT, "event_payload": payload},
            )
        except SlackApiError as exc:
            raise _api_error("chat.update", exc) from None

    async def _open_roots(
        self, where: str, since: float, *, closed: frozenset[str]
    ) -> list[OpenThread]:
        """Our roots in channel ``where`` that show no status of ``closed``, posted from
        ``since`` (epoch seconds, less the clock skew) on, newest first."""
        found: list[OpenThread] = []
        cursor: str | None = None
        try:
            channel = await self._channel_id(where)
            if channel is None:
                return []
            for _ in range(_MAX_FIND_PAGES):
                response = await self._client.conversations_history(
                    channel=channel,
                    include_all_metadata=True,
                    limit=_FIND_PAGE_SIZE,
                    oldest=f"{max(since - _CLOCK_SKEW_S, 0):.6f}",
                    cursor=cursor,
                )
                for posted in response.get("messages") or []:
                    metadata = posted.get("metadata") or {}
                    payload = metadata.get("event_payload") or {}
                    if (
                        metadata.get("event_type") == METADATA_EVENT
                        and str(payload.get("key", "")).endswith(":root")
                        and str(payload.get("status", "")).upper() not in closed
                    ):
                        refs: dict[str, JsonValue] = {"channel": channel, "ts": str(posted["ts"])}
                        shown = {
                            **payload,
                            "text": posted.get("text"),
                            "blocks": posted.get("blocks"),
                        }
                        found.append(OpenThread(refs, str(payload["key"]), shown))
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor or not response.get("has_more", True):
                    break
        except SlackApiError as exc:
            raise _api_error("find open roots", exc) from None
        return found

    async def _channel_id(self, channel: str) -> str | None:
        """The id of ``channel`` (given as ``#name`` or an id); ``None`` when no channel
        the bot can see has that name (nothing was posted there, then)."""
        if not channel.startswith("#"):
            return channel or None
        name = channel.removeprefix("#")
        if name in self._channel_ids:
            return self._channel_ids[name]
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            response = await self._client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            for found in response.get("channels") or []:
                self._channel_ids[str(found.get("name"))] = str(found.get("id"))
            if name in self._channel_ids:
                return self._channel_ids[name]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None and not session.closed:
            await session.close()


class SlackWebhookSink(NoThreadLookup):
    """An incoming webhook: the channel is the webhook's; nothing comes back to thread
    under or edit, so every message stands alone (the planner knows)."""

    name = "slack"

    def __init__(self, *, url: str, timeout_s: float, ssl_context: ssl.SSLContext | None) -> None:
        self._client = AsyncWebhookClient(
            url=url, timeout=max(1, int(timeout_s)), ssl=ssl_context, retry_handlers=[]
        )

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        try:
            response = await self._client.send(
                text=message.text,
                blocks=message.blocks or None,
                unfurl_links=False,
                unfurl_media=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"webhook: {type(exc).__name__}: {exc}", retryable=True, uncertain=maybe_sent(exc)
            ) from None
        status, body = response.status_code, (response.body or "").strip()
        if status == 200:
            return {}
        what = f"webhook: HTTP {status} {body[:100]}".strip()
        if status == 429 or status >= 500:
            raise DeliveryError(what, retryable=True, retry_after_s=_retry_after(response.headers))
        # 400 says the payload is wrong; 403/404/410 say the webhook is (fixable: retried)
        raise DeliveryError(what, retryable=status != 400)

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        return None  # a webhook cannot read back: sent again

    async def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None and not session.closed:
            await session.close()
