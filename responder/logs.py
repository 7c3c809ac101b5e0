"""JSON logs through structlog, with request and incident ids, and secrets redacted.

Configured once by the CLI at start-up (never at import). Any configured secret value that
finds its way into a log field is replaced before the line is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from structlog._config import BoundLoggerLazyProxy

from responder.redaction import REDACTED, Redactor

__all__ = ["REDACTED", "SecretRedactor", "configure", "reset"]


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


def configure(*, level: str, secrets: Iterable[str], stream: Any = None) -> None:
    redactor = SecretRedactor(secrets)
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
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
