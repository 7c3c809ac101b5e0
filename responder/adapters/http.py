"""One aiohttp client session for the app's outbound HTTP (probes, Prometheus), opened in
the running loop on first use and closed with the app."""

from __future__ import annotations

import aiohttp

from responder import __version__

USER_AGENT = f"responder/{__version__}"


class SharedSession:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT},
                # each caller sets its own timeout; this is only a backstop
                timeout=aiohttp.ClientTimeout(total=120),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def maybe_sent(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` may still have been carried out: only a
    failure to connect says for sure that it was not."""
    return not isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError)
