"""One public status page incident per set of components, whatever the number of incidents
affecting them (issue 16, "Fan-out"): the real service, its own aiohttp client, a fake
Statuspage management API on loopback, both backends.

One webhook of 50 groups of one service used to open 50 public incidents (and make a
request each to open and to resolve them); now the first incident creates the public
incident, the others attach to it, it stays open until the last of them resolves, and a
service of another pack (another name on the page) gets its own. Two replicas on one Redis
handling incidents of the same service at once still make one."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp

from responder.domain.notification import Outbound, shared_lead
from responder.ports import StateStore
from tests.support.fake_notify import FakeStatuspage, RecordedRequest
from tests.support.service import Service, example, running_service, started_now
from tests.support.waiting import eventually

COMPONENT = "cmp1"  # the fake's one component
GROUPS = 50

PACKS = {
    "checkout": "Checkout",
    "search": "Search",
}
PACK = """
name: {name}
version: "1"
scope:
  names: [{name}]
  labels: [service]
defaults:
  group_by: [alertname, instance]
public:
  name: {public}
  impact: {{upstream_5xx: slow pages}}
rules:
  - name: {name}-degraded
    match: ['service="{name}"']
    classify: {{severity: P2, error_type: upstream_5xx}}
"""


def packs(tmp_path: Path) -> list[Path]:
    paths = []
    for name, public in PACKS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(PACK.format(name=name, public=public))
        paths.append(path)
    return paths


def sp_settings(sp: FakeStatuspage, tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {
        "rules": packs(tmp_path),
        "statuspage_api_key": sp.api_key,
        "statuspage_page_id": sp.page_id,
        "statuspage_api_url": sp.api_url,
        "statuspage_components": [COMPONENT],
        "notify_retry_base_s": 0.2,
        # every group an incident of its own (the cap on new incidents would collect them)
        "max_new_incidents_per_minute": 0,
        **more,
    }


def webhook(service: str, instances: range, status: str = "firing") -> dict[str, Any]:
    """One Alertmanager notification holding one alert per instance: a group each."""
    payload = copy.deepcopy(example("alertmanager/posthog-rate-limited-429-firing.json"))
    template = payload["alerts"][0]
    alerts = []
    for i in instances:
        a = copy.deepcopy(template)
        a["labels"] = {"alertname": "Degraded", "service": service, "instance": f"pod-{i}"}
        a["annotations"] = {"summary": f"{service} is degraded"}
        a["fingerprint"] = ""
        a["status"] = status
        if status == "resolved":
            a["endsAt"] = "2026-11-29T03:50:00Z"
        alerts.append(a)
    payload["alerts"] = alerts
    payload["status"] = status
    payload["groupLabels"] = {"alertname": "Degraded"}
    payload["commonLabels"] = {"alertname": "Degraded", "service": service}
    payload["commonAnnotations"] = {}
    [now] = started_now(payload)  # no lost record to look for: only the sends count
    return now


def writes(sp: FakeStatuspage) -> list[RecordedRequest]:
    return [r for r in sp.requests if r.method in ("POST", "PATCH", "PUT")]


async def incidents_of(svc: Service, service: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    resp = await svc.client.get("/v1/incidents?limit=200")
    assert resp.status == 200, await resp.text()
    for inc in (await resp.json())["incidents"]:
        if inc["labels"].get("service") == service:
            found.append(inc)
    return found


async def public_ids(svc: Service, service: str, count: int) -> set[str]:
    """The status page incident each of the service's ``count`` incidents says it is on,
    once every one says so."""

    async def all_delivered() -> set[str] | None:
        incs = await incidents_of(svc, service)
        ids = [i["deliveries"].get("statuspage", {}).get("id") for i in incs]
        return set(ids) if len(incs) == count and all(ids) else None

    return await eventually(all_delivered, what=f"{count} {service} incidents on the page")


async def resolved_count(svc: Service, service: str, count: int) -> None:
    async def done() -> bool:
        incs = await incidents_of(svc, service)
        return sum(i["status"] == "resolved" for i in incs) == count

    await eventually(done, what=f"{count} {service} incidents resolved")


async def test_fifty_groups_of_one_service_make_one_public_incident(
    backend_settings, tmp_path: Path
) -> None:
    async with FakeStatuspage() as sp:
        settings = backend_settings(**sp_settings(sp, tmp_path))
        async with running_service(settings, notify=True) as svc:
            resp = await svc.post_alertmanager(webhook("checkout", range(GROUPS)))
            assert resp.status == 200, await resp.text()
            await svc.idle()
            [page_id] = await public_ids(svc, "checkout", GROUPS)
            assert list(sp.incidents) == [page_id]
            assert sp.incident(page_id)["status"] == "investigating"
            assert sp.component_status(COMPONENT) == "partial_outage"

            # 49 resolve: the page's incident stays open, untouched
            resp = await svc.post_alertmanager(webhook("checkout", range(GROUPS - 1), "resolved"))
            assert resp.status == 200, await resp.text()
            await resolved_count(svc, "checkout", GROUPS - 1)
            await svc.idle()
            assert sp.incident(page_id)["status"] == "investigating"
            assert sp.component_status(COMPONENT) == "partial_outage"
            assert [r.method for r in writes(sp)] == ["POST"]

            # a service of another pack (another name on the page): a public incident of
            # its own
            await svc.post_alertmanager(webhook("search", range(1)))
            [search_id] = await public_ids(svc, "search", 1)
            assert search_id != page_id
            assert len(sp.incidents) == 2
            assert sp.incident(page_id)["status"] == "investigating"

            # the last one resolves: so does the page's incident, components operational
            resp = await svc.post_alertmanager(
                webhook("checkout", range(GROUPS - 1, GROUPS), "resolved")
            )
            assert resp.status == 200, await resp.text()

            async def page_resolved() -> bool:
                return bool(sp.incident(page_id)["status"] == "resolved")

            await eventually(page_resolved, what="the checkout public incident resolved")
            assert sp.incident(search_id)["status"] == "investigating"
            await svc.idle()

            # the outbound calls: one creation each, one resolve; nothing else (before:
            # 51 creations and 50 resolves, one of each per incident)
            assert [r.method for r in writes(sp)] == ["POST", "POST", "PATCH"]
            assert writes(sp)[-1].path.endswith(f"/incidents/{page_id}")
            assert len(sp.requests) == 3, [(r.method, r.path) for r in sp.requests]
            assert sp.incident(page_id)["incident_updates"][0]["status"] == "resolved"

            # each incident says what it did: one created it, the others attached
            incs = await incidents_of(svc, "checkout")
            posted = [
                e["detail"]
                for i in incs
                for e in (await (await svc.client.get(f"/v1/incidents/{i['id']}")).json())[
                    "timeline"
                ]
                if e["kind"] == "notification.posted" and e["data"].get("sink") == "statuspage"
            ]
            assert sorted(set(posted)) == [
                "Status page: attached to the incident already open for its components",
                "Status page: incident created",
            ]
            assert posted.count("Status page: incident created") == 1


async def test_two_replicas_handling_one_service_at_once_make_one_public_incident(
    make_settings, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Two replicas on one Redis each get incidents of the same service at the same time;
    the status page answers slowly, so the second comes while the first creates."""
    async with FakeStatuspage() as sp:
        settings = make_settings(
            workers=4,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            **sp_settings(sp, tmp_path),
        )
        async with (
            running_service(settings, notify=True) as a,
            running_service(settings, notify=True) as b,
        ):
            sp.slow(0.5)
            sent = await asyncio.gather(
                a.post_alertmanager(webhook("checkout", range(0, 5))),
                b.post_alertmanager(webhook("checkout", range(5, 10))),
            )
            assert all(r.status == 200 for r in sent)
            [page_id] = await public_ids(a, "checkout", 10)
            sp.respond_normally()
            assert list(sp.incidents) == [page_id]
            assert [r.method for r in writes(sp)] == ["POST"]

            await asyncio.gather(
                a.post_alertmanager(webhook("checkout", range(0, 5), "resolved")),
                b.post_alertmanager(webhook("checkout", range(5, 10), "resolved")),
            )

            async def page_resolved() -> bool:
                return bool(sp.incident(page_id)["status"] == "resolved")

            await eventually(page_resolved, what="the public incident resolved")
            await a.idle()
            await b.idle()
            assert len(sp.incidents) == 1
            assert sp.component_status(COMPONENT) == "operational"


