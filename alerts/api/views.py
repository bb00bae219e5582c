"""Management API views for alerts: notification rules (CRUD) and stored alerts (read only)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import filters, viewsets

from alerts.api.serializers import AlertRecordSerializer, NotificationRuleSerializer
from alerts.choices import Channel, Severity
from alerts.models import Alert, NotificationRule
from gateway_project.web.filters import QueryFilter, QueryParamFilterBackend
from gateway_project.web.viewsets import ManagementViewSet, NotFoundProblemMixin

__all__ = ["AlertViewSet", "NotificationRuleViewSet"]

_TENANT_FILTER = QueryFilter("tenant__slug", description="Only the tenant with this slug.")


@extend_schema(tags=["notification-rules"])
class NotificationRuleViewSet(ManagementViewSet):
    queryset = NotificationRule.objects.select_related("tenant")
    serializer_class = NotificationRuleSerializer
    query_filters = {
        "tenant": _TENANT_FILTER,
        "channel": QueryFilter("channel", choices=tuple(Channel.values)),
        "min_severity": QueryFilter("min_severity", choices=tuple(Severity.values)),
        "enabled": QueryFilter("enabled", boolean=True),
    }
    search_fields = ("destination", "tenant__name", "tenant__slug")
    ordering_fields = ("channel", "min_severity", "created_at")


@extend_schema(tags=["alerts"])
class AlertViewSet(NotFoundProblemMixin, viewsets.ReadOnlyModelViewSet):
    """Every tenant's stored alerts, newest first; publishing is POST /api/v1/alerts."""

    queryset = Alert.objects.select_related("tenant")
    serializer_class = AlertRecordSerializer
    filter_backends = (QueryParamFilterBackend, filters.SearchFilter, filters.OrderingFilter)
    query_filters = {
        "tenant": _TENANT_FILTER,
        "severity": QueryFilter("severity", choices=tuple(Severity.values)),
        "service": QueryFilter("service", description="Only alerts about this service slug."),
    }
    search_fields = ("message", "service", "tenant__slug")
    ordering_fields = ("created_at", "severity")
