"""Prometheus HTTP API client (instant and range queries)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from responder.adapters.http import BodyTooLarge, SharedSession, read_capped

# What an answer may weigh at most: a query over many series must not cost the process
# its memory (a range query for the evidence bundle is the largest we make).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class PrometheusError(Exception):
    pass


class PrometheusClient:
    def __init__(self, base_url: str, session: SharedSession) -> None:
        self._base = base_url.rstrip("/")
        self._session = session

    async def _get(self, path: str, params: dict[str, str], timeout_s: float) -> dict[str, Any]:
        url = f"{self._base}{path}"
        try:
            async with self._session.get().get(
                url, params=params, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                raw = await read_capped(resp, max_bytes=MAX_ANSWER_BYTES)
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise PrometheusError(f"HTTP {resp.status}: not JSON") from None
        except BodyTooLarge as exc:
            raise PrometheusError(f"the answer is too large: {exc}") from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"cannot reach Prometheus: {type(exc).__name__}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "unknown error") if isinstance(body, dict) else body
            kind = body.get("errorType", "") if isinstance(body, dict) else ""
            raise PrometheusError(f"HTTP {resp.status} {kind}: {error}".replace("  ", " "))
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError("no data in the answer")
        return data

    async def query(self, promql: str, *, timeout_s: float) -> dict[str, Any]:
        """The ``data`` of an instant query: ``{"resultType": ..., "result": ...}``."""
        return await self._get("/api/v1/query", {"query": promql}, timeout_s)

    async def query_range(
        self, promql: str, *, start: float, end: float, step_s: float, timeout_s: float
    ) -> dict[str, Any]:
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step_s:g}",
        }
        return await self._get("/api/v1/query_range", params, timeout_s)


class PrometheusVerify:
    """An action's verification query: one number (``None`` for no data)."""

    def __init__(self, client: PrometheusClient, *, timeout_s: float = 10.0) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def value(self, query: str) -> float | None:
        from responder.adapters.probes.prometheus import value_of

        result = value_of(await self._client.query(query, timeout_s=self._timeout_s))
        if isinstance(result, dict):
            raise PrometheusError(f"{query!r} returns {len(result)} series, not one number")
        return result if isinstance(result, float | int) else None
