"""Loopback fakes of the three notification APIs the responder writes to: Slack (Web API and
incoming webhooks), the Atlassian Statuspage *management* API and PagerDuty (REST API v2 and
Events API v2). Each is an aiohttp server in the test's event loop, on 127.0.0.1 and a port
the OS picks, used as an async context manager. They follow the public wire formats of
those APIs (paths, headers, status codes, error bodies) so that the *real* client libraries
(slack_sdk, aiohttp, the ``pagerduty`` package) can be pointed at them unchanged::

    async with FakeSlack() as slack, FakeStatuspage() as sp, FakePagerDuty() as pd:
        web = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        posted = await web.chat_postMessage(channel="#incidents", text="HighErrorRate")
        assert slack.roots("#incidents")[0].ts == posted["ts"]

        async with aiohttp.ClientSession(headers={"Authorization": "OAuth sp-key"}) as http:
            await http.post(f"{sp.api_url}/pages/page123/incidents", json={"incident": {...}})

        pd.add_incident("PABC123")
        rest = RestApiV2Client(pd.api_key, default_from="bot@example.com",
                               base_url=pd.url, verify=pd.ssl_context())
        await asyncio.to_thread(rest.rpost, "/incidents/PABC123/notes",
                                json={"content": "triage: ..."})

        slack.rate_limit(retry_after=1, times=1)    # the next request: 429 + Retry-After: 1
        sp.rate_limit(status=420, retry_after=2)    # every request: 420 until respond_normally()
        pd.fail_with(503, times=2, api="events")    # the next two Events API calls: 503

Failure modes (``rate_limit``, ``fail_with``, ``slow``, ``hang``, and Slack's ``error``)
apply to every request, or to the next ``times`` ones, until ``respond_normally()``; on
FakeSlack they can be limited to one Web API method (``method="chat.update"``, or
``"webhook"`` for incoming webhooks), on FakePagerDuty to one API (``api="events"`` or
``"rest"``): other requests are answered normally and do not count against ``times``. A
request answered with a failure changes no state (no message stored, no incident created).
``slow`` answers normally after a delay; if the client gives up first its handler is cancelled
and nothing is stored. ``slow`` and ``hang`` are released at once when the fake closes. Every
request is recorded in ``.requests`` whatever the mode.

**Trusting FakePagerDuty's certificate.** The ``pagerduty`` clients refuse base URLs that are
not ``https://``, so FakePagerDuty serves TLS with a certificate for ``127.0.0.1`` issued by a
throw-away CA (``trustme``; one CA per test session). Both clients are ``httpx2.Client``
subclasses and pass extra keyword arguments to it, so::

    RestApiV2Client(pd.api_key, default_from="bot@example.com", base_url=pd.url,
                    verify=pd.ssl_context())
    EventsApiV2Client(pd.routing_key, base_url=pd.url, verify=pd.ssl_context())

``verify=pd.ca_file`` (a path) also works, but httpx2 emits a DeprecationWarning for it, which
this suite's ``filterwarnings = error`` turns into a failure: pass the ``ssl.SSLContext``.
Code that builds its client without ``verify`` can be made to trust the fake by setting
``SSL_CERT_FILE=pd.ca_file`` *before* the client is constructed (httpx2 reads it with
``trust_env=True``, the default). A client that trusts only the system CAs fails the TLS
handshake (``CERTIFICATE_VERIFY_FAILED``): verification is really on. aiohttp clients pass
``ssl=pd.ssl_context()``.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import secrets
import ssl
import string
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import trustme
from aiohttp import web
from multidict import MultiDict, MultiMapping

from tests.support.recording import RECORDED, Mode, RecordedRequest, RecordingFake

# ------------------------------------------------------------------------------- shared


def _iso_now(timespec: str = "milliseconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _html_error(status: int) -> str:
    """What a front proxy answers on a 5xx: a short HTML page, not the API's JSON."""
    reason = web.Response(status=status).reason
    return f"<html><body><h1>{status} {reason}</h1></body></html>\n"


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    reason = "Enhance Your Calm" if status == 420 else None  # 420 is not in http.HTTPStatus
    return web.json_response(body, status=status, reason=reason, headers=headers)


def _text(
    status: int, body: str | bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    raw = body.encode() if isinstance(body, str) else body
    reason = "Enhance Your Calm" if status == 420 else None
    return web.Response(
        body=raw, status=status, reason=reason, content_type=content_type, headers=headers
    )


def _truthy(value: Any) -> bool:
    """Slack booleans arrive as JSON true, or "1"/"true" in a query string or form."""
    return value is True or value == 1 or (isinstance(value, str) and value in {"1", "true"})


def _nest_form(fields: MultiMapping[str]) -> dict[str, Any]:
    """Rails-style nesting of form fields, as Statuspage reads them:
    ``incident[components][cmp1]=major_outage`` and ``incident[component_ids][]=cmp1``."""
    root: dict[str, Any] = {}
    for key, value in fields.items():
        head = key.split("[", 1)[0]
        parts = [head, *re.findall(r"\[([^\]]*)\]", key[len(head) :])]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            following = None if last else parts[i + 1]
            if isinstance(node, list):  # "[]": append
                if last:
                    node.append(value)
                else:
                    node.append([] if following == "" else {})
                    node = node[-1]
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if following == "" else {})
    return root


class _NotifyFake(RecordingFake):
    """The three fakes record each request's parsed body; each answers its failure modes
    as its real API does (``_failure_response``)."""

    async def _parse(self, request: web.Request) -> tuple[Any, str | None]:
        return await _read_body(request), None


async def _read_body(request: web.Request) -> Any:
    """JSON if the body is JSON, form fields (last value wins) if form-encoded, else the raw
    text (None when empty). Never raises: the handler decides what is malformed."""
    raw = await request.read()
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if request.content_type == "application/x-www-form-urlencoded":
        return dict((await request.post()).items())
    try:
        return json.loads(text)
    except ValueError:
        return text


# -------------------------------------------------------------------------------- slack


@dataclass
class SlackEdit:
    """A message's content before one ``chat.update``."""

    text: str
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    edited_ts: str  # when it was replaced (a Slack ts)


@dataclass
class SlackMessage:
    channel: str  # the channel id
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    thread_ts: str | None = None  # the parent's ts for a reply, None for a top-level message
    metadata: dict[str, Any] | None = None
    reply_broadcast: bool = False
    edits: list[SlackEdit] = field(default_factory=list)  # earlier versions, oldest first
    args: dict[str, Any] = field(default_factory=dict)  # everything the client sent
    files: list[dict[str, Any]] | None = None  # a file share's files, as Slack lists them

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None


@dataclass
class SlackFile:
    """A file uploaded through ``files.getUploadURLExternal``, the upload URL and
    ``files.completeUploadExternal``."""

    id: str
    name: str
    length: int
    alt_txt: str | None
    data: bytes | None = None  # None until the bytes reached the upload URL
    title: str | None = None
    channel: str | None = None  # where it was shared (None: not yet, or private)
    thread_ts: str | None = None


@dataclass
class SlackEphemeral:
    """A ``chat.postEphemeral``: a message only ``user`` sees, in ``channel`` (an id)."""

    channel: str
    user: str
    text: str
    message_ts: str


@dataclass
class WebhookMessage:
    path: str  # /hooks/...
    text: str | None
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    body: dict[str, Any]


@dataclass
class _Channel:
    id: str
    name: str
    messages: list[SlackMessage] = field(default_factory=list)  # in posting order


