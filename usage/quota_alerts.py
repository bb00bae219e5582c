"""Quota alerts at 80 % and 100 % through the alert path every other alert takes (SPEC 20)."""

from __future__ import annotations

from alerts.choices import Severity
from alerts.models import Alert
from alerts.publishing import publish_alert
from proxy.metering import QuotaEvent
from tenancy.models import Tenant

__all__ = ["raise_quota_alert"]


def raise_quota_alert(event: QuotaEvent) -> Alert | None:
    """One alert per threshold and period: the data plane reports each crossing once."""
    tenant = Tenant.objects.filter(slug=event.tenant).first()
    if tenant is None:
        return None
    where = f" on {event.service}" if event.service else ""
    if event.percent >= 100:
        message = f"Quota {event.quota}{where} used up: {event.limit} requests in {event.period}."
    else:
        message = (
            f"Quota {event.quota}{where} at {event.percent} %: of {event.limit} requests in {event.period}."
        )
    severity = Severity.ERROR if event.percent >= 100 else Severity.WARNING
    alert = Alert.objects.create(tenant=tenant, severity=severity, message=message, service=event.service)
    publish_alert(alert)
    return alert
