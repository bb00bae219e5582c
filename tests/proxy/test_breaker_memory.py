"""A breaker's memory does not grow with traffic, and bounding it changed no decision.

Before, every success within the failure window was kept: at 10,000 requests a second a
healthy target's breaker held over a million entries.
"""

import tracemalloc
from collections import deque

from proxy import breaker as breaker_module
from proxy.breaker import BreakerSettings, BreakerState, CircuitBreaker
from tests.proxy.test_breaker import Clock, fail

SUCCESSES = 100_000
RETAINED_BYTES_LIMIT = 16 * 1024  # the old list of (time, ok) tuples took ~8 MB here


def retained_entries(breaker: CircuitBreaker) -> int:
    """Entries held in the breaker's collections, whatever they are called."""
    return sum(
        len(getattr(breaker, slot)) for slot in breaker.__slots__ if isinstance(getattr(breaker, slot), deque)
    )


def breaker_allocations() -> int:
    """Bytes still allocated by proxy/breaker.py (other threads' allocations do not count)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, breaker_module.__file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_a_hundred_thousand_successes_leave_the_breaker_small():
    # Given: a breaker whose window covers the whole burst (the clock does not move).
    clock = Clock()
    settings = BreakerSettings()
    breaker = CircuitBreaker("svc/1", settings, clock=clock)
    tracemalloc.start()
    try:
        before = breaker_allocations()

        # When: a hundred thousand requests succeed.
        for _ in range(SUCCESSES):
            breaker.acquire()
            breaker.record_success()

        after = breaker_allocations()
    finally:
        tracemalloc.stop()

    # Then: it holds a handful of entries, not one per request.
    assert retained_entries(breaker) <= settings.minimum_throughput
    assert after - before < RETAINED_BYTES_LIMIT
    assert breaker.state == BreakerState.CLOSED


def test_after_many_successes_the_threshold_still_opens_it():
    clock = Clock()
    breaker = CircuitBreaker("svc/1", BreakerSettings(failure_threshold=5, minimum_throughput=5), clock=clock)
    for _ in range(SUCCESSES):
        breaker.record_success()
    fail(breaker, 4)
    assert breaker.state == BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state == BreakerState.OPEN
    assert breaker.failure_count == 5


def test_successes_still_count_towards_the_minimum_throughput_only_within_the_window():
    clock = Clock()
    breaker = CircuitBreaker("svc/1", BreakerSettings(failure_threshold=2, minimum_throughput=5), clock=clock)
    for _ in range(3):
        breaker.record_success()
    clock.now += 121  # those successes left the 120 s window
    fail(breaker, 2)
    assert breaker.state == BreakerState.CLOSED  # 2 outcomes < 5
    for _ in range(3):
        breaker.record_success()
    fail(breaker, 1)
    assert breaker.state == BreakerState.OPEN  # 3 failures, 6 outcomes in the window


def test_failures_while_below_the_minimum_throughput_stay_bounded_and_counted():
    clock = Clock()
    settings = BreakerSettings(failure_threshold=3, minimum_throughput=1000)
    breaker = CircuitBreaker("svc/1", settings, clock=clock)
    fail(breaker, 999)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.failure_count == 999
    fail(breaker, 1)
    assert breaker.state == BreakerState.OPEN
    assert retained_entries(breaker) <= max(settings.failure_threshold, settings.minimum_throughput)
