"""The incident pages (``/incidents``): who may read them (the read rule, the login form
and its cookie), what they show, escaping of what alerts say, their headers, paging."""

from __future__ import annotations

import copy
import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest

from responder.domain.incident import (
    Approval,
    IncidentChange,
    IncidentLookup,
    combine,
    decide_approval,
    pause_automation,
    request_approval,
)
from responder.ports import IncidentState, IncidentView, MutationItem
from responder.web.auth import PAGE_COOKIE, page_cookie
from responder.web.common import CONTEXT
from tests.support.mitigation import alert, cluster, responder, settled
from tests.support.service import Service, example, running_service

READ, ADMIN = "page-read-token-1", "page-admin-token-1"
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'"
)
NO_SUCH_ID = "inc-0123456789abcdef01"


def hostile_alert(
    *, name: str = "PageTest", summary: str = "plain", **labels: str
) -> dict[str, Any]:
    payload = copy.deepcopy(example("alertmanager/posthog-rate-limited-429-firing.json"))
    a = payload["alerts"][0]
    a["labels"] = {"alertname": name, "service": "svc", **labels}
    a["annotations"] = {"summary": summary}
    a["fingerprint"] = ""
    return payload


def assert_page_headers(resp: Any) -> None:
    assert resp.headers["Content-Security-Policy"] == CSP
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.content_type == "text/html"


def rows(html: str) -> list[str]:
    """The incident ids the list links, in order."""
    return re.findall(r'<a href="/incidents/(inc-[0-9a-f]{18})">', html)


async def login(svc: Service, token: str, next_path: str = "/incidents") -> Any:
    return await svc.client.post(
        "/incidents/login", data={"token": token, "next": next_path}, allow_redirects=False
    )


def cookie_of(resp: Any) -> str:
    return str(resp.cookies[PAGE_COOKIE].value)


@pytest.fixture
async def guarded(make_settings: Any) -> Any:
    settings = make_settings(workers=1, read_token=READ, admin_token=ADMIN)
    async with running_service(settings) as svc:
        yield svc


async def test_pages_are_open_on_loopback_without_a_read_token(service: Service) -> None:
    await service.post_alertmanager(hostile_alert())
    await service.idle()
    [inc] = await service.incidents()
    listing = await service.client.get("/incidents")
    assert listing.status == 200
    assert_page_headers(listing)
    assert rows(await listing.text()) == [inc["id"]]
    one = await service.client.get(f"/incidents/{inc['id']}")
    assert one.status == 200
    assert_page_headers(one)
    text = await one.text()
    assert '<meta name="viewport"' in text
    assert "<script" not in text


async def test_a_page_without_credentials_is_401_with_the_login_form(guarded: Service) -> None:
    for path in ("/incidents", f"/incidents/{NO_SUCH_ID}", "/incidents?limit=2"):
        resp = await guarded.client.get(path)
        assert resp.status == 401, path
        assert_page_headers(resp)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        html = await resp.text()
        assert '<form method="post" action="/incidents/login">' in html
        # back to the page asked for once logged in
        assert f'name="next" value="{path}"' in html
        assert READ not in html
        assert ADMIN not in html


async def test_the_read_or_admin_bearer_token_opens_the_pages(guarded: Service) -> None:
    for token in (READ, ADMIN):
        resp = await guarded.client.get("/incidents", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, token
    wrong = await guarded.client.get("/incidents", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert "<form" in await wrong.text()


async def test_login_sets_a_strict_http_only_cookie_and_goes_back_to_the_page(
    guarded: Service,
) -> None:
    await guarded.post_alertmanager(hostile_alert())
    await guarded.idle()
    listed = await guarded.client.get("/v1/incidents", headers={"Authorization": f"Bearer {READ}"})
    [inc] = (await listed.json())["incidents"]
    target = f"/incidents/{inc['id']}"
    resp = await login(guarded, READ, target)
    assert resp.status == 303
    assert resp.headers["Location"] == target
    set_cookie = resp.headers["Set-Cookie"]
    assert f"{PAGE_COOKIE}=" in set_cookie
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert attribute in set_cookie, set_cookie
    assert "Secure" not in set_cookie  # plain http, no https public URL
    assert READ not in set_cookie  # the token itself is never the cookie
    cookie = {"Cookie": f"{PAGE_COOKIE}={cookie_of(resp)}"}
    page = await guarded.client.get(target, headers=cookie)
    assert page.status == 200
    assert inc["title"] in unescape(await page.text())
    # the page's links to the read API work with the cookie alone
    for link in (f"/v1/incidents/{inc['id']}/postmortem", f"/v1/incidents/{inc['id']}/evidence"):
        assert (await guarded.client.get(link, headers=cookie)).status == 200, link
        assert f'href="{link}"' in await page.text()
    # the admin token logs in too, and the cookie reads, never administers
    admin = await login(guarded, ADMIN)
    assert admin.status == 303
    ack = await guarded.client.post(
        f"/v1/incidents/{inc['id']}/ack",
        json={"by": "someone"},
        headers={"Cookie": f"{PAGE_COOKIE}={cookie_of(admin)}"},
    )
    assert ack.status == 401


async def test_a_wrong_token_is_401_with_the_form_and_no_cookie(guarded: Service) -> None:
    for token in ("wrong", READ + "x", READ[:-1], " ", ""):
        resp = await login(guarded, token)
        assert resp.status == 401, token
        assert PAGE_COOKIE not in resp.cookies
        html = await resp.text()
        assert "Wrong token." in html
        assert_page_headers(resp)
    # padded with ASCII whitespace is the token
    assert (await login(guarded, f"  {READ}\n")).status == 303


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/incidents",
        "/\\evil.example",
        "javascript:alert(1)",
        "incidents",
        "/incidents\r\nSet-Cookie: x=1",
    ],
)
async def test_login_goes_back_only_to_a_local_path(guarded: Service, target: str) -> None:
    resp = await login(guarded, READ, target)
    assert resp.status == 303
    assert resp.headers["Location"] == "/incidents"


