"""The pod-logs probe through the real kubernetes-asyncio client against a fake API server,
configured the way users configure it: a kubeconfig file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from responder.adapters.kube import ClusterGateway
from responder.adapters.probes.pod_logs import PodLogsReader
from responder.domain.plans import PodLogsProbe
from responder.redaction import Redactor
from tests.support.fake_kube import running_fake_kube


def kubeconfig(path: Path, url: str, token: str = "test-token") -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "responder", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "responder"}}],
            }
        )
    )
    return path


def spec(**kw: object) -> PodLogsProbe:
    values = {
        "type": "pod_logs",
        "namespace": "production",
        "selector": "app=posthog-integration",
        "since_s": 300,
        "tail_lines": 3,
    }
    values.update(kw)
    return PodLogsProbe.model_validate(values)


@pytest.fixture
async def kube(tmp_path):
    async with running_fake_kube() as fake:
        now = datetime.now(UTC)
        fake.add_pod(
            "production",
            "posthog-integration-a",
            {"app": "posthog-integration"},
            logs=[
                (now - timedelta(minutes=30), "ERROR old failure, outside the window"),
                (now - timedelta(seconds=50), "INFO sent 20 events"),
                (now - timedelta(seconds=40), "ERROR 429 Too Many Requests from PostHog"),
                (
                    now - timedelta(seconds=30),
                    "error: auth failed with api_key=phc_abcdefghijklmnopqrstu",
                ),
                (now - timedelta(seconds=20), "ERROR 429 again"),
                (now - timedelta(seconds=10), "Error: retry budget spent"),
            ],
        )
        fake.add_pod(
            "production",
            "posthog-integration-b",
            {"app": "posthog-integration"},
            logs=[(now - timedelta(seconds=5), "INFO all good")],
        )
        fake.add_pod("production", "other", {"app": "other"}, logs=[(now, "ERROR not ours")])
        gateway = ClusterGateway(kubeconfig(tmp_path / "kubeconfig", fake.url))
        yield fake, gateway
        await gateway.close()


async def test_matching_lines_of_the_selected_pods_within_the_window(kube) -> None:
    fake, gateway = kube
    result = await PodLogsReader(gateway, Redactor()).run(spec())
    assert result.ok
    assert result.facts == {
        "pods": 2,
        "pods_with_matches": 1,
        "matching_lines": 3,
        "pods_gone": 0,
    }
    lines = result.evidence["lines"]
    assert set(lines) == {"posthog-integration-a", "posthog-integration-b"}
    assert lines["posthog-integration-b"] == []
    # case-insensitive "error", the last 3, none older than since_s, secrets redacted
    assert lines["posthog-integration-a"] == [
        "error: auth failed with api_key=[REDACTED]",
        "ERROR 429 again",
        "Error: retry budget spent",
    ]
    [listing] = fake.requests_to("GET", r"/api/v1/namespaces/production/pods")
    assert listing.query["labelSelector"] == "app=posthog-integration"
    [log_read, *_] = fake.requests_to("GET", r"/api/v1/namespaces/production/pods/.*/log")
    assert log_read.query["sinceSeconds"] == "300"


async def test_a_log_that_is_one_json_document_comes_back_verbatim(kube) -> None:
    fake, gateway = kube
    fake.add_pod(
        "production",
        "json-logger",
        {"app": "json"},
        logs=[(datetime.now(UTC), '{"level": "error", "msg": "boom"}')],
    )
    result = await PodLogsReader(gateway, Redactor()).run(spec(selector="app=json"))
    assert result.evidence["lines"]["json-logger"] == ['{"level": "error", "msg": "boom"}']


async def test_forbidden_listing_is_a_failed_probe_that_says_so(kube) -> None:
    fake, gateway = kube
    fake.fail("GET", r"/api/v1/namespaces/production/pods", 403, times=None)
    result = await PodLogsReader(gateway, Redactor()).run(spec())
    assert result.ok is False
    assert "403 forbidden" in result.error


async def test_a_pod_that_vanished_is_a_fact_and_the_others_are_read(kube) -> None:
    fake, gateway = kube
    fake.fail("GET", r"/api/v1/namespaces/production/pods/posthog-integration-b/log", 404)
    result = await PodLogsReader(gateway, Redactor()).run(spec())
    assert result.ok
    # replaced since it was listed (a rollout): said as such, not as a read that failed
    assert result.evidence["gone"] == ["posthog-integration-b"]
    assert result.evidence["errors"] == {}
    assert result.facts["pods_gone"] == 1
    assert "1 pod gone" in result.summary
    assert result.facts["matching_lines"] == 3


async def test_no_pods_is_an_answer_not_a_failure(kube) -> None:
    _, gateway = kube
    result = await PodLogsReader(gateway, Redactor()).run(spec(selector="app=nothing"))
    assert result.ok
    assert result.facts == {
        "pods": 0,
        "pods_with_matches": 0,
        "matching_lines": 0,
        "pods_gone": 0,
    }


async def test_wrong_token_is_unauthorized(tmp_path) -> None:
    async with running_fake_kube() as fake:
        gateway = ClusterGateway(kubeconfig(tmp_path / "kc", fake.url, token="wrong"))
        result = await PodLogsReader(gateway, Redactor()).run(spec())
        await gateway.close()
        assert result.ok is False
        assert "401" in result.error


async def test_without_a_cluster_the_probe_says_how_to_configure_one(monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = await PodLogsReader(ClusterGateway(None), Redactor()).run(spec())
    assert result.ok is False
    assert "RESPONDER_KUBECONFIG" in result.error
