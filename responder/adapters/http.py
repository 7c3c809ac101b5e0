"""One aiohttp client session for the app's outbound HTTP (probes, Prometheus), opened in
the running loop on first use and closed with the app; and ``fetch``, the one way a probe
requests a URL: only to the hosts its ``allow_hosts`` names, redirects followed only when
it says so (each hop checked), the body read up to a cap, and every way of not getting
there (refused, timed out, no such name) told the same: "unreachable"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp

from responder import __version__
from responder.domain.names import url_problem

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


# What a probe reads of an answer at most: a status page summary or a health document is a
# few kilobytes; a 64 MiB answer must not cost the process 200 MiB.
MAX_PROBE_BODY_BYTES = 1024 * 1024
# Redirects a probe follows at most (when its spec says follow_redirects).
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """Why a probe got no answer it can use. The message says nothing that tells a closed
    port from a filtered one or a missing name: it is shown in the API and the timeline."""


class Unreachable(FetchError):
    def __init__(self) -> None:
        super().__init__("unreachable")


class BodyTooLarge(FetchError):
    pass


@dataclass(frozen=True)
class Fetched:
    url: str  # the last hop's
    status: int
    body: bytes
    # the answer's headers (a name given more than once: its first value); a probe keeps
    # only those it names
    headers: Mapping[str, str] = field(default_factory=dict)


async def read_capped(resp: aiohttp.ClientResponse, *, max_bytes: int) -> bytes:
    """The body, or ``BodyTooLarge`` once it passes ``max_bytes``: the rest is not read
    and the connection is closed."""
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        resp.close()
        raise BodyTooLarge(f"body larger than {max_bytes} bytes")
    body = bytearray()
    while True:
        chunk = await resp.content.read(_CHUNK_BYTES)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            resp.close()
            raise BodyTooLarge(f"body larger than {max_bytes} bytes")


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allow_hosts: tuple[str, ...],
    follow_redirects: bool,
    connect_timeout_s: float,
    max_body_bytes: int = MAX_PROBE_BODY_BYTES,
) -> Fetched:
    """GET ``url`` the way a probe may. ``FetchError`` (its message safe to show) when the
    URL or a redirect goes out of ``allow_hosts``, a redirect is not to be followed, the
    body is too large, or the host cannot be reached."""
    # the connect is bounded (a filtered port must fail like a closed one, not as a
    # timeout); the rest by the probe's own timeout; the total is only a backstop
    timeout = aiohttp.ClientTimeout(total=120, sock_connect=connect_timeout_s)
    for _hop in range(MAX_REDIRECTS + 1):
        problem = url_problem(url, allow_hosts)
        if problem:
            raise FetchError(f"not requested: {problem}")
        try:
            async with session.get(url, allow_redirects=False, timeout=timeout) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    if not follow_redirects:
                        raise FetchError(
                            f"HTTP {resp.status}: a redirect, not followed (follow_redirects "
                            "is off)"
                        )
                    url = urljoin(url, location)
                    continue
                body = await read_capped(resp, max_bytes=max_body_bytes)
                headers = {name: resp.headers[name] for name in resp.headers}
                return Fetched(url, resp.status, body, headers)
        except (aiohttp.ClientError, TimeoutError):
            # refused, timed out connecting, no such name, reset: all the same to the reader
            raise Unreachable() from None
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")
