"""Publishing an alert: the durable log (the Alert row) first, then fan-out once the row is
committed, then routing to the tenant's notification rules.

`<CACHE_KEY_PREFIX>:alerts:tenant:{tenant_id}` (Redis pub/sub) carries each event to every gateway instance;
without Redis the in-process hub delivers it directly.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import transaction

from alerts.hub import alert_channel, dispatch_in_process
from alerts.log import trim
from alerts.models import Alert
from gateway_project.core.broadcast import sync_redis

__all__ = ["event_of", "publish_alert"]

logger = logging.getLogger("gateway.alerts")


def event_of(alert: Alert) -> dict:
    """The JSON `data:` of an SSE alert event."""
    return {
        "alert_id": alert.pk,
        "severity": alert.severity,
        "message": alert.message,
        "service": alert.service,
        "timestamp": alert.created_at.isoformat(),
        "tenant": alert.tenant.slug,
    }


def publish_alert(alert: Alert) -> str:
    """Give the saved alert its event id and fan it out after commit; returns the event id."""
    event_id = str(alert.pk)
    Alert.objects.filter(pk=alert.pk).update(event_id=event_id)
    alert.event_id = event_id
    event = event_of(alert)
    tenant = alert.tenant.slug
    # After commit: a client that replays from the database must already find the row.
    transaction.on_commit(lambda: _fan_out(tenant, event_id, event), robust=True)
    transaction.on_commit(lambda: _route(alert.pk), robust=True)
    trim(alert.tenant_id)
    return event_id


def _fan_out(tenant: str, event_id: str, event: dict) -> None:
    if settings.REDIS_URL:
        try:
            sync_redis().publish(alert_channel(tenant), json.dumps({"id": event_id, "event": event}))
            return
        except Exception as exc:  # clients still get it by replay when they reconnect
            logger.error("could not fan out alert %s over redis: %s", event_id, exc)
    dispatch_in_process(tenant, event_id, event)


def _route(alert_id: int) -> None:
    from alerts.tasks import route_alert_task

    try:
        route_alert_task.delay(alert_id)
    except Exception as exc:  # a broker outage must not lose the alert itself (it is in the log)
        logger.error("could not queue notification routing for alert %s: %s", alert_id, exc)
