"""The public status page through the service's own aiohttp client against a fake
Statuspage management API on loopback: one incident per P1/P2 incident, from the external
template, kept in step with the status, resolved with its components operational; nothing
for P3/P4; rate limits honoured; nothing internal ever sent; never created twice."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from responder.ingest.alertmanager import AlertmanagerWebhook
from responder.notify.delivery import group_mark
from tests.support.fake_notify import FakeStatuspage, RecordedRequest
from tests.support.mitigation import DEPLOY, NS, alert, cluster, responder, settled
from tests.support.service import Service, example, running_service, started_now
from tests.support.waiting import eventually

LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"  # P2 in the shipped pack
COMPONENT = "cmp1"  # the fake's one component


def sp_settings(sp: FakeStatuspage, **more: Any) -> dict[str, Any]:
    return {
        "statuspage_api_key": sp.api_key,
        "statuspage_page_id": sp.page_id,
        "statuspage_api_url": sp.api_url,
        "statuspage_components": [COMPONENT],
        "notify_retry_base_s": 0.2,
        **more,
    }


def writes(sp: FakeStatuspage) -> list[RecordedRequest]:
    return [r for r in sp.requests if r.method in ("POST", "PATCH", "PUT")]


def sent_incident(request: RecordedRequest) -> dict[str, Any]:
    assert isinstance(request.body, dict), request.body
    return dict(request.body["incident"])


def resolved(payload: dict[str, Any]) -> dict[str, Any]:
    done = copy.deepcopy(payload)
    done["status"] = "resolved"
    for a in done["alerts"]:
        a["status"] = "resolved"
        a["endsAt"] = "2026-11-29T03:50:00Z"
    return done


def renamed(payload: dict[str, Any], alertname: str) -> dict[str, Any]:
    """The example alert under another name (so another rule classifies it)."""
    changed = copy.deepcopy(payload)
    for labels in (changed["alerts"][0]["labels"], changed["commonLabels"], changed["groupLabels"]):
        labels["alertname"] = alertname
    changed["alerts"][0]["fingerprint"] = ""
    changed["groupKey"] = changed["groupKey"].replace("PostHogRateLimited", alertname)
    return changed


def of_sink(inc: dict[str, Any], kind: str, sink: str = "statuspage") -> list[dict[str, Any]]:
    return [e for e in inc["timeline"] if e["kind"] == kind and e["data"].get("sink") == sink]


async def one_incident(sp: FakeStatuspage, status: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        incidents = list(sp.incidents.values())
        return incidents[0] if len(incidents) == 1 and incidents[0]["status"] == status else None

    return await eventually(found, what=f"one status page incident, {status}")


async def test_p2_incident_is_created_updated_and_resolved_with_its_components(
    backend_settings, tmp_path: Path
) -> None:
    async with (
        FakeStatuspage() as sp,
        cluster(tmp_path) as c,
        responder(c, backend_settings, notify=True, **sp_settings(sp)) as svc,
    ):
        await svc.post_alertmanager(alert("SetEnv"))
        opened = await settled(svc, "SetEnv", "action.applied")
        # the action put the incident in MITIGATING: the status page says "identified"
        page = await one_incident(sp, "identified")
        created = sent_incident(writes(sp)[0])
        assert writes(sp)[0].method == "POST"
        assert created["status"] == "investigating"
        assert created["components"] == {COMPONENT: "partial_outage"}  # P2 by default
        assert created["component_ids"] == [COMPONENT]
        assert created["impact_override"] == "major"
        # the runbook's external template (the pack has no public section: a default name)
        assert created["name"].endswith(" issue")
        assert created["body"].startswith("We're experiencing issues with our ")
        assert "We're actively investigating and will provide updates." in created["body"]
        # the digest of the components and service it is about: what an incident of
        # them takes over when the store lost its record (a digest: no label value)
        shared = created["metadata"]["responder"]["shared"]
        assert len(shared) == 32
        assert int(shared, 16) >= 0
        assert created["metadata"] == {
            "responder": {
                "key": f"{opened['id']}:notify:statuspage:create",
                "group": group_mark(opened["group_key"]),
                "shared": shared,
            }
        }
        assert sp.component_status(COMPONENT) == "partial_outage"
        # the incident keeps the status page incident's id, and says it was created
        await eventually(
            lambda: _deliveries(svc, opened["id"], page["id"]), what="deliveries recorded"
        )
        [posted] = of_sink(await _get(svc, opened["id"]), "notification.posted")
        assert posted["detail"] == "Status page: incident created"

        await svc.post_alertmanager(alert("SetEnv", status="resolved"))
        await settled(svc, "SetEnv", "action.reverted")
        page = await one_incident(sp, "resolved")
        assert sp.component_status(COMPONENT) == "operational"
        # one incident, edited in place: investigating → identified → resolved
        assert len(sp.incidents) == 1
        statuses = [u["status"] for u in reversed(page["incident_updates"])]
        assert statuses == ["investigating", "identified", "resolved"]
        methods = [r.method for r in writes(sp)]
        assert methods == ["POST", "PATCH", "PATCH"]
        last = sent_incident(writes(sp)[-1])
        assert last["components"] == {COMPONENT: "operational"}
        assert last["body"].startswith("The issue with our ")
        assert "resolved and it is working normally again" in last["body"]
        # the revert after resolve changes nothing the status page shows: no more writes
        await svc.idle()
        assert len(writes(sp)) == 3


async def _get(svc: Service, incident_id: str) -> dict[str, Any]:
    resp = await svc.client.get(f"/v1/incidents/{incident_id}")
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _deliveries(svc: Service, incident_id: str, page_id: str) -> bool:
    inc = await _get(svc, incident_id)
    return bool(inc["deliveries"].get("statuspage", {}).get("id") == page_id)


async def test_p3_and_p4_open_no_status_page_incident(make_settings) -> None:
    """The shipped pack: a webhook delay is P3, missing metrics P4; only the P2 that
    follows reaches the status page."""
    async with (
        FakeStatuspage() as sp,
        running_service(make_settings(**sp_settings(sp)), notify=True) as svc,
    ):
        for name, severity in (("PostHogWebhookDelay", "P3"), ("PostHogMetricsAbsent", "P4")):
            resp = await svc.post_alertmanager(renamed(example(LIMITED), name))
            assert resp.status == 200, await resp.text()
            await svc.idle()
            [inc] = [i for i in await svc.incidents() if i["labels"]["alertname"] == name]
            assert inc["severity"] == severity
        # the pipeline handled both (delivery included) and sent nothing
        assert sp.requests == []
        await svc.post_alertmanager(example(LIMITED))
        await svc.idle()
        page = await one_incident(sp, "investigating")
        assert len(writes(sp)) == 1
        [inc] = [i for i in await svc.incidents() if i["severity"] == "P2"]
        assert inc["deliveries"]["statuspage"]["id"] == page["id"]
        quiet = [i for i in await svc.incidents() if i["severity"] in ("P3", "P4")]
        assert ["statuspage" in i["deliveries"] for i in quiet] == [False, False]


async def test_rate_limits_420_and_429_are_waited_out_as_retry_after_says(
    backend_settings,
) -> None:
    async with FakeStatuspage() as sp:
        settings = backend_settings(**sp_settings(sp))
        async with running_service(settings, notify=True) as svc:
            sp.rate_limit(status=420, retry_after=1, times=1)
            [limited] = started_now(example(LIMITED))
            await svc.post_alertmanager(limited)
            await one_incident(sp, "investigating")
            sp.rate_limit(status=429, retry_after=1, times=1)
            await svc.post_alertmanager(resolved(limited))
            await one_incident(sp, "resolved")
            assert sp.component_status(COMPONENT) == "operational"

            answered = [(r.method, r.at) for r in writes(sp)]
            assert [m for m, _ in answered] == ["POST", "POST", "PATCH", "PATCH"]
            # each retry came no sooner than Retry-After (1 s), not after the 0.2 s backoff
            assert answered[1][1] - answered[0][1] >= 1.0
            assert answered[3][1] - answered[2][1] >= 1.0
            assert len(sp.incidents) == 1

            [listed] = await svc.incidents()

            async def both_recovered() -> dict[str, Any] | None:
                inc = await _get(svc, listed["id"])
                return inc if len(of_sink(inc, "notification.recovered")) == 2 else None

            inc = await eventually(both_recovered, what="two recoveries recorded")
            delayed = of_sink(inc, "notification.delayed")
            assert [d["data"]["error"] for d in delayed] == [
                "POST /: rate limited (HTTP 420)",
                f"PATCH /{next(iter(sp.incidents))}: rate limited (HTTP 429)",
            ]
            assert all(d["data"]["retry_in_s"] >= 1.0 for d in delayed)
            recovered = of_sink(inc, "notification.recovered")
            assert all(r["data"]["attempts"] == 1 for r in recovered)
            # each delay was followed by its recovery
            assert delayed[0]["seq"] < recovered[0]["seq"] < delayed[1]["seq"] < recovered[1]["seq"]


# A pack whose incidents carry distinctive internal values everywhere: labels, the title,
# annotations (a Prometheus query), pod logs found by triage, an action with its target.
LEAK_PACK = """
name: leak-test
version: "1"
defaults:
  group_by: [alertname, service]
  dry_run: false
  probes:
    - {{type: health, url: "{health}", json_path: .services.posthog.status, timeout_s: 2}}
    - {{type: pod_logs, namespace: "{{{{ labels.namespace }}}}",
       selector: app=posthog-integration, since_s: 3600, pattern: canary, timeout_s: 2}}
