"""Usage reports: hours (or days) per tenant and service, with latency percentiles.

Shared by the management API, its CSV export, the admin and the tenant portal, so every
reader sums the same rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from proxy.traffic import percentile
from usage.choices import Granularity
from usage.models import UsageHour

__all__ = ["REPORT_FIELDS", "UsageRow", "usage_rows"]

REPORT_FIELDS = (
    "tenant",
    "service",
    "period_start",
    "requests",
    "status_4xx",
    "status_5xx",
    "bytes_in",
    "bytes_out",
    "latency_p50_ms",
    "latency_p95_ms",
)


@dataclass(slots=True)
class UsageRow:
    """One tenant's use of one service over one hour or day."""

    tenant: str
    service: str
    period_start: datetime
    requests: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    histogram: list[int] = field(default_factory=list)

    def add(self, hour: UsageHour) -> None:
        self.requests += hour.requests
        self.status_4xx += hour.status_4xx
        self.status_5xx += hour.status_5xx
        self.bytes_in += hour.bytes_in
        self.bytes_out += hour.bytes_out
        histogram = list(hour.latency_histogram)
        if not self.histogram:
            self.histogram = histogram
        elif histogram:
            self.histogram = [a + b for a, b in zip(self.histogram, histogram, strict=True)]

    def latency_ms(self, fraction: float) -> float | None:
        seconds = percentile(self.histogram, fraction) if self.histogram else None
        return round(seconds * 1000, 3) if seconds is not None else None

    def as_dict(self) -> dict:
        return {
            "tenant": self.tenant,
            "service": self.service,
            "period_start": self.period_start,
            "requests": self.requests,
            "status_4xx": self.status_4xx,
            "status_5xx": self.status_5xx,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "latency_p50_ms": self.latency_ms(0.50),
            "latency_p95_ms": self.latency_ms(0.95),
        }


def _period_start(hour: datetime, granularity: str) -> datetime:
    if granularity == Granularity.DAY:
        return hour.replace(hour=0, minute=0, second=0, microsecond=0)
    return hour


def usage_rows(
    start: datetime,
    end: datetime,
    granularity: str = Granularity.HOUR,
    tenant: str | None = None,
    service: str | None = None,
) -> list[UsageRow]:
    """Rows for hours in [start, end), summed per period, oldest first."""
    hours = UsageHour.objects.filter(hour__gte=start, hour__lt=end)
    if tenant is not None:
        hours = hours.filter(tenant_slug=tenant)
    if service is not None:
        hours = hours.filter(service_slug=service)
    rows: dict[tuple, UsageRow] = {}
    for hour in hours.order_by("hour", "tenant_slug", "service_slug"):
        period = _period_start(hour.hour, granularity)
        key = (period, hour.tenant_slug, hour.service_slug)
        row = rows.get(key)
        if row is None:
            row = rows[key] = UsageRow(hour.tenant_slug, hour.service_slug, period)
        row.add(hour)
    return list(rows.values())
