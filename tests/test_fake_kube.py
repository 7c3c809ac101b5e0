"""The fake Kubernetes API server (tests/support/fake_kube.py), driven by the real
kubernetes-asyncio client configured the way the responder configures it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.clock import ShiftableClock
from tests.support.fake_kube import (
    JSON_PATCH,
    MERGE_PATCH,
    RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
    STRATEGIC_MERGE_PATCH,
    FakeKube,
    running_fake_kube,
)

NS = "prod"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/web"
PODS = f"/api/v1/namespaces/{NS}/pods"


def _seconds(at: datetime) -> datetime:
    """What survives the API's second-precision timestamps."""
    return at.astimezone(UTC).replace(microsecond=0)


def _configuration(url: str, token: str | None = "test-token") -> client.Configuration:
    cfg = client.Configuration(host=url)
    if token is not None:
        cfg.api_key = {"BearerToken": f"Bearer {token}"}
    return cfg


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with running_fake_kube() as fake:
        yield fake


@pytest.fixture
async def api(kube: FakeKube) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(configuration=_configuration(kube.url)) as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def web(kube: FakeKube) -> dict[str, Any]:
    """Deployment prod/web: 3 replicas, container "app" with A, B, C and a sidecar."""
    return kube.add_deployment(
        NS,
        "web",
        [
            {
                "name": "app",
                "image": "registry.example/web:1.4",
                "env": {"A": "1", "B": "2", "C": "3"},
            },
            "sidecar",
        ],
        replicas=3,
    )


def _env(deployment: dict[str, Any], container: str = "app") -> dict[str, str]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (found,) = [c for c in containers if c["name"] == container]
    return {e["name"]: e.get("value") for e in found.get("env", [])}


