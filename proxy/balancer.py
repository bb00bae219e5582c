"""Target choice (SPEC section 8): health, circuit breakers, then weighted round robin or
least outstanding requests. Demo sessions go to demo-only targets when a service has them.
"""

from __future__ import annotations

import math
from collections import defaultdict

from proxy.breaker import BreakerRegistry, CircuitBreaker
from proxy.exchange import Rejection
from proxy.snapshot import ServiceEntry, TargetEntry

__all__ = ["Balancer"]


class Balancer:
    def __init__(self, breakers: BreakerRegistry, metrics=None) -> None:
        self.breakers = breakers
        self.metrics = metrics
        self.outstanding: defaultdict[int, int] = defaultdict(int)
        self._current_weight: dict[int, int] = {}
        self._tie_breaker = 0

    def choose(
        self,
        service: ServiceEntry,
        demo: bool = False,
        exclude: frozenset[int] = frozenset(),
        version=None,
    ) -> tuple[TargetEntry, CircuitBreaker]:
        """Pick a target and claim its breaker slot, or refuse with 503."""
        candidates = self._candidates(service, demo, version or service)
        if exclude and len(candidates) > 1:
            candidates = [t for t in candidates if t.id not in exclude] or candidates
        available = []
        for target in candidates:
            breaker = self.breakers.get(target.id, service.slug, service.breaker)
            if breaker.is_available():
                available.append((target, breaker))
        if not available:
            raise self._circuit_open(service, candidates)
        if len(available) == 1:
            target, breaker = available[0]
        elif service.load_balancing == "least_outstanding":
            target, breaker = self._least_outstanding(available)
        else:
            target, breaker = self._weighted_round_robin(available)
        breaker.acquire()
        return target, breaker

    def _candidates(self, service: ServiceEntry, demo: bool, group):
        """`group`: the service itself (default version) or a VersionEntry; both hold pools."""
        if not service.enabled:
            raise Rejection("SERVICE_UNAVAILABLE", f"The {service.slug} service is disabled.")
        use_demo = demo and bool(group.demo_pool)
        pool = group.demo_pool if use_demo else group.pool
        if not pool:
            raise Rejection("SERVICE_UNAVAILABLE", f"The {service.slug} service has no enabled target.")
        healthy = group.healthy_demo_pool if use_demo else group.healthy_pool
        if healthy:
            return healthy
        # Panic mode (SPEC section 8): every target failed its health check; try them anyway.
        if self.metrics is not None:
            self.metrics.panic_mode.labels(service.slug).inc()
        return pool

    def _circuit_open(self, service: ServiceEntry, candidates) -> Rejection:
        waits = [
            self.breakers.get(t.id, service.slug, service.breaker).time_until_retry() for t in candidates
        ]
        retry_after = max(1, math.ceil(min(waits, default=service.breaker.recovery_timeout)))
        return Rejection(
            "CIRCUIT_OPEN",
            f"Every target of the {service.slug} service is failing; retry in {retry_after} s.",
            [(b"retry-after", str(retry_after).encode())],
        )

    def _weighted_round_robin(self, available):
        """Smooth weighted round robin (as nginx): even spread, exact proportions."""
        current = self._current_weight
        total = 0
        best = None
        best_weight = 0
        for entry in available:
            target = entry[0]
            weight = current.get(target.id, 0) + target.weight
            current[target.id] = weight
            total += target.weight
            if best is None or weight > best_weight:
                best, best_weight = entry, weight
        current[best[0].id] = best_weight - total
        return best

    def _least_outstanding(self, available):
        self._tie_breaker += 1
        offset = self._tie_breaker % len(available)
        rotated = available[offset:] + available[:offset]
        return min(rotated, key=lambda entry: self.outstanding[entry[0].id])
