"""Admin usage view: hours per tenant and service, filterable by tenant (read-only)."""

from __future__ import annotations

from django.contrib import admin

from gateway_project.web.admin import ReadOnlyAdminMixin
from usage.models import UsageHour
from usage.report import UsageRow


@admin.register(UsageHour)
class UsageHourAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What the metering rolled up; the tenant filter is each tenant's usage view."""

    list_display = (
        "hour", "tenant_slug", "service_slug", "requests", "status_4xx", "status_5xx",
        "bytes_in", "bytes_out", "latency_p50_ms", "latency_p95_ms",
    )  # fmt: skip
    list_filter = ("tenant_slug", "service_slug")
    search_fields = ("tenant_slug", "service_slug")
    date_hierarchy = "hour"

    @admin.display(description="p50 (ms)")
    def latency_p50_ms(self, hour: UsageHour) -> float | None:
        return _row_of(hour).latency_ms(0.50)

    @admin.display(description="p95 (ms)")
    def latency_p95_ms(self, hour: UsageHour) -> float | None:
        return _row_of(hour).latency_ms(0.95)


def _row_of(hour: UsageHour) -> UsageRow:
    row = UsageRow(hour.tenant_slug, hour.service_slug, hour.hour)
    row.add(hour)
    return row
