"""Management API bodies for alerts: notification rules (validated per channel) and alerts."""

from __future__ import annotations

from rest_framework import serializers

from alerts.models import Alert, NotificationRule
from gateway_project.web.serializers import FullCleanModelSerializer, SlugKeyField
from tenancy.models import Tenant

__all__ = ["AlertRecordSerializer", "NotificationRuleSerializer"]


class NotificationRuleSerializer(FullCleanModelSerializer):
    """Where a tenant's alerts go; the destination must suit the channel (destinations.py)."""

    tenant = SlugKeyField(slug_field="slug", queryset=Tenant.objects.all())

    class Meta:
        model = NotificationRule
        fields = (
            "id", "tenant", "min_severity", "channel", "destination", "enabled", "created_at",
            "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")


class AlertRecordSerializer(serializers.ModelSerializer):
    """A stored alert as staff see it (the tenant-facing body is alerts.serializers)."""

    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Alert
        fields = ("id", "event_id", "tenant", "severity", "message", "service", "created_at")
        read_only_fields = fields
