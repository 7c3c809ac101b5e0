"""Runs the demo: the real service in-process on embedded defaults (memory store and
queue, console notifier, dry-run actions), the shipped PostHog pack with its triage
sources pointed at the demo's world, and each bundled scenario replayed over HTTP, firing
then resolved. The terminal shows what came in, how it was classified, the triage facts,
the decision, the exact patches the responder would send, what people are told, and where
the postmortem went."""

from __future__ import annotations

import asyncio
import io
import json
import os
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from responder.app import RUNTIME, Overrides, create_app
from responder.demo.world import DemoCluster, EvidenceServer, Scenario, load_scenarios
from responder.domain.incident import Incident
from responder.domain.timeline import EventKind
from responder.notify.planners import STATUSPAGE_BODY, STATUSPAGE_NAME, StatuspagePlanner
from responder.settings import ENV_PREFIX, ConfigError, Settings, default_rules_paths

Echo = Callable[[str], None]
_TIMEOUT_S = 30.0
_SHIPPED_VENDOR = "url: https://status.posthog.com"
_SHIPPED_HEALTH = 'url: "http://{{ integration }}.{{ labels.namespace }}.svc.cluster.local/health"'
_SHIPPED_API = "url: https://api.posthog.com"
# the fallback's quiet period after PostHog resolves (the shipped pack's ten minutes): a
# second, so the demo shows the revert without the wait
_SHIPPED_QUIET = "revert: vendor_resolved\n        revert_quiet_s: 600"
_DEMO_QUIET = "revert: vendor_resolved\n        revert_quiet_s: 1"


class DemoError(Exception):
    """The demo cannot run; the message says why."""


@dataclass
class Outcome:
    scenario: str
    severity: str
    branch: str
    actions: str
    postmortem: str


def demo_pack(world_url: str, into: Path) -> Path:
    """The shipped PostHog pack, its triage sources pointed at the demo's world."""
    # the checkout's rules/, or where RESPONDER_RULES points (the image's /app/rules)
    places = [*default_rules_paths(), *Settings().rules]
    candidates = [p if p.suffix == ".yaml" else p / "posthog.yaml" for p in places]
    shipped = next((p for p in candidates if p.name == "posthog.yaml" and p.is_file()), None)
    if shipped is None:
        raise DemoError("the shipped rules/posthog.yaml is not here: set RESPONDER_RULES")
    text = shipped.read_text()
    for old in (_SHIPPED_VENDOR, _SHIPPED_HEALTH, _SHIPPED_API, _SHIPPED_QUIET):
        if old not in text:
            raise DemoError(f"rules/posthog.yaml no longer says {old!r}: update the demo")
    text = (
        text.replace(_SHIPPED_VENDOR, f"url: {world_url}/vendor")
        .replace(_SHIPPED_HEALTH, f'url: "{world_url}/health"')
        .replace(_SHIPPED_API, f"url: {world_url}/posthog-api")
        .replace(_SHIPPED_QUIET, _DEMO_QUIET)
    )
    into.mkdir(parents=True, exist_ok=True)
    path = into / "posthog-demo.yaml"
    path.write_text(text)
    return path


@contextmanager
def _embedded_only() -> Iterator[None]:
    """Settings from nothing but the demo: whatever RESPONDER_* says in this shell (a
    Slack token, a PagerDuty key, a cluster) must not make a demo reach the real ones."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


def _indent(text: str, by: str = "      ") -> str:
    return textwrap.indent(text.rstrip("\n"), by)


def _events(incident: dict[str, Any], *prefixes: str) -> list[dict[str, Any]]:
    return [e for e in incident["timeline"] if e["kind"].startswith(prefixes)]


class Demo:
    def __init__(self, *, out: Path, echo: Echo) -> None:
        self.out = out
        self.echo = echo
        self.world = EvidenceServer()
        self.cluster = DemoCluster()
        self.console = io.StringIO()
        self.outcomes: list[Outcome] = []

    async def run(self, names: list[str] | None = None) -> list[Outcome]:
        scenarios = load_scenarios()
        if names:
            known = {s.name for s in scenarios}
            unknown = sorted(set(names) - known)
            if unknown:
                raise DemoError(
                    f"unknown scenario {', '.join(unknown)}: pick from {', '.join(sorted(known))}"
                )
            scenarios = [s for s in scenarios if s.name in names]
        await self.world.start()
        try:
            pack = demo_pack(self.world.url, self.out / ".demo")
            with _embedded_only():
                settings = self._settings(pack)
            app = create_app(
                settings,
                overrides=Overrides(kube=self.cluster, console=self.console),
                handle_signals=False,
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            self.echo(f"responder is serving on {url} (embedded defaults: memory store, console")
            self.echo("notifier, and the pack's actions in dry-run). Triage sources: the demo's")
            self.echo(f"stand-ins on {self.world.url}. Postmortems go to {self.out}/.")
            self.echo("RESPONDER_* settings of this shell are ignored: nothing real is reached.\n")
            try:
                async with aiohttp.ClientSession() as http:
                    for number, scenario in enumerate(scenarios, 1):
                        await self._scenario(app, http, url, scenario, number, len(scenarios))
            finally:
                await runner.cleanup()
        finally:
            await self.world.close()
        self._summary()
        return self.outcomes

    def _settings(self, pack: Path) -> Settings:
        return Settings(
            rules=[pack],
            prometheus_url=f"{self.world.url}/prometheus",
            reports_dir=self.out,
            triage=True,
            triage_budget_s=5,
            action_allowlist=["production/posthog-integration/*"],
            workers=2,
            batch_wait_s=0,
            log_level="WARNING",
            incident_commander="@posthog-oncall",
            # the stand-in status page answers at once: a second keeps the demo short
            vendor_watch_interval_s=1,
        )

    # ------------------------------------------------------------------ one scenario

    async def _scenario(
        self,
        app: web.Application,
        http: aiohttp.ClientSession,
        url: str,
        scenario: Scenario,
        number: int,
        total: int,
    ) -> None:
        echo = self.echo
        self.world.evidence = self.cluster.evidence = scenario.evidence
        echo("━" * 88)
        echo(f"Scenario {number}/{total}: {scenario.title}")
        echo("━" * 88)
        started = datetime.now(UTC)
        payload = scenario.payload("firing", started - timedelta(minutes=2), started)
        labels = " ".join(f'{k}="{v}"' for k, v in scenario.alert.labels.items())
        echo(f"▶ received   Alertmanager webhook, firing: {labels}")
        answer = await self._post(http, url, payload)
        echo(f"             answered 200 {json.dumps(answer)}")

        incident = await self._settled(app, http, url, scenario, (EventKind.INCIDENT_DECIDED,))
        echo(
            f"▶ classified {incident['severity']} {incident['error_type']} by rule "
            f"{incident['rule']}: {incident['title']}"
        )
        for event in _events(incident, EventKind.TRIAGE_COMPLETED):
            echo("▶ triage     " + "\n             ".join(_probe_lines(event)))
        for event in _events(incident, EventKind.INCIDENT_DECIDED, EventKind.INCIDENT_UNDECIDED):
            echo(f"▶ decision   {event['detail']}")
        shown = self._actions(incident, set())
        self._told("Slack root message (from the console notifier; each step above is a reply)")
        self._status_page(app, incident)
        vendor = incident["facts"].get("vendor")
        if isinstance(vendor, dict) and vendor.get("incident"):
            shown = await self._vendor_resolves(app, http, url, scenario, shown)

        resolved = scenario.payload("resolved", started - timedelta(minutes=2), datetime.now(UTC))
        echo("▶ received   Alertmanager webhook, resolved")
        await self._post(http, url, resolved)
        incident = await self._settled(
            app, http, url, scenario, (EventKind.REPORT_WRITTEN, EventKind.REPORT_FAILED)
        )
        # what the revert policies did at resolve (a revert, or the undo left for a human)
        self._actions(incident, shown)
        self._told("and on resolve, the root message edited in place")
        report = _events(incident, "report.")[-1]
        path = str(report["data"].get("postmortem", ""))
        echo(f"▶ postmortem {path or report['detail']}")
        if path:
            echo(_indent(_postmortem_head(Path(path)), "             "))
        echo("")
        actions = [
            f"{e['kind'].removeprefix('action.')}"
            + (" revert" if "revert_of" in e["data"] else "")
            + f": {e['data'].get('action', '')}"
            for e in _events(incident, "action.")
        ]
        self.outcomes.append(
            Outcome(
                scenario=scenario.name,
                severity=str(incident["severity"]),
                branch=str(incident.get("branch") or "-"),
                actions=", ".join(actions) or "-",
                postmortem=path,
            )
        )

    def _actions(self, incident: dict[str, Any], shown: set[int]) -> set[int]:
        """Echo the action events (and calls for a human) not shown yet; those shown now."""
        events = _events(incident, "action.", EventKind.INCIDENT_NEEDS_HUMAN)
        for event in (e for e in events if e["seq"] not in shown):
            patch = event["data"].get("patch")
            revert = event["data"].get("revert_patch")
            if event["kind"] == EventKind.ACTION_DRY_RUN and patch is not None:
                what = event["detail"].split(": would send", 1)[0]
                self.echo(f"▶ dry-run    {what}: the exact patch it would send (strategic merge):")
                self.echo(_indent(json.dumps(patch, indent=2), "               "))
            elif event["kind"] == EventKind.ACTION_DRY_RUN and revert is not None:
                what = event["detail"].split(": would send", 1)[0]
                self.echo(f"▶ dry-run    {what}: the exact patch it would send to undo it:")
                self.echo(_indent(json.dumps(revert, indent=2), "               "))
            else:
                self.echo(f"▶ {event['kind']:<22} {event['detail']}")
        return shown | {e["seq"] for e in events}

    async def _vendor_resolves(
        self,
        app: web.Application,
        http: aiohttp.ClientSession,
        url: str,
        scenario: Scenario,
        shown: set[int],
    ) -> set[int]:
        """The runbook's "wait for PostHog to resolve": the watch reads PostHog's status
        page again until its incident is over, which the demo's stand-in now shows; then
        the fallback's revert policy (``vendor_resolved``) checks, after its quiet period,
        that our error ratio stayed down, and shows the revert it would send."""
        self.echo("▶ watching   PostHog's status page until its incident is over")
        self.echo("             (now PostHog resolves it on its status page, and our calls")
        self.echo("             to PostHog succeed again)")
        self.world.evidence = scenario.evidence.model_copy(
            update={"vendor_incident": None, "error_ratio": 0.0, "errors_by_status_code": {}}
        )
        incident = await self._settled(app, http, url, scenario, (EventKind.VENDOR_RESOLVED,))
        for event in _events(incident, "vendor."):
            self.echo(f"▶ {event['kind']:<22} {event['detail']}")
        self.echo("▶ waiting    the fallback's quiet period, then its verify query")
        incident = await self._settled(
            app, http, url, scenario, (EventKind.ACTION_DRY_RUN,), revert=True
        )
        return self._actions(incident, shown)

    async def _post(self, http: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> Any:
        async with http.post(f"{url}/v1/webhooks/alertmanager", json=payload) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise DemoError(f"the service answered {resp.status}: {body}")
            return body

    async def _settled(
        self,
        app: web.Application,
        http: aiohttp.ClientSession,
        url: str,
        scenario: Scenario,
        kinds: tuple[EventKind, ...],
        *,
        revert: bool = False,
    ) -> dict[str, Any]:
        """The scenario's incident once an event of ``kinds`` (``revert``: one about a
        revert) is on its timeline and the queue is idle (every follow-up, message and
        action done)."""
        queue = app[RUNTIME].queue
        name = scenario.alert.labels["alertname"]
        deadline = asyncio.get_running_loop().time() + _TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            async with http.get(f"{url}/v1/incidents?limit=20") as resp:
                listed = (await resp.json())["incidents"]
            mine = next((i for i in listed if i["labels"].get("alertname") == name), None)
            stats = await queue.stats()
            if mine is not None and stats.depth == 0 and stats.pending == 0:
                async with http.get(f"{url}/v1/incidents/{mine['id']}") as resp:
                    incident: dict[str, Any] = await resp.json()
                if any(
                    e["kind"] in kinds and (not revert or "revert_patch" in e["data"])
                    for e in incident["timeline"]
                ):
                    return incident
            await asyncio.sleep(0.1)
        raise DemoError(f"{scenario.name}: no {' or '.join(kinds)} within {_TIMEOUT_S:g}s")

    def _told(self, heading: str) -> None:
        # the root message as posted or edited; the event lines repeat what was shown
        text = "".join(
            line
            for line in self.console.getvalue().splitlines(keepends=True)
            if line.startswith(("── ", "   "))
        )
        self.console.seek(0)
        self.console.truncate()
        if text.strip():
            self.echo(f"▶ {heading}:")
            self.echo(_indent(text, "   "))

    def _status_page(self, app: web.Application, incident: dict[str, Any]) -> None:
        runtime = app[RUNTIME]
        current = Incident.model_validate(
            {k: v for k, v in incident.items() if k not in ("alerts", "timeline")}
        )
        if not StatuspagePlanner(renderer=runtime.renderer).engaged(current):
            self.echo("▶ status page: nothing public for a P3/P4 incident")
            return
        now = datetime.now(UTC)
        name = runtime.renderer.public(STATUSPAGE_NAME, current, now).strip()
        body = runtime.renderer.public(STATUSPAGE_BODY, current, now).strip()
        self.echo("▶ status page (public: only the service, the impact, the status and times):")
        self.echo(_indent(f"{name}\n{body}", "   "))

    def _summary(self) -> None:
        if not self.outcomes:
            return
        self.echo("━" * 88)
        self.echo(f"{'scenario':<14} {'sev':<4} {'branch':<30} actions")
        for o in self.outcomes:
            self.echo(f"{o.scenario:<14} {o.severity:<4} {o.branch:<30} {o.actions}")
        self.echo(f"\nPostmortem drafts and evidence bundles: {self.out}/")
        self.echo("Nothing was changed anywhere: every action was a dry-run.")


def _probe_lines(event: dict[str, Any]) -> list[str]:
    probes = event["data"].get("probes") or []
    lines = [str(p.get("summary") or p.get("error") or p.get("probe")) for p in probes]
    return lines or [event["detail"]]


def _postmortem_head(path: Path) -> str:
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines[:6] if ln.strip()]
    return "\n".join(keep) + "\n   …"


def run(*, out: Path, names: list[str] | None, echo: Echo) -> list[Outcome]:
    try:
        return asyncio.run(Demo(out=out, echo=echo).run(names))
    except ConfigError as exc:
        raise DemoError(str(exc)) from None
