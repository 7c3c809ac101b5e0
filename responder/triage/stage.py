"""The triage stage: run an incident's quick triage, record the facts, walk the tree.

It runs when an incident is classified, and again when an alert joins or fires anew once
the last triage is older than the cache TTL (Alertmanager's repeats never get here: intake
counts them). The facts, each probe's evidence, the branch chosen and the planned actions
become timeline events; a probe that failed is a fact too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog

from responder.domain.decision import Decision
from responder.domain.incident import (
    IncidentChange,
    apply_triage,
    call_human,
    combine,
    decide,
)
from responder.domain.timeline import EventKind
from responder.metrics import Metrics
from responder.ports import Clock, IncidentState, Probe, StageResult, Store
from responder.redaction import Redactor
from responder.rules.engine import AlertInput, RuleSet
from responder.triage.runner import run_probes
from responder.triage.troubles import human_needed, with_runbook_lines

log = structlog.get_logger("responder.triage")

# Events that call for (another) triage.
_FIRST = EventKind.INCIDENT_CLASSIFIED
_AGAIN = frozenset({EventKind.ALERT_JOINED, EventKind.ALERT_REFIRED, EventKind.INCIDENT_ESCALATED})


def facts_view(facts: Mapping[str, Any], incident_fields: Mapping[str, Any]) -> dict[str, Any]:
    return {**facts, "incident": dict(incident_fields)}


class TriageStage:
    reads_store = False  # it works on the change it is handed

    def __init__(
        self,
        *,
        store: Store,
        probes: Mapping[str, Probe],
        rules: Callable[[], RuleSet],
        clock: Clock,
        metrics: Metrics,
        redact: Redactor,
        budget_s: float,
        cache_ttl_s: float,
        force_dry_run: bool = False,
    ) -> None:
        self._store = store
        self._probes = probes
        self._rules = rules
        self._clock = clock
        self._metrics = metrics
        self._redact = redact
        self._budget_s = budget_s
        self._cache_ttl = timedelta(seconds=cache_ttl_s)
        self._force_dry_run = force_dry_run

    def _due(self, change: IncidentChange) -> bool:
        inc = change.incident
        if not inc.is_active or not inc.planned_probes:
            return False
        kinds = {e.kind for e in change.events}
        if _FIRST in kinds and inc.triaged_at is None:
            return True
        if not kinds & _AGAIN:
            return False
        fresh = inc.triaged_at is not None and self._clock.now() - inc.triaged_at < self._cache_ttl
        return not fresh

    async def __call__(self, change: IncidentChange) -> StageResult | None:
        if not self._due(change):
            return None
        incident = change.incident
        started = self._clock.monotonic()
        # the runbook's error-handling rows: a line each in the triage message
        results = with_runbook_lines(
            await run_probes(
                incident.planned_probes, self._probes, budget_s=self._budget_s, redact=self._redact
            )
        )
        human = human_needed(results)
        self._metrics.triage_seconds.observe(self._clock.monotonic() - started)
        for result in results:
            self._metrics.probe_results.labels(result.probe, "ok" if result.ok else "failed").inc()
        rules = self._rules()
        now = self._clock.now()

        # the branch the written triage chose (the store may run ``mutate`` more than once:
        # the last run is the one written); ``None``: nothing written
        chosen: list[str | None] = []

        def mutate(state: IncidentState) -> IncidentChange | None:
            chosen.clear()
            current = state.incident
            if current is None or not current.is_active:
                return None  # resolved meanwhile: the facts no longer decide anything
            triaged = apply_triage(current, results, now)
            inc = triaged.incident
            decision = self._decide(
                rules,
                AlertInput(labels=inc.labels, annotations=inc.annotations),
                facts_view(
                    inc.facts,
                    {
                        "severity": inc.severity.value if inc.severity else None,
                        "error_type": inc.error_type.value if inc.error_type else None,
                        "status": inc.status.value,
                        "acked": inc.acked_at is not None,
                    },
                ),
            )
            level = rules.severity_level(decision.pack, decision.severity)
            decided = combine(triaged, decide(inc, decision, now, level=level))
            if human is not None:
                decided = combine(decided, call_human(decided.incident, human, now))
            chosen.append(decided.incident.branch)
            return decided

        async def logged() -> None:
            if chosen:
                log.info(
                    "triage done", branch=chosen[-1], failed=[r.probe for r in results if not r.ok]
                )

        return StageResult(mutators=(mutate,), after_write=(logged,))

    def _decide(self, rules: RuleSet, alert: AlertInput, facts: dict[str, Any]) -> Decision:
        decision = rules.evaluate(alert, facts).decision
        if self._force_dry_run and decision.actions:
            decision = decision.model_copy(
                update={
                    "actions": tuple(
                        a.model_copy(update={"dry_run": True}) for a in decision.actions
                    )
                }
            )
        return decision
