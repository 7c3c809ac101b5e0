"""Fault injection at the store port: a worker that dies, or stalls, between two steps.

``FaultyStore`` is a ``StateStore`` (store and action ledger) that hands every call to a
real one (``RedisStore`` on the session's Redis, or ``MemoryStore``) unchanged, except the
calls a test picks: the Nth call of a method whose arguments match fails with
``StoreUnavailableError``, before it reaches the store (nothing written) or after (written,
the reply lost: the worker died right after it), or waits at a ``Gate`` the test opens.
Nothing of our code is replaced: the stages run as they do in production, against a store
that fails where a real one can.

``WatchedQueue`` is a ``WorkQueue`` that hands every call to a real one and keeps what
its reads returned, so a test can wait for "the worker read and found nothing".
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from responder.domain.errors import StoreUnavailableError

# What a rule is told of a call: its positional and keyword arguments.
Matcher = Callable[[tuple[Any, ...], dict[str, Any]], bool]


def first_arg(test: Callable[[Any], bool]) -> Matcher:
    """Matches calls whose first argument (a key, an incident id) passes ``test``."""
    return lambda args, kwargs: bool(args) and test(args[0])


def any_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return True


@dataclass
class Gate:
    """Where a held call waits: ``reached`` once it arrived, and it goes on once the test
    calls ``open``."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def open(self) -> None:
        self.opened.set()


@dataclass
class _Rule:
    method: str
    when: Matcher
    nth: int
    after: bool = False  # fail once the real call returned (its write stands)
    gate: Gate | None = None  # hold the call here instead of failing it
    seen: int = 0
    fired: bool = False

    def matches(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Counts the matching call; True for the one this rule acts on (once)."""
        if self.fired or method != self.method or not self.when(args, kwargs):
            return False
        self.seen += 1
        if self.seen < self.nth:
            return False
        self.fired = True
        return True


class FaultyStore:
    """A real store, failing or stalling at the calls a test picks (see the module)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self._rules: list[_Rule] = []
        self.failures: list[str] = []  # the faults injected so far, by method

    def fail(
        self, method: str, *, when: Matcher = any_call, nth: int = 1, after: bool = False
    ) -> None:
        """The ``nth`` call of ``method`` that ``when`` matches raises
        ``StoreUnavailableError``: before reaching the store, or ``after`` it did."""
        self._rules.append(_Rule(method, when, nth, after=after))

    def hold(self, method: str, *, when: Matcher = any_call, nth: int = 1) -> Gate:
        """The ``nth`` call of ``method`` that ``when`` matches waits at the gate (a
        worker stalled there) before it reaches the store."""
        gate = Gate()
        self._rules.append(_Rule(method, when, nth, gate=gate))
        return gate

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            rule = next((r for r in self._rules if r.matches(name, args, kwargs)), None)
            if rule is not None and rule.gate is not None:
                rule.gate.reached.set()
                await rule.gate.opened.wait()
            elif rule is not None and not rule.after:
                self.failures.append(name)
                raise StoreUnavailableError(f"injected: {name} failed before the store")
            result = await attr(*args, **kwargs)
            if rule is not None and rule.after:
                self.failures.append(name)
                raise StoreUnavailableError(f"injected: {name}'s reply lost")
            return result

        return call


class WatchedQueue:
    """A real work queue whose reads are kept: ``reads`` holds, for each read, its
    ``block_ms`` and how many entries it returned."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.reads: list[tuple[int, int]] = []
        self.empty_fill = asyncio.Event()  # a read that waits for nothing found nothing

    async def read(self, *, consumer: str, count: int, block_ms: int) -> list[Any]:
        entries = await self.real.read(consumer=consumer, count=count, block_ms=block_ms)
        self.reads.append((block_ms, len(entries)))
        if block_ms == 0 and not entries:
            self.empty_fill.set()
        return list(entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
