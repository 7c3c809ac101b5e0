"""The postmortem draft and the evidence bundle: the runbook's template filled from a real
incident's timeline, and the debug bundle with its sha256 manifest, redacted; written on
resolve, served by the API and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import re
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from responder.cli import cli
from responder.domain.action import ActionRecord, Outcome
from responder.domain.incident import Incident, IncidentStatus
from responder.domain.severity import ErrorType, Severity
from responder.domain.timeline import TimelineEvent
from responder.ports import IncidentView
from responder.redaction import Redactor
from responder.render.templates import Templates
from responder.report.bundle import incident_files, pack
from responder.report.postmortem import build_postmortem, render_postmortem, span
from tests.support.fake_notify import FakeSlack
from tests.support.mitigation import DEPLOY, NS, alert, cluster, responder, settled
from tests.support.prometheus import ControlledExporter, Prometheus, running_prometheus
from tests.support.waiting import eventually

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
DEFAULTS = Path(__file__).resolve().parents[1] / "responder" / "render" / "defaults"


def event(seq: int, minutes: float, kind: str, detail: str, **data: Any) -> TimelineEvent:
    return TimelineEvent(
        seq=seq, at=T0 + timedelta(minutes=minutes), kind=kind, detail=detail, data=data
    )


def incident(**update: Any) -> Incident:
    base = Incident(
        id="inc-1",
        group_key="g",
        title="PostHog rate-limits posthog-integration (HTTP 429)",
        severity=Severity.P2,
        error_type=ErrorType.RATE_LIMIT,
        pack="posthog",
        branch="our-integration-rate-limit",
        alerts_total=2,
        opened_at=T0,
        updated_at=T0,
        facts={"vendor": {"incident": False}, "logs": {"error": "403 Forbidden"}},
    )
    return base.model_copy(update=update)


TIMELINE = [
    event(0, 0, "incident.opened", "Opened by PostHogRateLimited firing"),
    event(1, 0, "alert.joined", "another alert"),
    event(2, 0.1, "notification.posted", "Slack: root message posted", sink="slack"),
    event(3, 0.2, "notification.posted", "Slack: reply posted", sink="slack"),
    event(4, 1, "triage.completed", "vendor: no incident; error ratio 0.31"),
    event(
        5,
        1,
        "incident.decided",
        "Decision tree: our-integration-rate-limit; planned: set_env",
        facts={"prometheus.error_ratio": 0.31, "vendor.incident": False},
    ),
    event(
        6,
        3,
        "action.applied",
        "set_env RATE_LIMIT_MODE=queue",
        action="set_env",
        target="production/posthog-integration",
    ),
    event(
        7,
        4,
        "action.refused",
        "not on the allowlist",
        action="scale",
        target="production/posthog-integration",
    ),
    event(8, 5, "incident.needs_human", "set_env did not help", reason="set_env did not help"),
    event(9, 92, "incident.acknowledged", "Acknowledged by Jane Doe in PagerDuty", by="Jane Doe"),
    event(10, 185, "incident.resolved", "All alerts resolved"),
]


def postmortem_of(inc: Incident, timeline: list[TimelineEvent] = TIMELINE) -> Any:
    return build_postmortem(
        inc,
        timeline,
        service="PostHog integration",
        impact="delays in analytics data",
        branch_description="No PostHog incident and calls get 429: queue requests. Long term: ask.",
        severity_definition="Degraded service",
        response_time="< 1 hour",
        response_time_s=3600,
        now=T0 + timedelta(hours=5),
    )


def test_span_reads_like_the_runbook() -> None:
    assert span(42) == "42 seconds"
    assert span(7 * 60 + 5) == "7 minutes"
    assert span(3 * 3600 + 5 * 60) == "3 hours 5 minutes"


def test_span_says_one_of_a_unit_in_the_singular() -> None:
    assert span(1) == "1 second"
    assert span(61) == "1 minute"
    assert span(3600 + 60) == "1 hour 1 minute"


def test_postmortem_fills_the_runbook_template_from_the_timeline() -> None:
    done = incident(
        status=IncidentStatus.RESOLVED,
        acked_by="Jane Doe",
        acked_at=T0 + timedelta(minutes=92),
        resolved_at=T0 + timedelta(minutes=185),
    )
    pm = postmortem_of(done)
    assert pm.time_to_acknowledge == "1 hour 32 minutes"
    assert pm.time_to_mitigate == "3 minutes"
    assert pm.time_to_resolve == "3 hours 5 minutes"
    text = render_postmortem(Templates([DEFAULTS]), pm)
    assert text.startswith("## Incident: PostHog integration: Rate limiting (429)\n")
    assert "**Date:** 2026-11-29" in text
    assert "**Duration:** 3 hours 5 minutes" in text
    assert "**Severity:** P2 (Degraded service)" in text
    timeline = [ln for ln in text.splitlines() if re.match(r"- \d\d:\d\d - ", ln)]
    # detected, first message (once), triage, decision, actions, human, ack, resolved; the
    # alert join and the second Slack message are not postmortem material
    assert timeline[:3] == [
        "- 03:00 - Detected: Opened by PostHogRateLimited firing",
        "- 03:00 - First message: Slack: root message posted",
        "- 03:01 - Triage: vendor: no incident; error ratio 0.31",
    ]
    assert "- 03:03 - Action applied: set_env RATE_LIMIT_MODE=queue" in timeline
    assert "- 04:32 - Acknowledged by Jane Doe in PagerDuty" in timeline
    assert timeline[-1] == "- 06:05 - Resolved: All alerts resolved"
    assert not any("another alert" in ln or "reply posted" in ln for ln in timeline)
    # the root cause is the branch's description, marked as a hypothesis, with its facts
    assert "Hypothesis (decision tree branch `our-integration-rate-limit`" in text
    assert "- `prometheus.error_ratio` = `0.31`" in text
    assert "Users affected: N (to fill in)" in text
    assert "What users saw: delays in analytics data" in text
    items = [ln for ln in text.splitlines() if ln.startswith("- [ ] ")]
    joined = "\n".join(items)
    assert "scale on production/posthog-integration" in joined  # refused: review the guard
    assert "A human was needed (set_env did not help)" in joined
    assert "Triage could not read `logs` (403 Forbidden)" in joined
    # acknowledged after 92 minutes, P2's response time is one hour
    assert "Acknowledged after 1 hour 32 minutes, beyond the P2 response time" in joined
    assert all(i.endswith(" - Owner - Due date") for i in items)


def test_postmortem_of_an_incident_without_a_branch_says_the_cause_is_unknown() -> None:
    open_one = incident(branch=None)
    pm = postmortem_of(open_one, TIMELINE[:4])
    assert pm.root_cause.startswith("Unknown: the triage facts picked no branch")
    assert "no facts from: logs" in pm.root_cause
    assert pm.time_to_resolve is None
    assert pm.duration.endswith("so far")
    assert pm.time_to_mitigate is None


def test_bundle_has_a_manifest_of_sha256_and_redacts_secrets() -> None:
    secret = "s3cr3t-admin-token-value"
    view = IncidentView(
        incident=incident(
            facts={"health": {"body": f"token={secret}"}},
            actions=(
                ActionRecord(
                    step="s#0:set_env",
                    action="set_env",
                    target="production/posthog-integration",
                    verdict=Outcome.APPLIED,
                    reason="applied",
                    at=T0,
                    before={"RATE_LIMIT_MODE": None},
                    after={"RATE_LIMIT_MODE": "queue"},
                ),
            ),
        ),
        timeline=tuple(TIMELINE),
    )
    files = incident_files(
        view, messages={"slack": "root"}, postmortem="# pm\nAuthorization: Bearer abcdefghijkl"
    )
    files["logs/production/pod-0.log"] = f"error: login with {secret} failed\n".encode()
    created = T0 + timedelta(hours=4)
    blob = pack(files, incident_id="inc-1", created_at=created, redact=Redactor([secret]))
    assert blob == pack(files, incident_id="inc-1", created_at=created, redact=Redactor([secret]))
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        contents = {
            m.name.removeprefix("inc-1/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }
    manifest = json.loads(contents.pop("manifest.json"))
    assert manifest["incident"] == "inc-1"
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(contents)
    for name, data in contents.items():
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert secret.encode() not in data, name
    assert b"abcdefghijkl" not in contents["postmortem.md"]
    actions = json.loads(contents["actions.json"])
    assert actions[0]["before"] == {"RATE_LIMIT_MODE": None}
    assert actions[0]["after"] == {"RATE_LIMIT_MODE": "queue"}
    assert [e["seq"] for e in json.loads(contents["timeline.json"])] == list(range(11))


QUERY = 'sum(rate(posthog_errors_total{service=\\"posthog-integration\\"}[1m]))'


def with_evidence_probes(pack_path: Path) -> None:
    """The test pack, with the runbook's other triage probes: Prometheus and pod logs."""
    text = pack_path.read_text()
    probes = "  probes:\n"
    assert probes in text
    pack_path.write_text(
        text.replace(
            probes,
            probes
            + f'    - {{type: prometheus, queries: {{error_rate: "{QUERY}"}}}}\n'
            + "    - {type: pod_logs, namespace: production, selector: app=posthog-integration}\n",
            1,
        )
    )