class _SlackError(Exception):
    """An ``ok: false`` answer."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")
MAX_TEXT = 40_000
MAX_BLOCKS = 50


# Block Kit's limits on an actions block and its buttons, as Slack checks them (a payload
# beyond one is refused with ``invalid_blocks``)
MAX_ACTION_ELEMENTS = 25
_BUTTON_LIMITS = {"text": 75, "action_id": 255, "value": 2000, "url": 3000}
_CONFIRM_LIMITS = {"title": 100, "text": 300, "confirm": 30, "deny": 30}


def _text_object(value: Any, limit: int, *, plain: bool) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return False
    kinds = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    return value.get("type") in kinds and 0 < len(value["text"]) <= limit


def _check_actions(block: dict[str, Any]) -> None:
    """An actions block: 1 to 25 interactive elements with distinct action ids; a button's
    label plain text, its value, action id and url within their limits, its style primary
    or danger, its confirm dialog complete (title, text, confirm, deny) and within its own."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 0 < len(elements) <= MAX_ACTION_ELEMENTS:
        raise _SlackError("invalid_blocks")
    ids = [e.get("action_id") for e in elements if isinstance(e, dict) and e.get("action_id")]
    if len(ids) != len(set(ids)):
        raise _SlackError("invalid_blocks")
    for element in elements:
        if not isinstance(element, dict) or element.get("type") != "button":
            continue
        if not _text_object(element.get("text"), _BUTTON_LIMITS["text"], plain=True):
            raise _SlackError("invalid_blocks")
        for name in ("action_id", "value", "url"):
            if name in element and not (
                isinstance(element[name], str) and len(element[name]) <= _BUTTON_LIMITS[name]
            ):
                raise _SlackError("invalid_blocks")
        if element.get("style", "primary") not in ("primary", "danger"):
            raise _SlackError("invalid_blocks")
        confirm = element.get("confirm")
        if confirm is not None and not (
            isinstance(confirm, dict)
            and all(
                _text_object(confirm.get(name), limit, plain=name != "text")
                for name, limit in _CONFIRM_LIMITS.items()
            )
        ):
            raise _SlackError("invalid_blocks")


def _ts_value(ts: Any) -> Decimal | None:
    try:
        return Decimal(str(ts))
    except (InvalidOperation, ValueError):
        return None


