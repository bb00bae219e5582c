"""Management API views: plugin configs (CRUD) and the plugins available to configure."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gateway_project.web.filters import QueryFilter
from gateway_project.web.viewsets import ManagementViewSet
from plugins.api.serializers import AvailablePluginSerializer, PluginConfigSerializer
from plugins.discovery import catalogue
from plugins.models import PluginConfig

__all__ = ["PluginConfigViewSet"]


@extend_schema(tags=["plugins"])
class PluginConfigViewSet(ManagementViewSet):
    """Plugins switched on globally, for a service, a tenant, or a tenant on a service."""

    queryset = PluginConfig.objects.select_related("service", "tenant")
    serializer_class = PluginConfigSerializer
    query_filters = {
        "plugin": QueryFilter("plugin", description="Only configs of this plugin."),
        "service": QueryFilter("service__slug", description="Only configs of the service with this slug."),
        "tenant": QueryFilter("tenant__slug", description="Only configs of the tenant with this slug."),
        "enabled": QueryFilter("enabled", boolean=True),
    }
    search_fields = ("plugin", "service__slug", "tenant__slug")
    ordering_fields = ("plugin", "priority", "updated_at")

    @extend_schema(responses={200: AvailablePluginSerializer(many=True)})
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=())
    def available(self, request: Request) -> Response:
        """The plugins this gateway loaded (built-ins, entry points, GATEWAY_PLUGINS), by name."""
        plugins = catalogue().plugins
        body = [
            {"name": name, "version": plugin.version, "schema": plugin.config_schema}
            for name, plugin in sorted(plugins.items())
        ]
        return Response(AvailablePluginSerializer(body, many=True).data)
