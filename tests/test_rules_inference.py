"""The error type an alert states of itself (``rules.inference``): status codes read as
codes and numbers as numbers, "down" of a thing and not of a rate, alert names split into
words without splitting a status class."""

from __future__ import annotations

import pytest

from responder.domain.severity import ErrorType, Severity
from responder.rules.inference import infer_error_type, severity_for


def from_name(alertname: str) -> ErrorType:
    return infer_error_type({"alertname": alertname}, {}).error_type


def from_summary(summary: str) -> ErrorType:
    return infer_error_type({}, {"summary": summary}).error_type


@pytest.mark.parametrize(
    ("alertname", "expected"),
    [
        ("PostHog5xx", ErrorType.UPSTREAM_5XX),
        ("PostHogHTTP5xx", ErrorType.UPSTREAM_5XX),
        ("PostHog5XXErrors", ErrorType.UPSTREAM_5XX),
        ("PostHogHTTP5xxRate", ErrorType.UPSTREAM_5XX),
        ("PostHogAPI503", ErrorType.UPSTREAM_5XX),
        ("PostHog429", ErrorType.RATE_LIMIT),
        ("PostHogP99Latency", ErrorType.LATENCY),
        ("PostHogLatency500", ErrorType.LATENCY),
        ("PostHogMetricsStale", ErrorType.MONITORING_GAP),
        ("PostHogStaleMetrics", ErrorType.MONITORING_GAP),
        ("PostHogNoMetrics", ErrorType.MONITORING_GAP),
        ("PostHogIngestionDown", ErrorType.UNREACHABLE),
        ("PostHogAPIDown", ErrorType.UNREACHABLE),
        ("PostHogTrafficDown", ErrorType.UNKNOWN),
        ("PostHogRequestRateDown", ErrorType.UNKNOWN),
        ("PostHogScaledDown", ErrorType.UNKNOWN),
    ],
)
def test_alert_name(alertname: str, expected: ErrorType) -> None:
    assert from_name(alertname) is expected


