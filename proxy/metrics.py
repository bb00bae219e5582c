"""Prometheus metrics of the data plane (SPEC section 10); labels are bounded (service slug,
target id, method, status code, policy name), never a raw path.

Works in prometheus_client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set, so
`/metrics` aggregates every worker process.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "metrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
_SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


class _Observations:
    """Per-request numbers for one (method, service, status), added up between flushes.

    prometheus_client takes a lock (or, in multiprocess mode, writes an mmap) for every
    increment: seven per request. Plain integer additions on the event loop instead, pushed
    into the collectors once a second, keep /metrics at most a second behind.
    """

    __slots__ = ("count", "duration", "upstream", "size_in", "size_out")

    def __init__(self) -> None:
        self.count = 0
        self.duration = _Distribution(_LATENCY_BUCKETS)
        self.upstream = _Distribution(_LATENCY_BUCKETS)
        self.size_in = _Distribution(_SIZE_BUCKETS)
        self.size_out = _Distribution(_SIZE_BUCKETS)


class _Distribution:
    __slots__ = ("bounds", "buckets", "total")

    def __init__(self, bounds: tuple) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush_into(self, histogram_child) -> None:
        """Add the counts to a prometheus Histogram child (its per-bucket values, not cumulative)."""
        if not any(self.buckets):
            return
        for index, count in enumerate(self.buckets):
            if count:
                histogram_child._buckets[index].inc(count)
        histogram_child._sum.inc(self.total)
        self.buckets = [0] * len(self.buckets)
        self.total = 0.0


class GatewayMetrics:
    """Every collector once per process, with the hot-path label children cached."""

    def __init__(self) -> None:
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered by the data plane.",
            ["method", "service", "status_code"],
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to response headers.",
            ["method", "service"],
            buckets=_LATENCY_BUCKETS,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time the upstream took to answer.",
            ["service"],
            buckets=_LATENCY_BUCKETS,
        )
        self.request_size = Histogram(
            "gateway_request_size_bytes", "Request body sizes.", ["service"], buckets=_SIZE_BUCKETS
        )
        self.response_size = Histogram(
            "gateway_response_size_bytes",
            "Response body sizes.",
            ["service"],
            buckets=_SIZE_BUCKETS,
        )
        self.auth_attempts = Counter(
            "gateway_auth_attempts_total", "Authentication attempts by outcome.", ["status"]
        )
        self.auth_cache_hits = Counter(
            "gateway_auth_cache_hits_total", "Bearer tokens found in the verified-token cache."
        )
        self.auth_cache_misses = Counter(
            "gateway_auth_cache_misses_total", "Bearer tokens that had to be verified."
        )
        self.rate_limit_exceeded = Counter(
            "gateway_rate_limit_exceeded_total",
            "Requests refused by a rate policy.",
            ["policy", "service"],
        )
        self.rate_limit_backend_errors = Counter(
            "gateway_rate_limit_backend_errors_total",
            "Rate-limit checks that could not reach Redis (fail-open or fail-closed applied).",
        )
        self.service_health = Gauge(
            "gateway_service_health",
            "1 when the target passed its last health check.",
            ["service", "target"],
            multiprocess_mode="max",
        )
        self.circuit_breaker_state = Gauge(
            "gateway_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open.",
            ["service", "target"],
            multiprocess_mode="max",
        )
        self.sse_connections = Gauge(
            "gateway_sse_connections", "Open SSE alert streams.", multiprocess_mode="livesum"
        )
        self.config_version = Gauge(
            "gateway_config_version",
            "Registry version this instance serves.",
            multiprocess_mode="min",
        )
        self.config_errors = Counter(
            "gateway_config_errors_total",
            "Config versions that failed to compile (the last good snapshot kept serving).",
        )
        self.config_lag = Gauge(
            "gateway_config_lag_seconds",
            "Seconds since this instance saw a config version it has not applied; 0 when current.",
            multiprocess_mode="max",
        )
        self.plugin_errors = Counter(
            "gateway_plugin_errors_total",
            "Plugin hooks that raised or ran past their timeout_ms (SPEC section 19).",
            ["plugin"],
        )
        self.config_updates = Counter(
            "gateway_config_updates_total",
            "Snapshot updates installed: `delta` (the changed entries) or `full` (a whole rebuild).",
            ["kind"],
        )
        self.snapshot_bytes = Gauge(
            "gateway_snapshot_bytes",
            "Estimated memory held by the registry snapshot this instance serves.",
            multiprocess_mode="max",
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries_total", "Retries of idempotent requests.", ["service"]
        )
        self.panic_mode = Counter(
            "gateway_panic_mode_total",
            "Requests sent while every target was unhealthy.",
            ["service"],
        )
        self.client_disconnects = Counter(
            "gateway_client_disconnects_total", "Streams cut short because the client left."
        )
        self.upstream_resets = Counter(
            "gateway_upstream_resets_total",
            "Upstream connections broken mid-response.",
            ["service"],
        )
        self.cache_requests = Counter(
            "gateway_cache_requests_total",
            "Response-cache lookups by result.",
            ["service", "result"],
        )
        self._auth_ok = self.auth_attempts.labels("success")
        self._auth_failed = self.auth_attempts.labels("failure")
        self._pending: dict[tuple[str, str, int], _Observations] = {}
        # [successes, failures, token-cache hits, misses] since the last flush
        self._auth_counts = [0, 0, 0, 0]

    def count_auth(self, ok: bool) -> None:
        self._auth_counts[0 if ok else 1] += 1

    def count_token_cache(self, hit: bool) -> None:
        self._auth_counts[2 if hit else 3] += 1

    def observe_request(
        self,
        method: str,
        service: str,
        status: int,
        duration: float,
        upstream: float,
        size_in: int,
        size_out: int,
    ) -> None:
        key = (method, service, status)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Observations()
        pending.count += 1
        pending.duration.add(duration)
        if upstream:
            pending.upstream.add(upstream)
        pending.size_in.add(size_in)
        pending.size_out.add(size_out)

    def flush(self) -> None:
        """Push the added-up request observations into the Prometheus collectors."""
        pending, self._pending = self._pending, {}
        counts, self._auth_counts = self._auth_counts, [0, 0, 0, 0]
        for counter, count in zip(
            (self._auth_ok, self._auth_failed, self.auth_cache_hits, self.auth_cache_misses),
            counts,
            strict=True,
        ):
            if count:
                counter.inc(count)
        for (method, service, status), seen in pending.items():
            self.requests.labels(method, service, str(status)).inc(seen.count)
            seen.duration.flush_into(self.request_duration.labels(method, service))
            seen.upstream.flush_into(self.upstream_duration.labels(service))
            seen.size_in.flush_into(self.request_size.labels(service))
            seen.size_out.flush_into(self.response_size.labels(service))


metrics = GatewayMetrics()
