"""Prometheus metrics of the data plane (SPEC section 10); labels are bounded (service slug,
target id, method, status code, policy name), never a raw path.

Works in prometheus_client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set, so
`/metrics` aggregates every worker process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


class GatewayMetrics:
    """Every collector once per process, with the hot-path label children cached."""

    def __init__(self) -> None:
        self.requests = Counter(
            "gateway_requests_total", "Requests answered by the data plane.",
            ["method", "service", "status_code"],
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds", "Time from request to response headers.",
            ["method", "service"], buckets=_LATENCY_BUCKETS,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds", "Time the upstream took to answer.",
            ["service"], buckets=_LATENCY_BUCKETS,
        )
        self.request_size = Histogram(
            "gateway_request_size_bytes", "Request body sizes.", ["service"], buckets=_SIZE_BUCKETS
        )
        self.response_size = Histogram(
            "gateway_response_size_bytes", "Response body sizes.", ["service"], buckets=_SIZE_BUCKETS
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
            "gateway_rate_limit_exceeded_total", "Requests refused by a rate policy.",
            ["policy", "service"],
        )
        self.rate_limit_backend_errors = Counter(
            "gateway_rate_limit_backend_errors_total",
            "Rate-limit checks that could not reach Redis (fail-open or fail-closed applied).",
        )
        self.service_health = Gauge(
            "gateway_service_health", "1 when the target passed its last health check.",
            ["service", "target"], multiprocess_mode="max",
        )
        self.circuit_breaker_state = Gauge(
            "gateway_circuit_breaker_state", "0 closed, 1 half-open, 2 open.",
            ["service", "target"], multiprocess_mode="max",
        )
        self.sse_connections = Gauge(
            "gateway_sse_connections", "Open SSE alert streams.", multiprocess_mode="livesum"
        )
        self.config_version = Gauge(
            "gateway_config_version", "Registry version this instance serves.", multiprocess_mode="min"
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries_total", "Retries of idempotent requests.", ["service"]
        )
        self.panic_mode = Counter(
            "gateway_panic_mode_total", "Requests sent while every target was unhealthy.", ["service"]
        )
        self.client_disconnects = Counter(
            "gateway_client_disconnects_total", "Streams cut short because the client left."
        )
        self.upstream_resets = Counter(
            "gateway_upstream_resets_total", "Upstream connections broken mid-response.", ["service"]
        )
        self.cache_requests = Counter(
            "gateway_cache_requests_total", "Response-cache lookups by result.", ["service", "result"]
        )
        self._auth_ok = self.auth_attempts.labels("success")
        self._auth_failed = self.auth_attempts.labels("failure")
        self._children: dict[tuple, tuple] = {}

    def count_auth(self, ok: bool) -> None:
        (self._auth_ok if ok else self._auth_failed).inc()

    def observe_request(
        self, method: str, service: str, status: int, duration: float, upstream: float,
        size_in: int, size_out: int,
    ) -> None:
        key = (method, service, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, service, str(status)),
                self.request_duration.labels(method, service),
                self.upstream_duration.labels(service),
                self.request_size.labels(service),
                self.response_size.labels(service),
            )
            if len(self._children) < 10_000:
                self._children[key] = children
        requests, request_duration, upstream_duration, request_size, response_size = children
        requests.inc()
        request_duration.observe(duration)
        if upstream:
            upstream_duration.observe(upstream)
        request_size.observe(size_in)
        response_size.observe(size_out)


metrics = GatewayMetrics()
