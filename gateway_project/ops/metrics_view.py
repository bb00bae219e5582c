"""GET /metrics: Prometheus exposition of the data plane and Django, across worker processes.

Optionally protected by METRICS_TOKEN (Authorization: Bearer) and/or METRICS_ALLOWED_NETWORKS.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from gateway_project.core.clientip import client_ip
from gateway_project.ops.data_plane_loop import on_the_loop
from gateway_project.web.problems import problem_response

__all__ = ["metrics_view"]


def _allowed(request) -> bool:
    if settings.METRICS_TOKEN:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {settings.METRICS_TOKEN}".encode()):
            return False
    if settings.METRICS_ALLOWED_NETWORKS:
        try:
            address = ipaddress.ip_address(client_ip(request))
        except ValueError:
            return False
        return any(
            address in ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOWED_NETWORKS
        )
    return True


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _flush_on_the_event_loop() -> None:
    """Bring this process's buffered request observations and its config lag in; they
    belong to the data plane's loop, so the flush runs there (the view runs in a worker
    thread)."""
    import time

    from proxy.runtime import active_runtime

    runtime = active_runtime()
    if runtime is None or getattr(runtime, "loop", None) is None:
        return

    def flush() -> None:
        runtime.metrics.flush()
        runtime.metrics.config_lag.set(runtime.watcher.status.lag_seconds(time.time()))

    # A busy loop: the periodic flush brings them in within a second anyway.
    with contextlib.suppress(TimeoutError):
        on_the_loop(runtime, flush)


def metrics_view(request):
    if not _allowed(request):
        response = problem_response(
            request, "AUTH_ERROR", "Metrics need the scrape token or an allowed network."
        )
        return response
    _flush_on_the_event_loop()
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
