"""What the health endpoints report (SPEC sections 10 and 16), computed without calling any
upstream.

Every health view (`/health`, `/api/v1/health`, `/api/v1/health/detailed`, `/api/v1/status`
and the dashboard) starts from one `assess()`, so they never disagree on the same state.
An anonymous caller gets SPEC 10's shape with each enabled service's status only (no
disabled services, targets or errors); staff and token holders get the detail. Config
status is read from the instance board, where each data-plane instance publishes it, the
way breakers are.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from gateway_project.core import breaker_board
from proxy.runtime import active_runtime

__all__ = [
    "Assessment",
    "assess",
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
OK, DEGRADED, UNAVAILABLE = "ok", "degraded", "unavailable"
# Service statuses that make the gateway degraded; "disabled" is a choice, not a fault.
_FAULTY_SERVICE = ("degraded", "unhealthy")


def check_database() -> dict:
    if settings.DATA_PLANE_ONLY:  # a data plane has no database by design (SPEC section 18)
        return {"status": "not_configured"}
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


@dataclass(frozen=True)
class Assessment:
    """One look at everything the health views report, taken once per request."""

    runtime: object | None
    snapshot: object | None  # the snapshot the data plane serves, or a fresh compile without one
    database: dict
    redis: dict
    services: dict[str, dict]  # slug -> _service_health, sorted by slug
    config: list[dict]  # each live instance's published config status
    timestamp: str

    @property
    def config_stale(self) -> bool:
        return any(state.get("stale") for state in self.config)

    @property
    def config_error(self) -> str | None:
        """The object at fault and what is wrong with it (instances share one registry)."""
        return next((state["error"] for state in self.config if state.get("stale")), None)

    @property
    def status(self) -> str:
        if self.snapshot is None:
            return UNAVAILABLE
        faulty = any(s["status"] in _FAULTY_SERVICE for s in self.services.values())
        troubled = UNAVAILABLE in (self.database["status"], self.redis["status"])
        return DEGRADED if faulty or troubled or self.config_stale else OK


def assess() -> Assessment:
    runtime = active_runtime()
    snapshot = runtime.snapshot if runtime is not None and runtime.snapshot.loaded else None
    database = check_database()
    config = breaker_board.read_board().config_states()
    if snapshot is None and database["status"] == "ok":
        snapshot, config = _compiled_here(config)
    services = sorted(snapshot.services, key=lambda s: s.slug) if snapshot else []
    return Assessment(
        runtime=runtime,
        snapshot=snapshot,
        database=database,
        redis=check_redis(),
        services={service.slug: _service_health(service) for service in services},
        config=config,
        timestamp=datetime.now(UTC).isoformat(),
    )


def _compiled_here(config: list[dict]) -> tuple[object | None, list[dict]]:
    """A process without a data plane (tests, management commands) compiles the registry
    itself; a compile failure is reported like an instance's."""
    from proxy.snapshot import CompileError, compile_snapshot

    try:
        return compile_snapshot(), config
    except CompileError as exc:
        return None, [*config, {"instance": "this process", "stale": True, "error": str(exc)}]


def health_report(detail: bool) -> tuple[dict, int]:
    """`/health` (SPEC 10's shape for anyone): the status of each enabled service, no more;
    targets, stores' errors and the config error for staff and token holders."""
    state = assess()
    services = state.services
    if not detail:  # what a status page shows: disabled services and counts stay private
        services = {
            slug: {"status": s["status"]} for slug, s in services.items() if s["status"] != "disabled"
        }
    report = {
        "status": state.status,
        "version": settings.GATEWAY_VERSION,
        "timestamp": state.timestamp,
        "services": services,
        "redis": state.redis["status"],
        "config_stale": state.config_stale,
    }
    if detail:
        report["config_error"] = state.config_error
    return report, 200


def readiness() -> tuple[dict, int]:
    """Ready when it can route: a database or a loaded snapshot, and Redis if configured.

    A stale config does not make an instance unready: it still routes from its last good
    snapshot, and one bad save must not take every instance out of rotation (SPEC 16).
    """
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


def _last_check(check) -> dict | None:
    if check is None:
        return None
    return {
        "ok": check.ok,
        "status_code": check.status_code,
        "latency_ms": check.latency_ms,
        "error": check.error,
        "at": check.created_at.isoformat(),
    }


def _target_detail(target, runtime, check, include_urls: bool) -> dict:
    entry = {
        "id": target.id,
        "enabled": target.enabled,
        "healthy": target.healthy,
        "weight": target.weight,
        "last_check": _last_check(check),
        "circuit_breaker": runtime.breakers.describe(target.id) if runtime else None,
    }
    if include_urls:
        entry["url"] = target.url
    return entry


def _services_detail(state: Assessment, include_urls: bool) -> dict:
    last_checks = latest_checks() if state.database["status"] == "ok" else {}
    services = {}
    for service in sorted(state.snapshot.services, key=lambda s: s.slug) if state.snapshot else []:
        services[service.slug] = {
            **state.services[service.slug],
            "prefix": service.prefix,
            "targets_detail": [
                _target_detail(t, state.runtime, last_checks.get(t.id), include_urls) for t in service.targets
            ],
        }
    return services


def detailed_report(include_urls: bool) -> dict:
    """`/api/v1/health/detailed` and the dashboard: per target health and breakers, stores,
    and config (versions, and the object at fault while it is stale)."""
    from registry.config_version import current_config_version

    state = assess()
    runtime = state.runtime
    return {
        "status": state.status,
        "version": settings.GATEWAY_VERSION,
        "timestamp": state.timestamp,
        "services": _services_detail(state, include_urls),
        "database": state.database,
        "redis": state.redis,
        "config_version": {
            "serving": state.snapshot.version if state.snapshot else None,
            "database": current_config_version() if state.database["status"] == "ok" else None,
        },
        "config_stale": state.config_stale,
        "config": {"error": state.config_error, "instances": state.config},
        "sse_connections": runtime.alert_hub.count() if runtime and runtime.alert_hub else 0,
    }


def status_report() -> dict:
    """`/api/v1/status`: the same status as `/health`, with this instance's particulars
    (which worker answered; SPEC 10 lists it as public)."""
    state = assess()
    runtime = state.runtime
    return {
        "status": state.status,
        "config_stale": state.config_stale,
        "version": settings.GATEWAY_VERSION,
        "instance": f"{socket.gethostname()}:{os.getpid()}",
        "uptime_seconds": round(time.time() - _STARTED, 1),
        "config_version": runtime.snapshot.version if runtime else None,
        "services": len(runtime.snapshot.services_by_prefix) if runtime else None,
        "control_plane_reachable": runtime.control_plane_ok if runtime else None,
    }