async def until_a_step_has_data(prom: Prometheus, inc: dict[str, Any]) -> None:
    """Wait until one step of the incident window's range query (every 15 s from 30
    minutes before it opened) falls after Prometheus has the rule's rate: a young
    Prometheus has nothing before, and the graph needs one sample."""
    await prom.wait_for_samples(QUERY.replace('\\"', '"'), 0)
    start = datetime.fromisoformat(inc["opened_at"]).timestamp() - 1800
    step = start + 15 * math.ceil((time.time() - start) / 15)
    await asyncio.sleep(max(0.0, step - time.time()) + 0.5)


def members(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_resolve_writes_postmortem_and_bundle_once_and_links_them_in_slack(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Two replicas on one Redis both get the resolve (an Alertmanager HA pair): one
    report, written after the revert, with the real Prometheus's range of the rule's
    query and the pods' logs, redacted."""
    reports = tmp_path / "reports"
    secret = "phc_0123456789abcdefABCDEF"
    async with (
        ControlledExporter() as exporter,
        running_prometheus([exporter]) as prom,
        FakeSlack() as slack,
        cluster(tmp_path) as c,
    ):
        exporter.set_counter("posthog_errors_total", {"service": "posthog-integration"}, 5)
        with_evidence_probes(c.pack)
        for n in range(2):
            c.kube.add_log(NS, f"{DEPLOY}-{n}", f"ERROR posthog 429 with api_key={secret}")
        settings = {
            "prometheus_url": prom.url,
            "reports_dir": reports,
            "slack_token": slack.token,
            "slack_api_url": slack.api_url,
            "slack_channel": "#posthog-incidents",
            "notify_retry_base_s": 0.2,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
        }
        async with (
            responder(c, make_settings, notify=True, **settings) as a,
            responder(c, make_settings, notify=True, **settings) as b,
        ):
            await a.post_alertmanager(alert("SetEnv"))
            inc = await settled(a, "SetEnv", "action.applied")
            await until_a_step_has_data(prom, inc)
            resolved = alert("SetEnv", status="resolved")
            # both replicas get the resolve (Alertmanager HA pair): one report
            await asyncio.gather(a.post_alertmanager(resolved), b.post_alertmanager(resolved))
            done = await settled(a, "SetEnv", "report.written")
            await b.idle()
            await asyncio.sleep(0.3)
            final = await (await a.client.get(f"/v1/incidents/{inc['id']}")).json()
            written = [e for e in final["timeline"] if e["kind"] == "report.written"]
            assert len(written) == 1, written
            draft = Path(written[0]["data"]["postmortem"])
            bundle = Path(written[0]["data"]["evidence"])
            assert draft.parent == reports
            # the draft, the bundle, and the error-rate graph beside the draft (SVG; PNG
            # for Slack), drawn from the bundle's range data
            stem = draft.name.removesuffix(".md")
            assert sorted(p.name for p in reports.iterdir()) == sorted(
                [draft.name, bundle.name, f"{stem}.svg", f"{stem}.png"]
            )
            assert written[0]["data"]["graph"] == str(reports / f"{stem}.svg")
            svg = (reports / f"{stem}.svg").read_text()
            assert svg.startswith("<svg ")
            assert 'class="series"' in svg
            assert "applied: set_env on" in svg
            assert "resolved" in svg

            text = draft.read_text()
            assert "## Incident: " in text
            assert "Action applied: " in text  # the env patch, with its time
            assert "Action reverted: " in text  # the revert on resolve is in the draft
            assert "**Severity:** P2" in text
            assert f"]({stem}.svg)" in text  # the graph beside it, as GitHub shows it

            files = members(bundle.read_bytes())
            assert {"timeline.json", "signals.json", "facts.json", "actions.json"} <= set(files)
            [action] = json.loads(files["actions.json"])
            assert action["before"]["containers"] != action["after"]["containers"]
            # the rule's query over the window, from the real Prometheus
            series = json.loads(files["prometheus/error_rate.json"])
            assert series["query"] == QUERY.replace('\\"', '"')
            assert series["data"]["resultType"] == "matrix"
            logs = files[f"logs/{NS}/{DEPLOY}-0.log"].decode()
            assert "ERROR posthog 429" in logs
            assert secret not in logs
            for name, data in files.items():
                assert secret.encode() not in data, name
            assert "messages/slack.txt" in files
            assert files["graph.svg"] == svg.encode()
            assert b"](graph.svg)" in files["postmortem.md"]

            # the Slack thread links the draft
            [root] = slack.roots("#posthog-incidents")

            async def linked() -> bool:
                replies = slack.replies("#posthog-incidents", root.ts)
                return any(str(draft) in r.text for r in replies)

            await eventually(linked, what="postmortem link in the thread")

            # and shows the graph, once for the two replicas, as a PNG
            async def shown() -> bool:
                return bool(slack.uploads("#posthog-incidents", root.ts))

            await eventually(shown, what="graph in the thread")
            [graph] = slack.uploads("#posthog-incidents", root.ts)
            assert graph.data == (reports / f"{stem}.png").read_bytes()
            assert graph.data is not None
            assert graph.data.startswith(b"\x89PNG\r\n\x1a\n")
            assert done["status"] == "resolved"

            # the API serves the draft, its fields, and a fresh bundle
            resp = await a.client.get(f"/v1/incidents/{inc['id']}/postmortem")
            assert resp.status == 200
            assert resp.content_type == "text/markdown"
            served = await resp.text()
            assert "## Incident: " in served
            # no image beside a served draft: it says where the graph is
            assert "The error-rate graph is in the evidence bundle (`graph.svg`)" in served
            fields = await (
                await a.client.get(f"/v1/incidents/{inc['id']}/postmortem?format=json")
            ).json()
            assert fields["time_to_mitigate"] is not None
            assert fields["time_to_resolve"] is not None
            resp = await a.client.get(f"/v1/incidents/{inc['id']}/evidence")
            assert resp.status == 200
            assert "manifest.json" in members(await resp.read())
            assert (await a.client.get("/v1/incidents/inc-nope/postmortem")).status == 404

            # and the CLI writes both from the running service
            runner = CliRunner()
            out = tmp_path / "bundle.tar.gz"
            ran = await asyncio.to_thread(
                runner.invoke,
                cli,
                ["evidence", inc["id"], "-o", str(out), "--url", a.base_url],
            )
            assert ran.exit_code == 0, ran.output
            assert "timeline.json" in members(out.read_bytes())
            ran = await asyncio.to_thread(
                runner.invoke, cli, ["postmortem", inc["id"], "--url", a.base_url]
            )
            assert ran.exit_code == 0, ran.output
            assert "### Root Cause" in ran.output
            ran = await asyncio.to_thread(
                runner.invoke, cli, ["postmortem", "inc-nope", "--url", a.base_url]
            )
            assert ran.exit_code == 1
            assert "404" in ran.output


def test_postmortem_tells_what_came_after_the_first_response() -> None:
    """The vendor watched, a reminder, a page for a late ack, who PagerDuty says has it,
    and flapping: each on the postmortem's timeline; a flap while flapping is not (the
    notice told it, as in the thread)."""
    later = [
        *TIMELINE[:9],
        event(20, 10, "pagerduty.assigned", "PagerDuty assigned it to Jane Doe", by="Jane Doe"),
        event(21, 15, "incident.ack_overdue", "Not acknowledged within 15 minutes: paged"),
        event(22, 30, "incident.update_due", "Update due: Jane Doe, tell the channel"),
        event(23, 40, "vendor.status_changed", "PostHog: investigating -> monitoring"),
        event(24, 50, "vendor.resolved", "PostHog resolved its incident"),
        event(25, 60, "incident.flapping", "fired 3 times in 10 minutes", notice=True),
        event(26, 61, "incident.flapping", "fired again", notice=False),
        event(27, 80, "incident.steady", "quiet for 10 minutes"),
        TIMELINE[-1],
    ]
    lines = [line.text for line in postmortem_of(incident(), later).timeline]
    for text in (
        "PagerDuty assigned it to Jane Doe",
        "Not acknowledged within 15 minutes: paged",
        "Update due: Jane Doe, tell the channel",
        "Vendor: PostHog: investigating -> monitoring",
        "Vendor resolved: PostHog resolved its incident",
        "Flapping: fired 3 times in 10 minutes",
        "Steady again: quiet for 10 minutes",
    ):
        assert text in lines
    assert not any("fired again" in line for line in lines)