async def test_the_cookie_is_secure_when_the_public_url_is_https(make_settings: Any) -> None:
    settings = make_settings(workers=0, read_token=READ, public_url="https://responder.example")
    async with running_service(settings) as svc:
        resp = await login(svc, READ)
        assert resp.status == 303
        assert "Secure" in resp.headers["Set-Cookie"]


async def test_a_forged_expired_or_foreign_cookie_is_refused(guarded: Service) -> None:
    now = time.time()
    forged = f"{int(now) + 3600}.{'0' * 64}"
    expired, _ = page_cookie(READ, now_s=now - 13 * 3600)
    foreign, _ = page_cookie("another-services-token", now_s=now)
    for value in (forged, expired, foreign, "garbage", READ):
        cookie = {"Cookie": f"{PAGE_COOKIE}={value}"}
        page = await guarded.client.get("/incidents", headers=cookie)
        assert page.status == 401, value
        assert "log in again" in await page.text()
        assert (await guarded.client.get("/v1/incidents", headers=cookie)).status == 403, value


async def test_reads_off_loopback_without_a_token_show_why(make_settings: Any) -> None:
    settings = make_settings(workers=0, host="0.0.0.0", alertmanager_token="t")
    async with running_service(settings) as svc:
        resp = await svc.client.get("/incidents")
        assert resp.status == 403
        assert_page_headers(resp)
        assert "RESPONDER_READ_TOKEN" in await resp.text()


async def test_an_id_that_cannot_be_one_or_is_unknown_is_a_404_page(service: Service) -> None:
    for path in (
        "/incidents/inc-XYZ",
        "/incidents/inc-0123456789abcdef01:timeline",
        f"/incidents/{NO_SUCH_ID}",
        "/incidents/%3Cscript%3E",
    ):
        resp = await service.client.get(path)
        assert resp.status == 404, path
        assert_page_headers(resp)
        assert "<script>" not in await resp.text()


async def test_alert_text_is_escaped_on_the_list_and_the_incident_page(service: Service) -> None:
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;'
    await service.post_alertmanager(
        hostile_alert(name=evil, summary=evil, instance=evil, team='"><b id="injected">x</b>')
    )
    await service.idle()
    [inc] = await service.incidents()
    for path in ("/incidents", f"/incidents/{inc['id']}"):
        html = await (await service.client.get(path)).text()
        assert "<img" not in html
        assert "<script" not in html
        assert 'id="injected"' not in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html, path
        assert "&amp;amp;" in html  # an entity in the alert shows as the text it is


async def test_the_list_pages_newest_first_with_a_link_to_older(service: Service) -> None:
    for n in range(3):
        await service.post_alertmanager(hostile_alert(name=f"Paged{n}"))
        await service.idle()
    ids = [i["id"] for i in await service.incidents()]
    first = await (await service.client.get("/incidents?limit=2")).text()
    assert rows(first) == ids[:2]
    [older] = re.findall(r'<a href="(/incidents\?[^"]+)" rel="next">', first)
    second = await (await service.client.get(unescape(older))).text()
    assert rows(second) == ids[2:]
    assert 'rel="next"' not in second
    bad = await service.client.get("/incidents?limit=0")
    assert bad.status == 400
    assert "limit must be a whole number" in await bad.text()
    filtered = await (await service.client.get("/incidents?status=resolved")).text()
    assert rows(filtered) == []


