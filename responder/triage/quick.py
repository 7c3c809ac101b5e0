"""The one-line health check (`responder triage`): a pack's quick triage, run now.

The runbook's "One-Line Health Check" from a shell, with the pack's own probes: the
labels given stand for an alert, the rules plan the probes of what they match, the probes
run (the same runner as an incident's triage, within the same budget), and the rules are
walked again on the facts to name the branch the decision tree would take. Nothing is
written: no incident, no store, no action; the actions of the branch are only named.

Health, the exit code, is the worst of the probes' and the branch's: a probe that failed
or a target that is down is ``DOWN`` (2), a degraded target, a vendor incident or a branch
that would act is ``DEGRADED`` (1), else ``HEALTHY`` (0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from responder.domain.decision import Decision
from responder.domain.facts import ProbeResult, merge_facts
from responder.ports import Probe
from responder.redaction import Redactor
from responder.rules.engine import AlertInput, RuleSet
from responder.triage.runner import run_probes
from responder.triage.stage import facts_view
from responder.triage.troubles import with_runbook_lines


class Health(IntEnum):
    """A probe's, and the whole check's, verdict; its value is the exit code."""

    HEALTHY = 0
    DEGRADED = 1
    DOWN = 2


def probe_health(result: ProbeResult) -> Health:
    """What one result says of the target's health (not of the probe's own success,
    except that a probe that could not look is as bad as down: nobody knows)."""
    if not result.ok:
        return Health.DOWN
    facts = result.facts
    if result.probe == "health":
        return {"ok": Health.HEALTHY, "degraded": Health.DEGRADED}.get(
            str(facts.get("status")), Health.DOWN
        )
    if result.probe == "vendor_status" and facts.get("incident") is True:
        return Health.DEGRADED
    if result.probe == "http":
        code = facts.get("status_code")
        if isinstance(code, int) and code >= 500:
            return Health.DOWN
        if isinstance(code, int) and code >= 400:
            return Health.DEGRADED
    return Health.HEALTHY


@dataclass(frozen=True)
class QuickTriage:
    classified: Decision  # before the facts: which pack and rule, the probes planned
    decided: Decision  # after them: the branch and what it would do
    results: tuple[ProbeResult, ...]

    @property
    def health(self) -> Health:
        worst = max((probe_health(r) for r in self.results), default=Health.HEALTHY)
        if self.decided.actions:
            worst = max(worst, Health.DEGRADED)
        return worst

    def lines(self) -> list[str]:
        """One line per probe, then the branch and the verdict."""
        out = []
        for planned, result in zip(self.classified.probes, self.results, strict=True):
            verdict = probe_health(result).name.lower()
            text = result.summary or (result.error or "")
            if not result.ok and result.error and result.error not in text:
                text = f"{text}: {result.error}" if text else result.error
            out.append(f"{planned.spec.type:<14} {verdict:<9} {text} ({result.duration_s:g}s)")
        decided = self.decided
        if decided.branch:
            acts = ", ".join(a.spec.type for a in decided.actions) or "none"
            out.append(f"branch: {decided.branch} (pack {decided.pack}); would do: {acts}")
        else:
            out.append(f"branch: none (pack {decided.pack}): no branch of the tree matches")
        out.append(
            f"health: {self.health.name.lower()} ({decided.severity.value}, "
            f"{decided.error_type.value})"
        )
        return out


class NothingToProbe(Exception):
    """The labels match no pack's probes: there is nothing to triage."""


async def quick_triage(
    rules: RuleSet,
    labels: Mapping[str, str],
    probes: Mapping[str, Probe],
    *,
    budget_s: float,
    redact: Redactor,
    annotations: Mapping[str, str] | None = None,
) -> QuickTriage:
    alert = AlertInput(labels=dict(labels), annotations=dict(annotations or {}))
    classified = rules.evaluate(alert, explain=False).decision
    if not classified.probes:
        why = classified.reasons.get("refused") or (
            f"pack {classified.pack} plans no probe for them"
            if classified.pack
            else "no pack's scope takes them"
        )
        raise NothingToProbe(f"nothing to triage for these labels: {why}")
    results = tuple(
        with_runbook_lines(
            await run_probes(classified.probes, probes, budget_s=budget_s, redact=redact)
        )
    )
    # the same view of the facts an incident's triage walks the rules with (stage.py)
    facts = facts_view(
        merge_facts(list(results)),
        {
            "severity": classified.severity.value,
            "error_type": classified.error_type.value,
            "status": "open",
            "acked": False,
        },
    )
    decided = rules.evaluate(alert, facts, explain=False).decision
    return QuickTriage(classified=classified, decided=decided, results=results)
