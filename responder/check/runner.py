"""Runs every check against the settings in force: the integrations concurrently (each
within a time limit, so one that hangs cannot hold the others), the packs first (the
templates, Prometheus and Kubernetes checks read them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from responder.app import outbound_ssl
from responder.check import kubernetes, packs, pagerduty, prometheus, redis, slack, statuspage
from responder.check import templates as templates_check
from responder.check.in_force import settings_in_force, summary
from responder.check.result import Result, fail
from responder.redaction import Redactor
from responder.settings import Settings


@dataclass
class Report:
    settings: dict[str, Any]
    summary: dict[str, str]
    results: list[Result] = field(default_factory=list)
    # what prints the report passes through it: an error an outside service answered
    # could echo a credential we sent
    redact: Callable[[str], str] = str

    @property
    def failed(self) -> bool:
        return any(r.status == "FAIL" for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


async def _within(name: str, limit_s: float, work: Awaitable[list[Result]]) -> list[Result]:
    try:
        return await asyncio.wait_for(work, limit_s)
    except TimeoutError:
        return [
            fail(name, f"no answer within {limit_s:g} s", "check the address and the network path")
        ]


async def run_checks(settings: Settings, *, limit_s: float = 30.0) -> Report:
    report = Report(
        settings_in_force(settings),
        summary(settings),
        redact=Redactor(settings.secret_values()).known_only,
    )
    pack_results, rules = packs.check(settings)
    tls = outbound_ssl(settings)
    integrations = await asyncio.gather(
        _within("redis", limit_s, redis.check(settings)),
        _within("slack", limit_s, slack.check(settings, rules, tls=tls)),
        _within("statuspage", limit_s, statuspage.check(settings, tls=tls)),
        _within("pagerduty", limit_s, pagerduty.check(settings, tls=tls)),
        _within("prometheus", limit_s, prometheus.check(settings, rules, tls=tls)),
        _within("kubernetes", limit_s, kubernetes.check(settings, rules)),
    )
    for results in integrations:
        report.results += results
    report.results += pack_results
    report.results += templates_check.check(settings, rules)
    return report
