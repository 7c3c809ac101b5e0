"""Every Kubernetes call the service makes, through kubernetes-asyncio (the KubeGateway port).

Configuration: ``RESPONDER_KUBECONFIG`` names a kubeconfig; without it, the in-cluster
service account when running in a pod; otherwise there is no cluster (``connect`` returns
``None`` and what needs Kubernetes says so).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from responder.domain.names import k8s_name_problem, selector_problem
from responder.kube_access import Access
from responder.mitigate.patches import DEFAULT_CONTAINER
from responder.ports import KubeError, PodInfo

# Our name in the objects' managed fields (kubectl uses kubectl-set, kubectl-rollout...).
FIELD_MANAGER = "responder"
# What a log read may return at most (bytes): the probe only keeps the matching tail.
_MAX_LOG_BYTES = 2 * 1024 * 1024


def _message(raw: bytes) -> str:
    """The message of a Kubernetes Status body, or the start of whatever came back."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    return str(doc.get("message", ""))[:200] if isinstance(doc, dict) else ""


def _error(exc: ApiException, what: str) -> KubeError:
    status = exc.status or 0
    label = {401: "unauthorized", 403: "forbidden", 404: "not found", 409: "conflict"}.get(
        status, "error"
    )
    detail = (
        _message(exc.body) if isinstance(exc.body, bytes | str) and exc.body else (exc.reason or "")
    )
    if isinstance(exc.body, str):
        detail = _message(exc.body.encode())
    text = f"{what}: {status} {label}" + (f" ({detail})" if detail else "")
    return KubeError(text, status=exc.status)


def _checked(what: str, *, namespace: str, selector: str | None = None, **names: str) -> None:
    """Names and selectors are checked before they go into a request's path or query: a
    value from an alert label never reaches the API server unchecked (``KubeError``)."""
    problem = k8s_name_problem(namespace, kind="namespace")
    if problem is None and selector is not None:
        problem = selector_problem(selector)
    for kind, name in names.items():
        problem = problem or k8s_name_problem(name, kind=kind)
    if problem is not None:
        raise KubeError(f"{what}: refused: {problem}")


def _container_starts(pod: Any) -> dict[str, datetime]:
    """When each running container of a pod started (``containerStatuses``)."""
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return {
        s.name: s.state.running.started_at
        for s in statuses
        if s.state and s.state.running and s.state.running.started_at
    }


