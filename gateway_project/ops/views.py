"""Health and status endpoints (SPEC sections 10 and 16): none of them calls an upstream inline.

Anonymous callers (load balancers, probes, the public) learn only whether the gateway is
ok and whether its config is stale; staff (session, API token or gateway JWT) and holders
of the scrape token (`METRICS_TOKEN`, which monitoring already has and which works while
the database is down) get the detail.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gateway_project.ops import health
from gateway_project.web.problems import problem_response

__all__ = ["caller_sees_detail", "detailed", "health_view", "live", "ready", "startup", "status"]


def _json(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"separators": (",", ":")})


def _holds_scrape_token(request) -> bool:
    if not settings.METRICS_TOKEN:
        return False
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return hmac.compare_digest(header.encode(), f"Bearer {settings.METRICS_TOKEN}".encode())


def _staff_caller(request) -> bool:
    """A staff user by session, or by a token the management API accepts (DRF's configured
    authenticators); a token that does not verify counts as no token, and so does one that
    cannot be checked while the database is down (the scrape token still works then)."""
    from django.db import DatabaseError

    if settings.DATA_PLANE_ONLY:  # staff accounts live on the control plane (SPEC section 18)
        return False
    try:
        return _verified_staff(request)
    except DatabaseError:
        return False


def _verified_staff(request) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return bool(user.is_active and user.is_staff)
    if "HTTP_AUTHORIZATION" not in request.META:
        return False
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request
    from rest_framework.settings import api_settings

    authenticators = [cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    try:
        user = Request(request, authenticators=authenticators).user
    except APIException:
        return False
    return bool(user and user.is_active and user.is_staff)


def caller_sees_detail(request) -> bool:
    return _holds_scrape_token(request) or _staff_caller(request)


@never_cache
@require_GET
def health_view(request):
    return _json(*health.health_report(detail=caller_sees_detail(request)))


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
    """Per-target health, breakers and config; for staff and token holders only (target
    URLs for staff users, not the scrape token)."""
    staff = _staff_caller(request)
    if not (staff or _holds_scrape_token(request)):
        detail = "The detailed health is for staff or the monitoring token; /health is public."
        return problem_response(request, "AUTH_ERROR", detail)
    return _json(health.detailed_report(include_urls=staff))


@never_cache
@require_GET
def status(request):
    return _json(health.status_report())
