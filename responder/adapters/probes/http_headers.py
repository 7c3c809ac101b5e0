"""Probe: a URL's status and the response headers named, such as a rate limit's.

The runbook's 429 step, "Check rate limit headers" (``curl -v https://api.posthog.com |
grep -i rate``): the figures the vendor gives (``X-RateLimit-Limit``, ``-Remaining``,
``-Reset``, ``Retry-After``) become facts the 429 branch and the postmortem read. Only
the headers the spec names are kept (an answer's cookies are not ours to store), each
value on one line and capped.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping
from typing import Any

from responder.adapters.http import FetchError, SharedSession, Unreachable
from responder.adapters.probes.health import fetch_probe_url
from responder.domain.facts import ProbeResult
from responder.domain.plans import HttpProbe
from responder.render.inert import one_line

# A header value kept is a figure or a date, not a document.
_MAX_VALUE_CHARS = 200
# The rate limit's figures, each from the first of its headers the answer has (vendors
# spell them with and without the X-, and some say "RateLimit-Reset" for seconds left).
_FIGURES = {
    "limit": ("x-ratelimit-limit", "ratelimit-limit"),
    "remaining": ("x-ratelimit-remaining", "ratelimit-remaining"),
    "reset": ("x-ratelimit-reset", "ratelimit-reset"),
    "retry_after_s": ("retry-after",),
}


def kept_headers(headers: Mapping[str, str], patterns: tuple[str, ...]) -> dict[str, str]:
    """The headers whose name matches one of ``patterns`` (case-insensitive globs),
    lowercased, each value one line of at most 200 characters."""
    wanted = tuple(p.lower() for p in patterns)
    kept: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low not in kept and any(fnmatch.fnmatchcase(low, p) for p in wanted):
            kept[low] = one_line(value)[:_MAX_VALUE_CHARS]
    return kept


def _number(text: str | None) -> int | float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None  # Retry-After may be an HTTP date: not a figure we can carry
    return int(value) if value.is_integer() else value


def rate_limit(headers: Mapping[str, str]) -> dict[str, Any]:
    """The figures (numbers, ``None`` when not given) from kept, lowercased headers."""
    return {
        figure: _number(next((headers[n] for n in names if n in headers), None))
        for figure, names in _FIGURES.items()
    }


def describe(figures: Mapping[str, Any]) -> str:
    """``limit 1000, remaining 0, reset 1733500000, Retry-After 30 s``: the figures given."""
    words = {"limit": "limit", "remaining": "remaining", "reset": "reset"}
    parts = [f"{words[k]} {figures[k]}" for k in words if figures.get(k) is not None]
    if figures.get("retry_after_s") is not None:
        parts.append(f"Retry-After {figures['retry_after_s']} s")
    return ", ".join(parts)


class HttpHeadersProbe:
    kind = "http"

    def __init__(self, session: SharedSession) -> None:
        self._session = session

    async def run(self, spec: HttpProbe) -> ProbeResult:
        started = time.monotonic()
        try:
            answer = await fetch_probe_url(self._session, spec)
        except Unreachable:
            return _failed(f"cannot reach {spec.url}: unreachable")
        except FetchError as exc:
            return _failed(f"{spec.url}: {exc}")
        headers: dict[str, Any] = kept_headers(answer.headers, spec.record_headers)
        figures = rate_limit(headers)
        said = describe(figures)
        return ProbeResult(
            probe="http",
            ok=True,
            facts={"status_code": answer.status, "headers": headers, "rate_limit": figures},
            evidence={
                "url": spec.url,
                "headers": headers,
                "took_s": round(time.monotonic() - started, 3),
            },
            summary=f"http: HTTP {answer.status}"
            + (f", rate limit: {said}" if said else ", no rate limit headers"),
        )


def _failed(error: str) -> ProbeResult:
    return ProbeResult(probe="http", ok=False, error=error, summary=f"http: {error}")
