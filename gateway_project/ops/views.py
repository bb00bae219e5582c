"""Health and status endpoints (SPEC section 10): none of them calls an upstream inline."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gateway_project.ops import health

__all__ = ["detailed", "health_view", "live", "ready", "startup", "status"]


def _json(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"separators": (",", ":")})


@never_cache
@require_GET
def health_view(request):
    return _json(*health.health_report())


@never_cache
@require_GET
def live(request):
    """Liveness: the process answers; nothing else is checked (restarts would not help)."""
    return _json({"status": "alive"})


@never_cache
@require_GET
def ready(request):
    return _json(*health.readiness())


@never_cache
@require_GET
def startup(request):
    return _json(*health.startup())


@never_cache
@require_GET
def detailed(request):
    """Per-target health and breakers; target URLs only for staff."""
    staff = bool(getattr(request, "user", None) and request.user.is_staff)
    return _json(health.detailed_report(include_urls=staff))


@never_cache
@require_GET
def status(request):
    return _json(health.status_report())
