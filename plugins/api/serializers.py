"""Management API bodies for plugin configs and the plugins this gateway can run."""

from __future__ import annotations

from rest_framework import serializers

from gateway_project.web.serializers import FullCleanModelSerializer, SlugKeyField
from plugins.models import PluginConfig
from registry.models import Service
from tenancy.models import Tenant

__all__ = ["AvailablePluginSerializer", "PluginConfigSerializer"]


class PluginConfigSerializer(FullCleanModelSerializer):
    """`{"id", "plugin", "enabled", "service", "tenant", "priority", "config"}` (SPEC section 19);
    service and tenant by slug, null for any; config checked against the plugin's schema."""

    service = SlugKeyField(slug_field="slug", queryset=Service.objects.all(), allow_null=True, required=False)
    tenant = SlugKeyField(slug_field="slug", queryset=Tenant.objects.all(), allow_null=True, required=False)
    config = serializers.JSONField(required=False)

    class Meta:
        model = PluginConfig
        fields = ("id", "plugin", "enabled", "service", "tenant", "priority", "config")
        # One config per plugin and scope is the model's constraint, checked by full_clean()
        # with its own message; DRF's generated validator would make service and tenant required.
        validators = []


class AvailablePluginSerializer(serializers.Serializer):
    """A plugin this gateway loaded: its name, version and config JSON Schema."""

    name = serializers.CharField()
    version = serializers.CharField()
    schema = serializers.JSONField()
