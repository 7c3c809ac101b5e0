"""Whoever can push an alert must not steer our calls: label values that would send a probe
elsewhere (SSRF), redirects, huge bodies, port-state leaks, allowlist globs across ``/``,
and cluster reads outside the allowlist's namespaces. Real loopback listeners record what
reaches them; the fake Kubernetes API server records every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from responder.adapters.http import SharedSession
from responder.adapters.kube import ClusterGateway
from responder.adapters.probes.health import HttpHealthProbe
from responder.adapters.probes.pod_logs import PodLogsReader
from responder.adapters.probes.vendor_status import StatuspageProbe
from responder.domain.plans import HealthProbe, PodLogsProbe, VendorStatusProbe
from responder.mitigate.guards import allowed, check
from responder.ports import KubeError
from responder.redaction import Redactor
from responder.rules.engine import AlertInput
from responder.rules.loader import RuleLoadError, load_rules
from tests.support.fake_http import FakeStatuspage
from tests.support.fake_kube import running_fake_kube
from tests.support.packs import API, CLOSED, ROOT, STATUS_PAGE
from tests.support.procs import free_port
from tests.support.service import running_service
from tests.test_mitigation_guards import guard_input
from tests.test_probe_pod_logs import kubeconfig

HEALTHY = json.dumps({"services": {"posthog": {"status": "ok"}}}).encode()
BIG_BYTES = 64 * 1024 * 1024
MAX_PROBE_BODY_BYTES = 1024 * 1024  # the cap (responder.adapters.http)


class Listener:
    """A raw HTTP/1.1 server on loopback that records every connection it gets and answers
    as told: ``ok`` (a health document), ``redirect`` (to ``location``), ``big`` (streams
    64 MiB without a length), ``big_declared`` (says 64 MiB in Content-Length), ``drop``
    (closes the connection at once)."""

    def __init__(self, mode: str = "ok", *, location: str = "") -> None:
        self.mode = mode
        self.location = location
        self.connections = 0
        self.requests: list[str] = []
        self.sent_bytes = 0
        self.cut_short = False  # the peer closed before the whole body was sent
        self.finished = asyncio.Event()  # a handler is done
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.mode == "drop":
                return
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.decode("latin-1").split("\r\n", 1)[0])
            if self.mode == "redirect":
                writer.write(
                    f"HTTP/1.1 302 Found\r\nLocation: {self.location}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
            elif self.mode in ("big", "big_declared"):
                length = f"Content-Length: {BIG_BYTES}\r\n" if self.mode == "big_declared" else ""
                writer.write(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"{length}Connection: close\r\n\r\n".encode()
                )
                chunk = b" " * (256 * 1024)
                try:
                    while self.sent_bytes < BIG_BYTES:
                        writer.write(chunk)
                        await writer.drain()
                        self.sent_bytes += len(chunk)
                except ConnectionError:
                    self.cut_short = True
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(HEALTHY)}\r\nConnection: close\r\n\r\n".encode()
                    + HEALTHY
                )
            with suppress(ConnectionError):
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
            self.finished.set()


@pytest.fixture
async def session() -> AsyncIterator[SharedSession]:
    shared = SharedSession()
    yield shared
    await shared.close()


def health_spec(url: str, **kw: Any) -> HealthProbe:
    return HealthProbe(type="health", url=url, json_path=".services.posthog.status", **kw)


# ----------------------------------------------------------------- SSRF through labels


def shipped_pack(tmp: Path, *, status_page_url: str) -> Path:
    """rules/posthog.yaml as shipped, health probe template and all; only the vendor's
    status page is a fake, and the 429 rule's PostHog API a closed loopback port (the test
    must not reach the internet)."""
    text = (ROOT / "rules" / "posthog.yaml").read_text()
    path = tmp / "posthog.yaml"
    path.write_text(text.replace(STATUS_PAGE, status_page_url).replace(API, CLOSED))
    return path


def hostile_alert(namespace: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    labels = {
        "alertname": "PostHogRateLimited",
        "service": "posthog-integration",
        "namespace": namespace,
        "status_code": "429",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="PostHogRateLimited"}',
        "status": "firing",
        "receiver": "responder",
        "groupLabels": {"alertname": "PostHogRateLimited"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "PostHog rate-limits us"},
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "",
            }
        ],
    }


async def test_a_label_that_would_aim_the_health_probe_elsewhere_makes_no_connection(
    make_settings, tmp_path
) -> None:
    async with FakeStatuspage() as page, Listener() as target:
        namespace = f"x@127.0.0.1:{target.port}/path?"
        pack = shipped_pack(tmp_path, status_page_url=page.url)
        settings = make_settings(rules=[pack], triage=True)
        async with running_service(settings) as svc:
            answer = await svc.post_alertmanager(hostile_alert(namespace))
            assert answer.status == 200
            await svc.idle()
            [listed] = await svc.incidents()
            inc = await (await svc.client.get(f"/v1/incidents/{listed['id']}")).json()
        assert target.connections == 0
        assert len(page.requests) == 1  # triage ran: the vendor's page was read
        classified = next(e for e in inc["timeline"] if e["kind"] == "incident.classified")
        refused = classified["data"]["reasons"]["refused"]
        assert "probe health not planned" in refused
        assert "is not a DNS label" in refused
        assert "probe pod_logs not planned" in refused
        # (and the 429 rule's rate limit headers: a fixed URL, no label in it)
        assert classified["data"]["probes"] == ["vendor_status", "prometheus", "http"]
        assert "health" not in inc["facts"]


def test_the_shipped_templates_check_each_value_where_it_lands() -> None:
    rules = load_rules([ROOT / "rules" / "posthog.yaml"])
    base = {"alertname": "PostHogRateLimited", "service": "posthog-integration"}
    for hostile in ("x@127.0.0.1:9/p?", "a.b", "Prod", "ns/../x", "a b", "-x", "x" * 64):
        evaluation = rules.evaluate(AlertInput(labels={**base, "namespace": hostile}))
        planned = [p.spec.type for p in evaluation.decision.probes]
        assert planned == ["vendor_status", "prometheus", "http"], hostile
        assert "health not planned: refused" in evaluation.decision.reasons["refused"]
    fine = rules.evaluate(AlertInput(labels={**base, "namespace": "prod-eu"})).decision
    [health] = [p.spec for p in fine.probes if isinstance(p.spec, HealthProbe)]
    assert health.url == "http://posthog-integration.prod-eu.svc.cluster.local/health"
    # the default allow_hosts: the template's fixed part, a template's label a glob
    assert health.allow_hosts == ("*.*.svc.cluster.local",)
    assert "refused" not in fine.reasons


def inline_pack(tmp: Path, probes: str, actions: str = "") -> Path:
    path = tmp / "pack.yaml"
    path.write_text(
        "name: hostile\nversion: '1'\ndefaults:\n  probes:\n"
        + probes
        + "rules:\n  - name: r\n    match: ['alertname=\"X\"']\n    classify: {severity: P2}\n"
        + actions
    )
    return path


def test_values_in_paths_and_queries_are_escaped_and_other_places_checked(tmp_path) -> None:
    rules = load_rules(
        [
            inline_pack(
                tmp_path,
                "    - type: health\n"
                "      url: 'http://health.example.com/s/{{ labels.x }}?q={{ labels.x }}'\n"
                "    - {type: pod_logs, namespace: prod, selector: 'app={{ labels.x }}',"
                " pattern: 'ERROR {{ labels.x }}'}\n"
                "    - type: prometheus\n"
                "      queries: {q: 'up{job=\"{{ labels.x }}\"}'}\n",
            )
        ]
    )
    hostile = rules.evaluate(AlertInput(labels={"alertname": "X", "x": 'a/../b?c=1&d",x!=y'}))
    [health] = [p.spec for p in hostile.decision.probes]
    assert health.url == (
        "http://health.example.com/s/a%2F..%2Fb%3Fc%3D1%26d%22%2Cx%21%3Dy"
        "?q=a%2F..%2Fb%3Fc%3D1%26d%22%2Cx%21%3Dy"
    )
    refused = hostile.decision.reasons["refused"]
    assert "probe pod_logs not planned" in refused
    assert "probe prometheus not planned" in refused
    plain = rules.evaluate(AlertInput(labels={"alertname": "X", "x": "api.v2"}))
    by_type = {p.spec.type: p.spec for p in plain.decision.probes}
    assert by_type["pod_logs"].selector == "app=api.v2"
    assert by_type["pod_logs"].pattern == r"ERROR api\.v2"  # matched literally
    assert by_type["prometheus"].queries == {"q": 'up{job="api.v2"}'}


def test_a_host_template_without_allow_hosts_plans_nothing_and_allow_hosts_is_checked(
    tmp_path,
) -> None:
    rules = load_rules(
        [inline_pack(tmp_path, "    - {type: health, url: 'http://{{ labels.host }}/h'}\n")]
    )
    decision = rules.evaluate(AlertInput(labels={"alertname": "X", "host": "metadata"})).decision
    assert decision.probes == ()
    assert "say allow_hosts" in decision.reasons["refused"]
    (tmp_path / "bad").mkdir()
    with pytest.raises(RuleLoadError, match="allows any host"):
        load_rules(
            [
                inline_pack(
                    tmp_path / "bad",
                    "    - {type: health, url: 'http://{{ labels.h }}/h', allow_hosts: ['*']}\n",
                )
            ]
        )


def test_action_targets_from_labels_are_kubernetes_names(tmp_path) -> None:
    rules = load_rules(
        [
            inline_pack(
                tmp_path,
                "    - {type: vendor_status, url: 'https://status.example.com'}\n",
                "    actions:\n"
                "      - {type: rollout_restart, namespace: '{{ labels.namespace }}',"
                " deployment: '{{ labels.deployment }}'}\n",
            )
        ]
    )
    bad = rules.evaluate(
        AlertInput(labels={"alertname": "X", "namespace": "prod", "deployment": "a/b"})
    )
    assert bad.decision.actions == ()
    assert "deployment 'a/b' is not a Kubernetes name" in bad.decision.reasons["refused"]
    good = rules.evaluate(
        AlertInput(labels={"alertname": "X", "namespace": "prod", "deployment": "api.v2"})
    )
    [action] = good.decision.actions
    assert (action.spec.namespace, action.spec.deployment) == ("prod", "api.v2")


async def test_the_adapter_refuses_user_information_and_hosts_out_of_allow_hosts(
    session,
) -> None:
    async with Listener() as target:
        probe = HttpHealthProbe(session)
        sneaky = health_spec(
            f"http://x@127.0.0.1:{target.port}/health",
            allow_hosts=(f"127.0.0.1:{target.port}",),
        )
        result = await probe.run(sneaky)
        assert (result.ok, target.connections) == (False, 0)
        assert "user information" in (result.error or "")
        elsewhere = health_spec(
            f"http://127.0.0.1:{target.port}/health", allow_hosts=("*.svc.cluster.local",)
        )
        result = await probe.run(elsewhere)
        assert (result.ok, target.connections) == (False, 0)
        assert "not in allow_hosts" in (result.error or "")
        spec = VendorStatusProbe(
            type="vendor_status", url=f"http://127.0.0.1:{target.port}", allow_hosts=("a.b.c",)
        )
        result = await StatuspageProbe(session).run(spec)
        assert (result.ok, target.connections) == (False, 0)
        # its own host, by default: reached
        result = await probe.run(health_spec(f"http://127.0.0.1:{target.port}/health"))
        assert (result.ok, result.facts["status"], target.connections) == (True, "ok", 1)


# -------------------------------------------------------------------------- redirects


async def test_a_redirect_is_not_followed_unless_the_spec_says_and_then_only_to_allowed_hosts(
    session,
) -> None:
    async with Listener() as other:
        location = f"http://localhost:{other.port}/health"
        async with Listener("redirect", location=location) as first:
            probe = HttpHealthProbe(session)
            result = await probe.run(health_spec(f"http://127.0.0.1:{first.port}/health"))
            assert (result.ok, first.connections, other.connections) == (False, 1, 0)
            assert "redirect, not followed" in (result.error or "")
            follow = health_spec(f"http://127.0.0.1:{first.port}/health", follow_redirects=True)
            result = await probe.run(follow)
            assert (result.ok, first.connections, other.connections) == (False, 2, 0)
            assert "not in allow_hosts" in (result.error or "")
            vendor = VendorStatusProbe(type="vendor_status", url=f"http://127.0.0.1:{first.port}")
            result = await StatuspageProbe(session).run(vendor)
            assert (result.ok, other.connections) == (False, 0)
            # allowed, and asked for: followed
            both = health_spec(
                f"http://127.0.0.1:{first.port}/health",
                follow_redirects=True,
                allow_hosts=(f"127.0.0.1:{first.port}", f"localhost:{other.port}"),
            )
            result = await probe.run(both)
            assert (result.ok, result.facts["status"], other.connections) == (True, "ok", 1)


async def test_a_redirect_loop_ends(session) -> None:
    async with Listener("redirect") as loop:
        loop.location = f"http://127.0.0.1:{loop.port}/again"
        spec = health_spec(f"http://127.0.0.1:{loop.port}/health", follow_redirects=True)
        result = await HttpHealthProbe(session).run(spec)
        assert result.ok is False
        assert "more than 3 redirects" in (result.error or "")
        assert loop.connections == 4


# ------------------------------------------------------------------------------ bodies


async def test_a_huge_body_is_cut_at_the_cap(session) -> None:
    async with Listener("big") as big:
        result = await HttpHealthProbe(session).run(health_spec(f"http://127.0.0.1:{big.port}/h"))
        assert result.ok is False
        assert f"body larger than {MAX_PROBE_BODY_BYTES} bytes" in (result.error or "")
        await asyncio.wait_for(big.finished.wait(), 30)
        assert big.cut_short
        assert big.sent_bytes < BIG_BYTES


async def test_a_declared_huge_body_is_not_read_and_vendor_bodies_are_capped_too(
    session,
) -> None:
    async with Listener("big_declared") as big:
        spec = VendorStatusProbe(type="vendor_status", url=f"http://127.0.0.1:{big.port}")
        result = await StatuspageProbe(session).run(spec)
        assert result.ok is False
        assert f"body larger than {MAX_PROBE_BODY_BYTES} bytes" in (result.error or "")
        await asyncio.wait_for(big.finished.wait(), 30)
        assert big.cut_short


# -------------------------------------------------------------------------- port state


async def test_a_closed_port_and_an_open_one_that_drops_read_the_same(session) -> None:
    async with Listener("drop") as dropping:
        closed = free_port()
        probe = HttpHealthProbe(session)
        a = await probe.run(health_spec(f"http://127.0.0.1:{closed}/health"))
        b = await probe.run(health_spec(f"http://127.0.0.1:{dropping.port}/health"))
        assert dropping.connections >= 1  # (aiohttp tries a dropped GET once more)
        assert (a.ok, a.facts, a.summary) == (b.ok, b.facts, b.summary)
        assert a.facts["error"] == "unreachable"
        vendor = StatuspageProbe(session)
        c = await vendor.run(
            VendorStatusProbe(type="vendor_status", url=f"http://127.0.0.1:{closed}")
        )
        d = await vendor.run(
            VendorStatusProbe(type="vendor_status", url=f"http://127.0.0.1:{dropping.port}")
        )
        assert (c.error or "").replace(str(closed), "P") == (d.error or "").replace(
            str(dropping.port), "P"
        )
        assert "Error" not in (c.error or "") + (d.error or "")


# ---------------------------------------------------------------- allowlist and names


def test_an_allowlist_star_does_not_cross_a_slash() -> None:
    entries = ("production/*/set_env",)
    assert allowed(entries, "production", "api", "set_env")
    assert not allowed(entries, "production", "a/b", "set_env")
    assert not allowed(("production/*",), "production", "api/set_env", "x")
    assert not allowed(("*/api/*",), "a/b", "api", "set_env")


def test_cluster_reads_follow_the_allowlists_namespaces() -> None:
    from responder.mitigate.guards import namespace_allowed

    assert namespace_allowed(("prod-*/api/*",), "prod-eu")
    assert not namespace_allowed(("prod-*/api/*",), "staging")
    assert not namespace_allowed(("*/api/*",), "a/b")


def test_the_allowlist_guard_refuses_names_that_are_not_kubernetes_names() -> None:
    verdicts = check(guard_input(deployment="a/b", allowlist=("production/*/*",)))
    assert verdicts[-1].guard == "allowlist"
    assert verdicts[-1].ok is False
    assert "not a Kubernetes name" in verdicts[-1].reason
    verdicts = check(guard_input(namespace="Prod", allowlist=("*/*/*",)))
    assert (verdicts[-1].guard, verdicts[-1].ok) == ("allowlist", False)


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Any, ClusterGateway]]:
    async with running_fake_kube() as fake:
        fake.add_pod("kube-system", "etcd", {"app": "posthog-integration"}, logs=[])
        gateway = ClusterGateway(kubeconfig(tmp_path / "kubeconfig", fake.url))
        try:
            yield fake, gateway
        finally:
            await gateway.close()


async def test_pod_logs_outside_the_allowlists_namespaces_make_no_kubernetes_call(
    tmp_path,
) -> None:
    async with cluster(tmp_path) as (fake, gateway):
        reader = PodLogsReader(gateway, Redactor(), allowlist=("production/posthog-integration/*",))
        spec = PodLogsProbe(
            type="pod_logs", namespace="kube-system", selector="app=posthog-integration"
        )
        result = await reader.run(spec)
        assert result.ok is False
        assert "not one the action allowlist names" in (result.error or "")
        bad = await reader.run(spec.model_copy(update={"selector": "app=x,(y"}))
        assert bad.ok is False
        assert fake.requests == []
        # in a namespace the allowlist names, the API is asked
        listed = await reader.run(spec.model_copy(update={"namespace": "production"}))
        assert listed.ok is True
        assert fake.requests != []


async def test_the_kubernetes_gateway_checks_names_before_any_request(tmp_path) -> None:
    async with cluster(tmp_path) as (fake, gateway):
        with pytest.raises(KubeError, match="refused"):
            await gateway.list_pods(namespace="a/../b", selector="app=x")
        with pytest.raises(KubeError, match="refused"):
            await gateway.get_deployment(namespace="prod", name="x?dryRun=All")
        with pytest.raises(KubeError, match="refused"):
            await gateway.secret_changed_at(namespace="prod", name="../secrets")
        with pytest.raises(KubeError, match="refused"):
            await gateway.list_pods(namespace="prod", selector="app=x,y in (a")
        assert fake.requests == []


def test_the_probes_cap_is_the_one_tested() -> None:
    from responder.adapters.http import MAX_PROBE_BODY_BYTES as cap

    assert cap == MAX_PROBE_BODY_BYTES


class _FailingProbe:
    """A probe (the port's shape) whose connection fails as told, saying nothing itself."""

    kind = "health"

    def __init__(self, error: OSError) -> None:
        self._error = error

    async def run(self, spec: Any) -> Any:
        raise self._error


async def test_the_runner_tells_no_kind_of_connection_failure_from_another() -> None:
    from responder.domain.decision import PlannedProbe
    from responder.triage.runner import run_probes

    planned = [PlannedProbe(rule="r", spec=health_spec("http://127.0.0.1:9/health"))]
    errors = set()
    for error in (ConnectionRefusedError(111, "refused"), ConnectionResetError(104, "reset")):
        [result] = await run_probes(
            planned, {"health": _FailingProbe(error)}, budget_s=5, redact=Redactor()
        )
        errors.add(result.error)
    assert errors == {"unreachable"}


def test_lint_refuses_a_fixed_url_out_of_its_own_allow_hosts(tmp_path) -> None:
    path = inline_pack(
        tmp_path,
        "    - {type: health, url: 'http://127.0.0.1:8080/h', allow_hosts: ['*.svc.local']}\n",
    )
    with pytest.raises(RuleLoadError, match="never requested"):
        load_rules([path])
