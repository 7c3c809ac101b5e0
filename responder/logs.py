"""JSON logs through structlog, with request and incident ids, and secrets redacted.

Configured once by the CLI at start-up (never at import). Any configured secret value that
finds its way into a log field is replaced before the line is written.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from structlog._config import BoundLoggerLazyProxy

from responder.redaction import REDACTED, Redactor

__all__ = ["REDACTED", "SecretRedactor", "StoreWarnings", "configure", "reset"]


class SecretRedactor:
    """A structlog processor that blanks out known secret values in every string field."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._redactor = Redactor(secrets)
        self._active = self._redactor.has_secrets

    def redact(self, text: str) -> str:
        return self._redactor.known_only(text)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._active:
            return event
        for key, value in list(event.items()):
            if isinstance(value, str):
                event[key] = self.redact(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event[key] = self.redact(str(value))
        return event


# The id of the HTTP request being handled (web.request_context sets it): one ContextVar
# set and reset per request, a third of what structlog's bind/unbind_contextvars cost on
# intake's hot path; added to every line logged while it is set.
REQUEST_ID: ContextVar[str | None] = ContextVar("responder_request_id", default=None)


def _request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


# Events logged when a loop meets Redis unreachable: each loop retries on its own cadence
# (the timers every half second), so while Redis is down they would fill the log.
STORE_UNREACHABLE = "store unreachable"


class StoreWarnings:
    """A structlog processor for the "store unreachable" warnings: each names where Redis
    is (``redis``, host:port: never the URL, which may carry a password), and one event
    repeated is written with a growing gap (1 s, 2 s, 4 s... at most ``cap_s``), the next
    line saying how many were left out (``repeated``). Quiet for ``cap_s``: the outage is
    over, and the next one starts at 1 s again."""

    def __init__(
        self,
        address: str | None,
        *,
        cap_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = address
        self._cap_s = cap_s
        self._clock = clock
        # event -> (when it was last written, the gap before the next, lines left out)
        self._seen: dict[str, tuple[float, float, int]] = {}

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        name = event.get("event")
        if not isinstance(name, str) or not name.startswith(STORE_UNREACHABLE):
            return event
        if self._address is not None:
            event.setdefault("redis", self._address)
        now = self._clock()
        last = self._seen.get(name)
        if last is not None:
            written, gap, left_out = last
            if now - written < gap:
                self._seen[name] = (written, gap, left_out + 1)
                raise structlog.DropEvent
            if now - written < gap + self._cap_s:  # still the same outage
                if left_out:
                    event["repeated"] = left_out
                self._seen[name] = (now, min(gap * 2, self._cap_s), 0)
                return event
        self._seen[name] = (now, 1.0, 0)
        return event


def configure(
    *, level: str, secrets: Iterable[str], stream: Any = None, redis_address: str | None = None
) -> None:
    """``redis_address``: where Redis is (no password), named by the store warnings."""
    redactor = SecretRedactor(secrets)
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    store_warnings = StoreWarnings(redis_address)
    structlog.configure(
        processors=[
            *shared,
            store_warnings,
            structlog.processors.format_exc_info,
            redactor,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        # A cached logger makes a call below the level almost free (building one per call
        # cost ~7 µs, several times per webhook); a new configuration resets the caches.
        cache_logger_on_first_use=True,
    )
    _bind_module_loggers()
    # Libraries log through stdlib logging: same JSON, same redaction.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))


def reset() -> None:
    """Back to structlog's defaults (tests, between runs of in-process commands)."""
    structlog.reset_defaults()
    for name, proxy in _PROXIES.items():
        vars(proxy).pop("bind", None)
        module = sys.modules.get(name)
        if module is not None:
            module.log = proxy  # type: ignore[attr-defined]


# Our modules' own lazy loggers (``log = structlog.get_logger(...)``), by module name.
_PROXIES: dict[str, BoundLoggerLazyProxy] = {}


def _bind_module_loggers() -> None:
    """Give each of our modules a logger bound under the configuration now in force.

    A call through structlog's lazy proxy costs ~2 µs more than one on the logger it
    binds (~2.2 against ~0.5 µs for a line below the level): several calls a webhook
    and a signal. A new configuration binds afresh from the kept proxies; ``reset``
    puts the proxies back.
    """
    for name, module in list(sys.modules.items()):
        if name != "responder" and not name.startswith("responder."):
            continue
        proxy = _PROXIES.get(name)
        if proxy is None:
            current = getattr(module, "log", None)
            if not isinstance(current, BoundLoggerLazyProxy):
                continue
            proxy = _PROXIES[name] = current
        vars(proxy).pop("bind", None)  # structlog caches by setting ``bind`` on the proxy
        module.log = proxy.bind()  # type: ignore[attr-defined]