class KubernetesGateway:
    def __init__(self, configuration: client.Configuration) -> None:
        self._configuration = configuration
        self._api: client.ApiClient | None = None

    def _client(self) -> client.ApiClient:
        if self._api is None:
            self._api = client.ApiClient(configuration=self._configuration)
        return self._api

    async def list_pods(self, *, namespace: str, selector: str) -> list[PodInfo]:
        _checked("list pods", namespace=namespace, selector=selector)
        try:
            pods = await client.CoreV1Api(self._client()).list_namespaced_pod(
                namespace, label_selector=selector
            )
        except ApiException as exc:
            raise _error(exc, f"list pods {selector} in {namespace}") from None
        return [
            PodInfo(
                name=p.metadata.name,
                namespace=namespace,
                containers=tuple(c.name for c in (p.spec.containers or [])),
                started_at=p.status.start_time if p.status else None,
                phase=p.status.phase if p.status else None,
                default_container=(p.metadata.annotations or {}).get(DEFAULT_CONTAINER),
                container_started_at=_container_starts(p),
            )
            for p in pods.items
        ]

    async def read_log(
        self, *, namespace: str, pod: str, container: str | None, since_s: int, tail_lines: int
    ) -> str:
        names = {"pod": pod, **({"container": container} if container else {})}
        _checked("read log", namespace=namespace, **names)
        api = client.CoreV1Api(self._client())
        options: dict[str, Any] = {
            "since_seconds": since_s,
            "tail_lines": tail_lines,
            "limit_bytes": _MAX_LOG_BYTES,
            # the raw body: the client would json-decode a log that is one JSON document
            "_preload_content": False,
        }
        if container:
            options["container"] = container
        try:
            # typed as str by the client's stubs; with _preload_content=False it is the
            # aiohttp response
            response: Any = await api.read_namespaced_pod_log(pod, namespace, **options)
            try:
                raw: bytes = await response.read()
                status: int = response.status
            finally:
                response.release()
        except ApiException as exc:
            raise _error(exc, f"read log of {namespace}/{pod}") from None
        if status >= 400:  # unread responses are not checked by the client
            raise _error(
                ApiException(status=status, reason=_message(raw)), f"read log of {namespace}/{pod}"
            )
        return raw.decode("utf-8", errors="replace")

    async def _json(self, call: Any, what: str) -> dict[str, Any]:
        """Run a client call unparsed and return the API's JSON; KubeError on failure."""
        try:
            response: Any = await call
            try:
                raw: bytes = await response.read()
                status: int = response.status
            finally:
                response.release()
        except ApiException as exc:
            raise _error(exc, what) from None
        if status >= 400:
            raise _error(ApiException(status=status, reason=_message(raw)), what)
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise KubeError(f"{what}: unexpected answer")
        return doc

    async def get_deployment(self, *, namespace: str, name: str) -> dict[str, Any]:
        _checked("get deployment", namespace=namespace, deployment=name)
        api = client.AppsV1Api(self._client())
        return await self._json(
            api.read_namespaced_deployment(name, namespace, _preload_content=False),
            f"get deployment {namespace}/{name}",
        )

    async def patch_deployment(
        self, *, namespace: str, name: str, patch: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        _checked("patch deployment", namespace=namespace, deployment=name)
        api = client.AppsV1Api(self._client())
        options: dict[str, Any] = {"field_manager": FIELD_MANAGER, "_preload_content": False}
        if dry_run:
            options["dry_run"] = "All"
        # a dict body goes as application/strategic-merge-patch+json (what kubectl sends)
        return await self._json(
            api.patch_namespaced_deployment(name, namespace, patch, **options),
            f"patch deployment {namespace}/{name}",
        )

    async def get_scale(self, *, namespace: str, name: str) -> int:
        _checked("get scale", namespace=namespace, deployment=name)
        api = client.AppsV1Api(self._client())
        doc = await self._json(
            api.read_namespaced_deployment_scale(name, namespace, _preload_content=False),
            f"get scale of {namespace}/{name}",
        )
        return int(doc.get("spec", {}).get("replicas", 0))

    async def patch_scale(self, *, namespace: str, name: str, replicas: int, dry_run: bool) -> int:
        _checked("scale", namespace=namespace, deployment=name)
        api = client.AppsV1Api(self._client())
        options: dict[str, Any] = {"field_manager": FIELD_MANAGER, "_preload_content": False}
        if dry_run:
            options["dry_run"] = "All"
        doc = await self._json(
            api.patch_namespaced_deployment_scale(
                name, namespace, {"spec": {"replicas": replicas}}, **options
            ),
            f"scale {namespace}/{name}",
        )
        return int(doc.get("spec", {}).get("replicas", 0))

    async def secret_changed_at(self, *, namespace: str, name: str) -> datetime | None:
        _checked("get secret", namespace=namespace, secret=name)
        api = client.CoreV1Api(self._client())
        doc = await self._json(
            api.read_namespaced_secret(name, namespace, _preload_content=False),
            f"get secret {namespace}/{name}",
        )
        # The API has no "data changed at"; the managed-fields times say when a manager last
        # wrote the object (an update of its data rewrites them), which is what we need.
        meta = doc.get("metadata", {})
        times = [f.get("time") for f in meta.get("managedFields") or [] if f.get("time")]
        times.append(meta.get("creationTimestamp"))
        parsed = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times if t]
        return max(parsed) if parsed else None

    async def review_access(self, access: Access) -> bool:
        """Whether our identity may do ``access``: a SelfSubjectAccessReview, which every
        authenticated identity may create (no RBAC of its own to grant)."""
        _checked("review access", namespace=access.namespace)
        resource, _, subresource = access.resource.partition("/")
        attributes = {
            "namespace": access.namespace,
            "group": access.group,
            "resource": resource,
            "verb": access.verb,
            **({"subresource": subresource} if subresource else {}),
            **({"name": access.name} if access.name else {}),
        }
        # a dict body, as patch_deployment sends (the client serialises it as it is)
        body: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        api = client.AuthorizationV1Api(self._client())
        try:
            doc = await self._json(
                api.create_self_subject_access_review(body, _preload_content=False),
                "review access (SelfSubjectAccessReview)",
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(f"review access: API server unreachable: {exc}") from None
        return doc.get("status", {}).get("allowed") is True

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None


class ClusterGateway:
    """The gateway of the configured cluster, connected on first use (the kubeconfig
    loader is async); without a cluster every call fails with a ``KubeError`` that says
    how to configure one."""

    def __init__(self, kubeconfig: Path | None) -> None:
        self._kubeconfig = kubeconfig
        self._gateway: KubernetesGateway | None = None

    async def _connected(self) -> KubernetesGateway:
        if self._gateway is None:
            configuration = client.Configuration()
            if self._kubeconfig is not None:
                try:
                    await config.load_kube_config(
                        config_file=str(self._kubeconfig), client_configuration=configuration
                    )
                except (OSError, config.ConfigException) as exc:
                    raise KubeError(f"kubeconfig {self._kubeconfig}: {exc}") from None
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            else:
                raise KubeError(
                    "no Kubernetes cluster configured: set RESPONDER_KUBECONFIG, or run in a pod"
                )
            self._gateway = KubernetesGateway(configuration)
        return self._gateway

    async def list_pods(self, *, namespace: str, selector: str) -> list[PodInfo]:
        return await (await self._connected()).list_pods(namespace=namespace, selector=selector)

    async def read_log(
        self, *, namespace: str, pod: str, container: str | None, since_s: int, tail_lines: int
    ) -> str:
        gateway = await self._connected()
        return await gateway.read_log(
            namespace=namespace,
            pod=pod,
            container=container,
            since_s=since_s,
            tail_lines=tail_lines,
        )

    async def get_deployment(self, *, namespace: str, name: str) -> dict[str, Any]:
        return await (await self._connected()).get_deployment(namespace=namespace, name=name)

    async def patch_deployment(
        self, *, namespace: str, name: str, patch: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        gateway = await self._connected()
        return await gateway.patch_deployment(
            namespace=namespace, name=name, patch=patch, dry_run=dry_run
        )

    async def get_scale(self, *, namespace: str, name: str) -> int:
        return await (await self._connected()).get_scale(namespace=namespace, name=name)

    async def patch_scale(self, *, namespace: str, name: str, replicas: int, dry_run: bool) -> int:
        gateway = await self._connected()
        return await gateway.patch_scale(
            namespace=namespace, name=name, replicas=replicas, dry_run=dry_run
        )

    async def secret_changed_at(self, *, namespace: str, name: str) -> datetime | None:
        return await (await self._connected()).secret_changed_at(namespace=namespace, name=name)

    async def review_access(self, access: Access) -> bool:
        return await (await self._connected()).review_access(access)

    async def close(self) -> None:
        if self._gateway is not None:
            await self._gateway.close()
