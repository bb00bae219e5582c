"""The data planes in the admin: what each serves and whether it is alive (they report themselves)."""

from django.contrib import admin

from declarative.models import DataPlane
from gateway_project.web.admin import ReadOnlyAdminMixin


@admin.register(DataPlane)
class DataPlaneAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "address", "config_version", "is_alive", "last_seen_at")
    search_fields = ("name", "address")
    readonly_fields = ("name", "address", "config_version", "last_seen_at", "created_at", "updated_at")

    @admin.display(boolean=True, description="alive")
    def is_alive(self, data_plane: DataPlane) -> bool:
        return data_plane.alive