def _status(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    assert exc.value.body is not None
    body: dict[str, Any] = json.loads(exc.value.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == exc.value.status
    return body


# ------------------------------------------------------------------------------------ pods


async def test_list_pods_by_label_selector(kube: FakeKube, core: client.CoreV1Api) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    kube.add_pod(NS, "web-1", {"app": "web", "tier": "frontend"}, ["app", "sidecar"], t0)
    kube.add_pod(NS, "web-2", {"app": "web", "track": "canary"}, ["app"], t0 + timedelta(minutes=1))
    kube.add_pod(NS, "api-1", {"app": "api"}, ["app"], t0)
    kube.add_pod("staging", "web-9", {"app": "web"}, ["app"], t0)

    async def names(selector: str) -> list[str]:
        pods = await core.list_namespaced_pod(NS, label_selector=selector)
        return [p.metadata.name for p in pods.items]

    assert await names("app=web") == ["web-1", "web-2"]
    assert await names("app==web,track!=canary") == ["web-1"]
    assert await names("app in (web, api)") == ["api-1", "web-1", "web-2"]
    assert await names("app notin (web)") == ["api-1"]
    assert await names("track") == ["web-2"]
    assert await names("app=web,!track") == ["web-1"]
    assert await names("app=nothing") == []

    pods = await core.list_namespaced_pod(NS, label_selector="app=web")
    first = pods.items[0]
    assert pods.kind == "PodList"
    assert int(pods.metadata.resource_version) >= int(first.metadata.resource_version)
    assert first.status.phase == "Running"
    assert first.status.start_time == _seconds(t0)
    assert [c.name for c in first.spec.containers] == ["app", "sidecar"]
    assert first.metadata.labels == {"app": "web", "tier": "frontend"}
    assert first.metadata.uid
    assert kube.requests[0].query == {"labelSelector": "app=web"}


async def test_field_selectors_bad_selectors_and_pages(
    kube: FakeKube, core: client.CoreV1Api
) -> None:
    for i in range(3):
        kube.add_pod(NS, f"web-{i}", {"app": "web"})
    kube.add_pod(NS, "web-new", {"app": "web"}, phase="Pending")

    running = await core.list_namespaced_pod(NS, field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["web-0", "web-1", "web-2"]
    one = await core.list_namespaced_pod(NS, field_selector="metadata.name=web-1")
    assert [p.metadata.name for p in one.items] == ["web-1"]
    pending = await core.list_namespaced_pod(NS, field_selector="status.phase!=Running")
    assert [p.metadata.name for p in pending.items] == ["web-new"]
    assert pending.items[0].status.start_time is None

    page = await core.list_namespaced_pod(NS, limit=2)
    assert [p.metadata.name for p in page.items] == ["web-0", "web-1"]
    assert page.metadata.remaining_item_count == 2
    rest = await core.list_namespaced_pod(NS, limit=2, _continue=page.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["web-2", "web-new"]
    assert rest.metadata._continue is None

    with pytest.raises(ApiException) as bad_labels:
        await core.list_namespaced_pod(NS, label_selector="app=(web")
    assert bad_labels.value.status == 400
    assert _status(bad_labels)["reason"] == "BadRequest"
    with pytest.raises(ApiException) as bad_field:
        await core.list_namespaced_pod(NS, field_selector="spec.color=blue")
    assert bad_field.value.status == 400
    assert "field label not supported: spec.color" in _status(bad_field)["message"]


async def test_read_pod_and_a_missing_one(kube: FakeKube, core: client.CoreV1Api) -> None:
    kube.add_pod(NS, "web-1", {"app": "web"}, [{"name": "app", "image": "web:2"}])
    pod = await core.read_namespaced_pod("web-1", NS)
    assert pod.kind == "Pod"
    assert pod.spec.containers[0].image == "web:2"
    assert pod.status.container_statuses[0].ready is True

    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_pod("web-404", NS)
    assert missing.value.status == 404
    body = _status(missing)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'pods "web-404" not found'
    assert body["details"] == {"name": "web-404", "kind": "pods"}


# ------------------------------------------------------------------------------------ logs


@pytest.fixture
def logged_pod(kube: FakeKube) -> datetime:
    now = datetime.now(UTC)
    kube.add_pod(
        NS,
        "web-1",
        {"app": "web"},
        ["app", "sidecar"],
        now - timedelta(minutes=10),
        logs={
            "app": [(now - timedelta(seconds=s), f"app line -{s}s") for s in (300, 100, 50, 10, 5)],
            "sidecar": [(now - timedelta(seconds=20), "sidecar says hi")],
        },
    )
    return now


async def test_pod_log_since_seconds_then_tail_lines(
    logged_pod: datetime, kube: FakeKube, core: client.CoreV1Api
) -> None:
    text = await core.read_namespaced_pod_log("web-1", NS, container="app")
    assert isinstance(text, str)
    assert text.splitlines() == [f"app line -{s}s" for s in (300, 100, 50, 10, 5)]

    recent = await core.read_namespaced_pod_log("web-1", NS, container="app", since_seconds=60)
    assert recent == "app line -50s\napp line -10s\napp line -5s\n"

    tail = await core.read_namespaced_pod_log(
        "web-1", NS, container="app", since_seconds=200, tail_lines=2
    )
    assert tail == "app line -10s\napp line -5s\n"
    assert kube.requests[-1].path == f"{PODS}/web-1/log"
    assert kube.requests[-1].query == {
        "container": "app",
        "sinceSeconds": "200",
        "tailLines": "2",
    }
    assert await core.read_namespaced_pod_log("web-1", NS, container="app", tail_lines=0) == ""

    sidecar = await core.read_namespaced_pod_log("web-1", NS, container="sidecar")
    assert sidecar == "sidecar says hi\n"


async def test_pod_log_timestamps_and_limit_bytes(
    logged_pod: datetime, core: client.CoreV1Api
) -> None:
    stamped = await core.read_namespaced_pod_log(
        "web-1", NS, container="app", tail_lines=1, timestamps=True
    )
    stamp, line = stamped.rstrip("\n").split(" ", 1)
    assert line == "app line -5s"
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == logged_pod - timedelta(seconds=5)

    cut = await core.read_namespaced_pod_log("web-1", NS, container="app", limit_bytes=10)
    assert cut == "app line -"


async def test_pod_log_container_choice_and_errors(
    logged_pod: datetime, kube: FakeKube, core: client.CoreV1Api
) -> None:
    with pytest.raises(ApiException) as no_container:
        await core.read_namespaced_pod_log("web-1", NS)
    assert no_container.value.status == 400
    assert _status(no_container)["message"] == (
        "a container name must be specified for pod web-1, choose one of: [app sidecar]"
    )
    with pytest.raises(ApiException) as wrong_container:
        await core.read_namespaced_pod_log("web-1", NS, container="nginx")
    assert wrong_container.value.status == 400
    with pytest.raises(ApiException) as missing_pod:
        await core.read_namespaced_pod_log("web-404", NS, container="app")
    assert missing_pod.value.status == 404
    with pytest.raises(ApiException) as bad_since:
        await core.read_namespaced_pod_log("web-1", NS, container="app", since_seconds=0)
    assert bad_since.value.status == 422

    kube.add_pod(NS, "solo", {"app": "solo"}, ["app"], logs=[(logged_pod, "only container")])
    assert await core.read_namespaced_pod_log("solo", NS) == "only container\n"


async def test_pod_log_since_follows_the_fakes_clock() -> None:
    clock = ShiftableClock()
    async with (
        running_fake_kube(clock=clock.now) as kube,
        client.ApiClient(configuration=_configuration(kube.url)) as api,
    ):
        kube.add_pod(NS, "web-1", {"app": "web"}, logs=[(clock.now(), "just now")])
        kube.add_log(NS, "web-1", "a bit later", at=clock.now() + timedelta(seconds=30))
        core = client.CoreV1Api(api)
        clock.advance(60)
        assert await core.read_namespaced_pod_log("web-1", NS, since_seconds=45) == (
            "a bit later\n"
        )
        clock.advance(60)
        assert await core.read_namespaced_pod_log("web-1", NS, since_seconds=45) == ""


async def test_client_turns_a_log_that_is_one_json_document_into_its_python_repr(
    kube: FakeKube, core: client.CoreV1Api
) -> None:
    """Not the fake: kubernetes-asyncio json.loads() every body, the ``str`` log included.
    A log that is a single JSON document comes back as ``str(dict)``; several lines do not
    parse and come back as sent. ``_preload_content=False`` gets the raw bytes."""
    kube.add_pod(NS, "json-1", {"app": "j"}, logs=[(datetime.now(UTC), '{"level": "error"}')])
    kube.add_pod(
        NS,
        "json-2",
        {"app": "j"},
        logs=[(datetime.now(UTC), '{"level": "error"}'), (datetime.now(UTC), '{"level": "info"}')],
    )
    assert await core.read_namespaced_pod_log("json-1", NS) == "{'level': 'error'}"
    assert await core.read_namespaced_pod_log("json-2", NS) == (
        '{"level": "error"}\n{"level": "info"}\n'
    )
    async with await core.read_namespaced_pod_log("json-1", NS, _preload_content=False) as raw:
        assert await raw.read() == b'{"level": "error"}\n'
        assert raw.content_type == "text/plain"


# --------------------------------------------------------------------------------- secrets


async def test_read_secret_data_and_change_time(kube: FakeKube, core: client.CoreV1Api) -> None:
    t1 = datetime.now(UTC) - timedelta(hours=2)
    kube.set_secret(NS, "web-creds", {"token": "s3cret", "user": b"svc"}, changed_at=t1)
    secret = await core.read_namespaced_secret("web-creds", NS)
    assert secret.type == "Opaque"
    assert {k: base64.b64decode(v) for k, v in secret.data.items()} == {
        "token": b"s3cret",
        "user": b"svc",
    }
    (entry,) = secret.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.time) == ("kubectl-edit", "Update", _seconds(t1))
    first_version = int(secret.metadata.resource_version)

    t2 = t1 + timedelta(minutes=30)
    kube.set_secret(NS, "web-creds", {"token": "rotated"}, changed_at=t2)
    secret = await core.read_namespaced_secret("web-creds", NS)
    assert int(secret.metadata.resource_version) > first_version
    assert base64.b64decode(secret.data["token"]) == b"rotated"
    assert [e.time for e in secret.metadata.managed_fields] == [_seconds(t2)]
    assert secret.metadata.creation_timestamp == _seconds(t1)

    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_secret("nope", NS)
    assert missing.value.status == 404
    assert _status(missing)["message"] == 'secrets "nope" not found'


@pytest.mark.parametrize(("changed_after_s", "expected"), [(30, True), (-30, False)])
async def test_secret_changed_after_the_oldest_pod_started_is_decidable(
    kube: FakeKube, core: client.CoreV1Api, changed_after_s: int, expected: bool
) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    kube.add_pod(NS, "web-1", {"app": "web"}, started_at=t0)
    kube.add_pod(NS, "web-2", {"app": "web"}, started_at=t0 + timedelta(minutes=5))
    kube.set_secret(NS, "web-creds", {"k": "v"}, changed_at=t0 + timedelta(seconds=changed_after_s))

    pods = await core.list_namespaced_pod(NS, label_selector="app=web")
    oldest_start = min(p.status.start_time for p in pods.items)
    secret = await core.read_namespaced_secret("web-creds", NS)
    last_change = max(e.time for e in secret.metadata.managed_fields)
    assert (last_change > oldest_start) is expected


# ----------------------------------------------------------------------------- deployments


async def test_read_deployment(web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api) -> None:
    deployment = await apps.read_namespaced_deployment("web", NS)
    assert deployment.kind == "Deployment"
    assert deployment.spec.replicas == 3
    assert deployment.spec.selector.match_labels == {"app": "web"}
    assert deployment.spec.template.metadata.labels == {"app": "web"}
    app, sidecar = deployment.spec.template.spec.containers
    assert (app.name, app.image, sidecar.name) == ("app", "registry.example/web:1.4", "sidecar")
    assert [(e.name, e.value) for e in app.env] == [("A", "1"), ("B", "2"), ("C", "3")]
    assert deployment.metadata.generation == 1
    assert deployment.metadata.annotations == {REVISION_ANNOTATION: "1"}
    assert deployment.status.observed_generation == 1
    assert deployment.status.available_replicas == 3
    assert deployment.metadata.resource_version == web["metadata"]["resourceVersion"]

    with pytest.raises(ApiException) as missing:
        await apps.read_namespaced_deployment("nope", NS)
    assert missing.value.status == 404
    body = _status(missing)
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


async def test_a_dict_patch_is_a_strategic_merge_that_merges_env_by_name(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "20"}]}]}
            }
        }
    }
    answer = await apps.patch_namespaced_deployment("web", NS, patch, field_manager="responder")

    (request,) = kube.requests
    assert (request.method, request.path) == ("PATCH", DEPLOYMENT)
    assert request.content_type == STRATEGIC_MERGE_PATCH
    assert request.body == patch
    assert request.query == {"fieldManager": "responder"}

    stored = kube.deployment(NS, "web")
    assert _env(stored) == {"A": "1", "B": "20", "C": "3"}
    assert [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]] == [
        "app",
        "sidecar",
    ]
    assert (
        stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:1.4"
    )
    assert int(stored["metadata"]["resourceVersion"]) > int(web["metadata"]["resourceVersion"])
    assert stored["metadata"]["generation"] == 2
    assert stored["metadata"]["annotations"][REVISION_ANNOTATION] == "2"
    assert stored["status"]["observedGeneration"] == 2
    assert "responder" in [e["manager"] for e in stored["metadata"]["managedFields"]]
    assert answer.metadata.resource_version == stored["metadata"]["resourceVersion"]
    assert [(e.name, e.value) for e in answer.spec.template.spec.containers[0].env] == [
        ("A", "1"),
        ("B", "20"),
        ("C", "3"),
    ]

    await apps.patch_namespaced_deployment(
        "web",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "env": [{"name": "D", "value": "4"}]}]}
                }
            }
        },
    )
    assert _env(kube.deployment(NS, "web")) == {"A": "1", "B": "20", "C": "3", "D": "4"}


