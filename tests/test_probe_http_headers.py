"""The `http` probe (the runbook's "Check rate limit headers"): against a loopback vendor
API, what it keeps, what it yields, and how it fails."""

from __future__ import annotations

import pytest

from responder.adapters.http import SharedSession
from responder.adapters.probes.http_headers import HttpHeadersProbe
from responder.domain.plans import HttpProbe
from tests.support.fake_http import FakeVendorApi
from tests.support.procs import free_port


@pytest.fixture
async def session():
    shared = SharedSession()
    yield shared
    await shared.close()


def declared(spec: HttpProbe) -> set[str]:
    return {name.split(".", 1)[1] for name in spec.facts()}


async def test_rate_limit_headers_are_facts_and_other_headers_are_not_kept(session) -> None:
    async with FakeVendorApi() as api:
        api.rate_limited(limit=600, remaining=0, reset=30, retry_after_s=30)
        spec = HttpProbe(type="http", url=api.url)
        result = await HttpHeadersProbe(session).run(spec)
    assert result.ok
    assert set(result.facts) == declared(spec) - {"error"}
    assert result.facts["status_code"] == 429
    assert result.facts["headers"] == {
        "x-ratelimit-limit": "600",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "30",
        "retry-after": "30",
    }
    assert result.facts["rate_limit"] == {
        "limit": 600,
        "remaining": 0,
        "reset": 30,
        "retry_after_s": 30,
    }
    assert "set-cookie" not in str(result.evidence).lower()
    assert result.summary == (
        "http: HTTP 429, rate limit: limit 600, remaining 0, reset 30, Retry-After 30 s"
    )


async def test_an_answer_without_the_headers_gives_null_figures(session) -> None:
    async with FakeVendorApi() as api:
        result = await HttpHeadersProbe(session).run(HttpProbe(type="http", url=api.url))
    assert result.ok
    assert result.facts["headers"] == {}
    assert set(result.facts["rate_limit"].values()) == {None}  # type: ignore[union-attr]
    assert result.summary == "http: HTTP 200, no rate limit headers"


async def test_only_the_headers_named_are_kept(session) -> None:
    async with FakeVendorApi() as api:
        api.rate_limited(limit=600, remaining=5, reset=30)
        spec = HttpProbe(type="http", url=api.url, record_headers=("x-ratelimit-remaining",))
        result = await HttpHeadersProbe(session).run(spec)
    assert result.facts["headers"] == {"x-ratelimit-remaining": "5"}
    assert result.facts["rate_limit"] == {
        "limit": None,
        "remaining": 5,
        "reset": None,
        "retry_after_s": None,
    }


async def test_an_unreachable_api_is_a_failed_probe(session) -> None:
    spec = HttpProbe(type="http", url=f"http://127.0.0.1:{free_port()}/")
    result = await HttpHeadersProbe(session).run(spec)
    assert not result.ok
    assert result.error is not None
    assert result.error.endswith("unreachable")


async def test_a_host_outside_allow_hosts_is_not_requested(session) -> None:
    async with FakeVendorApi() as api:
        spec = HttpProbe(type="http", url=api.url, allow_hosts=("api.posthog.com",))
        result = await HttpHeadersProbe(session).run(spec)
        assert api.requests == []
    assert not result.ok
    assert "not requested" in (result.error or "")
