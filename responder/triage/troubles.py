"""The runbook's "Error Handling" table, read off the probes' results.

| Issue                   | Cause             | Solution             |
|-------------------------|-------------------|----------------------|
| Can't reach status page | Network issue     | Use mobile or VPN    |
| kubectl fails           | Auth expired      | Re-authenticate      |
| Metrics unavailable     | Prometheus down   | Check backup metrics |
| Secret rotation fails   | Permission denied | Escalate to admin    |

Each row is a fact a probe writes when it fails that way (``vendor.reachable: false``,
``logs.access: auth_failed`` or ``permission_denied``, ``prometheus.reachable: false``);
here it becomes the runbook's line in the triage message and, where the solution is a
person's to carry out, a human called. Backup metrics are tried already (the Prometheus
URLs in order): "metrics unavailable" means none answered, and the tree is left without
its error ratio (the incident is undecided) rather than a person called for it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from responder.domain.facts import ProbeResult


@dataclass(frozen=True)
class Trouble:
    probe: str
    fact: str  # the fact that says it, ``name=value`` in the probe's namespace
    issue: str
    cause: str
    solution: str
    human: bool  # the solution is a person's to carry out

    @property
    def line(self) -> str:
        return f"runbook: {self.issue} ({self.cause.lower()}): {self.solution.lower()}"


_ROWS = (
    Trouble(
        "vendor_status",
        "reachable=False",
        "Can't reach status page",
        "Network issue",
        "Use mobile or VPN to read it",
        human=True,
    ),
    Trouble(
        "pod_logs",
        "access=auth_failed",
        "kubectl fails",
        "Auth expired",
        "Re-authenticate the responder's cluster credentials",
        human=True,
    ),
    Trouble(
        "pod_logs",
        "access=permission_denied",
        "Permission denied",
        "The role lacks a permission",
        "Escalate to admin",
        human=True,
    ),
    Trouble(
        "prometheus",
        "reachable=False",
        "Metrics unavailable",
        "Prometheus down",
        "Backup metrics tried: none answered; check Prometheus",
        human=False,
    ),
)


def troubles_of(result: ProbeResult) -> list[Trouble]:
    """The runbook rows one result shows."""
    return [
        row
        for row in _ROWS
        if row.probe == result.probe
        and str(result.facts.get(row.fact.split("=", 1)[0])) == row.fact.split("=", 1)[1]
    ]


def with_runbook_lines(results: Sequence[ProbeResult]) -> list[ProbeResult]:
    """Each result whose failure is a runbook row, its summary ending with the row's
    line (what the triage message shows), the others as they are."""
    out = []
    for result in results:
        rows = troubles_of(result)
        if rows:
            said = "; ".join(r.line for r in rows)
            result = result.model_copy(update={"summary": f"{result.summary} ({said})"})
        out.append(result)
    return out


def human_needed(results: Sequence[ProbeResult]) -> str | None:
    """Why a human is needed now, from the rows whose solution is a person's; ``None``."""
    rows = [row for result in results for row in troubles_of(result) if row.human]
    if not rows:
        return None
    return "; ".join(f"{r.issue} ({r.cause.lower()}): {r.solution.lower()}" for r in rows)
