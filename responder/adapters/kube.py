"""Every Kubernetes call the service makes, through kubernetes-asyncio (the KubeGateway port).

Configuration: ``RESPONDER_KUBECONFIG`` names a kubeconfig; without it, the in-cluster
service account when running in a pod; otherwise there is no cluster (``connect`` returns
``None`` and what needs Kubernetes says so).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from responder.ports import KubeError, PodInfo

# What a log read may return at most (bytes): the probe only keeps the matching tail.
_MAX_LOG_BYTES = 2 * 1024 * 1024


def _error(exc: ApiException, what: str) -> KubeError:
    reason = {401: "unauthorized", 403: "forbidden", 404: "not found", 409: "conflict"}.get(
        exc.status or 0, exc.reason or "error"
    )
    return KubeError(f"{what}: {exc.status} {reason}", status=exc.status)


class KubernetesGateway:
    def __init__(self, configuration: client.Configuration) -> None:
        self._configuration = configuration
        self._api: client.ApiClient | None = None

    def _client(self) -> client.ApiClient:
        if self._api is None:
            self._api = client.ApiClient(configuration=self._configuration)
        return self._api

    async def list_pods(self, *, namespace: str, selector: str) -> list[PodInfo]:
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
            )
            for p in pods.items
        ]

    async def read_log(
        self, *, namespace: str, pod: str, container: str | None, since_s: int, tail_lines: int
    ) -> str:
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
                ApiException(status=status, reason=raw.decode(errors="replace")[:200]),
                f"read log of {namespace}/{pod}",
            )
        return raw.decode("utf-8", errors="replace")

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

    async def close(self) -> None:
        if self._gateway is not None:
            await self._gateway.close()
