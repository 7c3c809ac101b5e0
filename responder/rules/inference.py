"""What an alert says about itself: its error type and severity, from the ways people
write alert rules.

The error type is read, in this order, from a label that names it (``error_type``,
``status``, ``code``, ``status_code``, ``http_status``, ``response_code``: ``429``, ``5xx``,
``503``, ``rate_limited``...), then the alert's name (``PostHog429``,
``PostHogRateLimitHit``, ``…Unauthorized``, ``…Timeout``), then its summary and description
(status codes and the usual phrases). The first route that recognises something decides,
and says so (``Inferred.route``), for ``rules explain``.

The severity, when no rule fixes it, is the runbook's by error type; an alert's own
``severity`` label may raise it (never lower it).

Pure: no I/O, no state; the patterns are compiled once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from responder.domain.severity import ErrorType, Severity

# Labels that may name the error, in the order they are read.
ERROR_LABELS = ("error_type", "status", "code", "status_code", "http_status", "response_code")
# Annotations whose text is read, in order.
TEXT_ANNOTATIONS = ("summary", "description", "message")

# The runbook's severity table by error type: P1 complete outage (unreachable; every call
# refused), P2 degraded (partial failures, high latency), P3 minor (webhook delays,
# non-critical errors), P4 no user impact (monitoring gaps).
SEVERITY_BY_ERROR_TYPE: Mapping[ErrorType, Severity] = {
    ErrorType.UNREACHABLE: Severity.P1,
    ErrorType.AUTH: Severity.P1,
    ErrorType.RATE_LIMIT: Severity.P2,
    ErrorType.UPSTREAM_5XX: Severity.P2,
    ErrorType.LATENCY: Severity.P2,
    ErrorType.WEBHOOK_DELAY: Severity.P3,
    ErrorType.UNKNOWN: Severity.P3,
    ErrorType.MONITORING_GAP: Severity.P4,
}

# An alert's own `severity` label, as Prometheus rules usually write it.
SEVERITY_LABEL_VALUES: Mapping[str, Severity] = {
    "critical": Severity.P1,
    "page": Severity.P1,
    "emergency": Severity.P1,
    "fatal": Severity.P1,
    "p1": Severity.P1,
    "sev1": Severity.P1,
    "error": Severity.P2,
    "high": Severity.P2,
    "major": Severity.P2,
    "p2": Severity.P2,
    "sev2": Severity.P2,
    "warning": Severity.P3,
    "warn": Severity.P3,
    "medium": Severity.P3,
    "minor": Severity.P3,
    "p3": Severity.P3,
    "sev3": Severity.P3,
    "info": Severity.P4,
    "low": Severity.P4,
    "none": Severity.P4,
    "p4": Severity.P4,
    "sev4": Severity.P4,
}

# A label's whole value, normalised (lower case, `-` and spaces as `_`), naming a type.
_LABEL_WORDS: Mapping[str, ErrorType] = {
    **{t.value: t for t in ErrorType if t is not ErrorType.UNKNOWN},
    "401": ErrorType.AUTH,
    "403": ErrorType.AUTH,
    "40x_auth": ErrorType.AUTH,
    "unauthorized": ErrorType.AUTH,
    "unauthorised": ErrorType.AUTH,
    "unauthenticated": ErrorType.AUTH,
    "forbidden": ErrorType.AUTH,
    "authentication": ErrorType.AUTH,
    "invalid_api_key": ErrorType.AUTH,
    "429": ErrorType.RATE_LIMIT,
    "rate_limited": ErrorType.RATE_LIMIT,
    "ratelimited": ErrorType.RATE_LIMIT,
    "ratelimit": ErrorType.RATE_LIMIT,
    "throttled": ErrorType.RATE_LIMIT,
    "too_many_requests": ErrorType.RATE_LIMIT,
    "5xx": ErrorType.UPSTREAM_5XX,
    "server_error": ErrorType.UPSTREAM_5XX,
    "internal_server_error": ErrorType.UPSTREAM_5XX,
    "bad_gateway": ErrorType.UPSTREAM_5XX,
    "service_unavailable": ErrorType.UPSTREAM_5XX,
    "gateway_timeout": ErrorType.UPSTREAM_5XX,
    "timeout": ErrorType.UNREACHABLE,
    "connection_refused": ErrorType.UNREACHABLE,
    "dns": ErrorType.UNREACHABLE,
    "down": ErrorType.UNREACHABLE,
    "slow": ErrorType.LATENCY,
    "webhook": ErrorType.WEBHOOK_DELAY,
    "absent": ErrorType.MONITORING_GAP,
    "no_data": ErrorType.MONITORING_GAP,
    "nodata": ErrorType.MONITORING_GAP,
}
_STATUS_CODE = re.compile(r"[1-5]\d\d|[1-5]xx")

# Phrases of alert text (and of alert names split into words), in the order they are
# tried: specific before general (a "504 Gateway Timeout" is a server error, not a
# timeout; "p99 latency over the timeout" is latency).
_PHRASES: tuple[tuple[ErrorType, str], ...] = (
    (
        ErrorType.MONITORING_GAP,
        r"\babsent\b|\bno data\b|metrics? (are |is )?(missing|absent)"
        r"|missing metrics?|\bstale metrics?|monitoring gap",
    ),
    (ErrorType.RATE_LIMIT, r"\b429\b|too many requests|rate[ _-]?limit|throttl"),
    (
        ErrorType.AUTH,
        r"\b40[13]\b|unauthori[sz]ed|unauthenticated|forbidden|\bauth\b"
        r"|authenticat|\bauth ?fail|invalid (api )?(key|token|credentials?)"
        r"|(rotated|revoked|expired|wrong|bad) (api )?(key|token)"
        r"|(api )?key (was |is |has been )?(rotated|revoked|expired|invalid)",
    ),
    (
        ErrorType.UPSTREAM_5XX,
        r"\b5\d\d\b|\b5xx\b|internal server error|bad gateway"
        r"|service unavailable|gateway time-?out|server errors?"
        r"|upstream (errors?|failures?)",
    ),
    (
        ErrorType.WEBHOOK_DELAY,
        r"webhooks?\b.{0,40}\b(delay|delayed|late|lag|lagging|behind|backlog)"
        r"|(delayed|late) webhooks?|webhook delay",
    ),
    (
        ErrorType.UNREACHABLE,
        r"unreachable|connection (refused|reset|failed)|\bdns\b"
        r"|cannot (reach|connect)|can't (reach|connect)|no route to host"
        r"|\bis down\b|\bdown\b",
    ),
    (ErrorType.LATENCY, r"latency|\bp9[059]\b|\bslow\b|response times?|high duration"),
    (ErrorType.UNREACHABLE, r"time[ -]?outs?\b|timed out"),
)
_COMPILED = tuple((t, re.compile(p, re.IGNORECASE)) for t, p in _PHRASES)
# CamelCase and digits into words: PostHogAPIUnreachable -> Post Hog API Unreachable
_WORD_BREAK = re.compile(
    r"(?<=[a-z])(?=[A-Z0-9])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[0-9])(?=[A-Za-z])|[_:.-]+"
)


@dataclass(frozen=True, slots=True)
class Inferred:
    """An error type and the route that gave it (``label status_code="429"``, ``alert
    name PostHogRateLimitHit: "rate limit"``, ``annotation summary: "Too Many
    Requests"``); ``unknown`` with route ``none`` when nothing was recognised."""

    error_type: ErrorType
    route: str


def infer_error_type(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Inferred:
    """The error type an alert states, by the first route that recognises one."""
    for name in ERROR_LABELS:
        value = labels.get(name)
        if value:
            found = _from_label_value(value)
            if found is not None:
                return Inferred(found, f'label {name}="{value}"')
    alertname = labels.get("alertname", "")
    if alertname:
        words = " ".join(w for w in _WORD_BREAK.split(alertname) if w)
        found_phrase = _from_text(words)
        if found_phrase is not None:
            return Inferred(found_phrase[0], f'alert name {alertname}: "{found_phrase[1]}"')
    for name in TEXT_ANNOTATIONS:
        text = annotations.get(name)
        if text:
            found_phrase = _from_text(text)
            if found_phrase is not None:
                return Inferred(found_phrase[0], f'annotation {name}: "{found_phrase[1]}"')
    return Inferred(ErrorType.UNKNOWN, "none")


def severity_for(error_type: ErrorType) -> Severity:
    """The runbook's severity for an error type."""
    return SEVERITY_BY_ERROR_TYPE[error_type]


def raised_by_label(severity: Severity, labels: Mapping[str, str]) -> tuple[Severity, str | None]:
    """``severity``, raised to what the alert's own ``severity`` label says when that is
    worse (never lowered); and why, when it was raised."""
    value = labels.get("severity", "")
    stated = SEVERITY_LABEL_VALUES.get(value.strip().lower())
    if stated is not None and stated.worse_than(severity):
        return stated, f'label severity="{value}"'
    return severity, None


def _from_label_value(value: str) -> ErrorType | None:
    word = re.sub(r"[\s-]+", "_", value.strip().lower())
    found = _LABEL_WORDS.get(word)
    if found is not None:
        return found
    if _STATUS_CODE.fullmatch(word):
        return _from_status_code(word)
    phrase = _from_text(value)
    return phrase[0] if phrase is not None else None


def _from_status_code(code: str) -> ErrorType | None:
    if code in ("401", "403"):
        return ErrorType.AUTH
    if code == "429":
        return ErrorType.RATE_LIMIT
    if code.startswith("5"):
        return ErrorType.UPSTREAM_5XX
    if code == "408":
        return ErrorType.UNREACHABLE  # the request timed out
    return None


def _from_text(text: str) -> tuple[ErrorType, str] | None:
    for error_type, pattern in _COMPILED:
        m = pattern.search(text)
        if m is not None:
            return error_type, m.group(0)
    return None
