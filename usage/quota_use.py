"""How much of its quotas a tenant used this period, for the portal's quota bars."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Sum

from gateway_project.core.broadcast import sync_redis
from proxy.quotas import Period, month_of, quota_key
from usage.models import UsageHour

__all__ = ["QuotaUse", "quota_use"]

logger = logging.getLogger("gateway.usage")


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """One quota of the tenant's plan: its limit and what this period used of it."""

    label: str
    service: str
    limit: int
    used: int
    resets_at: datetime

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.limit)) if self.limit else 0


def quota_use(tenant) -> list[QuotaUse]:
    """The tenant's quotas this month: Redis' exact counters when configured, else the usage
    rolled up so far (which lags by a roll-up interval and counts refused requests too)."""
    subscription = getattr(tenant, "subscription", None)
    plan = subscription.plan if subscription is not None else None
    if plan is None:
        return []
    period = month_of(time.time())
    quotas = [("Every service", "", plan.monthly_request_quota)] if plan.monthly_request_quota else []
    quotas += [(q.service.name, q.service.slug, q.monthly_request_quota) for q in plan.service_quotas.all()]
    resets_at = datetime.fromtimestamp(period.resets_at, UTC)
    return [
        QuotaUse(label, service, limit, _used(tenant.slug, service, period), resets_at)
        for label, service, limit in quotas
    ]


def _used(tenant: str, service: str, period: Period) -> int:
    if settings.REDIS_URL:
        try:
            return int(
                sync_redis().get(quota_key(settings.CACHE_KEY_PREFIX, tenant, period.label, service)) or 0
            )
        except Exception as exc:  # the page still shows the rolled-up usage
            logger.warning("quota counter unreadable, showing rolled-up usage: %s", exc)
    hours = UsageHour.objects.filter(
        tenant_slug=tenant, hour__gte=datetime.fromtimestamp(period.starts_at, UTC)
    )
    if service:
        hours = hours.filter(service_slug=service)
    return hours.aggregate(total=Sum("requests"))["total"] or 0
