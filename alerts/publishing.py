"""Publishing an alert: durable log first, then fan-out to every instance, then routing rules.

`alerts:tenant:{tenant_id}` (Redis pub/sub) carries each event to every gateway instance;
without Redis the in-process hub delivers it directly.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import transaction

from alerts.hub import alert_channel, dispatch_in_process
from alerts.log import RedisAlertLog
from alerts.models import Alert
from registry.broadcast import sync_redis

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
    """Append to the durable log, fan out, route to notification rules; returns the event id."""
    event = event_of(alert)
    tenant = alert.tenant.slug
    if settings.REDIS_URL:
        client = sync_redis()
        event_id = RedisAlertLog().append(client, tenant, event)
        Alert.objects.filter(pk=alert.pk).update(event_id=event_id)
        client.publish(alert_channel(tenant), json.dumps({"id": event_id, "event": event}))
    else:
        event_id = str(alert.pk)
        Alert.objects.filter(pk=alert.pk).update(event_id=event_id)
        dispatch_in_process(tenant, event_id, event)
    alert.event_id = event_id
    transaction.on_commit(lambda: _route(alert.pk), robust=True)
    return event_id


def _route(alert_id: int) -> None:
    from alerts.tasks import route_alert_task

    try:
        route_alert_task.delay(alert_id)
    except Exception as exc:  # a broker outage must not lose the alert itself (it is in the log)
        logger.error("could not queue notification routing for alert %s: %s", alert_id, exc)
