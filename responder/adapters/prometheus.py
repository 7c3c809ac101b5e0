"""Prometheus HTTP API client (instant and range queries), over one or more base URLs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from responder.adapters.http import BodyTooLarge, SharedSession, read_capped

# What an answer may weigh at most: a query over many series must not cost the process
# its memory (a range query for the evidence bundle is the largest we make).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class PrometheusError(Exception):
    def __init__(self, message: str, *, answered: bool = False) -> None:
        """``answered``: a Prometheus answered and refused the query itself (bad PromQL,
        an answer too large): another would say the same, so none is asked."""
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Answer:
    data: dict[str, Any]  # ``{"resultType": ..., "result": ...}``
    url: str  # the base URL that answered, without credentials
    backup: bool  # not the first of the URLs: the first could not answer


def shown(url: str) -> str:
    """A base URL as facts and messages may show it: no user or password."""
    try:
        return str(URL(url).with_user(None))
    except ValueError:
        return "(an invalid URL)"


class PrometheusClient:
    """The Prometheus HTTP API at one or more base URLs (``RESPONDER_PROMETHEUS_URL``,
    comma-separated: the runbook's "check backup metrics"). Each call asks them in order
    until one answers; a query a Prometheus refused as such is not asked of the others.
    Each URL gets an equal share of the call's time, so a hung first one leaves the
    backups time to answer."""

    def __init__(self, base_urls: str | Sequence[str], session: SharedSession) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("no Prometheus URL")
        self._bases = [u.rstrip("/") for u in urls]
        self._session = session

    async def _get_one(
        self, base: str, path: str, params: dict[str, str], timeout_s: float
    ) -> dict[str, Any]:
        url = f"{base}{path}"
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
            raise PrometheusError(f"the answer is too large: {exc}", answered=True) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PrometheusError(f"cannot reach Prometheus: {type(exc).__name__}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "unknown error") if isinstance(body, dict) else body
            kind = body.get("errorType", "") if isinstance(body, dict) else ""
            raise PrometheusError(
                f"HTTP {resp.status} {kind}: {error}".replace("  ", " "),
                # 4xx (bad_data): the query is wrong; 5xx (unavailable, timeout): this one
                answered=400 <= resp.status < 500,
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError("no data in the answer")
        return data

    async def _get(self, path: str, params: dict[str, str], timeout_s: float) -> Answer:
        share_s = timeout_s / len(self._bases)
        failures = []
        for position, base in enumerate(self._bases):
            try:
                data = await self._get_one(base, path, params, share_s)
            except PrometheusError as exc:
                if exc.answered:
                    raise
                failures.append((shown(base), str(exc)))
                continue
            return Answer(data=data, url=shown(base), backup=position > 0)
        if len(failures) == 1:
            raise PrometheusError(failures[0][1])
        raise PrometheusError(
            "no Prometheus answered: " + "; ".join(f"{url}: {why}" for url, why in failures)
        )

    async def answer(self, promql: str, *, timeout_s: float) -> Answer:
        """An instant query's answer, and which Prometheus gave it."""
        return await self._get("/api/v1/query", {"query": promql}, timeout_s)

    async def query(self, promql: str, *, timeout_s: float) -> dict[str, Any]:
        """The ``data`` of an instant query: ``{"resultType": ..., "result": ...}``."""
        return (await self.answer(promql, timeout_s=timeout_s)).data

    async def query_range(
        self, promql: str, *, start: float, end: float, step_s: float, timeout_s: float
    ) -> dict[str, Any]:
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step_s:g}",
        }
        return (await self._get("/api/v1/query_range", params, timeout_s)).data


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