async def test_a_creation_its_worker_left_unrecorded_is_found_not_made_again(
    backend_settings, tmp_path: Path
) -> None:
    """A worker died between creating the public incident and recording it: the record
    still says a creation was under way, with its key; the next incident of the service
    finds that incident at the page and attaches to it."""
    async with FakeStatuspage() as sp:
        settings = backend_settings(**sp_settings(sp, tmp_path))
        async with running_service(settings, notify=True) as svc:
            key = _shared_key("Checkout")
            dead = "inc-of-a-dead-worker:notify:statuspage:create"
            made = await _create_at_page(sp, dead)
            store = svc.runtime.store
            assert store is not None
            await store.join_shared_thread(key, member="inc-of-a-dead-worker", want={})
            await store.settle_shared_thread(key, creating=dead)

            await svc.post_alertmanager(webhook("checkout", range(1)))
            [page_id] = await public_ids(svc, "checkout", 1)
            assert page_id == made
            # ours, above, and no other creation; then an edit to what the incident shows
            # (what the found one showed is not known)
            assert [r.method for r in writes(sp)] == ["POST", "PATCH"]
            assert writes(sp)[-1].path.endswith(f"/incidents/{made}")


def _shared_key(public_name: str) -> str:
    """The key of a public incident's record: its components and the service it names."""
    about = json.dumps([[COMPONENT], public_name])
    return "statuspage:component:" + hashlib.sha256(about.encode()).hexdigest()[:32]


