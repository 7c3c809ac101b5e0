"""Triage results: what each probe found, as facts for the rules and evidence for people."""

from __future__ import annotations

from pydantic import Field, JsonValue

from responder.domain.model import Frozen

# Where each probe's facts go: ``vendor.incident``, ``health.ok``, ``prometheus.<query>``...
FACT_NAMESPACES = {
    "vendor_status": "vendor",
    "health": "health",
    "http": "http",
    "prometheus": "prometheus",
    "pod_logs": "logs",
}


class ProbeResult(Frozen):
    """One probe's outcome. ``ok`` says the probe worked, not that the target is healthy:
    a health endpoint that answers "down" is an ok probe with the fact ``health.ok=false``."""

    probe: str
    ok: bool
    facts: dict[str, JsonValue] = Field(default_factory=dict)
    evidence: dict[str, JsonValue] = Field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0
    summary: str = ""

    @property
    def namespace(self) -> str:
        return FACT_NAMESPACES.get(self.probe, self.probe)


def merge_facts(results: list[ProbeResult]) -> dict[str, JsonValue]:
    """All results' facts under their namespaces; a failed probe leaves its error, and the
    facts that say how it failed when it has them (``vendor.reachable: false``, the
    runbook's error-handling rows), never a fact about the target."""
    facts: dict[str, JsonValue] = {}
    for result in results:
        space = facts.setdefault(result.namespace, {})
        assert isinstance(space, dict)
        if not result.ok:
            space.setdefault("error", result.error or "failed")
        space.update(result.facts)
    return facts
