"""Shared fixtures: a real redis-server for the session, per-test key prefixes, services."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from responder import logs
from responder.adapters.clock import SystemClock
from responder.app import build_backend
from responder.ports import Store, WorkQueue
from responder.settings import Settings
from tests.support.procs import redis_server
from tests.support.replicas import key_prefix
from tests.support.service import Service, running_service


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings in tests come from the test, never from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("RESPONDER_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """A CLI command run in-process (CliRunner) configures logging onto the runner's
    stream, which is closed once it returns: later tests must not log into it."""
    yield
    logs.reset()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when set, else a redis-server of our own on a free loopback port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with redis_server() as server:
        yield server.url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (and only its)."""
    with key_prefix(redis_url) as prefix:
        yield prefix


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    def make(**values: Any) -> Settings:
        values.setdefault("visibility_timeout_s", 2.0)
        # tests that triage turn it on with probes aimed at loopback fakes; the shipped
        # pack's probes point at the internet and at cluster DNS names
        values.setdefault("triage", False)
        # triage must fit well within the visibility timeout (a settings rule)
        values.setdefault("triage_budget_s", float(values["visibility_timeout_s"]) / 2)
        # and so must a batch's wait for more entries (the default, unless that is too long)
        values.setdefault("batch_wait_s", min(0.2, float(values["visibility_timeout_s"]) / 8))
        return Settings(**values)

    return make


@pytest.fixture(params=["memory", "redis"])
def backend_settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings for the embedded (memory) backend and for Redis: contract tests run on both."""

    def make(**values: Any) -> Settings:
        if request.param == "redis":
            values.setdefault("redis_url", request.getfixturevalue("redis_url"))
            values.setdefault("redis_prefix", request.getfixturevalue("redis_prefix"))
        return make_settings(**values)

    return make


@pytest.fixture
async def backend(
    backend_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Store, WorkQueue]]:
    """A store and its queue, on both backends, without a service around them."""
    store, queue = build_backend(backend_settings(), SystemClock())
    await queue.ensure()
    yield store, queue
    await store.close()


@pytest.fixture
async def service(backend_settings: Callable[..., Settings]) -> AsyncIterator[Service]:
    async with running_service(backend_settings()) as svc:
        yield svc
