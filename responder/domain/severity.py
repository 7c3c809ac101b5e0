"""Severity levels and error types, with the runbook's definitions and response times."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from responder.domain.model import Frozen


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """Higher is worse: P1 → 4, P4 → 1."""
        return 5 - int(self.value[1])

    def worse_than(self, other: Severity | None) -> bool:
        return other is None or self.rank > other.rank


class ErrorType(StrEnum):
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    UPSTREAM_5XX = "upstream_5xx"
    UNREACHABLE = "unreachable"
    LATENCY = "latency"
    WEBHOOK_DELAY = "webhook_delay"
    MONITORING_GAP = "monitoring_gap"
    UNKNOWN = "unknown"


class SeverityLevel(Frozen):
    """One row of the severity table: what the level means and how fast to respond."""

    definition: str
    response_time: str = Field(description="As people say it, e.g. '< 15 min'.")
    respond_within_s: int | None = Field(
        None, ge=1, description="The response time in seconds; None: next business day."
    )
    examples: tuple[str, ...] = ()


# The runbook's table. A rule pack may override any row.
DEFAULT_SEVERITIES: dict[Severity, SeverityLevel] = {
    Severity.P1: SeverityLevel(
        definition="Complete outage",
        response_time="< 15 min",
        respond_within_s=15 * 60,
        examples=("PostHog API unreachable",),
    ),
    Severity.P2: SeverityLevel(
        definition="Degraded service",
        response_time="< 1 hour",
        respond_within_s=3600,
        examples=("High latency", "partial failures"),
    ),
    Severity.P3: SeverityLevel(
        definition="Minor impact",
        response_time="< 4 hours",
        respond_within_s=4 * 3600,
        examples=("Webhook delays", "non-critical errors"),
    ),
    Severity.P4: SeverityLevel(
        definition="No user impact",
        response_time="Next business day",
        respond_within_s=None,
        examples=("Monitoring gaps",),
    ),
}
