"""Circuit breakers, one per target, per instance (SPEC section 8).

closed -> open when, within the failure window, at least `minimum_throughput` outcomes
were seen and failures reached `failure_threshold`; open -> half-open once
`recovery_timeout` has passed; half-open lets one trial through at a time, closes after
`success_threshold` successes, and reopens on any failure.

Memory stays bounded whatever the traffic: the breaker keeps the times of the latest
`minimum_throughput` successes and of the latest `max(failure_threshold, minimum_throughput)`
failures in the window, not every outcome. That is all the opening rule can use: more
successes than `minimum_throughput`, or more failures than both numbers, change no answer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from gateway_project.core import breaker_board

__all__ = ["BreakerRegistry", "BreakerSettings", "BreakerState", "CircuitBreaker"]

logger = logging.getLogger("gateway.breaker")


class BreakerState:
    CLOSED = breaker_board.CLOSED
    OPEN = breaker_board.OPEN
    HALF_OPEN = breaker_board.HALF_OPEN

    GAUGE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    failure_window: float = 120.0
    minimum_throughput: int = 5
    recovery_timeout: float = 30.0
    success_threshold: int = 3


class CircuitBreaker:
    """The state machine of one target; `clock` is injectable so tests need not sleep."""

    __slots__ = (
        "key",
        "settings",
        "state",
        "_successes",
        "_failures",
        "opened_at",
        "_trial_in_flight",
        "_half_open_successes",
        "_clock",
        "on_change",
    )

    def __init__(self, key: str, settings: BreakerSettings, clock=time.monotonic, on_change=None):
        self.key = key
        self.settings = settings
        self.state = BreakerState.CLOSED
        self._successes: deque[float] = deque()  # times, oldest first, within the window
        self._failures: deque[float] = deque()
        self.opened_at = 0.0
        self._trial_in_flight = False
        self._half_open_successes = 0
        self._clock = clock
        self.on_change = on_change

    # --- questions ---------------------------------------------------------------------

    def is_available(self) -> bool:
        """Could a request go to this target now? Does not reserve the half-open trial."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            return self._clock() - self.opened_at >= self.settings.recovery_timeout
        return not self._trial_in_flight

    def time_until_retry(self) -> float:
        if self.state != BreakerState.OPEN:
            return 0.0
        return max(0.0, self.settings.recovery_timeout - (self._clock() - self.opened_at))

    @property
    def failure_count(self) -> int:
        self._prune(self._clock())
        return len(self._failures)

    def describe(self) -> dict:
        return {
            "state": self.state,
            "failure_count": self.failure_count,
            "time_until_retry": round(self.time_until_retry(), 3),
        }

    # --- transitions -------------------------------------------------------------------

    def acquire(self) -> None:
        """Call once the target was chosen: claims the half-open trial slot if needed."""
        if self.state == BreakerState.OPEN and self.is_available():
            self._transition(BreakerState.HALF_OPEN)
            self._half_open_successes = 0
        if self.state == BreakerState.HALF_OPEN:
            self._trial_in_flight = True

    def record_success(self) -> None:
        if self.state == BreakerState.HALF_OPEN:
            self._trial_in_flight = False
            self._half_open_successes += 1
            if self._half_open_successes >= self.settings.success_threshold:
                self._close()
            return
        self._record(self._successes, self.settings.minimum_throughput)

    def record_failure(self) -> None:
        if self.state == BreakerState.HALF_OPEN:
            self._trial_in_flight = False
            self._open()
            return
        if self.state == BreakerState.OPEN:
            return
        settings = self.settings
        self._record(self._failures, max(settings.failure_threshold, settings.minimum_throughput))
        failures = len(self._failures)
        if (
            failures + len(self._successes) >= settings.minimum_throughput
            and failures >= settings.failure_threshold
        ):
            self._open()

    def release_trial(self) -> None:
        """A half-open trial ended without a verdict (client went away): let another try."""
        if self.state == BreakerState.HALF_OPEN:
            self._trial_in_flight = False

    def reset(self) -> None:
        self._close()

    # --- internals ---------------------------------------------------------------------

    def _record(self, times: deque[float], keep: int) -> None:
        """Note an outcome now; of its kind only the latest `keep` can matter (module docstring)."""
        now = self._clock()
        times.append(now)
        while len(times) > keep:
            times.popleft()
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.settings.failure_window
        for times in (self._successes, self._failures):
            while times and times[0] < horizon:
                times.popleft()

    def _open(self) -> None:
        self.opened_at = self._clock()
        self._transition(BreakerState.OPEN)

    def _close(self) -> None:
        self._successes.clear()
        self._failures.clear()
        self._trial_in_flight = False
        self._half_open_successes = 0
        self._transition(BreakerState.CLOSED)

    def _transition(self, state: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        logger.warning(
            "circuit breaker %s -> %s",
            previous,
            state,
            extra={"target": self.key, "from_state": previous, "to_state": state},
        )
        if self.on_change is not None:
            self.on_change(self, previous)


class BreakerRegistry:
    """This instance's breakers by target id, created on first use, reset on staff request."""

    def __init__(self) -> None:
        self._breakers: dict[int, CircuitBreaker] = {}
        self._reset_marks: dict[int, float | None] = {}
        self.on_change = None

    def get(self, target_id: int, service_slug: str, settings: BreakerSettings) -> CircuitBreaker:
        breaker = self._breakers.get(target_id)
        if breaker is None:
            breaker = CircuitBreaker(f"{service_slug}/{target_id}", settings, on_change=self.on_change)
            self._breakers[target_id] = breaker
        elif breaker.settings is not settings and breaker.settings != settings:
            breaker.settings = settings
        return breaker

    def find(self, target_id: int) -> CircuitBreaker | None:
        return self._breakers.get(target_id)

    def apply_resets(self, marks: dict[int, float | None]) -> None:
        """Close breakers whose staff reset mark moved since the previous snapshot."""
        self.apply_reset_changes(marks, set(self._reset_marks) - set(marks))

    def apply_reset_changes(self, marks: dict[int, float | None], removed) -> None:
        """The same for a delta: only the targets it touched, and the ones it removed."""
        for target_id, mark in marks.items():
            seen = target_id in self._reset_marks
            if seen and mark != self._reset_marks[target_id]:
                breaker = self._breakers.get(target_id)
                if breaker is not None:
                    breaker.reset()
            self._reset_marks[target_id] = mark
        for gone in removed:
            self._reset_marks.pop(gone, None)
            self._breakers.pop(gone, None)

    def known_targets(self) -> set[int]:
        """Targets whose reset marks are held (those of the snapshot last applied)."""
        return set(self._reset_marks)

    def noteworthy(self) -> dict[str, dict]:
        """Breakers that are not plainly closed, by target id: what the instance publishes."""
        return {
            str(target_id): breaker.describe()
            for target_id, breaker in self._breakers.items()
            if breaker.state != BreakerState.CLOSED or breaker.failure_count
        }

    def describe(self, target_id: int) -> dict:
        breaker = self._breakers.get(target_id)
        if breaker is None:
            return {"state": BreakerState.CLOSED, "failure_count": 0, "time_until_retry": 0.0}
        return breaker.describe()
