"""What an alert says about itself: its error type and severity, from the ways people
write alert rules.

The error type is read, in this order, from a label that names it (``error_type``,
``status``, ``code``, ``status_code``, ``http_status``, ``response_code``: ``429``, ``5xx``,
``503``, ``rate_limited``...), then the alert's name (``PostHog429``,
``PostHogRateLimitHit``, ``…Unauthorized``, ``…Timeout``), then its summary and description
(status codes and the usual phrases). The first route that recognises something decides,
and says so (``Inferred.route``), for ``rules explain``. In text, a number is a status code
when it is stated as one (``HTTP 503``, ``returned 500``, ``5xx``, ``429s``), never when it
is a quantity (``500 ms``, ``above 500``, ``over 500 requests``); "down" is an outage of a
thing (``PostHog is down``), not of a number (``request rate went down by 50%``): a false
P1 is worse than an ``unknown``.

The severity, when no rule fixes it, is the runbook's by error type; an alert's own
``severity`` label may raise it (never lower it).

Pure: no I/O, no state; the patterns are compiled once.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
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

# A status code in text: a class (5xx) or three digits standing alone (not part of 1,500,
# 2.500, pod-500 or 500a), maybe plural (429s, 5xxs).
_CODE_IN_TEXT = re.compile(r"([1-5](?<![\w.,][1-5])(?<!\w-[1-5])(?:\d\d|xx))(s?)(?![\w]|[.,]\d)")
# What makes three digits a quantity, not a code: a unit after them (500 ms, 429 s, 5 %,
# 500 requests, 200 req/s, 500+)...
_UNIT_AFTER = re.compile(
    r"\s*(?:[%+]|/\s*[a-z]|(?:ms|msecs?|millis(?:econds?)?|µs|us|ns|s|secs?|seconds?|m|mins?"
    r"|minutes?|h|hrs?|hours?|d|days?|percent|pct|k|kb|mb|gb|kib|mib|gib|bytes?|rps|qps|rpm"
    r"|reqs?|requests?|calls?|events?|messages?|items?|records?|rows?|users?|sessions?"
    r"|connections?|times|pods?|replicas?|instances?|hosts?|retries)\b)"
)
# ... unless what comes just before says it is a code (HTTP 503, status 503, returned
# 500, got 429s, fails with 502, "(503)") ...
_CODE_BEFORE = re.compile(
    r"(?:\bhttps?(?:/[\d.]+)?|\bstatus(?:[ _-]?codes?)?"
    r"|\b(?:response|error|return|reply)[ _-]?codes?|\bcodes?|\berror|\breturn(?:s|ed|ing)?"
    r"|\banswer(?:s|ed|ing)?|\brespon(?:ds?|ded|ding)(?: with)?"
    r"|\bresponses?|\b(?:got|gets?|getting|receiv(?:e|es|ed|ing)|throw(?:s|ing)?|threw"
    r"|hit(?:s|ting)?|see(?:s|ing)?|saw)(?: an?| the| some| many| more)?"
    r"|\b(?:fail(?:s|ed|ing)?|error(?:s|ed|ing)?|reject(?:s|ed|ing)?|abort(?:s|ed|ing)?) with"
    r"(?: an?| the)?)\s*[:=#]?\s*\(?$|\($"
)
# ... a comparison, a change or a latency before them (above 500, more than 500 errors,
# p99 = 500, latency: 500, up to 500) makes them a quantity ...
_QUANTITY_BEFORE = re.compile(
    r"(?:\b(?:above|over|under|below|exceed(?:s|ed|ing)?|than|beyond|past|to|by|from|at"
    r"|around|about|approx(?:imately)?|nearly|almost|roughly|least|most|max(?:imum)?"
    r"|min(?:imum)?|threshold|latency|latencies|p\d{2,3}|duration|took|takes?|taking)"
    r"|[<>=~≈≥≤])\s*[:=]?\s*$"
)
# ... and what comes after may say it is a code (500 errors, 503 responses, 429 Too Many
# Requests).
_CODE_AFTER = re.compile(
    r"\s*(?:errors?|responses?|status(?:es)?|codes?|repl(?:y|ies)|answers?|too many requests"
    r"|unauthori[sz]ed|forbidden|internal server error|bad gateway|service unavailable"
    r"|gateway time-?out)\b"
)


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# "down" is an outage when a thing is down (the API is down, PostHog down, went down,
# down for 5 minutes), not when a number is (request rate went down by 50%, traffic down,
# latency is down) nor in a phrasal verb (scaled down, slowed down, broken down by).
_DOWN_AFTER_QUANTITY = re.compile(r"\s*(?:(?:by|to|from)\b|[-+\u2212]?\s*\d|%|-\w)")
_DOWN_PHRASAL = _words(
    "scale scaled scales scaling slow slowed slowing slows shut shuts shutting turn turned"
    " turning wind winding wound step stepped stepping cool cooled calm calmed settle settled"
    " back break breaks broke broken count counting drill drilled narrow narrowed ramp ramped"
    " ramping spin spun spinning tone toned trend trended trending tick ticked ticking burn"
    " burned burnt drop dropped top up and or come came coming go goes going quiet quieted"
    " marked mark marking voted vote thumbs"
)
# Nouns of things measured: "<measure> ... down" is a number that fell.
_MEASURES = _words(
    "rate rates ratio ratios traffic volume volumes count counts number numbers throughput"
    " qps rps rpm load usage utilization utilisation latency latencies duration durations"
    " time times p50 p90 p95 p99 p999 apdex score scores sla slo slos budget budgets level"
    " levels amount amounts total totals percentage percent share requests calls events"
    " errors failures retries sessions users signups conversions revenue cpu memory disk"
    " queue queues backlog lag delay delays metrics metric spend cost costs success"
)
_CLAUSE_END = re.compile(r"[.;!?,()\[\]\n]")
_WORDS = re.compile(r"[a-z0-9']+")


def _down_means_unreachable(text: str, m: re.Match[str]) -> bool:
    if _DOWN_AFTER_QUANTITY.match(text, m.end()):
        return False
    before = _CLAUSE_END.split(text[max(0, m.start() - 80) : m.start()])[-1]
    words = _WORDS.findall(before)[-4:]
    if words and words[-1] in _DOWN_PHRASAL:
        return False
    return not any(w in _MEASURES for w in words)


def _no_data_is_a_gap(text: str, m: re.Match[str]) -> bool:
    # "no data lost" is good news, not a monitoring gap
    return _NO_DATA_LOST.match(text, m.end()) is None


_NO_DATA_LOST = re.compile(
    r"\s+(?:(?:was|is|were|has been|have been|will be)\s+)?(?:lost|loss|dropped|discarded)\b"
)


def _auth_is_a_failure(text: str, m: re.Match[str]) -> bool:
    # "authenticated users down 20%" counts people, it says nothing failed
    return not (m.group().startswith("authenticat") and _AUTHENTICATED_WHO.match(text, m.start()))


_AUTHENTICATED_WHO = re.compile(
    r"authenticated\s+(?:users?|sessions?|requests?|calls?|logins?|traffic|visitors?"
    r"|accounts?|clients?|customers?|events?)\b"
)


@dataclass(frozen=True, slots=True)
class _Phrase:
    """One step of the text route: its phrases (lower case), a check of each match in its
    context (given the lowered text), and whether status codes stated as codes
    (``HTTP 503``) of its type are read here; no pattern: the bare numbers."""

    error_type: ErrorType
    pattern: re.Pattern[str] | None
    accept: Callable[[str, re.Match[str]], bool] | None = None
    codes: bool = False


_BARE_CODES = _Phrase(ErrorType.UNKNOWN, None)


def _step(
    error_type: ErrorType,
    pattern: str,
    accept: Callable[[str, re.Match[str]], bool] | None = None,
    *,
    codes: bool = False,
) -> _Phrase:
    return _Phrase(error_type, re.compile(pattern), accept, codes)


# Phrases of alert text (and of alert names split into words), in the order they are
# tried: specific before general (a "504 Gateway Timeout" is a server error, not a
# timeout; "p99 latency over the timeout" is latency). A status code stated as one
# ("HTTP 503", "returned 500", "5xx", "429s") is read with its type's phrases; a bare
# number that may be one ("PostHog 503") only after every phrase but the general timeout,
# so that "p99 latency 500" is latency; a number with a unit or after a comparison
# ("above 500 ms", "over 500 requests") is never a code.
_STEPS: tuple[_Phrase, ...] = (
    _step(
        ErrorType.MONITORING_GAP,
        # no leading \b (it costs a scan of every position): a word's start is checked
        # only where it matters ("casino data" is not "no data")
        r"(?:absent|no(?<![a-z]no) (?:data|metrics)|metrics? (?:are |is )?(?:missing|absent)"
        r"|missing metrics?|monitoring gap|stale (?:metrics?|series|samples|scrapes?)"
        r"|(?:metrics?|series) (?:(?:are|is|have|has|went|go|goes) )?"
        r"(?:(?:gone|become|been) )?stale)\b",
        _no_data_is_a_gap,
    ),
    _step(ErrorType.RATE_LIMIT, r"too many requests|rate[ _-]?limit|throttl", codes=True),
    _step(
        ErrorType.AUTH,
        r"unauthori[sz]ed|unauthenticated|forbidden|\bauth\b"
        r"|authenticat|\bauth ?fail|invalid (api )?(key|token|credentials?)"
        r"|(rotated|revoked|expired|wrong|bad) (api )?(key|token)"
        r"|(api )?key (was |is |has been )?(rotated|revoked|expired|invalid)",
        _auth_is_a_failure,
        codes=True,
    ),
    _step(
        ErrorType.UPSTREAM_5XX,
        r"internal server error|bad gateway|service unavailable|gateway time-?out"
        r"|server errors?|upstream (errors?|failures?)",
        codes=True,
    ),
    _step(
        ErrorType.WEBHOOK_DELAY,
        r"webhooks?\b.{0,40}\b(delay|delayed|late|lag|lagging|behind|backlog)"
        r"|(delayed|late) webhooks?|webhook delay",
    ),
    _step(
        ErrorType.UNREACHABLE,
        r"unreachable|connection (refused|reset|failed)|\bdns\b"
        r"|cannot (reach|connect)|can't (reach|connect)|no route to host",
        codes=True,
    ),
    _step(ErrorType.UNREACHABLE, r"\bdown\b", _down_means_unreachable),
    _step(ErrorType.LATENCY, r"latency|\bp9[059]\b|\bslow\b|response times?|high duration"),
    _BARE_CODES,
    _step(ErrorType.UNREACHABLE, r"time[ -]?outs?\b|timed out"),
    # a duration alone: "calls take 3 s", "429 ms"
    _step(
        ErrorType.LATENCY,
        r"\b\d+(?:\.\d+)?\s*(?:ms|msecs?|millis(?:econds?)?)\b"
        r"|\b(?:takes?|took|taking)\s+(?:over\s+|more than\s+|about\s+)?\d+(?:\.\d+)?\s*"
        r"(?:s|secs?|seconds?)\b",
    ),
)
# CamelCase and digits into words: PostHogAPIUnreachable -> Post Hog API Unreachable,
# PostHogHTTP5xxErrors -> Post Hog HTTP 5xx Errors (a status class stays whole), and
# PostHogP99Latency -> Post Hog P99 Latency (a one-letter P before digits too).
_WORD_BREAK = re.compile(
    r"(?<=[a-z])(?=[A-Z0-9])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Z]{2})(?=[0-9])"
    r"|(?<=[0-9])(?![xX]{2}[sS]?(?![a-z]))(?=[A-Za-z])|[_:.-]+"
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
    # the patterns are lower case and case-sensitive, on text lowered once: twice as fast
    # as IGNORECASE on every pattern. A match's span must be the same in both texts, and
    # lower() may lengthen a non-ASCII text ("İ"): that one is lowered in ASCII only.
    low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    codes: list[tuple[int, int, str, bool]] | None = None
    for step in _STEPS:
        if step.pattern is None:  # the bare numbers that may be codes
            if codes is None:
                codes = _status_codes(low)
            for start, end, code, strong in codes:
                found = _from_status_code(code)
                if not strong and found is not None:
                    return found, text[start:end]
            continue
        hit = _first_accepted(step, low)
        # a code of this type stated before the phrase is what the route shows
        if step.codes and (hit is None or _CODE_IN_TEXT.search(low, 0, hit[0])):
            if codes is None:
                codes = _status_codes(low)
            for start, end, code, strong in codes:
                if strong and _from_status_code(code) is step.error_type:
                    if hit is None or start < hit[0]:
                        hit = (start, end)
                    break
        if hit is not None:
            return step.error_type, text[hit[0] : hit[1]]
    return None


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _first_accepted(step: _Phrase, low: str) -> tuple[int, int] | None:
    assert step.pattern is not None
    m = step.pattern.search(low)
    while m is not None and step.accept is not None and not step.accept(low, m):
        m = step.pattern.search(low, m.start() + 1)
    return None if m is None else m.span()


def _status_codes(low: str) -> list[tuple[int, int, str, bool]]:
    """Where lowered text states a status code (its span, the code), and whether it is
    stated as one (``http 503``, ``5xx``, ``429s``) or is a bare number that may be one
    (``posthog 503``); numbers that are quantities (``500 ms``, ``above 500``) are left
    out."""
    found: list[tuple[int, int, str, bool]] = []
    for m in _CODE_IN_TEXT.finditer(low):
        code, plural = m.group(1), m.group(2)
        start, end = m.span(1)
        if code.endswith("xx"):
            found.append((start, end, code, True))
            continue
        if not plural and _UNIT_AFTER.match(low, m.end()):
            continue
        before = low[max(0, start - 40) : start]
        if _CODE_BEFORE.search(before):
            found.append((start, end, code, True))
        elif _QUANTITY_BEFORE.search(before):
            continue
        else:
            strong = bool(plural) or _CODE_AFTER.match(low, m.end()) is not None
            found.append((start, end, code, strong))
    return found
