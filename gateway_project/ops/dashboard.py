"""The staff dashboard (SPEC section 5): services, targets' health, circuit breakers,
read-only tenants and live traffic charts. The page polls `data.json` every few seconds;
nothing here ever calls an upstream.
"""

from __future__ import annotations

import logging
import time
from functools import wraps

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from gateway_project.ops.data_plane_loop import on_the_loop
from gateway_project.ops.health import detailed_report
from gateway_project.web.problems import problem_response
from proxy.runtime import active_runtime
from proxy.traffic import BUCKET_SECONDS, TrafficRecorder, read_shared

__all__ = ["POLL_SECONDS", "dashboard_data", "dashboard_page", "dashboard_report"]

logger = logging.getLogger("gateway.dashboard")

POLL_SECONDS = 2
SERVICE_STATUSES = ("healthy", "degraded", "unhealthy", "disabled")
RATE_FIELDS = ("rps", "errors_per_s", "client_errors_per_s")


# --- the report ------------------------------------------------------------------------------


def dashboard_report() -> dict:
    """Everything the page shows, as plain JSON-ready data."""
    health = detailed_report(include_urls=True)
    services = _services(health["services"])
    traffic = _traffic()
    return {
        "generated_at": health["timestamp"],
        "config_version": health["config_version"]["serving"],
        "database_config_version": health["config_version"]["database"],
        "sse_connections": health["sse_connections"],
        "config_stale": health["config_stale"],
        "config_error": health["config"]["error"],
        "summary": _summary(services, traffic),
        "services": services,
        "read_only_tenants": _read_only_tenants(),
        "data_planes": _data_planes(health["config_version"]["database"]),
        "traffic": traffic,
    }


def _summary(services: list[dict], traffic: dict) -> dict:
    """Services per health status and the latest request and error rates over all of them."""
    counts = {status: 0 for status in SERVICE_STATUSES}
    for service in services:
        counts[service["status"]] += 1
    latest = [points[-1] for points in traffic["services"].values() if points]
    rates = {field: round(sum(p[field] for p in latest), 3) for field in RATE_FIELDS}
    return {"services": len(services), "by_status": counts, **rates}


def _services(report: dict) -> list[dict]:
    """The health report's services with their names and enabled flags, sorted by name."""
    from registry.models import Service

    rows = {row["slug"]: row for row in Service.objects.values("slug", "name", "enabled")}
    services = []
    for slug, entry in report.items():
        row = rows.get(slug) or {"name": slug, "enabled": entry["status"] != "disabled"}
        services.append(
            {
                "slug": slug,
                "name": row["name"],
                "prefix": entry["prefix"],
                "enabled": row["enabled"],
                "status": entry["status"],
                "healthy_targets": entry["healthy_targets"],
                "serving_targets": entry["targets"],
                "targets": entry["targets_detail"],
            }
        )
    return sorted(services, key=lambda s: (s["name"].lower(), s["slug"]))


def _read_only_tenants() -> list[dict]:
    from tenancy.models import Tenant

    return [
        {"slug": t.slug, "name": t.name, "plan": t.plan, "reason": t.read_only_reason}
        for t in Tenant.objects.filter(read_only=True)
    ]


def _data_planes(registry_version: int | None) -> list[dict]:
    """Data planes following this control plane (SPEC section 18), as they last reported."""
    from declarative.models import DataPlane

    return [
        {
            "name": plane.name,
            "address": plane.address,
            "config_version": plane.config_version,
            "current": plane.config_version == registry_version,
            "alive": plane.alive,
            "last_seen_at": plane.last_seen_at.isoformat(),
        }
        for plane in DataPlane.objects.all()
    ]


# --- traffic -------------------------------------------------------------------------------


def _no_traffic() -> dict:
    return {"bucket_seconds": BUCKET_SECONDS, "current_bucket": None, "services": {}}


def _traffic() -> dict:
    """Per-service series: the cluster's (Redis) when configured, else this instance's."""
    runtime = active_runtime()
    if runtime is None:  # no data plane in this process: nothing was recorded here
        return _no_traffic()
    shared = _shared_buckets()
    try:
        local, cluster = on_the_loop(runtime, lambda: _read_series(runtime.traffic, shared))
    except TimeoutError:
        logger.warning("dashboard shows no traffic: the data plane's loop did not answer in time")
        return _no_traffic()
    series = local if cluster is None else _merge(cluster, local)
    return _rate_current_bucket(series, time.time())


def _read_series(recorder: TrafficRecorder, shared: dict | None) -> tuple[dict, dict | None]:
    """This instance's series and, with shared buckets, the cluster's; on the data plane's
    loop, which owns the recorder's buckets."""
    local = recorder.series()
    return local, None if shared is None else recorder.series(shared=shared)


def _shared_buckets() -> dict | None:
    """The cluster's closed buckets, or None without Redis (or when it does not answer)."""
    if not settings.REDIS_URL:
        return None
    import redis

    from gateway_project.core.broadcast import sync_redis

    try:
        return read_shared(sync_redis(), settings.CACHE_KEY_PREFIX)
    except redis.RedisError as exc:
        logger.warning("dashboard shows this instance only, Redis failed: %s", exc)
        return None


def _merge(cluster: dict, local: dict) -> dict:
    """Add this instance's buckets not shared yet (the current one) to the cluster's.

    A shared bucket already holds this instance's counts and an unshared one holds none
    of them, so the larger value per field never counts a request twice.
    """
    services = dict(cluster["services"])
    for name, points in local["services"].items():
        shared = {point["t"]: point for point in services.get(name, ())}
        services[name] = [_larger(shared.get(point["t"]), point) for point in points]
    return {**cluster, "services": services}


def _larger(shared: dict | None, local: dict) -> dict:
    if shared is None:
        return local
    latencies = [p for p in (shared["p95"], local["p95"]) if p is not None]
    merged = {field: max(shared[field], local[field]) for field in RATE_FIELDS}
    return {"t": local["t"], **merged, "p95": max(latencies, default=None)}


def _rate_current_bucket(series: dict, now: float) -> dict:
    """Rates of the still-filling bucket over the seconds it has run, not the full ten:
    otherwise every chart would end in a dip that is not in the traffic."""
    start = int(now) // BUCKET_SECONDS * BUCKET_SECONDS
    seconds = round(min(BUCKET_SECONDS, max(1.0, now - start)), 3)
    scale = BUCKET_SECONDS / seconds
    for points in series["services"].values():
        if points and points[-1]["t"] == start:
            last = points[-1]
            points[-1] = {**last, **{f: round(last[f] * scale, 3) for f in RATE_FIELDS}}
    return {**series, "current_bucket": {"t": start, "seconds": seconds}}


# --- views ---------------------------------------------------------------------------------


def staff_json(view):
    """Staff only, answered as problem JSON: 401 when anonymous, 403 when not staff."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return problem_response(request, "AUTH_ERROR", "Log in as staff to read the dashboard.")
        if not (user.is_active and user.is_staff):
            return problem_response(request, "FORBIDDEN", "The dashboard is for staff only.")
        return view(request, *args, **kwargs)

    return guarded


@never_cache
@require_safe
@staff_member_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    context = {"report": dashboard_report(), "poll_seconds": POLL_SECONDS}
    return render(request, "dashboard/index.html", context)


@never_cache
@require_safe
@staff_json
def dashboard_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dashboard_report(), json_dumps_params={"separators": (",", ":")})
