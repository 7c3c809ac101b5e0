"""When to try a failing sink again: exponential backoff with jitter, Retry-After honoured,
and a circuit breaker per sink so that one that keeps failing is left alone for a while."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# A Retry-After longer than this is not believed (a broken header should not park a
# message for days).
MAX_RETRY_AFTER_S = 3600.0


def backoff_s(
    attempt: int,
    *,
    base_s: float = 2.0,
    cap_s: float = 300.0,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait before try ``attempt + 1`` (``attempt`` from 1): the exponential step, half
    of it random so that replicas and incidents do not retry in step, and never less than
    what the service asked for."""
    step = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    delay = step / 2 + rand() * step / 2
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


@dataclass
class CircuitBreaker:
    """Per sink and process. After ``threshold`` failures in a row the circuit opens for
    ``open_s`` (doubling each time it opens again, up to ``max_open_s``): no message is
    tried meanwhile. Then one try goes through; a success closes it."""

    threshold: int = 5
    open_s: float = 30.0
    max_open_s: float = 600.0
    failures: int = 0
    opened: int = 0
    open_until: float | None = None  # monotonic seconds

    def allows(self, now: float) -> bool:
        return self.open_until is None or now >= self.open_until

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def success(self) -> None:
        self.failures, self.opened, self.open_until = 0, 0, None

    def failure(self, now: float) -> bool:
        """Count a failure; True when this one opened the circuit (the threshold reached,
        or the one try let through after the open time failed)."""
        half_open = self.open_until is not None and now >= self.open_until
        self.failures += 1
        if self.failures < self.threshold and not half_open:
            return False
        self.open_until = now + min(self.max_open_s, self.open_s * 2**self.opened)
        self.opened += 1
        self.failures = 0
        return True
