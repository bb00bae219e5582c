"""The durable, bounded alert log that SSE replays from (SPEC section 9): the Alert table.

Event ids are the alerts' primary keys, so replay with Last-Event-ID is one indexed range
query, and it survives a Redis restart as well as a gateway restart (Redis only carries
the live fan-out). The log is bounded: each tenant keeps its newest ALERT_RETENTION alerts.
"""

from __future__ import annotations

import re

from django.conf import settings

__all__ = ["event_order", "read_after", "trim"]

_EVENT_ID = re.compile(r"^[0-9]{1,18}$")


def event_order(event_id: str) -> int:
    """Ids order as integers; anything else (a foreign or forged id) orders before everything."""
    return int(event_id) if _EVENT_ID.match(event_id or "") else -1


def read_after(tenant: str, last_id: str) -> list[tuple[str, dict]]:
    """The tenant's alerts after `last_id`, oldest first; an unknown id replays nothing."""
    from alerts.models import Alert
    from alerts.publishing import event_of

    if not _EVENT_ID.match(last_id or ""):
        return []
    alerts = (
        Alert.objects.filter(tenant__slug=tenant, pk__gt=int(last_id))
        .select_related("tenant")
        .order_by("pk")[: settings.ALERT_RETENTION]
    )
    return [(str(alert.pk), event_of(alert)) for alert in alerts]


def trim(tenant_id: int) -> int:
    """Drop the tenant's alerts beyond the retention window; returns how many went."""
    from alerts.models import Alert

    keep = Alert.objects.filter(tenant_id=tenant_id).order_by("-pk").values_list("pk", flat=True)
    boundary = keep[settings.ALERT_RETENTION - 1 : settings.ALERT_RETENTION]
    if not boundary:
        return 0
    deleted, _ = Alert.objects.filter(tenant_id=tenant_id, pk__lt=boundary[0]).delete()
    return deleted
