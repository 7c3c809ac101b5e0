"""Running probes: concurrently, each within its own timeout, all within the triage budget.

A probe that fails, times out or is cut off by the budget becomes a result that says so;
it never holds up the others or loses the incident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import structlog

from responder.domain.decision import PlannedProbe
from responder.domain.facts import ProbeResult
from responder.ports import Probe
from responder.redaction import Redactor

log = structlog.get_logger("responder.triage")


async def _run_one(
    planned: PlannedProbe, probes: Mapping[str, Probe], redact: Redactor
) -> ProbeResult:
    spec = planned.spec
    started = time.monotonic()
    probe = probes.get(spec.type)
    if probe is None:
        return ProbeResult(probe=spec.type, ok=False, error="no such probe is set up here")
    try:
        result = await asyncio.wait_for(probe.run(spec), timeout=spec.timeout_s)
    except TimeoutError:
        result = ProbeResult(
            probe=spec.type, ok=False, error=f"timed out after {spec.timeout_s:g}s"
        )
    except OSError:
        # a connection that failed in a probe that did not say so itself: the same word
        # for refused, reset or unknown host, so a result never tells open ports from closed
        log.exception("probe failed", probe=spec.type)
        result = ProbeResult(probe=spec.type, ok=False, error="unreachable")
    except Exception as exc:
        log.exception("probe failed", probe=spec.type)
        result = ProbeResult(
            probe=spec.type, ok=False, error=redact(f"{type(exc).__name__}: {exc}")
        )
    return result.model_copy(update={"duration_s": round(time.monotonic() - started, 3)})


async def run_probes(
    planned: Sequence[PlannedProbe],
    probes: Mapping[str, Probe],
    *,
    budget_s: float,
    redact: Redactor,
) -> list[ProbeResult]:
    """Every planned probe's result, in plan order, within ``budget_s`` in all."""
    tasks = [asyncio.create_task(_run_one(p, probes, redact)) for p in planned]
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=budget_s)
    for task in pending:
        task.cancel()
    if pending:
        # bounded: a probe that ignores its cancellation must not hold triage up
        await asyncio.wait(pending, timeout=1.0)
    results = []
    for plan, task in zip(planned, tasks, strict=True):
        if task in done:
            results.append(task.result())
        else:
            results.append(
                ProbeResult(
                    probe=plan.spec.type,
                    ok=False,
                    duration_s=budget_s,
                    error=f"cut off by the triage budget ({budget_s:g}s)",
                )
            )
    return results