async def test_patch_delete_directive_removes_one_env_var_and_null_removes_a_key(
    kube: FakeKube, apps: client.AppsV1Api
) -> None:
    kube.add_deployment(
        NS,
        "web",
        [{"name": "app", "env": {"A": "1", "B": "2", "C": "3"}}],
        annotations={"team": "core", "x": "y"},
    )
    await apps.patch_namespaced_deployment(
        "web",
        NS,
        {
            "metadata": {"annotations": {"x": None}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "app", "env": [{"name": "B", "$patch": "delete"}]}]
                    }
                }
            },
        },
    )
    stored = kube.deployment(NS, "web")
    assert _env(stored) == {"A": "1", "C": "3"}
    assert stored["metadata"]["annotations"] == {"team": "core", REVISION_ANNOTATION: "2"}


async def test_merge_patch_replaces_lists_whole(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    await apps.patch_namespaced_deployment(
        "web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}},
        _content_type=MERGE_PATCH,
    )
    assert kube.requests[-1].content_type == MERGE_PATCH
    (container,) = kube.deployment(NS, "web")["spec"]["template"]["spec"]["containers"]
    assert container == {"name": "app", "image": "web:2"}


async def test_json_patch_operations(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    env = "/spec/template/spec/containers/0/env"
    await apps.patch_namespaced_deployment(
        "web",
        NS,
        [
            {"op": "test", "path": f"{env}/0/name", "value": "A"},
            {"op": "remove", "path": f"{env}/0"},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": f"{env}/-", "value": {"name": "D", "value": "4"}},
        ],
    )
    assert kube.requests[-1].content_type == JSON_PATCH
    stored = kube.deployment(NS, "web")
    assert _env(stored) == {"B": "2", "C": "3", "D": "4"}
    assert stored["spec"]["replicas"] == 4

    version = stored["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as failed_test:
        await apps.patch_namespaced_deployment(
            "web",
            NS,
            [
                {"op": "test", "path": "/spec/replicas", "value": 99},
                {"op": "replace", "path": "/spec/replicas", "value": 0},
            ],
        )
    assert failed_test.value.status == 422
    with pytest.raises(ApiException) as missing_path:
        await apps.patch_namespaced_deployment(
            "web", NS, [{"op": "add", "path": "/spec/nothing/here", "value": 1}]
        )
    assert missing_path.value.status == 422
    assert kube.deployment(NS, "web")["metadata"]["resourceVersion"] == version


async def test_dry_run_returns_the_result_and_stores_nothing(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    answer = await apps.patch_namespaced_deployment(
        "web", NS, {"spec": {"replicas": 7}}, dry_run="All"
    )
    assert answer.spec.replicas == 7
    assert kube.requests[-1].query == {"dryRun": "All"}
    assert kube.deployment(NS, "web") == web

    scale = await apps.patch_namespaced_deployment_scale(
        "web", NS, {"spec": {"replicas": 9}}, dry_run="All"
    )
    assert scale.spec.replicas == 9
    assert kube.deployment(NS, "web") == web

    with pytest.raises(ApiException) as invalid:
        await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": -1}}, dry_run="All")
    assert invalid.value.status == 422


async def test_resource_version_and_generation_bump_only_on_change(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    version = web["metadata"]["resourceVersion"]
    same = await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 3}})
    assert same.metadata.resource_version == version
    assert same.metadata.generation == 1
    same_env = await apps.patch_namespaced_deployment(
        "web",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}
                }
            }
        },
    )
    assert same_env.metadata.resource_version == version
    assert kube.deployment(NS, "web") == web

    labelled = await apps.patch_namespaced_deployment(
        "web", NS, {"metadata": {"labels": {"owner": "sre"}}}
    )
    assert int(labelled.metadata.resource_version) > int(version)
    assert labelled.metadata.generation == 1  # metadata is not spec
    assert labelled.metadata.labels == {"app": "web", "owner": "sre"}

    scaled = await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 5}})
    assert int(scaled.metadata.resource_version) > int(labelled.metadata.resource_version)
    assert scaled.metadata.generation == 2
    assert scaled.metadata.annotations[REVISION_ANNOTATION] == "1"  # same pod template
    assert scaled.status.replicas == 5


