"""What the health endpoints report (SPEC section 10), computed without calling any upstream."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from proxy.runtime import active_runtime

__all__ = [
    "check_database",
    "check_redis",
    "detailed_report",
    "health_report",
    "latest_checks",
    "readiness",
    "startup",
    "status_report",
]

_STARTED = time.time()


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return {"status": "unavailable", "error": type(exc).__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"status": "not_configured"}
    from gateway_project.core.broadcast import sync_redis

    started = time.perf_counter()
    try:
        sync_redis().ping()
    except Exception as exc:
        return {"status": "unavailable", "error": type(exc).__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _service_health(service) -> dict:
    serving = [t for t in service.targets if t.enabled]
    healthy = [t for t in serving if t.healthy]
    if not service.enabled or not serving:
        status = "disabled"
    elif len(healthy) == len(serving):
        status = "healthy"
    elif healthy:
        status = "degraded"
    else:
        status = "unhealthy"
    return {"status": status, "healthy_targets": len(healthy), "targets": len(serving)}


def _services() -> dict:
    runtime = active_runtime()
    if runtime is not None and runtime.snapshot.loaded:
        services = runtime.snapshot.services
    else:  # a process without a data plane (tests, management commands): the last sweep's rows
        from proxy.snapshot import compile_snapshot

        services = compile_snapshot().services
    return {service.slug: _service_health(service) for service in sorted(services, key=lambda s: s.slug)}


def health_report() -> tuple[dict, int]:
    services = _services()
    redis = check_redis()
    degraded = redis["status"] == "unavailable" or any(
        s["status"] in ("degraded", "unhealthy") for s in services.values()
    )
    report = {
        "status": "degraded" if degraded else "ok",
        "version": settings.GATEWAY_VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
        "services": services,
        "redis": redis["status"],
    }
    return report, 200


def readiness() -> tuple[dict, int]:
    """Ready when it can route: a database or a loaded snapshot, and Redis if configured."""
    runtime = active_runtime()
    snapshot_loaded = bool(runtime and runtime.snapshot.loaded)
    database = check_database()
    redis = check_redis()
    ready = (database["status"] == "ok" or snapshot_loaded) and redis["status"] != "unavailable"
    body = {
        "status": "ready" if ready else "not_ready",
        "database": database["status"],
        "snapshot_loaded": snapshot_loaded,
        "redis": redis["status"],
    }
    return body, 200 if ready else 503


def startup() -> tuple[dict, int]:
    """Started once the data plane has its first snapshot (or Django can reach its database)."""
    runtime = active_runtime()
    started = runtime.snapshot.loaded if runtime is not None else check_database()["status"] == "ok"
    return {"status": "started" if started else "starting"}, 200 if started else 503


def latest_checks() -> dict:
    """target id -> its most recent TargetHealthCheck, in two queries."""
    from django.db.models import OuterRef, Subquery

    from registry.models import Target, TargetHealthCheck

    latest = TargetHealthCheck.objects.filter(target_id=OuterRef("pk")).order_by("-created_at", "-pk")
    ids = Target.objects.annotate(last=Subquery(latest.values("pk")[:1])).values_list("last", flat=True)
    return {
        check.target_id: check for check in TargetHealthCheck.objects.filter(pk__in=[i for i in ids if i])
    }


def detailed_report(include_urls: bool) -> dict:
    runtime = active_runtime()
    from proxy.snapshot import compile_snapshot

    snapshot = runtime.snapshot if runtime is not None and runtime.snapshot.loaded else None
    database = check_database()
    if snapshot is None and database["status"] == "ok":
        snapshot = compile_snapshot()
    last_checks = latest_checks() if database["status"] == "ok" else {}
    services = {}
    for service in snapshot.services if snapshot else []:
        targets = []
        for target in service.targets:
            check = last_checks.get(target.id)
            entry = {
                "id": target.id,
                "enabled": target.enabled,
                "healthy": target.healthy,
                "weight": target.weight,
                "last_check": None
                if check is None
                else {
                    "ok": check.ok,
                    "status_code": check.status_code,
                    "latency_ms": check.latency_ms,
                    "error": check.error,
                    "at": check.created_at.isoformat(),
                },
                "circuit_breaker": runtime.breakers.describe(target.id) if runtime else None,
            }
            if include_urls:
                entry["url"] = target.url
            targets.append(entry)
        services[service.slug] = {
            **_service_health(service),
            "prefix": service.prefix,
            "targets_detail": targets,
        }
    from registry.config_version import current_config_version

    return {
        "status": "ok" if database["status"] == "ok" or snapshot else "unavailable",
        "version": settings.GATEWAY_VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
        "services": services,
        "database": database,
        "redis": check_redis(),
        "config_version": {
            "serving": snapshot.version if snapshot else None,
            "database": current_config_version() if database["status"] == "ok" else None,
        },
        "sse_connections": runtime.alert_hub.count() if runtime and runtime.alert_hub else 0,
    }


def status_report() -> dict:
    runtime = active_runtime()
    return {
        "status": "ok",
        "version": settings.GATEWAY_VERSION,
        "instance": f"{socket.gethostname()}:{os.getpid()}",
        "uptime_seconds": round(time.time() - _STARTED, 1),
        "config_version": runtime.snapshot.version if runtime else None,
        "services": len(runtime.snapshot.services_by_prefix) if runtime else None,
        "control_plane_reachable": runtime.control_plane_ok if runtime else None,
    }