class FakeSlack(_NotifyFake):
    """Slack's Web API under ``/api/`` (``chat.postMessage``, ``chat.update``,
    ``conversations.replies``, ``conversations.history``, ``auth.test``,
    ``chat.postEphemeral``: kept in ``ephemerals``; ``usergroups.users.list``: the groups
    ``add_usergroup`` made, else ``no_such_subteam``) and incoming webhooks under ``/hooks/``.
    Answers to the bot token carry its ``scopes`` in ``X-OAuth-Scopes``.

    Channels are named without their ``#`` (``"#incidents"`` and ``"incidents"`` are the same
    one) and get a stable id (``C`` + digits) when first used; a name in ``missing_channels``
    is never created (``channel_not_found``); a name in ``outside_channels`` exists but the bot
    is not a member of it (``conversations.info`` says ``is_member: false``; posting is not
    refused here). Messages' ``metadata`` is returned by
    ``conversations.history``/``replies`` only with ``include_all_metadata``, as Slack does.
    """

    # what responder's bot needs (README, "Slack buttons"), and what finds messages again
    BOT_SCOPES = (
        "chat:write",
        "files:write",
        "usergroups:read",
        "channels:read",
        "channels:history",
    )
    bot_user_id = "U0000000BOT"
    bot_id = "B0000000BOT"
    team_id = "T0000000001"

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        channels: Iterable[str] = (),
        missing_channels: Iterable[str] = (),
        outside_channels: Iterable[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.token = token
        self.missing_channels = {self._name(c) for c in missing_channels}
        self.outside_channels = {self._name(c) for c in outside_channels}
        self.webhook_messages: list[WebhookMessage] = []
        # files by id; ``files_write``: the token has the files:write scope (False: the
        # upload methods answer missing_scope, as Slack does)
        self.files: dict[str, SlackFile] = {}
        self.files_write = True
        # the bot token's scopes, sent as Slack does in ``X-OAuth-Scopes`` on every Web API
        # answer to the token (None: no header, as behind a proxy that drops it); what is
        # called is not refused for a scope missing here (``files_write`` does that)
        self.scopes: list[str] | None = list(self.BOT_SCOPES)
        self._channels: dict[str, _Channel] = {}  # by id
        self._ids: dict[str, str] = {}  # name -> id
        self._last_ts_us = 0
        self._init_people()
        for name in channels:
            self.add_channel(name)

    # -- urls

    @property
    def api_url(self) -> str:
        """The Web API base for ``AsyncWebClient(base_url=...)``; ends with ``/api/``."""
        return f"{self.url}/api/"

    @property
    def webhook_url(self) -> str:
        """An incoming-webhook URL (any path under ``/hooks/`` is accepted)."""
        return f"{self.url}/hooks/T0000000001/B0000000001/fakewebhooksecret"

    # -- channels

    @staticmethod
    def _name(name: str) -> str:
        return name.removeprefix("#")

    def add_channel(self, name: str) -> str:
        """Create the channel (if new) and return its id."""
        name = self._name(name)
        if name in self.missing_channels:
            raise KeyError(f"channel {name!r} is in missing_channels")
        if name not in self._ids:
            channel_id = f"C{len(self._ids) + 1:010d}"
            self._ids[name] = channel_id
            self._channels[channel_id] = _Channel(channel_id, name)
        return self._ids[name]

    def channel_id(self, name: str) -> str:
        """The id of a channel name (``#`` optional), creating the channel as a post would;
        an id is returned as it is."""
        if name in self._channels:
            return name
        return self.add_channel(name)

    def _channel(self, name_or_id: str) -> _Channel:
        if name_or_id in self._channels:
            return self._channels[name_or_id]
        name = self._name(name_or_id)
        if name in self._ids:
            return self._channels[self._ids[name]]
        raise KeyError(f"no channel {name_or_id!r}; there are {sorted(self._ids)}")

    def _resolve(self, channel: Any, *, create: bool) -> _Channel:
        """A channel argument of a Web API call: an id, or a name when ``create``."""
        if not isinstance(channel, str) or not channel:
            raise _SlackError("channel_not_found")
        if channel in self._channels:
            return self._channels[channel]
        if _CHANNEL_ID.match(channel) or not create:
            raise _SlackError("channel_not_found")  # an unknown id, or a name where ids only
        name = self._name(channel)
        if name in self.missing_channels:
            raise _SlackError("channel_not_found")
        return self._channels[self.add_channel(name)]

    # -- inspection

    def messages(self, channel: str) -> list[SlackMessage]:
        """Every message of a channel (name or id), top-level and replies, in posting order."""
        return list(self._channel(channel).messages)

    def roots(self, channel: str) -> list[SlackMessage]:
        """Top-level messages, oldest first."""
        return [m for m in self._channel(channel).messages if m.thread_ts is None]

    def replies(self, channel: str, ts: str) -> list[SlackMessage]:
        """The replies in the thread of ``ts`` (not the parent), oldest first."""
        return [m for m in self._channel(channel).messages if m.thread_ts == ts]

    def message(self, channel: str, ts: str) -> SlackMessage:
        for m in self._channel(channel).messages:
            if m.ts == ts:
                return m
        raise KeyError(f"no message {ts} in {channel}")

    # -- failure modes

    def rate_limit(
        self, retry_after: int = 1, times: int | None = None, *, method: str | None = None
    ) -> None:
        """HTTP 429 with ``Retry-After: <retry_after>`` and ``{"ok":false,"error":"ratelimited"}``
        (plain text ``rate_limited`` on webhooks)."""
        self._set_mode(
            Mode("rate_limit", status=429, retry_after=retry_after, remaining=times, scope=method)
        )

    def fail_with(
        self,
        status: int = 500,
        body: Any = None,
        *,
        content_type: str | None = None,
        times: int | None = None,
        method: str | None = None,
    ) -> None:
        """Answer ``status``. ``body``: a dict/list is sent as JSON, a str/bytes as it is (as
        ``content_type``, by default text/plain on webhooks, text/html on the Web API); None:
        a short HTML error page on the Web API, plain text ``internal_error`` on webhooks."""
        self._set_mode(
            Mode(
                "status",
                status=status,
                body=body,
                content_type=content_type,
                remaining=times,
                scope=method,
            )
        )

    def error(
        self, error: str = "ratelimited", times: int | None = None, *, method: str | None = None
    ) -> None:
        """A logical error: HTTP 200 ``{"ok": false, "error": error}`` on the Web API; on
        webhooks, a non-200 with ``error`` as plain text (404 for ``no_service``, 403 for
        ``action_prohibited``, 410 for ``channel_is_archived``, else 400)."""
        self._set_mode(Mode("error", error=error, remaining=times, scope=method))

    def slow(self, delay_s: float, times: int | None = None, *, method: str | None = None) -> None:
        """Answer normally, ``delay_s`` seconds late (a shorter client timeout fires first)."""
        self._set_mode(Mode("slow", delay_s=delay_s, remaining=times, scope=method))

    def hang(self, times: int | None = None, *, method: str | None = None) -> None:
        """Never answer (until the client gives up or the fake closes)."""
        self._set_mode(Mode("hang", remaining=times, scope=method))

    def _failure_response(self, mode: Mode, recorded: RecordedRequest) -> web.Response:
        webhook = recorded.api == "webhook"
        headers = {"Retry-After": str(mode.retry_after)} if mode.kind == "rate_limit" else None
        if mode.kind == "rate_limit":
            if webhook:
                return _text(429, "rate_limited", "text/plain", headers)
            return _json(429, {"ok": False, "error": "ratelimited"}, headers)
        if mode.kind == "error":
            if webhook:
                status = {
                    "no_service": 404,
                    "action_prohibited": 403,
                    "posting_to_general_channel_denied": 403,
                    "channel_is_archived": 410,
                }.get(mode.error, 400)
                return _text(status, mode.error, "text/plain")
            return _json(200, {"ok": False, "error": mode.error})
        body = mode.body
        if body is None:
            body = _html_error(mode.status) if not webhook else "internal_error"
        if isinstance(body, dict | list):
            return _json(mode.status, body)
        default_type = "text/plain" if webhook else "text/html"
        return _text(mode.status, body, mode.content_type or default_type)

    # -- parsing

    async def _parse(self, request: web.Request) -> tuple[Any, str | None]:
        body = await _read_body(request)
        if request.path.startswith("/hooks/"):
            return body, "webhook"
        if request.path.startswith("/api/"):
            return body, request.path.removeprefix("/api/")
        return body, None

    # -- Web API

    def _next_ts(self) -> str:
        """Unique, increasing message timestamps like Slack's ``1700000000.000100``."""
        us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        self._last_ts_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def _authorized(self, request: web.Request, args: dict[str, Any]) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        token = token or args.get("token")  # Slack also reads a ``token`` argument
        return token == self.token

    def _render(self, message: SlackMessage, *, with_metadata: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "text": message.text,
            "ts": message.ts,
        }
        if message.blocks:
            shown["blocks"] = message.blocks
        if message.attachments:
            shown["attachments"] = message.attachments
        if message.edits:
            shown["edited"] = {"user": self.bot_user_id, "ts": message.edits[-1].edited_ts}
        if message.thread_ts is not None:
            shown["thread_ts"] = message.thread_ts
            shown["parent_user_id"] = self.bot_user_id
            if message.reply_broadcast:
                shown["subtype"] = "thread_broadcast"
        else:
            replies = self.replies(message.channel, message.ts)
            if replies:
                shown["thread_ts"] = message.ts
                shown["reply_count"] = len(replies)
                shown["reply_users_count"] = 1
                shown["reply_users"] = [self.bot_user_id]
                shown["latest_reply"] = replies[-1].ts
        if with_metadata and message.metadata is not None:
            shown["metadata"] = message.metadata
        if message.files:
            shown["files"] = message.files
            shown["upload"] = True
            shown["display_as_bot"] = False
        return shown

    @staticmethod
    def _json_arg(args: dict[str, Any], name: str) -> Any:
        """A structured argument (blocks, attachments, metadata): JSON, or a JSON string as a
        form or query string carries it."""
        value = args.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _SlackError(f"invalid_{name}") from None
        return value

    @staticmethod
    def _check_content(
        text: Any, blocks: Any, attachments: Any
    ) -> tuple[str, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        if text is not None and not isinstance(text, str):
            text = str(text)
        if blocks is not None:
            if not isinstance(blocks, list) or not all(
                isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
            ):
                raise _SlackError("invalid_blocks")
            if len(blocks) > MAX_BLOCKS:
                raise _SlackError("invalid_blocks")
            for block in blocks:
                inner = block.get("text")
                inner_text = inner.get("text", "") if isinstance(inner, dict) else ""
                if block["type"] == "header" and len(inner_text) > 150:
                    raise _SlackError("invalid_blocks")
                if block["type"] == "section" and len(inner_text) > 3000:
                    raise _SlackError("invalid_blocks")
                if block["type"] == "actions":
                    _check_actions(block)
        if attachments is not None and not isinstance(attachments, list):
            raise _SlackError("invalid_attachments")
        if not text and not blocks and not attachments:
            raise _SlackError("no_text")
        if text and len(text) > MAX_TEXT:
            raise _SlackError("msg_too_long")
        return text or "", blocks, attachments

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(args.get("channel"), create=True)
        blocks = self._json_arg(args, "blocks")
        attachments = self._json_arg(args, "attachments")
        metadata = self._json_arg(args, "metadata")
        text, blocks, attachments = self._check_content(args.get("text"), blocks, attachments)
        thread_ts = args.get("thread_ts") or None
        if thread_ts is not None:
            parent = next((m for m in channel.messages if m.ts == str(thread_ts)), None)
            if parent is None:
                raise _SlackError("thread_not_found")
            thread_ts = parent.thread_ts or parent.ts  # a reply's ts: its thread
        message = SlackMessage(
            channel=channel.id,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            attachments=attachments,
            thread_ts=thread_ts,
            metadata=metadata,
            reply_broadcast=thread_ts is not None and _truthy(args.get("reply_broadcast")),
            args=dict(args),
        )
        channel.messages.append(message)
        return {
            "ok": True,
            "channel": channel.id,
            "ts": message.ts,
            "message": self._render(message, with_metadata=True),
        }

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(args.get("channel"), create=False)
        ts = str(args.get("ts") or "")
        message = next((m for m in channel.messages if m.ts == ts), None)
        if message is None:
            raise _SlackError("message_not_found")
        blocks = self._json_arg(args, "blocks") if "blocks" in args else message.blocks
        attachments = (
            self._json_arg(args, "attachments") if "attachments" in args else message.attachments
        )
        text = args.get("text", message.text)
        text, blocks, attachments = self._check_content(text, blocks, attachments)
        metadata = self._json_arg(args, "metadata") if "metadata" in args else message.metadata
        message.edits.append(
            SlackEdit(
                text=message.text,
                blocks=message.blocks,
                attachments=message.attachments,
                metadata=message.metadata,
                edited_ts=self._next_ts(),
            )
        )
        message.text, message.blocks, message.attachments = text, blocks or None, attachments
        message.metadata = metadata
        return {
            "ok": True,
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": self._render(message, with_metadata=True),
        }

    @staticmethod
    def _window(
        messages: list[SlackMessage], args: dict[str, Any], *, newest_first: bool
    ) -> tuple[list[SlackMessage], bool, str]:
        """Apply oldest/latest/inclusive, then limit (1 to 999) and cursor. ``messages`` are
        in the order the method lists them (history newest first, a thread oldest first).
        The cursor is Slack's: base64 of ``next_ts:<ts>``, the first message of the next
        page, so a page follows on from that message even when others were posted since."""
        oldest = _ts_value(args.get("oldest", "0")) or Decimal(0)
        latest = _ts_value(args["latest"]) if args.get("latest") else None
        inclusive = _truthy(args.get("inclusive"))

        def inside(m: SlackMessage) -> bool:
            ts = Decimal(m.ts)
            after = ts >= oldest if inclusive else ts > oldest
            before = latest is None or (ts <= latest if inclusive else ts < latest)
            return after and before

        chosen = [m for m in messages if inside(m)]
        try:
            limit = min(max(int(args.get("limit") or 100), 1), 999)
        except ValueError:
            raise _SlackError("invalid_arguments") from None
        start = 0
        if args.get("cursor"):
            try:
                decoded = base64.b64decode(str(args["cursor"]), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise _SlackError("invalid_cursor") from None
            next_ts = _ts_value(decoded.removeprefix("next_ts:"))
            if not decoded.startswith("next_ts:") or next_ts is None:
                raise _SlackError("invalid_cursor")
            start = next(
                (
                    i
                    for i, m in enumerate(chosen)
                    if (Decimal(m.ts) <= next_ts if newest_first else Decimal(m.ts) >= next_ts)
                ),
                len(chosen),
            )
        page = chosen[start : start + limit]
        rest = chosen[start + len(page) :]
        cursor = base64.b64encode(f"next_ts:{rest[0].ts}".encode()).decode() if rest else ""
        return page, bool(rest), cursor

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(args.get("channel"), create=False)
        top = [m for m in channel.messages if m.thread_ts is None or m.reply_broadcast]
        page, more, cursor = self._window(list(reversed(top)), args, newest_first=True)
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self._render(m, with_metadata=with_metadata) for m in page],
            "has_more": more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(args.get("channel"), create=False)
        ts = str(args.get("ts") or "")
        found = next((m for m in channel.messages if m.ts == ts), None)
        if found is None:
            raise _SlackError("thread_not_found")
        root_ts = found.thread_ts or found.ts
        root = next(m for m in channel.messages if m.ts == root_ts)
        thread = [root, *(m for m in channel.messages if m.thread_ts == root_ts)]
        page, more, cursor = self._window(
            thread, {**args, "oldest": args.get("oldest", "0")}, newest_first=False
        )
        if root not in page and not args.get("cursor"):
            page = [root, *page]  # the parent always leads the first page
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self._render(m, with_metadata=with_metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": cursor},
        }

    def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        # conversations.list: the channels, paginated by a cursor (an offset here)
        try:
            limit = int(args.get("limit") or 100)
            offset = int(str(args.get("cursor") or "offset:0").removeprefix("offset:"))
        except ValueError:
            raise _SlackError("invalid_arguments") from None
        every = list(self._channels.values())
        page = every[offset : offset + max(limit, 1)]
        more = offset + len(page) < len(every)
        return {
            "ok": True,
            "channels": [
                {"id": c.id, "name": c.name, "is_channel": True, "is_archived": False} for c in page
            ],
            "response_metadata": {"next_cursor": f"offset:{offset + len(page)}" if more else ""},
        }

    def _info(self, args: dict[str, Any]) -> dict[str, Any]:
        # conversations.info: by id only, as Slack (a name is channel_not_found)
        channel = self._resolve(args.get("channel"), create=False)
        return {
            "ok": True,
            "channel": {
                "id": channel.id,
                "name": channel.name,
                "is_channel": True,
                "is_archived": False,
                "is_member": channel.name not in self.outside_channels,
            },
        }

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": self.url + "/",
            "team": "Fake Team",
            "user": "responder",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }

    # -- people: user groups and ephemeral messages (the interactions route's calls)

    def _init_people(self) -> None:
        self.ephemerals: list[SlackEphemeral] = []
        self._usergroups: dict[str, list[str]] = {}  # id -> member user ids

    def add_usergroup(self, group_id: str, members: Iterable[str]) -> None:
        """A user group (``S…``) and its members' user ids (replacing any before)."""
        self._usergroups[group_id] = list(members)

    def _people_methods(self) -> dict[str, Any]:
        return {
            "chat.postEphemeral": self._post_ephemeral,
            "usergroups.users.list": self._usergroup_users,
        }

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        # as Slack: the channel by id (or a name Slack resolves), a user id, some content
        channel = self._resolve(args.get("channel"), create=False)
        user = args.get("user")
        if not isinstance(user, str) or not user:
            raise _SlackError("user_not_found")
        text = args.get("text")
        if not text and not args.get("blocks") and not args.get("attachments"):
            raise _SlackError("no_text")
        ts = self._next_ts()
        self.ephemerals.append(SlackEphemeral(channel.id, user, str(text or ""), ts))
        return {"ok": True, "message_ts": ts}

    def _usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        group = args.get("usergroup")
        if not isinstance(group, str) or not group:
            raise _SlackError("invalid_arguments")
        if group not in self._usergroups:
            raise _SlackError("no_such_subteam")
        return {"ok": True, "users": list(self._usergroups[group])}

    async def _web_api(self, request: web.Request) -> web.Response:
        recorded: RecordedRequest = request[RECORDED]
        if recorded.body is not None and not isinstance(recorded.body, dict):
            return _json(200, {"ok": False, "error": "invalid_json"})
        args = recorded.args
        if not self._authorized(request, args):
            return _json(200, {"ok": False, "error": "invalid_auth"})
        methods = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
            "conversations.info": self._info,
            "auth.test": self._auth_test,
            **self._file_methods(),
            **self._people_methods(),
        }
        method = methods.get(request.match_info["method"])
        scopes = None if self.scopes is None else {"X-OAuth-Scopes": ",".join(self.scopes)}
        if method is None:
            return _json(200, {"ok": False, "error": "unknown_method"}, scopes)
        try:
            return _json(200, method(args), scopes)
        except _SlackError as e:
            return _json(200, {"ok": False, "error": e.error}, scopes)

    # -- files (the upload flow files_upload_v2 drives)

    def _file_methods(self) -> dict[str, Any]:
        return {
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.files_write:
            raise _SlackError("missing_scope")
        name, length = args.get("filename"), args.get("length")
        if not isinstance(name, str) or not name:
            raise _SlackError("invalid_arguments")
        try:
            size = int(length)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _SlackError("invalid_arguments") from None
        file_id = "F" + "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10)
        )
        alt = args.get("alt_txt")
        self.files[file_id] = SlackFile(file_id, name, size, alt if isinstance(alt, str) else None)
        return {"ok": True, "upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}

    async def _upload_bytes(self, request: web.Request) -> web.Response:
        # the upload URL answers in plain text, as files.slack.com does
        found = self.files.get(request.match_info["file_id"])
        data = await request.read()
        if found is None:
            return _text(404, "file not found", "text/plain")
        if len(data) != found.length:
            return _text(400, "length mismatch", "text/plain")
        found.data = data
        return _text(200, f"OK - {len(data)}", "text/plain")

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.files_write:
            raise _SlackError("missing_scope")
        listed = self._json_arg(args, "files")
        if not isinstance(listed, list) or not listed:
            raise _SlackError("invalid_arguments")
        chosen: list[SlackFile] = []
        for item in listed:
            found = self.files.get(item.get("id")) if isinstance(item, dict) else None
            if found is None or found.data is None:
                raise _SlackError("file_not_found")  # unknown, or its bytes never came
            found.title = item.get("title") or found.name
            chosen.append(found)
        shown = [self._file_object(f) for f in chosen]
        channel_arg = args.get("channel_id")
        if channel_arg:
            channel = self._resolve(channel_arg, create=False)
            thread_ts = args.get("thread_ts") or None
            if thread_ts is not None:
                parent = next((m for m in channel.messages if m.ts == str(thread_ts)), None)
                if parent is None:
                    raise _SlackError("thread_not_found")
                thread_ts = parent.thread_ts or parent.ts
            for f in chosen:
                f.channel, f.thread_ts = channel.id, thread_ts
            # the files' message in the channel (or thread), as Slack posts it for the bot
            channel.messages.append(
                SlackMessage(
                    channel=channel.id,
                    ts=self._next_ts(),
                    text=str(args.get("initial_comment") or ""),
                    thread_ts=thread_ts,
                    files=[self._file_object(f) for f in chosen],
                    args=dict(args),
                )
            )
        return {"ok": True, "files": shown}

    @staticmethod
    def _file_object(f: SlackFile) -> dict[str, Any]:
        mimetype = (
            "image/png" if f.data and f.data.startswith(b"\x89PNG") else "application/octet-stream"
        )
        return {
            "id": f.id,
            "name": f.name,
            "title": f.title or f.name,
            "mimetype": mimetype,
            "filetype": "png" if mimetype == "image/png" else "binary",
            "size": f.length,
            "alt_txt": f.alt_txt,
            "user": FakeSlack.bot_user_id,
            "is_external": False,
        }

    def uploads(self, channel: str, thread_ts: str | None = None) -> list[SlackFile]:
        """The files shared in a channel (name or id), or in one thread of it."""
        channel_id = self._channel(channel).id
        return [
            f
            for f in self.files.values()
            if f.channel == channel_id and (thread_ts is None or f.thread_ts == thread_ts)
        ]

    async def _webhook(self, request: web.Request) -> web.Response:
        body = request[RECORDED].body
        if not isinstance(body, dict):
            return _text(400, "invalid_payload", "text/plain")
        text, blocks, attachments = body.get("text"), body.get("blocks"), body.get("attachments")
        if blocks is not None and not isinstance(blocks, list):
            return _text(400, "invalid_blocks", "text/plain")
        if not text and not blocks and not attachments:
            return _text(400, "no_text", "text/plain")
        self.webhook_messages.append(
            WebhookMessage(
                path=request.path, text=text, blocks=blocks, attachments=attachments, body=body
            )
        )
        return _text(200, "ok", "text/plain")

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._web_api)
        app.router.add_post("/hooks/{rest:.+}", self._webhook)
        app.router.add_post("/upload/v1/{file_id}", self._upload_bytes)


