"""The management API at /api/manage/: each app's router, under one browsable root."""

from django.urls import include, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.reverse import reverse

_ROOT_ENTRIES = {
    "services": "registry-api:service-list",
    "targets": "registry-api:target-list",
    "service-versions": "registry-api:serviceversion-list",
    "rate-policies": "registry-api:ratepolicy-list",
    "api-keys": "registry-api:apikey-list",
    "circuit-breakers": "registry-api:circuit-breaker-list",
    "health": "registry-api:health",
    "config": "registry-api:config",
    "tenants": "tenancy-api:tenant-list",
    "subscriptions": "tenancy-api:subscription-list",
    "plans": "tenancy-api:plan-list",
    "identity-providers": "tenancy-api:identity-provider-list",
    "audit-events": "tenancy-api:auditevent-list",
    "notification-rules": "alerts-api:notificationrule-list",
    "alerts": "alerts-api:alert-list",
    "plugins": "plugins-api:plugin-list",
    "usage": "usage-api:usage",
    "data-planes": "cluster-api:data-plane-list",
}


@extend_schema(responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
@permission_classes([IsAdminUser])
def api_root(request, format=None):
    """The gateway's management API: every registry and tenancy resource, staff only."""
    return Response(
        {name: reverse(route, request=request, format=format) for name, route in _ROOT_ENTRIES.items()}
    )


urlpatterns = [
    path("", api_root, name="manage-root"),
    path("", include("registry.api.urls")),
    path("", include("tenancy.api.urls")),
    path("", include("alerts.api.urls")),
    path("", include("plugins.api.urls")),
    path("", include("usage.api.urls")),
    path("config/", include("declarative.api.urls")),
    path("", include("declarative.cluster.urls")),
]
