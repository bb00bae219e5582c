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
    what = f"Monthly request quota on {event.service}" if event.service else "Monthly request quota"
    used = event.limit if event.percent >= 100 else -(-event.limit * event.percent // 100)
    state = "used up" if event.percent >= 100 else f"at {event.percent} %"
    message = f"{what} {state}: {used} of {event.limit} requests in {event.period}."
    severity = Severity.ERROR if event.percent >= 100 else Severity.WARNING
    alert = Alert.objects.create(tenant=tenant, severity=severity, message=message, service=event.service)
    publish_alert(alert)
    return alert