# --------------------------------------------------------------------------- statuspage

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
IMPACTS = ("none", "maintenance", "minor", "major", "critical")
_COMPONENT_IMPACT = {
    "operational": "none",
    "under_maintenance": "maintenance",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
_IMPACT_ORDER = ("none", "maintenance", "minor", "major", "critical")


def _sp_id() -> str:
    """A Statuspage-like id: 12 lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


class _Invalid(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


class FakeStatuspage(_NotifyFake):
    """The Statuspage management API for one page: create, update (PATCH or PUT), get and list
    incidents, list components; ``Authorization: OAuth <api_key>``.

    ``incidents`` holds the incident documents the API returns, by id, oldest first.
    Component statuses are kept per page (``component_status``): an incident's
    ``components`` map changes them, and resolving an incident does not reset them (as on
    Statuspage, send ``operational`` explicitly). ``impact`` is ``impact_override`` when given,
    else derived from the worst status among the incident's components.
    """

    def __init__(
        self,
        *,
        api_key: str = "sp-key",
        page_id: str = "page123",
        components: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.api_key = api_key
        self.page_id = page_id
        names = {"cmp1": "PostHog integration"} if components is None else dict(components)
        self.components: dict[str, dict[str, Any]] = {}
        created = _iso_now()
        for position, (component_id, name) in enumerate(names.items(), start=1):
            self.components[component_id] = {
                "id": component_id,
                "page_id": page_id,
                "group_id": None,
                "created_at": created,
                "updated_at": created,
                "group": False,
                "name": name,
                "description": None,
                "position": position,
                "status": "operational",
                "showcase": True,
                "only_show_if_degraded": False,
                "automation_email": f"component+{component_id}@notifications.statuspage.io",
                "start_date": None,
            }
        self._incidents: dict[str, dict[str, Any]] = {}  # by id, oldest first

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` (no trailing slash)."""
        return f"{self.url}/v1"

    # -- inspection

    @property
    def incidents(self) -> dict[str, dict[str, Any]]:
        """Every incident as the API returns it (a fresh copy), by id, oldest first."""
        return {incident_id: self._render(i) for incident_id, i in self._incidents.items()}

    def incident(self, incident_id: str) -> dict[str, Any]:
        return self._render(self._incidents[incident_id])

    def unresolved(self) -> list[dict[str, Any]]:
        """Unresolved incidents, newest first (as the API lists them)."""
        return [
            self._render(i) for i in reversed(self._incidents.values()) if i["status"] != "resolved"
        ]

    def component_status(self, component_id: str) -> str:
        return str(self.components[component_id]["status"])

    # -- failure modes

    def rate_limit(
        self, status: Literal[420, 429] = 429, retry_after: int = 2, times: int | None = None
    ) -> None:
        """Answer ``status`` (420 or 429: Statuspage sends both) with ``Retry-After`` and a
        JSON error body."""
        self._set_mode(Mode("rate_limit", status=status, retry_after=retry_after, remaining=times))

    def fail_with(
        self,
        status: int = 500,
        body: Any = None,
        *,
        content_type: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status``; ``body`` as in FakeSlack.fail_with (None: an HTML error page)."""
        self._set_mode(
            Mode("status", status=status, body=body, content_type=content_type, remaining=times)
        )

    def slow(self, delay_s: float, times: int | None = None) -> None:
        """Answer normally, ``delay_s`` seconds late."""
        self._set_mode(Mode("slow", delay_s=delay_s, remaining=times))

    def hang(self, times: int | None = None) -> None:
        """Never answer (until the client gives up or the fake closes)."""
        self._set_mode(Mode("hang", remaining=times))

    def _failure_response(self, mode: Mode, recorded: RecordedRequest) -> web.Response:
        if mode.kind == "rate_limit":
            return _json(
                mode.status,
                {"error": "Rate limit exceeded. Retry later."},
                {"Retry-After": str(mode.retry_after)},
            )
        body = mode.body if mode.body is not None else _html_error(mode.status)
        if isinstance(body, dict | list):
            return _json(mode.status, body)
        return _text(mode.status, body, mode.content_type or "text/html")

    async def _parse(self, request: web.Request) -> tuple[Any, str | None]:
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            return _nest_form(MultiDict((k, str(v)) for k, v in form.items())), None
        return await _read_body(request), None

    # -- API

    def _check(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"OAuth {self.api_key}":
            raise _Invalid(401, {"error": "Could not authenticate"})
        if request.match_info["page_id"] != self.page_id:
            raise _Invalid(404, {"error": "Page not found"})

    def _incident_fields(self, request: web.Request) -> dict[str, Any]:
        body = request[RECORDED].body
        if isinstance(body, dict) and isinstance(body.get("incident"), dict):
            return dict(body["incident"])
        if body is not None and not isinstance(body, dict):
            raise _Invalid(400, {"error": "The request body is neither JSON nor a form"})
        raise _Invalid(400, {"error": "param is missing or the value is empty: incident"})

    def _validate(self, fields: dict[str, Any], *, creating: bool) -> None:
        errors: list[str] = []
        if creating or "name" in fields:
            name = fields.get("name")
            if not isinstance(name, str) or not name.strip():
                errors.append("name can't be blank")
            elif len(name) > 255:
                errors.append("name is too long (maximum is 255 characters)")
        if "status" in fields and fields["status"] not in INCIDENT_STATUSES:
            errors.append(f"status must be one of {', '.join(INCIDENT_STATUSES)}")
        if "impact_override" in fields and fields["impact_override"] not in (None, *IMPACTS):
            errors.append(f"impact_override must be one of {', '.join(IMPACTS)}")
        body = fields.get("body")
        if body is not None and (not isinstance(body, str) or len(body) > 25_000):
            errors.append("body is too long (maximum is 25000 characters)")
        ids = fields.get("component_ids", [])
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            errors.append("component_ids must be a list")
            ids = []
        statuses = fields.get("components", {})
        if not isinstance(statuses, dict):
            errors.append("components must be a map of component id to status")
            statuses = {}
        for component_id in [*ids, *statuses]:
            if component_id not in self.components:
                errors.append(f"component {component_id} not found")
        for component_id, status in statuses.items():
            if status not in COMPONENT_STATUSES:
                errors.append(
                    f"component {component_id} status must be one of "
                    + ", ".join(COMPONENT_STATUSES)
                )
        if errors:
            raise _Invalid(422, {"error": list(dict.fromkeys(errors))})

    def _apply(self, incident: dict[str, Any], fields: dict[str, Any], at: str) -> None:
        """Apply validated fields: component statuses, affected components, status, update."""
        statuses: dict[str, str] = fields.get("components", {})
        changes: list[dict[str, Any]] = []
        for component_id, status in statuses.items():
            component = self.components[component_id]
            changes.append(
                {
                    "code": component_id,
                    "name": component["name"],
                    "old_status": component["status"],
                    "new_status": status,
                }
            )
            component["status"] = status
            component["updated_at"] = at
        affected: list[str] = incident["_component_ids"]
        if "component_ids" in fields:
            affected = list(fields["component_ids"])
        affected += [c for c in statuses if c not in affected]
        incident["_component_ids"] = affected
        for key in ("name", "impact_override", "metadata", "deliver_notifications"):
            if key in fields:
                incident[key] = fields[key]
        old_status = incident.get("status")
        status = fields.get("status", old_status or "investigating")
        incident["status"] = status
        if status == "monitoring" and old_status != "monitoring":
            incident["monitoring_at"] = at
        if status == "resolved" and old_status != "resolved":
            incident["resolved_at"] = at
        if "body" in fields or "status" in fields:
            incident["incident_updates"].insert(
                0,
                {
                    "id": _sp_id(),
                    "incident_id": incident["id"],
                    "status": status,
                    "body": fields.get("body") or "",
                    "created_at": at,
                    "updated_at": at,
                    "display_at": at,
                    "affected_components": changes,
                    "deliver_notifications": _deliver(fields.get("deliver_notifications")),
                },
            )
        incident["updated_at"] = at

    def _render(self, incident: dict[str, Any]) -> dict[str, Any]:
        shown = copy.deepcopy({k: v for k, v in incident.items() if not k.startswith("_")})
        components = [dict(self.components[c]) for c in incident["_component_ids"]]
        shown["components"] = components
        shown["deliver_notifications"] = _deliver(incident.get("deliver_notifications"))
        override = incident.get("impact_override")
        worst = max(
            (_COMPONENT_IMPACT[c["status"]] for c in components),
            key=_IMPACT_ORDER.index,
            default="none",
        )
        shown["impact"] = override or worst
        return shown

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            fields = self._incident_fields(request)
            self._validate(fields, creating=True)
        except _Invalid as e:
            return _json(e.status, e.body)
        at = _iso_now()
        incident_id = _sp_id()
        incident: dict[str, Any] = {
            "id": incident_id,
            "name": fields["name"],
            "status": None,
            "impact_override": None,
            "created_at": at,
            "updated_at": at,
            "monitoring_at": None,
            "resolved_at": None,
            "started_at": at,
            "shortlink": f"https://stspg.io/{incident_id[:7]}",
            "page_id": self.page_id,
            "incident_updates": [],
            "metadata": {},
            "postmortem_body": None,
            "scheduled_for": None,
            "scheduled_until": None,
            "_component_ids": [],
        }
        fields.setdefault("status", "investigating")
        self._apply(incident, fields, at)
        self._incidents[incident_id] = incident
        return _json(201, self._render(incident))

    async def _update(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
            incident = self._incidents.get(request.match_info["incident_id"])
            if incident is None:
                raise _Invalid(404, {"error": "Incident not found"})
            fields = self._incident_fields(request)
            self._validate(fields, creating=False)
        except _Invalid as e:
            return _json(e.status, e.body)
        self._apply(incident, fields, _iso_now())
        return _json(200, self._render(incident))

    async def _get(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
        except _Invalid as e:
            return _json(e.status, e.body)
        incident = self._incidents.get(request.match_info["incident_id"])
        if incident is None:
            return _json(404, {"error": "Incident not found"})
        return _json(200, self._render(incident))

    async def _list(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
        except _Invalid as e:
            return _json(e.status, e.body)
        if request.path.endswith("/unresolved"):
            return _json(200, self.unresolved())
        return _json(200, [self._render(i) for i in reversed(self._incidents.values())])

    async def _components(self, request: web.Request) -> web.Response:
        try:
            self._check(request)
        except _Invalid as e:
            return _json(e.status, e.body)
        return _json(200, [dict(c) for c in self.components.values()])

    def _routes(self, app: web.Application) -> None:
        base = "/v1/pages/{page_id}"
        app.router.add_post(f"{base}/incidents", self._create)
        app.router.add_get(f"{base}/incidents", self._list)
        app.router.add_get(f"{base}/incidents/unresolved", self._list)
        app.router.add_get(base + "/incidents/{incident_id}", self._get)
        app.router.add_patch(base + "/incidents/{incident_id}", self._update)
        app.router.add_put(base + "/incidents/{incident_id}", self._update)
        app.router.add_get(f"{base}/components", self._components)


def _deliver(value: Any) -> bool:
    """``deliver_notifications`` defaults to true; a form sends "false"."""
    return not (value is False or value == "false" or value == "0")


# ---------------------------------------------------------------------------- pagerduty

PD_ACCEPT = "application/vnd.pagerduty+json;version=2"
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@functools.cache
def _test_ca() -> trustme.CA:
    """One throw-away CA per test session (process): cheap (ECDSA), never trusted elsewhere."""
    return trustme.CA(organization_name="responder tests")


@functools.cache
def _server_cert() -> trustme.LeafCert:
    return _test_ca().issue_cert("127.0.0.1", "localhost")


def _pd_id() -> str:
    """A PagerDuty-like id: P and 6 uppercase letters and digits."""
    alphabet = string.ascii_uppercase + string.digits
    return "P" + "".join(secrets.choice(alphabet) for _ in range(6))


@dataclass
class PagerDutyIncident:
    id: str
    title: str
    status: str = "triggered"
    notes: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    # ``{at, acknowledger}`` for each change to acknowledged, as the REST API lists them
    acknowledgements: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # accepted PUT bodies


PD_INCIDENT_UPDATES = ("acknowledged", "resolved")  # what a PUT may set


@dataclass
class PagerDutyAlert:
    """An Events API alert, by dedup_key: its status and every event sent for it."""

    dedup_key: str
    status: Literal["triggered", "acknowledged", "resolved"]
    summary: str
    source: str
    severity: str
    events: list[dict[str, Any]] = field(default_factory=list)
    incident_count: int = 1  # a trigger after resolve opens a new incident


class FakePagerDuty(_NotifyFake):
    """PagerDuty's REST API v2 (incident notes, ``PUT /incidents/{id}`` to acknowledge or
    resolve one) and Events API v2 (``/v2/enqueue``, ``/v2/change/enqueue``) on one HTTPS
    server: ``base_url=fake.url`` for both clients.

    REST calls need ``Authorization: Token token=<api_key>`` (401), ``Accept:
    application/vnd.pagerduty+json;version=2`` (406: stricter than PagerDuty, so a hand-rolled
    client that forgets it is caught) and, for writes, a ``From`` email (400, code 2100).
    ``users``, when given, lists the only ``From`` emails that exist. Events are checked as in
    PROTOCOLS.md 2.2 (400 with ``{status, message, errors}``); an acknowledge or resolve for an
    unknown dedup_key is accepted (202) and changes nothing, as PagerDuty does. A PUT on an
    incident takes ``{"incident": {"type": "incident_reference" | "incident", "status":
    "acknowledged" | "resolved"}}``; acknowledging an acknowledged incident changes nothing,
    any change to a resolved one is 400 "Incident Already Resolved" (code 2001).
    """

    def __init__(
        self,
        *,
        api_key: str = "pd-rest-api-key",
        routing_key: str = "R0123456789abcdef0123456789abcde",
        users: Iterable[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.api_key = api_key
        self.routing_key = routing_key
        self.users = None if users is None else set(users)
        self.incidents: dict[str, PagerDutyIncident] = {}
        self.events: list[dict[str, Any]] = []  # accepted Events API v2 events, in order
        self.change_events: list[dict[str, Any]] = []
        self.alerts: dict[str, PagerDutyAlert] = {}
        self.ca_file: str | None = None  # set while running
        self._ca_dir: tempfile.TemporaryDirectory[str] | None = None

    # -- TLS

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>`` (no trailing slash)."""
        return f"https://{self.address}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the fake's CA (and nothing else)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        _test_ca().configure_trust(context)
        return context

    async def start(self) -> None:
        """LoopbackServer.start, with TLS on the site and the CA written to ``ca_file``."""
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _server_cert().configure_cert(server_context)
        self._ca_dir = tempfile.TemporaryDirectory(prefix="fake-pagerduty-")
        self.ca_file = os.path.join(self._ca_dir.name, "ca.pem")
        _test_ca().cert_pem.write_to_path(self.ca_file)
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, 0, ssl_context=server_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._remove_ca_file()
            raise
        self._closing.clear()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        await super().close()
        self._remove_ca_file()

    def _remove_ca_file(self) -> None:
        if self._ca_dir is not None:
            self._ca_dir.cleanup()
            self._ca_dir = None

    # -- content and inspection

    def add_incident(self, incident_id: str | None = None, *, title: str = "Test incident") -> str:
        """An incident the REST API knows (notes can be added to it); returns its id."""
        incident_id = incident_id or _pd_id()
        self.incidents[incident_id] = PagerDutyIncident(incident_id, title)
        return incident_id

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        return list(self.incidents[incident_id].notes)

    def incident(self, incident_id: str) -> PagerDutyIncident:
        return self.incidents[incident_id]

    def user(self, email: str) -> dict[str, Any]:
        """The user reference PagerDuty names for ``email`` (a note's author, an
        acknowledger, a webhook's agent)."""
        return self._user(email)

    def alert(self, dedup_key: str) -> PagerDutyAlert:
        return self.alerts[dedup_key]

    # -- failure modes

    def rate_limit(
        self,
        retry_after: int = 1,
        times: int | None = None,
        *,
        api: Literal["rest", "events"] | None = None,
    ) -> None:
        """429 with ``Retry-After`` (and ``ratelimit-*`` headers on REST) and the API's error
        body. Note that the ``pagerduty`` clients retry 429 without limit, sleeping
        ``sleep_timer`` (1.5 s) times 2 per attempt: lower ``client.sleep_timer`` in tests."""
        self._set_mode(
            Mode("rate_limit", status=429, retry_after=retry_after, remaining=times, scope=api)
        )

    def fail_with(
        self,
        status: int = 500,
        body: Any = None,
        *,
        content_type: str | None = None,
        times: int | None = None,
        api: Literal["rest", "events"] | None = None,
    ) -> None:
        """Answer ``status``; ``body`` as in FakeSlack.fail_with (None: an HTML error page)."""
        self._set_mode(
            Mode(
                "status",
                status=status,
                body=body,
                content_type=content_type,
                remaining=times,
                scope=api,
            )
        )

    def slow(
        self,
        delay_s: float,
        times: int | None = None,
        *,
        api: Literal["rest", "events"] | None = None,
    ) -> None:
        """Answer normally, ``delay_s`` seconds late."""
        self._set_mode(Mode("slow", delay_s=delay_s, remaining=times, scope=api))

    def hang(
        self, times: int | None = None, *, api: Literal["rest", "events"] | None = None
    ) -> None:
        """Never answer (until the client gives up or the fake closes)."""
        self._set_mode(Mode("hang", remaining=times, scope=api))

    def _failure_response(self, mode: Mode, recorded: RecordedRequest) -> web.Response:
        if mode.kind == "rate_limit":
            headers = {"Retry-After": str(mode.retry_after)}
            if recorded.api == "events":
                return _json(
                    429,
                    {
                        "status": "throttle event",
                        "message": "Requests for this service are arriving too quickly. "
                        "Please retry later.",
                    },
                    headers,
                )
            headers |= {
                "ratelimit-limit": "960",
                "ratelimit-remaining": "0",
                "ratelimit-reset": str(mode.retry_after),
            }
            return _json(429, {"error": {"message": "Rate Limit Exceeded", "code": 2020}}, headers)
        body = mode.body if mode.body is not None else _html_error(mode.status)
        if isinstance(body, dict | list):
            return _json(mode.status, body)
        return _text(mode.status, body, mode.content_type or "text/html")

    async def _parse(self, request: web.Request) -> tuple[Any, str | None]:
        api = "events" if request.path.startswith("/v2/") else "rest"
        return await _read_body(request), api

    # -- REST API v2

    @staticmethod
    def _rest_error(
        status: int, message: str, code: int, errors: Iterable[str] = ()
    ) -> web.Response:
        error: dict[str, Any] = {"message": message, "code": code}
        if errors:
            error["errors"] = list(errors)
        return _json(status, {"error": error})

    def _rest_check(self, request: web.Request, *, write: bool) -> web.Response | None:
        if request.headers.get("Authorization") != f"Token token={self.api_key}":
            return self._rest_error(401, "Authentication failed", 2006)
        accept = request.headers.get("Accept", "").replace(" ", "")
        if PD_ACCEPT not in accept:
            return self._rest_error(406, f"Accept must be {PD_ACCEPT}", 2001)
        if write:
            sender = request.headers.get("From", "")
            if not _EMAIL.match(sender) or (self.users is not None and sender not in self.users):
                return self._rest_error(400, "Requester User Not Found", 2100)
        incident_id = request.match_info["incident_id"]
        if incident_id not in self.incidents:
            return self._rest_error(404, "Not Found", 2100)
        return None

    async def _list_users(self, request: web.Request) -> web.Response:
        # GET /users?query=: the users whose name or email contains the query (every
        # well-formed email is a user when ``users`` is None, as for From on writes)
        if request.headers.get("Authorization") != f"Token token={self.api_key}":
            return self._rest_error(401, "Authentication failed", 2006)
        accept = request.headers.get("Accept", "").replace(" ", "")
        if PD_ACCEPT not in accept:
            return self._rest_error(406, f"Accept must be {PD_ACCEPT}", 2001)
        query = request.query.get("query", "").lower()
        if self.users is None:
            known = [query] if _EMAIL.match(query) else []
        else:
            known = sorted(u for u in self.users if query in u.lower())
        users = [
            {**self._user(email), "type": "user", "email": email, "name": email.split("@")[0]}
            for email in known
        ]
        return _json(200, {"users": users, "limit": 25, "offset": 0, "more": False})

    def _user(self, email: str) -> dict[str, Any]:
        user_id = "PU" + uuid.uuid5(uuid.NAMESPACE_DNS, email).hex[:5].upper()
        return {
            "id": user_id,
            "type": "user_reference",
            "summary": email.split("@", 1)[0],
            "self": f"{self.url}/users/{user_id}",
            "html_url": f"https://fake.pagerduty.com/users/{user_id}",
        }

    async def _add_note(self, request: web.Request) -> web.Response:
        refused = self._rest_check(request, write=True)
        if refused is not None:
            return refused
        body = request[RECORDED].body
        note = body.get("note") if isinstance(body, dict) else None
        content = note.get("content") if isinstance(note, dict) else None
        if not isinstance(content, str) or not content.strip():
            return self._rest_error(
                400, "Invalid Input Provided", 2001, ["Note content can't be blank."]
            )
        incident = self.incidents[request.match_info["incident_id"]]
        if len(incident.notes) >= 2000:
            return self._rest_error(400, "Invalid Input Provided", 2001, ["Too many notes."])
        created = {
            "id": _pd_id(),
            "user": self._user(request.headers["From"]),
            "channel": {"summary": "API"},
            "content": content,
            "created_at": _iso_now("seconds"),
        }
        incident.notes.append(created)
        return _json(201, {"note": created})

    async def _list_notes(self, request: web.Request) -> web.Response:
        refused = self._rest_check(request, write=False)
        if refused is not None:
            return refused
        return _json(200, {"notes": self.incidents[request.match_info["incident_id"]].notes})

    def _incident_body(self, incident: PagerDutyIncident) -> dict[str, Any]:
        return {
            "incident": {
                "id": incident.id,
                "type": "incident",
                "title": incident.title,
                "status": incident.status,
                "acknowledgements": list(incident.acknowledgements),
                "self": f"{self.url}/incidents/{incident.id}",
            }
        }

    async def _get_incident(self, request: web.Request) -> web.Response:
        refused = self._rest_check(request, write=False)
        if refused is not None:
            return refused
        return _json(200, self._incident_body(self.incidents[request.match_info["incident_id"]]))

    async def _update_incident(self, request: web.Request) -> web.Response:
        refused = self._rest_check(request, write=True)
        if refused is not None:
            return refused
        body = request[RECORDED].body
        update = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(update, dict):
            return self._rest_error(
                400, "Invalid Input Provided", 2001, ["Incident must be an object."]
            )
        errors: list[str] = []
        if update.get("type") not in ("incident", "incident_reference"):
            errors.append("Type must be incident or incident_reference.")
        status = update.get("status")
        if status is not None and status not in PD_INCIDENT_UPDATES:
            errors.append("Status must be acknowledged or resolved.")
        if errors:
            return self._rest_error(400, "Invalid Input Provided", 2001, errors)
        incident = self.incidents[request.match_info["incident_id"]]
        if incident.status == "resolved":
            return self._rest_error(
                400, "Invalid Input Provided", 2001, ["Incident Already Resolved"]
            )
        if status == "acknowledged" and incident.status == "triggered":
            acknowledger = self._user(request.headers["From"])
            incident.acknowledgements.append(
                {"at": _iso_now("seconds"), "acknowledger": acknowledger}
            )
        if status is not None:
            incident.status = status
        incident.updates.append(body)
        return _json(200, self._incident_body(incident))

    # -- Events API v2

    @staticmethod
    def _invalid_event(*errors: str) -> web.Response:
        return _json(
            400,
            {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        )

    def _event_errors(self, event: Any) -> list[str]:
        if not isinstance(event, dict):
            return ["Event must be a JSON object"]
        if event.get("routing_key") != self.routing_key:
            return ["Invalid routing key"]
        errors: list[str] = []
        action = event.get("event_action")
        if action not in EVENT_ACTIONS:
            errors.append("'event_action' must be one of trigger, acknowledge, resolve")
        dedup_key = event.get("dedup_key")
        if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not dedup_key:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*errors, "'payload' is missing or not an object"]
            for name in ("summary", "source", "severity"):
                if not isinstance(payload.get(name), str) or not payload[name]:
                    errors.append(f"'payload.{name}' is missing or blank")
            summary = payload.get("summary")
            if isinstance(summary, str) and len(summary) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters")
            if "severity" in payload and payload["severity"] not in SEVERITIES:
                errors.append("'payload.severity' must be one of critical, error, warning, info")
        return errors

    async def _enqueue(self, request: web.Request) -> web.Response:
        event = request[RECORDED].body
        errors = self._event_errors(event)
        if errors:
            return self._invalid_event(*errors)
        assert isinstance(event, dict)
        action = event["event_action"]
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        stored = {**event, "dedup_key": dedup_key}
        self.events.append(stored)
        alert = self.alerts.get(dedup_key)
        if action == "trigger":
            payload = event["payload"]
            if alert is None:
                alert = PagerDutyAlert(
                    dedup_key=dedup_key,
                    status="triggered",
                    summary=payload["summary"],
                    source=payload["source"],
                    severity=payload["severity"],
                )
                self.alerts[dedup_key] = alert
            elif alert.status == "resolved":  # a new incident under the same key
                alert.status = "triggered"
                alert.incident_count += 1
                alert.summary, alert.severity = payload["summary"], payload["severity"]
        elif alert is not None and alert.status != "resolved":
            alert.status = "acknowledged" if action == "acknowledge" else "resolved"
        if alert is not None:
            alert.events.append(stored)
        return _json(
            202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        )

    async def _change_enqueue(self, request: web.Request) -> web.Response:
        event = request[RECORDED].body
        if not isinstance(event, dict) or event.get("routing_key") != self.routing_key:
            return self._invalid_event("Invalid routing key")
        payload = event.get("payload")
        if not isinstance(payload, dict) or not payload.get("summary"):
            return self._invalid_event("'payload.summary' is missing or blank")
        self.change_events.append(event)
        return _json(202, {"status": "success", "message": "Change event processed"})

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)
        app.router.add_post("/v2/change/enqueue", self._change_enqueue)
        app.router.add_post("/incidents/{incident_id}/notes", self._add_note)
        app.router.add_get("/incidents/{incident_id}/notes", self._list_notes)
        app.router.add_get("/incidents/{incident_id}", self._get_incident)
        app.router.add_put("/incidents/{incident_id}", self._update_incident)
        app.router.add_get("/users", self._list_users)