async def _create_at_page(sp: FakeStatuspage, key: str) -> str:
    body = {"incident": {"name": "Checkout issue", "status": "investigating", "body": "x"}}
    body["incident"]["metadata"] = {"responder": {"key": key}}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"OAuth {sp.api_key}"}) as http,
        http.post(f"{sp.api_url}/pages/{sp.page_id}/incidents", json=body) as resp,
    ):
        assert resp.status in (200, 201), await resp.text()
        return str((await resp.json())["id"])


async def test_store_keeps_one_record_per_shared_thread(backend: tuple[StateStore, Any]) -> None:
    """The store's side, on both backends: members join and leave atomically; the record
    goes only when closed with nobody attached, by the thread it is of."""
    store, _ = backend
    key = "statuspage:component:abc"
    first = await store.join_shared_thread(key, member="i1", want={"step": "create"})
    assert first.members == {"i1": {"step": "create"}}
    assert first.refs == {}
    await store.settle_shared_thread(key, creating="i1:notify:statuspage:create")
    await store.settle_shared_thread(key, refs={"id": "p1"}, creating="", shown={"s": 1})
    second = await store.join_shared_thread(key, member="i2", want={"step": "create"})
    assert second.refs == {"id": "p1"}
    assert second.creating is None
    assert second.shown == {"s": 1}
    assert set(second.members) == {"i1", "i2"}
    left = await store.leave_shared_thread(key, members=["i1"])
    assert set(left.members) == {"i2"}
    await store.close_shared_thread(key, thread_id="p1")  # i2 is still attached: kept
    assert (await store.join_shared_thread(key, member="i2", want={})).refs == {"id": "p1"}
    assert (await store.leave_shared_thread(key, members=["i2"])).members == {}
    await store.close_shared_thread(key, thread_id="other")  # not its thread: kept
    assert (await store.leave_shared_thread(key, members=[])).refs == {"id": "p1"}
    await store.close_shared_thread(key, thread_id="p1")
    assert (await store.leave_shared_thread(key, members=[])).refs == {}
    await store.settle_shared_thread(key, refs={"id": "p2"})  # no record: nothing made
    assert (await store.leave_shared_thread(key, members=[])).refs == {}


def test_the_shared_incident_shows_the_worst_attached_message() -> None:
    def msg(status: str, components: str, impact: str) -> Outbound:
        shows = {"status": status, "components": components, "impact": impact}
        return Outbound(sink="statuspage", step="create", op="create", shows=shows)

    monitoring = msg("monitoring", "partial_outage", "major")
    investigating = msg("investigating", "partial_outage", "major")
    outage = msg("monitoring", "major_outage", "critical")
    assert shared_lead({}) is None
    assert shared_lead({"a": monitoring, "b": investigating}) == investigating
    assert shared_lead({"a": investigating, "b": outage}) == outage
    same = msg("investigating", "partial_outage", "major").model_copy(update={"text": "b"})
    assert shared_lead({"b": same, "a": investigating}) == investigating  # lowest id