async def test_rollout_restart_annotation(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    restarted_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    patch = {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: restarted_at}}}}
    }
    answer = await apps.patch_namespaced_deployment(
        "web", NS, patch, field_manager="kubectl-rollout"
    )
    assert answer.spec.template.metadata.annotations == {RESTARTED_AT_ANNOTATION: restarted_at}
    assert answer.spec.template.metadata.labels == {"app": "web"}
    assert answer.metadata.generation == 2
    assert answer.metadata.annotations[REVISION_ANNOTATION] == "2"
    assert answer.status.observed_generation == 2
    assert int(answer.metadata.resource_version) > int(web["metadata"]["resourceVersion"])
    stored = kube.deployment(NS, "web")
    assert _env(stored) == _env(web)
    assert stored["spec"]["template"]["spec"] == web["spec"]["template"]["spec"]

    again = await apps.patch_namespaced_deployment("web", NS, patch)  # same timestamp: no-op
    assert again.metadata.resource_version == answer.metadata.resource_version


async def test_stale_resource_version_in_a_patch_is_a_conflict(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    version = web["metadata"]["resourceVersion"]
    await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 4}})
    with pytest.raises(ApiException) as conflict:
        await apps.patch_namespaced_deployment(
            "web", NS, {"metadata": {"resourceVersion": version}, "spec": {"replicas": 5}}
        )
    assert conflict.value.status == 409
    assert _status(conflict)["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    current = kube.deployment(NS, "web")["metadata"]["resourceVersion"]
    ok = await apps.patch_namespaced_deployment(
        "web", NS, {"metadata": {"resourceVersion": current}, "spec": {"replicas": 5}}
    )
    assert ok.spec.replicas == 5


async def test_invalid_results_and_wrong_content_types_are_rejected(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    with pytest.raises(ApiException) as negative:
        await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": -1}})
    assert negative.value.status == 422
    body = _status(negative)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.replicas"

    with pytest.raises(ApiException) as no_image:
        await apps.patch_namespaced_deployment(
            "web", NS, [{"op": "remove", "path": "/spec/template/spec/containers/0/image"}]
        )
    assert no_image.value.status == 422
    with pytest.raises(ApiException) as selector:
        await apps.patch_namespaced_deployment(
            "web", NS, {"spec": {"selector": {"matchLabels": {"app": "other"}}}}
        )
    assert selector.value.status == 422

    with pytest.raises(ApiException) as plain_json:
        await apps.patch_namespaced_deployment(
            "web", NS, {"spec": {"replicas": 2}}, _content_type="application/json"
        )
    assert plain_json.value.status == 415
    assert _status(plain_json)["reason"] == "UnsupportedMediaType"

    status_patch = await apps.patch_namespaced_deployment(
        "web", NS, {"status": {"availableReplicas": 0}}
    )
    assert status_patch.status.available_replicas == 3  # status belongs to /status
    assert kube.deployment(NS, "web") == web


async def test_replace_deployment_with_a_precondition(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    current = await apps.read_namespaced_deployment("web", NS)
    current.spec.replicas = 6
    replaced = await apps.replace_namespaced_deployment("web", NS, current)
    assert replaced.spec.replicas == 6
    with pytest.raises(ApiException) as stale:
        await apps.replace_namespaced_deployment("web", NS, current)  # old resourceVersion
    assert stale.value.status == 409


# ----------------------------------------------------------------------------------- scale


async def test_scale_subresource_stays_in_sync(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    scale = await apps.read_namespaced_deployment_scale("web", NS)
    assert scale.kind == "Scale"
    assert scale.api_version == "autoscaling/v1"
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (3, 3, "app=web")

    scaled = await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 5}})
    assert kube.requests[-1].path == f"{DEPLOYMENT}/scale"
    assert kube.requests[-1].content_type == STRATEGIC_MERGE_PATCH
    assert (scaled.spec.replicas, scaled.status.replicas) == (5, 5)
    stored = kube.deployment(NS, "web")
    assert stored["spec"]["replicas"] == 5
    assert stored["metadata"]["generation"] == 2
    assert scaled.metadata.resource_version == stored["metadata"]["resourceVersion"]
    assert {"manager": "OpenAPI-Generator", "subresource": "scale"}.items() <= stored["metadata"][
        "managedFields"
    ][-1].items()

    await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 2}})
    assert (await apps.read_namespaced_deployment_scale("web", NS)).spec.replicas == 2
    assert kube.scale(NS, "web")["spec"]["replicas"] == 2

    with pytest.raises(ApiException) as negative:
        await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": -3}})
    assert negative.value.status == 422
    assert _status(negative)["details"]["kind"] == "Scale"


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "reason"),
    [(403, "Forbidden"), (404, "NotFound"), (409, "Conflict"), (500, "InternalError")],
)
async def test_injected_errors_raise_api_exceptions_with_status_bodies(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api, code: int, reason: str
) -> None:
    kube.fail("PATCH", DEPLOYMENT, code)
    with pytest.raises(ApiException) as failed:
        await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 1}})
    assert failed.value.status == code
    body = _status(failed)
    assert body["reason"] == reason
    if code == 403:
        assert body["message"] == (
            'deployments.apps "web" is forbidden: User "system:serviceaccount:responder:responder" '
            'cannot patch resource "deployments" in API group "apps" in the namespace "prod"'
        )
    assert kube.deployment(NS, "web") == web

    # once (times=1): the next one goes through
    answer = await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 1}})
    assert answer.spec.replicas == 1
    assert [r.status for r in kube.requests] == [code, 200]


