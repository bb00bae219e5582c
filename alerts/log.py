"""The durable, bounded alert log per tenant that SSE replays from (SPEC section 9).

Redis Streams when Redis is configured (one stream per tenant, trimmed to
ALERT_RETENTION entries), the database otherwise (Alert rows, ids = primary keys).
Event ids are opaque to clients; each log knows how to order its own.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

from registry.broadcast import prefixed

__all__ = ["DatabaseAlertLog", "RedisAlertLog", "alert_log"]

_STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_DB_ID = re.compile(r"^[0-9]{1,20}$")


def stream_key(tenant: str) -> str:
    return prefixed(f"alerts:log:{tenant}")


class RedisAlertLog:
    """Redis Streams: XADD with approximate MAXLEN; replay is XRANGE from an exclusive start."""

    def append(self, client, tenant: str, event: dict) -> str:
        entry_id = client.xadd(
            stream_key(tenant), {"data": json.dumps(event)}, maxlen=settings.ALERT_RETENTION,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def read_after(self, client, tenant: str, last_id: str) -> list[tuple[str, dict]]:
        if not _STREAM_ID.match(last_id):
            return []  # unknown ids replay nothing rather than guess
        entries = await client.xrange(stream_key(tenant), min=f"({last_id}", max="+",
                                      count=settings.ALERT_RETENTION)
        return [(entry_id.decode(), json.loads(fields[b"data"])) for entry_id, fields in entries]

    @staticmethod
    def order(event_id: str) -> tuple[int, int]:
        if not _STREAM_ID.match(event_id or ""):
            return (-1, -1)
        millis, _, sequence = event_id.partition("-")
        return int(millis), int(sequence)


class DatabaseAlertLog:
    """Alert rows themselves: ids are primary keys, replay is a range query in a thread."""

    def read_after_sync(self, tenant: str, last_id: str) -> list[tuple[str, dict]]:
        from alerts.models import Alert
        from alerts.publishing import event_of

        if not _DB_ID.match(last_id):
            return []
        alerts = (
            Alert.objects.filter(tenant__slug=tenant, pk__gt=int(last_id))
            .select_related("tenant").order_by("pk")[: settings.ALERT_RETENTION]
        )
        return [(str(alert.pk), event_of(alert)) for alert in alerts]

    @staticmethod
    def order(event_id: str) -> tuple[int, int]:
        return (int(event_id), 0) if _DB_ID.match(event_id or "") else (-1, -1)


def alert_log():
    return RedisAlertLog() if settings.REDIS_URL else DatabaseAlertLog()
