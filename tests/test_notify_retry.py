"""When a failing sink is tried again: exponential backoff with jitter, Retry-After
honoured, and the per-sink circuit breaker's open / half-open / closed cycle."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from responder.notify.retry import MAX_RETRY_AFTER_S, CircuitBreaker, backoff_s


def _fixed(value: float) -> Callable[[], float]:
    return lambda: value


def test_backoff_doubles_with_each_attempt() -> None:
    waits = [backoff_s(n, base_s=1.0, cap_s=1000.0, rand=_fixed(0.5)) for n in range(1, 7)]
    assert waits == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0]
    # attempt 0 (or less) is treated as the first one
    assert backoff_s(0, base_s=1.0, rand=_fixed(0.5)) == waits[0]


def test_backoff_is_capped() -> None:
    for attempt in (9, 10, 20, 60, 500):
        assert backoff_s(attempt, base_s=2.0, cap_s=300.0, rand=_fixed(0.999999)) <= 300.0
        assert backoff_s(attempt, base_s=2.0, cap_s=300.0, rand=_fixed(0.0)) == 150.0
    # the cap is reached smoothly: the step below it is not cut
    assert backoff_s(8, base_s=2.0, cap_s=300.0, rand=_fixed(0.0)) == 128.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 12])
def test_jitter_stays_between_half_and_the_whole_step(attempt: int) -> None:
    step = min(300.0, 2.0 * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    waits = [backoff_s(attempt, rand=rng.random) for _ in range(500)]
    assert all(step / 2 <= w <= step for w in waits)
    # it is jitter: the waits spread over the range rather than repeat one value
    assert max(waits) - min(waits) > step / 4
    # the extremes of rand() are the ends of the range
    assert backoff_s(attempt, rand=_fixed(0.0)) == step / 2
    assert backoff_s(attempt, rand=_fixed(1.0)) == step


def test_retry_after_wins_when_longer() -> None:
    assert backoff_s(1, base_s=2.0, retry_after_s=30.0, rand=_fixed(1.0)) == 30.0
    # shorter than the backoff: the backoff stands
    assert backoff_s(4, base_s=2.0, retry_after_s=1.0, rand=_fixed(0.5)) == 12.0
    # missing, zero or negative: ignored
    for ignored in (None, 0.0, -5.0):
        assert backoff_s(2, base_s=2.0, retry_after_s=ignored, rand=_fixed(0.5)) == 3.0
    # Retry-After wins over the cap too (the service said so)...
    assert backoff_s(1, base_s=2.0, cap_s=10.0, retry_after_s=60.0) == 60.0
    # ...up to a limit: a broken header does not park a message for days
    assert backoff_s(1, retry_after_s=10 * 24 * 3600.0) == MAX_RETRY_AFTER_S


def test_breaker_opens_after_threshold_failures_in_a_row() -> None:
    breaker = CircuitBreaker(threshold=3, open_s=10.0)
    assert breaker.allows(0.0)
    assert not breaker.failure(0.0)
    assert not breaker.failure(1.0)
    assert not breaker.is_open
    assert breaker.allows(1.5)
    assert breaker.failure(2.0)  # the third in a row opens it
    assert breaker.is_open
    assert breaker.open_until == 12.0
    assert not breaker.allows(2.0)
    assert not breaker.allows(11.9)


def test_a_success_in_between_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=3, open_s=10.0)
    breaker.failure(0.0)
    breaker.failure(1.0)
    breaker.success()
    assert not breaker.failure(2.0)
    assert not breaker.failure(3.0)
    assert not breaker.is_open
    assert breaker.failure(4.0)


def test_breaker_half_opens_after_the_open_time_and_a_success_closes_it() -> None:
    breaker = CircuitBreaker(threshold=2, open_s=10.0)
    breaker.failure(0.0)
    assert breaker.failure(0.0)
    assert not breaker.allows(9.99)
    assert breaker.allows(10.0)  # half-open: one try goes through
    breaker.success()
    assert not breaker.is_open
    assert breaker.open_until is None
    assert breaker.allows(10.0)
    # closed again: it takes the threshold again to open, for open_s again (not doubled)
    assert not breaker.failure(11.0)
    assert breaker.failure(12.0)
    assert breaker.open_until == 22.0


def test_a_failed_try_while_half_open_opens_it_again_for_longer() -> None:
    breaker = CircuitBreaker(threshold=3, open_s=10.0, max_open_s=25.0)
    for _ in range(3):
        breaker.failure(0.0)
    assert breaker.open_until == 10.0
    assert breaker.allows(10.0)
    # the one try let through fails: open again at once, for twice as long
    assert breaker.failure(10.0)
    assert breaker.open_until == 30.0
    assert not breaker.allows(29.0)
    assert breaker.allows(30.0)
    assert breaker.failure(30.0)
    assert breaker.open_until == 55.0  # doubling stops at max_open_s


def test_failures_while_open_do_not_extend_it() -> None:
    """A send in flight when the circuit opened fails later: the circuit stays open until
    the same time, not longer."""
    breaker = CircuitBreaker(threshold=2, open_s=10.0)
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert not breaker.failure(1.0)
    assert breaker.open_until == 10.0
