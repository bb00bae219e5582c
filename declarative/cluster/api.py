"""/api/manage/data-planes/: every data plane that followed this control plane (staff only)."""

from __future__ import annotations

from rest_framework import mixins, serializers, viewsets

from declarative.models import DataPlane
from gateway_project.web.viewsets import NotFoundProblemMixin
from registry.config_version import current_config_version

__all__ = ["DataPlaneSerializer", "DataPlaneViewSet"]


class DataPlaneSerializer(serializers.ModelSerializer):
    alive = serializers.BooleanField(read_only=True, help_text="It asked for config versions recently.")
    current = serializers.SerializerMethodField(help_text="It serves the registry's current config version.")

    class Meta:
        model = DataPlane
        fields = ["id", "name", "address", "config_version", "current", "alive", "last_seen_at", "created_at"]
        read_only_fields = fields

    def get_current(self, data_plane: DataPlane) -> bool:
        if "registry_version" not in self.context:
            self.context["registry_version"] = current_config_version()
        return data_plane.config_version == self.context["registry_version"]


class DataPlaneViewSet(
    NotFoundProblemMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Data planes with the config version each serves and whether it is alive (read only:
    the data planes report themselves)."""

    queryset = DataPlane.objects.all()
    serializer_class = DataPlaneSerializer