def test_a_status_class_in_a_name_gets_the_runbooks_severity() -> None:
    inferred = infer_error_type({"alertname": "PostHogHTTP5xx"}, {})
    assert inferred.route == 'alert name PostHogHTTP5xx: "5xx"'
    assert severity_for(inferred.error_type) is Severity.P2


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        # stated as codes
        ("HTTP 503 from PostHog", ErrorType.UPSTREAM_5XX),
        ("HTTP/1.1 503", ErrorType.UPSTREAM_5XX),
        ("status 503", ErrorType.UPSTREAM_5XX),
        ("status code: 401", ErrorType.AUTH),
        ("PostHog: 503 Service Unavailable", ErrorType.UPSTREAM_5XX),
        ("PostHog returned 500", ErrorType.UPSTREAM_5XX),
        ("calls fail with 502", ErrorType.UPSTREAM_5XX),
        ("PostHog 5xx rate above 5%", ErrorType.UPSTREAM_5XX),
        ("a spike of 502s", ErrorType.UPSTREAM_5XX),
        ("we got 429s from PostHog", ErrorType.RATE_LIMIT),
        ("got 429", ErrorType.RATE_LIMIT),
        ("PostHog API is down (503)", ErrorType.UPSTREAM_5XX),
        ("PostHog latency high, HTTP 503 on ingestion", ErrorType.UPSTREAM_5XX),
        # a bare number is still read when nothing else is said
        ("PostHog 503", ErrorType.UPSTREAM_5XX),
        # numbers that are quantities
        ("PostHog p99 latency above 500 ms", ErrorType.LATENCY),
        ("PostHog p99 latency above 500ms", ErrorType.LATENCY),
        ("PostHog p99 latency 500", ErrorType.LATENCY),
        ("PostHog latency above 500s", ErrorType.LATENCY),
        ("PostHog calls take 429 ms", ErrorType.LATENCY),
        ("PostHog error rate above 5%", ErrorType.UNKNOWN),
        ("over 500 requests to PostHog failed", ErrorType.UNKNOWN),
        ("more than 500 errors", ErrorType.UNKNOWN),
        ("1,500 requests per minute", ErrorType.UNKNOWN),
        ("PostHog sends 500 req/s", ErrorType.UNKNOWN),
        ("pod-503 restarted", ErrorType.UNKNOWN),
        # a timeout stays a timeout, whatever its duration
        ("request timed out after 5000 ms", ErrorType.UNREACHABLE),
        # "down" of a thing
        ("PostHog is down", ErrorType.UNREACHABLE),
        ("PostHog API down", ErrorType.UNREACHABLE),
        ("PostHog went down", ErrorType.UNREACHABLE),
        ("PostHog down for 5 minutes", ErrorType.UNREACHABLE),
        ("Error rate high, API down", ErrorType.UNREACHABLE),
        # ... and of a number, or a phrasal verb
        ("request rate went down by 50%", ErrorType.UNKNOWN),
        ("PostHog traffic down", ErrorType.UNKNOWN),
        ("PostHog requests down 40%", ErrorType.UNKNOWN),
        ("calls to PostHog went down", ErrorType.UNKNOWN),
        ("error budget down 5%", ErrorType.UNKNOWN),
        ("posthog-integration pods scaled down", ErrorType.UNKNOWN),
        ("PostHog is down-scaled", ErrorType.UNKNOWN),
        ("latency is down to 200ms", ErrorType.LATENCY),
        # stale or absent metrics, in either order
        ("metrics are stale", ErrorType.MONITORING_GAP),
        ("PostHog metrics stale", ErrorType.MONITORING_GAP),
        ("stale metrics for posthog", ErrorType.MONITORING_GAP),
        ("no data for posthog_requests_total", ErrorType.MONITORING_GAP),
        # "no data lost" is not a gap
        ("PostHog webhooks delayed 10 minutes, no data lost", ErrorType.WEBHOOK_DELAY),
    ],
)
def test_summary(summary: str, expected: ErrorType) -> None:
    assert from_summary(summary) is expected


def test_the_route_names_the_code_as_stated() -> None:
    inferred = infer_error_type({}, {"summary": "PostHog answers 503 Service Unavailable"})
    assert inferred.route == 'annotation summary: "503"'
    inferred = infer_error_type({}, {"summary": "PostHog p99 latency above 500 ms"})
    assert inferred == infer_error_type({}, {"summary": "PostHog p99"})
    # text whose lower case is longer ("İ" lowers to two characters) is quoted right
    inferred = infer_error_type({}, {"summary": "İzmir İİ: PostHog returned 503"})
    assert inferred.route == 'annotation summary: "503"'


def test_a_word_ending_in_no_is_not_no_data() -> None:
    assert from_summary("casino data export is late") is ErrorType.UNKNOWN
    assert from_summary("No data from posthog-integration") is ErrorType.MONITORING_GAP


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        # a count of authenticated people or calls says nothing failed
        ("authenticated users down 20%", ErrorType.UNKNOWN),
        ("Authenticated sessions dropped by half", ErrorType.UNKNOWN),
        ("fewer authenticated requests than usual", ErrorType.UNKNOWN),
        # authentication that fails does
        ("authentication failed for PostHog", ErrorType.AUTH),
        ("PostHog auth errors", ErrorType.AUTH),
        ("calls are not authenticated (401)", ErrorType.AUTH),
        ("authenticated requests failing with 401", ErrorType.AUTH),
    ],
)
def test_authenticated_people_are_no_auth_failure(summary: str, expected: ErrorType) -> None:
    assert from_summary(summary) is expected


def test_auth_in_an_alert_name_is_an_auth_failure() -> None:
    assert from_name("PostHogAuth") is ErrorType.AUTH
    assert from_name("PostHogAuthenticationFailures") is ErrorType.AUTH