async def test_faults_match_method_and_whole_path_and_can_last(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    kube.add_pod(NS, "web-1", {"app": "web"})
    fault = kube.fail("GET", f"{PODS}/[^/]+/log", 403, times=None)
    kube.fail("*", f"{DEPLOYMENT}/scale", 503, times=None)
    for _ in range(3):
        with pytest.raises(ApiException) as forbidden:
            await core.read_namespaced_pod_log("web-1", NS)
        assert forbidden.value.status == 403
    assert 'cannot get resource "pods/log" in API group ""' in _status(forbidden)["message"]
    assert fault.hits == 3
    assert (await core.read_namespaced_pod("web-1", NS)).metadata.name == "web-1"
    assert (await apps.read_namespaced_deployment("web", NS)).spec.replicas == 3
    with pytest.raises(ApiException) as unavailable:
        await apps.read_namespaced_deployment_scale("web", NS)
    assert unavailable.value.status == 503

    kube.clear_faults()
    assert await core.read_namespaced_pod_log("web-1", NS) == ""
    assert (await apps.read_namespaced_deployment_scale("web", NS)).spec.replicas == 3


async def test_slow_and_hung_answers(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api
) -> None:
    kube.slow("GET", DEPLOYMENT, 0.3)
    started = time.monotonic()
    assert (await apps.read_namespaced_deployment("web", NS)).spec.replicas == 3
    assert time.monotonic() - started >= 0.3

    kube.slow("GET", DEPLOYMENT, 5.0)
    with pytest.raises(TimeoutError):
        await apps.read_namespaced_deployment("web", NS, _request_timeout=0.2)

    kube.hang("PATCH", DEPLOYMENT)
    with pytest.raises(TimeoutError):
        await apps.patch_namespaced_deployment(
            "web", NS, {"spec": {"replicas": 1}}, _request_timeout=0.2
        )
    assert kube.requests[-1].status is None  # never answered
    assert kube.deployment(NS, "web") == web
    assert (await apps.read_namespaced_deployment("web", NS)).spec.replicas == 3


async def test_authentication(kube: FakeKube, web: dict[str, Any]) -> None:
    for token in ("wrong-token", None):
        async with client.ApiClient(configuration=_configuration(kube.url, token)) as api:
            with pytest.raises(ApiException) as unauthorized:
                await client.AppsV1Api(api).read_namespaced_deployment("web", NS)
        assert unauthorized.value.status == 401
        assert _status(unauthorized)["reason"] == "Unauthorized"
    assert kube.requests[0].headers["Authorization"] == "Bearer wrong-token"
    assert "Authorization" not in kube.requests[1].headers

    async with kube.api_client() as api:
        assert (await client.AppsV1Api(api).read_namespaced_deployment("web", NS)).spec
    assert kube.requests[-1].headers["Authorization"] == "Bearer test-token"


async def test_anonymous_requests_are_forbidden_when_anonymous_auth_is_on() -> None:
    async with running_fake_kube(anonymous=True) as kube:
        kube.add_pod(NS, "web-1", {"app": "web"})
        async with client.ApiClient(configuration=_configuration(kube.url, None)) as api:
            core = client.CoreV1Api(api)
            with pytest.raises(ApiException) as forbidden:
                await core.list_namespaced_pod(NS)
            assert forbidden.value.status == 403
            assert _status(forbidden)["message"] == (
                'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API '
                'group "" in the namespace "prod"'
            )
            assert (await client.VersionApi(api).get_code()).git_version == kube.git_version
        async with client.ApiClient(configuration=_configuration(kube.url, "bad")) as api:
            with pytest.raises(ApiException) as unauthorized:
                await client.CoreV1Api(api).list_namespaced_pod(NS)
            assert unauthorized.value.status == 401


async def test_unknown_paths_and_methods(kube: FakeKube, web: dict[str, Any]) -> None:
    headers = {"Authorization": "Bearer test-token"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{kube.url}/api/v1/namespaces/{NS}/configmaps") as response:
            assert response.status == 404
            body = await response.json()
        assert body["kind"] == "Status"
        assert body["reason"] == "NotFound"
        assert body["message"] == "the server could not find the requested resource"
        async with session.delete(f"{kube.url}{DEPLOYMENT}") as response:
            assert response.status == 405
            assert (await response.json())["reason"] == "MethodNotAllowed"
    assert kube.deployment(NS, "web") == web


async def test_requests_are_recorded_in_order(
    web: dict[str, Any], kube: FakeKube, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    kube.add_pod(NS, "web-1", {"app": "web"})
    await core.list_namespaced_pod(NS, label_selector="app=web")
    await apps.read_namespaced_deployment("web", NS)
    await apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 4}}, dry_run="All")
    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 4}})
    assert kube.calls() == [
        ("GET", PODS),
        ("GET", DEPLOYMENT),
        ("PATCH", DEPLOYMENT),
        ("PATCH", f"{DEPLOYMENT}/scale"),
    ]
    mutations = kube.requests_to("PATCH", f"{DEPLOYMENT}(/scale)?")
    assert [(r.query, r.body) for r in mutations] == [
        ({"dryRun": "All"}, {"spec": {"replicas": 4}}),
        ({}, {"spec": {"replicas": 4}}),
    ]
    assert all(r.status == 200 for r in kube.requests)
