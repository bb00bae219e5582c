"""Feeds an instance's AlertHub from Redis pub/sub (`<CACHE_KEY_PREFIX>:alerts:tenant:*`), so
an alert published on any instance of this deployment reaches subscribers on every instance.

After the subscription drops and comes back, the hub catches up from the durable log (the
database) for every tenant with listeners, so a Redis blip loses no event for connected
clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from alerts.hub import AlertHub, alert_channel_pattern
from alerts.log import read_after

__all__ = ["relay_redis_alerts"]

logger = logging.getLogger("gateway.alerts")

_RECONNECT_MAX_SECONDS = 5.0


async def _catch_up(hub: AlertHub, run_in_db_thread) -> None:
    for tenant in hub.tenants():
        last = hub.last_event.get(tenant)
        if last is None:
            continue
        for event_id, event in await run_in_db_thread(read_after, tenant, last):
            hub.dispatch(tenant, event_id, event)


async def relay_redis_alerts(hub: AlertHub, subscriber_client, run_in_db_thread) -> None:
    delay = 0.2
    reconnecting = False
    while True:
        pubsub = subscriber_client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(alert_channel_pattern())
            if reconnecting:
                await _catch_up(hub, run_in_db_thread)
                logger.warning("alert fan-out resubscribed and caught up")
            delay, reconnecting = 0.2, False
            async for message in pubsub.listen():
                if message.get("type") == "pmessage":
                    hub.dispatch_message(message["channel"], message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not reconnecting:
                logger.error("alert fan-out lost its Redis subscription: %s", exc)
            reconnecting = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_SECONDS)
        finally:
            with contextlib.suppress(Exception):  # the connection is already gone
                await pubsub.aclose()
