"""An aiohttp ``web.Application`` served on 127.0.0.1, in the test's event loop, on a port
the OS picks (no clash possible): the base of the loopback fakes (fake_http, fake_kube, the
Prometheus exporter).

A subclass builds its application in ``_build_app()``; ``start()``/``close()`` (or
``async with``) serve it and stop serving it. ``_closing`` is set by ``close()`` and cleared
by ``start()``: a handler that is slow or hangs on purpose waits on it, so closing releases
it at once; a handler still running ``shutdown_timeout`` seconds after closing began is
cancelled, as is one whose client gave up.
"""

from __future__ import annotations

import asyncio
from typing import Self

from aiohttp import web


class LoopbackServer:
    shutdown_timeout = 2.0

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None  # kept after close()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def _build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def address(self) -> str:
        """``host:port``."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self.address}"

    async def start(self) -> None:
        # handler_cancellation: a client that gives up cancels its (slow or hung) handler.
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, 0)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._closing.clear()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        self._closing.set()  # releases hung and slow requests
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.close()