class FixedGraph:
    """A stand-in for the ``IncidentGraphs`` port: one fixed ``<svg>``, none, or a
    failure."""

    def __init__(self, svg: str | None = None, *, fails: bool = False) -> None:
        self.svg_text, self.fails = svg, fails

    async def svg(self, view: IncidentView) -> str | None:
        if self.fails:
            raise ConnectionError("prometheus unreachable")
        return self.svg_text


SVG = '<svg xmlns="http://www.w3.org/2000/svg" id="fixed-graph"><rect/></svg>'


async def test_the_graph_is_shown_when_there_is_one_else_a_line_says_why(
    make_settings: Any,
) -> None:
    # a Prometheus nothing listens on: triage is off, only the graph's port would ask it
    settings = make_settings(workers=1, prometheus_url="http://127.0.0.1:9")
    async with running_service(settings) as svc:
        await svc.post_alertmanager(hostile_alert())
        await svc.idle()
        [inc] = await svc.incidents()
        path = f"/incidents/{inc['id']}"
        app = svc.client.app
        assert app is not None
        cases = [
            (None, "no Prometheus is configured"),  # not wired (no graphs port)
            (FixedGraph(), "Prometheus has no data for this incident"),
            (FixedGraph(fails=True), "it could not be drawn"),
        ]
        for graphs, line in cases:
            app[CONTEXT].graphs = graphs
            resp = await svc.client.get(path)
            assert resp.status == 200
            html = await resp.text()
            assert line in html
            assert "<svg" not in html
        app[CONTEXT].graphs = FixedGraph(SVG)
        html = await (await svc.client.get(path)).text()
        assert re.search(r'<figure class="graph">\s*<svg [^>]*id="fixed-graph"', html)


async def test_without_prometheus_no_graph_is_asked_for(service: Service) -> None:
    await service.post_alertmanager(hostile_alert())
    await service.idle()
    [inc] = await service.incidents()
    app = service.client.app
    assert app is not None
    app[CONTEXT].graphs = FixedGraph(fails=True)
    html = await (await service.client.get(f"/incidents/{inc['id']}")).text()
    assert "no Prometheus is configured (RESPONDER_PROMETHEUS_URL)" in html


async def test_the_incident_page_shows_actions_before_and_after_and_the_revert(
    make_settings: Any, tmp_path: Any
) -> None:
    async with cluster(tmp_path) as c, responder(c, make_settings) as svc:
        await svc.post_alertmanager(alert("SetEnv"))
        await settled(svc, "SetEnv", "action.applied")
        await svc.post_alertmanager(alert("SetEnv", status="resolved"))
        inc = await settled(svc, "SetEnv", "action.reverted")
        html = unescape(await (await svc.client.get(f"/incidents/{inc['id']}")).text())
        assert "Branch</dt><dd>queue-requests" in html
        assert "set_env on production/posthog-integration — applied" in html
        before = html.split('<pre class="before">', 1)[1].split("</pre>", 1)[0]
        after = html.split('<pre class="after">', 1)[1].split("</pre>", 1)[0]
        assert '"RATE_LIMIT_MODE": "queue"' in after
        assert '"RATE_LIMIT_MODE": null' in before
        assert "health.ok == false" in html  # the condition that chose the branch
        assert "health.ok</code></td><td>no" in html  # a triage fact
        assert "action.reverted" in html
        assert "Undone</dt><dd>reverted" in html


async def test_the_incident_page_shows_approvals_and_who_paused_it(service: Service) -> None:
    await service.post_alertmanager(hostile_alert())
    await service.idle()
    [inc] = await service.incidents()
    now = datetime.now(UTC)
    asked = Approval(
        step="scale-up#0",
        action="scale",
        target="production/web",
        change="replicas 2 → 4",
        requested_at=now,
        expires_at=now + timedelta(minutes=10),
    )

    def people(state: IncidentState) -> IncidentChange | None:
        # what a person does in Slack, through the domain's own transitions
        assert state.incident is not None
        requested = request_approval(state.incident, asked, now)
        assert requested is not None
        rejected = decide_approval(
            requested.incident, asked.step, approve=False, by="<i>alice</i>", now=now, via="slack"
        )
        assert rejected is not None
        paused = pause_automation(rejected.incident, by="bob", now=now, via="in Slack")
        return combine(combine(requested, rejected), paused)

    store = service.runtime.store
    await store.mutate_incidents(
        [MutationItem(lookups=(IncidentLookup(kind="id", key=inc["id"]),), mutators=(people,))]
    )
    html = await (await service.client.get(f"/incidents/{inc['id']}")).text()
    approvals = html.split("<h2>Approvals</h2>", 1)[1].split("<h2>", 1)[0]
    assert "scale-up#0 (scale on production/web)" in approvals
    assert "<code>replicas 2 → 4</code>" in approvals
    assert "<td>rejected</td>" in approvals
    assert "&lt;i&gt;alice&lt;/i&gt; via slack" in approvals
    assert "Automation</dt><dd>paused by bob at " in html
