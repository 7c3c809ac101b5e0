"""Running probes: concurrency, per-probe timeouts, the overall budget, failures as facts."""

from __future__ import annotations

import asyncio

from responder.adapters.probes.health import read_path
from responder.adapters.probes.prometheus import value_of
from responder.domain.decision import PlannedProbe
from responder.domain.facts import ProbeResult, merge_facts
from responder.domain.plans import HealthProbe, PrometheusProbe, VendorStatusProbe
from responder.redaction import Redactor
from responder.triage.runner import run_probes


class ScriptedProbe:
    """A probe adapter that takes as long as told, then answers or raises; ``log`` (shared
    by a test's probes) says, in order, which finished and which was cancelled."""

    def __init__(
        self,
        kind: str,
        *,
        delay_s: float = 0.0,
        fail: Exception | None = None,
        log: list[str] | None = None,
    ):
        self.kind = kind
        self.delay_s = delay_s
        self.fail = fail
        self.cancelled = False
        self.log = log if log is not None else []

    async def run(self, spec: object) -> ProbeResult:
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            self.log.append(f"{self.kind} cancelled")
            raise
        if self.fail is not None:
            raise self.fail
        self.log.append(f"{self.kind} finished")
        return ProbeResult(probe=self.kind, ok=True, facts={"value": self.kind})


class MeetingProbe:
    """A probe that answers only once every probe of its ``meeting`` has started: run one
    after the other, the first would wait for the others until its timeout."""

    def __init__(self, kind: str, meeting: Meeting) -> None:
        self.kind = kind
        self.meeting = meeting

    async def run(self, spec: object) -> ProbeResult:
        await self.meeting.arrive(self.kind)
        return ProbeResult(probe=self.kind, ok=True, facts={"value": self.kind})


class Meeting:
    def __init__(self, size: int) -> None:
        self.size = size
        self.arrived: list[str] = []
        self.all_there = asyncio.Event()

    async def arrive(self, who: str) -> None:
        self.arrived.append(who)
        if len(self.arrived) == self.size:
            self.all_there.set()
        await self.all_there.wait()


def plan(kind: str, timeout_s: float = 5.0) -> PlannedProbe:
    specs = {
        "vendor_status": VendorStatusProbe(
            type="vendor_status", url="http://127.0.0.1:9", timeout_s=timeout_s
        ),
        "health": HealthProbe(type="health", url="http://127.0.0.1:9/health", timeout_s=timeout_s),
        "prometheus": PrometheusProbe(type="prometheus", queries={"q": "up"}, timeout_s=timeout_s),
    }
    return PlannedProbe(rule="r", spec=specs[kind])


async def test_probes_run_concurrently() -> None:
    # each answers only once all three have started: side by side, not one after the
    # other (in turn, the first would time out waiting for the others)
    meeting = Meeting(3)
    kinds = ("vendor_status", "health", "prometheus")
    probes = {k: MeetingProbe(k, meeting) for k in kinds}
    results = await run_probes(
        [plan(k, timeout_s=10) for k in kinds], probes, budget_s=20, redact=Redactor()
    )
    assert [(r.ok, r.error) for r in results] == [(True, None)] * 3
    assert sorted(meeting.arrived) == sorted(kinds)


async def test_a_hanging_probe_is_cut_off_by_the_budget_without_delaying_the_others() -> None:
    log: list[str] = []
    hang = ScriptedProbe("vendor_status", delay_s=3600, log=log)
    probes = {"vendor_status": hang, "health": ScriptedProbe("health", delay_s=0.05, log=log)}
    results = await run_probes(
        [plan("vendor_status", timeout_s=60), plan("health")],
        probes,
        budget_s=0.5,
        redact=Redactor(),
    )
    vendor, health = results
    assert (vendor.ok, health.ok) == (False, True)
    # cut off by the budget, not by its own 60 s timeout nor left running
    assert vendor.error == "cut off by the triage budget (0.5s)"
    assert hang.cancelled
    # the other answered while the hanging one still ran, not after it
    assert log == ["health finished", "vendor_status cancelled"]


async def test_a_probe_over_its_own_timeout_says_so() -> None:
    slow = ScriptedProbe("health", delay_s=3600)
    [result] = await run_probes(
        [plan("health", timeout_s=0.2)], {"health": slow}, budget_s=30, redact=Redactor()
    )
    # its own timeout ended it (the budget would say "cut off"), and it was stopped
    assert (result.ok, result.error) == (False, "timed out after 0.2s")
    assert slow.cancelled
    assert result.duration_s >= 0.15  # it was given its time


async def test_a_crashing_probe_is_a_failed_result_with_secrets_redacted() -> None:
    probes = {"health": ScriptedProbe("health", fail=RuntimeError("boom with tok-1234567"))}
    [result] = await run_probes(
        [plan("health")], probes, budget_s=5, redact=Redactor(["tok-1234567"])
    )
    assert result.ok is False
    assert result.error == "RuntimeError: boom with [REDACTED]"


async def test_a_probe_nobody_set_up_is_a_failed_result() -> None:
    [result] = await run_probes([plan("prometheus")], {}, budget_s=5, redact=Redactor())
    assert (result.ok, result.error) == (False, "no such probe is set up here")


def test_failed_probes_leave_only_their_error_as_fact() -> None:
    facts = merge_facts(
        [
            ProbeResult(probe="vendor_status", ok=False, error="timed out after 5s"),
            ProbeResult(probe="health", ok=True, facts={"ok": False, "status": "down"}),
        ]
    )
    assert facts == {
        "vendor": {"error": "timed out after 5s"},
        "health": {"ok": False, "status": "down"},
    }


def test_json_path_reading() -> None:
    doc = {"services": {"posthog": {"status": "ok"}}, "list": [{"a": 1}]}
    assert read_path(doc, ".services.posthog.status") == (True, "ok")
    assert read_path(doc, ".list[0].a") == (True, 1)
    assert read_path(doc, ".services.db.status") == (False, None)
    assert read_path(doc, ".") == (True, doc)


def test_prometheus_results_become_facts() -> None:
    def vector(*series: tuple[dict[str, str], str]) -> dict[str, object]:
        return {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1.0, v]} for m, v in series],
        }

    assert value_of(vector(({}, "0.25"))) == 0.25
    assert value_of(vector(({"status_code": "429"}, "2"), ({"status_code": "500"}, "0.5"))) == {
        "429": 2.0,
        "500": 0.5,
    }
    assert value_of(vector()) is None  # no data
    assert value_of(vector(({}, "NaN"))) is None  # 0/0: not a number to compare
    assert value_of({"resultType": "scalar", "result": [1.0, "3"]}) == 3.0