public:
  name: Analytics
  impact: {{upstream_5xx: charts that load slowly}}
rules:
  - name: canary-classify
    match: ['service="posthog-integration"']
    classify:
      severity: P1
      error_type: upstream_5xx
      title: "Canary title on {{{{ labels.instance }}}}"
    continue: true
  - name: canary-branch
    match: ['alertname="CanaryAlert"']
    when: ["health.ok == false"]
    actions:
      - type: set_env
        namespace: "{{{{ labels.namespace }}}}"
        deployment: posthog-integration
        env: {{CANARY_ENV_NAME: canary-env-value}}
        revert_on_resolve: true
        settle_s: 0.3
"""

INSTANCE = "ip-canary-instance.eu-west-1.compute.internal"
LOG_LINE = "ERROR canary-log-line: connection reset by db-canary.corp.internal"
QUERY = 'sum(rate(canary_errors_total{service="posthog-integration"}[5m])) > 0.05'


def canary_alert(status: str = "firing") -> dict[str, Any]:
    payload = alert("CanaryAlert", status=status, instance=INSTANCE)
    a = payload["alerts"][0]
    a["labels"].update({"node": "k8s-node-canary-77", "pod": "posthog-integration-canary-5d9f"})
    a["annotations"] = {
        "summary": "Canary summary from canary-host.corp.internal",
        "description": f"{QUERY} for 5 minutes",
    }
    return payload


async def test_nothing_internal_reaches_the_status_page(backend_settings, tmp_path: Path) -> None:
    async with FakeStatuspage() as sp, cluster(tmp_path) as c:
        pack = tmp_path / "leak.yaml"
        pack.write_text(LEAK_PACK.format(health=c.health.health_url))
        for pod in (f"{DEPLOY}-0", f"{DEPLOY}-1"):
            c.kube.add_log(NS, pod, LOG_LINE)
        async with responder(
            c, backend_settings, notify=True, rules=[pack], **sp_settings(sp)
        ) as svc:
            await svc.post_alertmanager(canary_alert())
            opened = await settled(svc, "CanaryAlert", "action.applied")
            await svc.post_alertmanager(canary_alert("resolved"))
            inc = await settled(svc, "CanaryAlert", "action.reverted")
            page = await one_incident(sp, "resolved")

            # a P1: the components were in major outage until resolved
            created = sent_incident(writes(sp)[0])
            assert created["components"] == {COMPONENT: "major_outage"}
            assert created["impact_override"] == "critical"
            assert created["name"] == "Analytics issue"
            assert "Some users may experience charts that load slowly." in created["body"]
            assert [u["status"] for u in reversed(page["incident_updates"])] == [
                "investigating",
                "identified",
                "resolved",
            ]
            assert sp.component_status(COMPONENT) == "operational"

            internal = [
                INSTANCE,
                "k8s-node-canary-77",
                "posthog-integration-canary-5d9f",  # a pod label
                f"{DEPLOY}-0",  # the pods triage read
                DEPLOY,  # the deployment (and the service label)
                NS,  # the namespace
                "canary-log-line",
                "db-canary.corp.internal",
                "canary-host.corp.internal",
                "canary_errors_total",
                "Canary title",
                "CanaryAlert",
                "canary-classify",
                "canary-branch",
                "leak-test",
                "set_env",
                "CANARY_ENV_NAME",
                "canary-env-value",
                "127.0.0.1",  # the health endpoint's and the cluster's host
                c.health.health_url,
                opened["group_key"],
            ]
            # the incident really holds them (so the status page could have been told)
            told = json.dumps(inc)
            for value in (INSTANCE, "canary-log-line", "CANARY_ENV_NAME", "canary_errors_total"):
                assert value in told, value
            assert writes(sp), "nothing sent to the status page"
            for request in sp.requests:
                sent = json.dumps(request.body) + request.path + json.dumps(dict(request.query))
                leaked = [v for v in internal if v in sent]
                assert leaked == [], f"{request.method} {request.path} leaks {leaked}: {sent}"


async def test_replicas_and_redeliveries_never_create_a_second_incident(
    make_settings, redis_url: str, redis_prefix: str
) -> None:
    """Two replicas on one Redis both get the alert (an Alertmanager HA pair), then every
    signal is handled again: one status page incident, created once, resolved once."""
    async with FakeStatuspage() as sp:
        settings = make_settings(
            workers=4, redis_url=redis_url, redis_prefix=redis_prefix, **sp_settings(sp)
        )
        async with (
            running_service(settings, notify=True) as a,
            running_service(settings, notify=True) as b,
        ):
            firing = example(LIMITED)
            for payload in (firing, resolved(firing)):
                sent = await asyncio.gather(
                    a.post_alertmanager(payload), b.post_alertmanager(payload)
                )
                assert all(r.status == 200 for r in sent)
                await a.idle()
                await b.idle()
            await one_incident(sp, "resolved")
            await _redeliver(a, firing, resolved(firing))
            await _redeliver(b, firing, resolved(firing))
            # (a redelivered signal is delivered inline: anything sent twice is sent now)
            await a.idle()
            await b.idle()
            assert len(sp.incidents) == 1
            assert [r.method for r in writes(sp)] == ["POST", "PATCH"]
            [inc] = await a.incidents()
            assert len(of_sink(await _get(a, inc["id"]), "notification.posted")) == 1


async def _redeliver(svc: Service, *payloads: dict[str, Any]) -> None:
    for payload in payloads:
        webhook = AlertmanagerWebhook.model_validate(payload)
        for signal in webhook.signals(received_at=svc.runtime.clock.now()):
            await svc.runtime.pipeline.handle(signal)
