"""What the loopback fakes of outside HTTP services share: every request recorded, and
failure modes (an error status, a rate limit, slow or hung answers...) that apply to every
request or to the next ``times`` ones, optionally only to one api/method of the fake."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from tests.support.loopback import LoopbackServer

ModeKind = Literal["normal", "status", "rate_limit", "error", "malformed", "slow", "hang"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (whatever the answer was)."""

    method: str
    path: str
    query: dict[str, str]  # the last value of a repeated parameter
    headers: CIMultiDict[str]  # case-insensitive: headers["authorization"]
    # the parsed body, for fakes that parse it: JSON or form fields (dict), the raw text
    # if neither, None if empty
    body: Any = None
    # which api/method of the fake it was for (FakeSlack: "chat.postMessage" or
    # "webhook"; FakePagerDuty: "rest" or "events"), None for fakes with only one
    api: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def args(self) -> dict[str, Any]:
        """Query parameters and body fields merged (the body wins): a Slack call's arguments
        whether slack_sdk sent them as GET parameters, JSON or a form."""
        merged: dict[str, Any] = dict(self.query)
        if isinstance(self.body, dict):
            merged.update(self.body)
        return merged


RECORDED = web.RequestKey("recorded", RecordedRequest)  # set by the middleware


@dataclass
class Mode:
    kind: ModeKind = "normal"
    status: int = 200
    body: Any = None
    content_type: str | None = None
    retry_after: int = 1
    error: str = ""
    delay_s: float = 0.0
    remaining: int | None = None  # None: until changed
    scope: str | None = None  # None: every request; else only requests of this api/method


class RecordingFake(LoopbackServer):
    """The request log, the failure modes and the middleware of a fake. A subclass names
    its routes, may parse requests (``_parse``: to record the body and tell the api), and
    answers the failure statuses (``_failure_response``) its real service answers."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.requests: list[RecordedRequest] = []
        self._mode = Mode()

    # -- failure modes

    def respond_normally(self) -> None:
        """Back to normal answers (the state built so far is kept)."""
        self._mode = Mode()

    def _set_mode(self, mode: Mode) -> None:
        if mode.remaining is not None and mode.remaining <= 0:
            raise ValueError("times must be at least 1 (or None: until respond_normally())")
        self._mode = mode

    def _take_mode(self, scope: str | None) -> Mode:
        mode = self._mode
        if mode.kind == "normal" or (mode.scope is not None and mode.scope != scope):
            return Mode()
        if mode.remaining is not None:
            mode.remaining -= 1
            if mode.remaining <= 0:
                self._mode = Mode()
        return mode

    def _failure_response(self, mode: Mode, recorded: RecordedRequest) -> web.Response:
        raise NotImplementedError

    async def _answer(
        self, mode: Mode, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """The answer once no failure mode stood in the way (a subclass may alter it)."""
        return await handler(request)

    # -- requests

    async def _parse(self, request: web.Request) -> tuple[Any, str | None]:
        """The parsed body (see ``RecordedRequest.body``) and the request's api/method."""
        return None, None

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body, scope = await self._parse(request)
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=body,
            api=scope,
        )
        self.requests.append(recorded)
        request[RECORDED] = recorded
        mode = self._take_mode(scope)
        if mode.kind == "hang":
            await self._closing.wait()
            return web.Response(status=503, text="fake closing")
        if mode.kind == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=mode.delay_s)
        if mode.kind in ("status", "rate_limit", "error"):
            return self._failure_response(mode, recorded)
        return await self._answer(mode, request, handler)

    # -- server

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self._routes(app)
        return app

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError
