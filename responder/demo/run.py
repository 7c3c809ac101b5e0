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
import re
import secrets
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from responder.app import RUNTIME, Overrides, create_app
from responder.demo.world import DemoCluster, EvidenceServer, Scenario, load_scenarios
from responder.domain.incident import Incident
from responder.domain.timeline import EventKind
from responder.notify.planners import (
    PAGERDUTY_SEVERITY,
    PAGERDUTY_SUMMARY,
    STATUSPAGE_BODY,
    STATUSPAGE_NAME,
    StatuspagePlanner,
)
from responder.render.words import value_text
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
# who approves a step waiting for approval in the demo: a Slack user the demo's settings
# allow to approve (RESPONDER_SLACK_APPROVE_BY), pressing Approve as Slack sends it
_DEMO_APPROVER = "dana"
_DEMO_APPROVER_ID = "U0DEMODANA"
# the demo's own Slack app signing secret, made up per run: the press is signed with it
# and verified by the real route, as Slack's would be
_DEMO_SIGNING_SECRET = secrets.token_hex(16)


def _slack_press(incident_id: str, step: str) -> tuple[bytes, dict[str, str]]:
    """Approve pressed on an approval request, as Slack posts it: the form field
    ``payload`` with the ``block_actions`` JSON, signed v0 with the app's signing secret."""
    value = json.dumps({"incident": incident_id, "step": step}, separators=(",", ":"))
    payload = {
        "type": "block_actions",
        "user": {"id": _DEMO_APPROVER_ID, "username": _DEMO_APPROVER, "name": _DEMO_APPROVER},
        "channel": {"id": "C0DEMO", "name": "posthog-incidents"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": "C0DEMO"},
        "trigger_id": secrets.token_hex(8),
        "actions": [{"action_id": "action.approve", "type": "button", "value": value}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(_DEMO_SIGNING_SECRET).generate_signature(
        timestamp=timestamp, body=body
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }
    return body, headers


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
    def __init__(self, *, out: Path, echo: Echo, verbose: bool = False) -> None:
        self.out = out
        self.echo = echo
        self.verbose = verbose  # the whole JSON of each patch, not one line per container
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
        _clear_previous_run(self.out)
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
            # Slack's interactivity: the demo presses Approve as Slack would send it
            slack_signing_secrets=[SecretStr(_DEMO_SIGNING_SECRET)],
            slack_approve_by=[_DEMO_APPROVER_ID],
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
            why = _why(event)
            if why:
                echo(f"             because {why}")
        shown = self._actions(incident, set())
        for approval in incident.get("approvals") or []:
            if approval.get("state") == "requested":
                shown = await self._approve(app, http, url, scenario, incident, approval, shown)
        self._secret(incident)
        self._page(app, incident)
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
        self._status_page(app, incident, resolved=True)
        echo(f"▶ lasted     {_lasted(incident)}")
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
            if event["kind"] == EventKind.ACTION_APPROVAL_REQUESTED and patch is not None:
                data = event["data"]
                self.echo(
                    f"▶ approval   {data.get('action')} on {data.get('target')} waits for a "
                    "person's yes: the patch it would send (strategic merge):"
                )
                self._patch(patch)
                if data.get("why"):
                    self.echo(f"             asked because {data['why']}")
                expires = str(data.get("expires_at", ""))[11:19]
                self.echo(
                    f"             unanswered by {expires} UTC: it expires, the on-call is paged"
                )
            elif event["kind"] == EventKind.ACTION_DRY_RUN and patch is not None:
                what = _dry_run_what(event["detail"])
                self.echo(f"▶ dry-run    {what}: the patch it would send (strategic merge):")
                self._patch(patch)
                if event["data"].get("approved_by"):
                    self.echo(f"             approved by {event['data']['approved_by']}")
            elif event["kind"] == EventKind.ACTION_DRY_RUN and revert is not None:
                what = _dry_run_what(event["detail"])
                self.echo(f"▶ dry-run    {what}: the patch it would send to undo it:")
                self._patch(revert)
            else:
                self.echo(f"▶ {event['kind']:<22} {event['detail']}")
        return shown | {e["seq"] for e in events}

    async def _approve(
        self,
        app: web.Application,
        http: aiohttp.ClientSession,
        url: str,
        scenario: Scenario,
        incident: dict[str, Any],
        approval: dict[str, Any],
        shown: set[int],
    ) -> set[int]:
        """A person approves the step waiting for approval: the demo presses Approve as
        Slack sends a button press (a signed ``block_actions`` interaction) to the real
        route, which verifies it and queues the answer; then it shows what ran."""
        step = str(approval["step"])
        self.echo(
            f"▶ approving  {_DEMO_APPROVER} ({_DEMO_APPROVER_ID}) presses Approve in Slack: "
            "a signed interaction to /v1/slack/interactions"
        )
        body, headers = _slack_press(str(incident["id"]), step)
        async with http.post(f"{url}/v1/slack/interactions", data=body, headers=headers) as resp:
            if resp.status != 200:
                raise DemoError(f"the Slack route answered {resp.status}: {await resp.text()}")
        incident = await self._settled(app, http, url, scenario, _STEP_RAN, step=step)
        return self._actions(incident, shown)

    def _patch(self, patch: dict[str, Any]) -> None:
        if self.verbose:
            self.echo(_indent(json.dumps(patch, indent=2), "               "))
            return
        for line in patch_lines(patch):
            self.echo(f"               {line}")

    def _secret(self, incident: dict[str, Any]) -> None:
        """Whether the key's Secret was rotated: what ``restart_if_secret_rotated``
        compared (the Secret's change time against the oldest pod's start)."""
        planned = [
            e
            for e in _events(incident, "action.")
            if e["data"].get("action") == "restart_if_secret_rotated"
        ]
        if not planned:
            return
        restarted = any(e["kind"] in _RESTART_PLANNED for e in planned)
        if restarted:
            self.echo("▶ secret     rotated: the API key's Secret changed after the oldest pod")
            self.echo(
                "             started, so the pods hold the old key: a restart loads the new one"
            )
        else:
            self.echo("▶ secret     not rotated: the Secret did not change after the pods started,")
            self.echo("             so a restart would not help: a human checks the key")

    def _page(self, app: web.Application, incident: dict[str, Any]) -> None:
        """The page a paging rule sends the on-call (the demo has no PagerDuty: what the
        Events API trigger would carry)."""
        if not incident.get("page"):
            self.echo("▶ pagerduty  no page: the rule does not page the on-call")
            return
        runtime = app[RUNTIME]
        current = _incident(incident)
        summary = runtime.renderer.internal(PAGERDUTY_SUMMARY, current, datetime.now(UTC))
        severity = PAGERDUTY_SEVERITY.get(str(incident["severity"]), "error")
        self.echo(f"▶ pagerduty  the on-call is paged ({severity}): {summary.strip()}")

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
        step: str | None = None,
    ) -> dict[str, Any]:
        """The scenario's incident once an event of ``kinds`` (``revert``: one about a
        revert; ``step``: one of that step) is on its timeline and the queue is idle (every
        follow-up, message and action done)."""
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
                    e["kind"] in kinds
                    and (not revert or "revert_patch" in e["data"])
                    and (step is None or e["data"].get("step") == step)
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

    def _status_page(
        self, app: web.Application, incident: dict[str, Any], *, resolved: bool = False
    ) -> None:
        runtime = app[RUNTIME]
        current = _incident(incident)
        if not StatuspagePlanner(renderer=runtime.renderer).engaged(current):
            if not resolved:
                self.echo("▶ status page: nothing public for a P3/P4 incident")
            return
        now = datetime.now(UTC)
        name = runtime.renderer.public(STATUSPAGE_NAME, current, now).strip()
        body = runtime.renderer.public(STATUSPAGE_BODY, current, now).strip()
        if resolved:
            self.echo("▶ status page on resolve (the public incident closed with):")
        else:
            self.echo("▶ status page (public: only the service, the impact, the status and times):")
        self.echo(_indent(f"{name}\n{body}", "   "))

    def _summary(self) -> None:
        if not self.outcomes:
            return
        self.echo("━" * 88)
        self.echo(f"{'scenario':<14} {'sev':<4} {'branch':<33} actions")
        for o in self.outcomes:
            self.echo(f"{o.scenario:<14} {o.severity:<4} {o.branch:<33} {o.actions}")
        self.echo(f"\nPostmortem drafts and evidence bundles: {self.out}/")
        self.echo("Nothing was changed anywhere: every action was a dry-run.")


# what an approved step leaves once it ran (or a guard stopped it)
_STEP_RAN = (
    EventKind.ACTION_DRY_RUN,
    EventKind.ACTION_APPLIED,
    EventKind.ACTION_IN_PLACE,
    EventKind.ACTION_REFUSED,
    EventKind.ACTION_FAILED,
)
# what a restart_if_secret_rotated that restarts leaves (a skip is action.skipped)
_RESTART_PLANNED = (EventKind.ACTION_DRY_RUN, EventKind.ACTION_APPLIED)
# the files a demo run writes in its output directory
_RUN_FILES = ("inc-*.md", "inc-*.tar.gz", "inc-*.svg", "inc-*.png")  # draft, bundle, graph


def _clear_previous_run(out: Path) -> None:
    """The output directory shows this run only: the postmortems and bundles an earlier
    demo wrote there go (nothing else in the directory is touched)."""
    if not out.is_dir():
        return
    for pattern in _RUN_FILES:
        for old in out.glob(pattern):
            old.unlink()


def _incident(doc: dict[str, Any]) -> Incident:
    return Incident.model_validate(
        {k: v for k, v in doc.items() if k not in ("alerts", "timeline")}
    )


def _why(event: dict[str, Any]) -> str:
    """The facts that decided the branch: each condition of its path with the value read."""
    facts = event["data"].get("facts")
    if not isinstance(facts, dict) or not facts:
        return ""
    return "; ".join(f"{cond} (was {value_text(value)})" for cond, value in facts.items())


def _lasted(incident: dict[str, Any]) -> str:
    """How long it lasted: by the alert (its first ``startsAt`` to its last ``endsAt``,
    two minutes before the demo sent it, as a real alert fires before it is told), and
    how long responder had the incident open."""
    opened = datetime.fromisoformat(str(incident["opened_at"]))
    resolved = datetime.fromisoformat(str(incident.get("resolved_at") or incident["opened_at"]))
    open_s = (resolved - opened).total_seconds()
    alerts = incident.get("alerts") or []
    starts = [datetime.fromisoformat(a["starts_at"]) for a in alerts if a.get("starts_at")]
    ends = [datetime.fromisoformat(a["ends_at"]) for a in alerts if a.get("ends_at")]
    held = f"open in responder {open_s:.1f} s"
    if not starts or not ends:
        return held
    fired = int((max(ends) - min(starts)).total_seconds())
    return f"{fired // 60}m {fired % 60:02d}s by the alert (startsAt to endsAt); {held}"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def patch_lines(patch: dict[str, Any]) -> list[str]:
    """A Deployment patch as one line per change: per container its env set or removed,
    the pod template's annotations, the replicas; anything else as compact JSON."""
    spec = _mapping(patch.get("spec"))
    template = _mapping(spec.get("template"))
    lines: list[str] = []
    for container in _mapping(template.get("spec")).get("containers") or []:
        changes = [
            f"{e['name']} removed"
            if e.get("$patch") == "delete"
            else f"{e['name']}={e.get('value')}"
            for e in container.get("env") or []
        ]
        rest = {k: v for k, v in container.items() if k not in ("name", "env")}
        if rest:
            changes.append(json.dumps(rest, separators=(",", ":")))
        lines.append(f"container {container.get('name')}: env {', '.join(changes)}")
    for key, value in _mapping(_mapping(template.get("metadata")).get("annotations")).items():
        lines.append(f"pod template annotation {key}={value}")
    if "replicas" in spec:
        lines.append(f"replicas: {spec['replicas']}")
    read = (
        set(patch) <= {"spec"}
        and set(spec) <= {"template", "replicas"}
        and set(template) <= {"spec", "metadata"}
        and set(_mapping(template.get("spec"))) <= {"containers"}
        and set(_mapping(template.get("metadata"))) <= {"annotations"}
    )
    if not lines or not read:  # a patch of another shape: all of it, on one line
        lines.append(json.dumps(patch, separators=(",", ":")))
    return lines


def _dry_run_what(detail: str) -> str:
    """What a dry-run event is of (``set_env on ns/name``, ``revert of ... (why)``), without
    the change and the patch the lines below it show."""
    return re.split(r" \(dry-run\)|[:;] would send", detail, maxsplit=1)[0]


def _probe_lines(event: dict[str, Any]) -> list[str]:
    probes = event["data"].get("probes") or []
    lines = [str(p.get("summary") or p.get("error") or p.get("probe")) for p in probes]
    return lines or [event["detail"]]


def _postmortem_head(path: Path) -> str:
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines[:6] if ln.strip()]
    return "\n".join(keep) + "\n   …"


def run(*, out: Path, names: list[str] | None, echo: Echo, verbose: bool = False) -> list[Outcome]:
    try:
        return asyncio.run(Demo(out=out, echo=echo, verbose=verbose).run(names))
    except ConfigError as exc:
        raise DemoError(str(exc)) from None
