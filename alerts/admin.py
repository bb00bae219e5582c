"""Admin for alerts: the alert log, notification rules, and delivery outcomes (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.text import Truncator

from alerts.models import Alert, NotificationDelivery, NotificationRule
from gateway_project.web.admin import ReadOnlyAdminMixin

MESSAGE_PREVIEW_CHARS = 80


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = NotificationDelivery
    fields = ("rule", "status", "attempts", "last_error", "delivered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alerts are published through the API (and streamed when published), not typed in here."""

    list_display = ("created_at", "tenant", "severity", "service", "short_message", "event_id")
    list_filter = ("severity", ("tenant", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("tenant",)
    search_fields = ("message", "service", "event_id", "tenant__name", "tenant__slug")
    date_hierarchy = "created_at"
    inlines = (DeliveryInline,)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Message")
    def short_message(self, alert: Alert) -> str:
        return Truncator(alert.message).chars(MESSAGE_PREVIEW_CHARS)


@admin.register(NotificationRule)
class NotificationRuleAdmin(admin.ModelAdmin):
    list_display = ("tenant", "min_severity", "channel", "destination", "enabled")
    list_editable = ("enabled",)
    list_filter = ("enabled", "channel", "min_severity")
    list_select_related = ("tenant",)
    search_fields = ("tenant__name", "tenant__slug", "destination")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("tenant", "enabled")}),
        ("Routing", {"fields": ("min_severity", "channel", "destination")}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "tenant",
        "channel",
        "alert",
        "status",
        "attempts",
        "last_error",
        "delivered_at",
    )
    list_filter = ("status", "rule__channel")
    list_select_related = ("rule__tenant", "alert")
    search_fields = ("last_error", "rule__destination", "alert__message", "rule__tenant__slug")
    date_hierarchy = "created_at"

    @admin.display(description="Tenant", ordering="rule__tenant__name")
    def tenant(self, delivery: NotificationDelivery):
        return delivery.rule.tenant

    @admin.display(description="Channel", ordering="rule__channel")
    def channel(self, delivery: NotificationDelivery) -> str:
        return delivery.rule.get_channel_display()
