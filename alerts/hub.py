"""In-process fan-out of alert events to the SSE connections of one gateway instance.

Each event is rendered to its SSE frame once and offered to every subscriber's bounded
queue. A client too slow to keep up is disconnected (it reconnects with Last-Event-ID
and replays from the durable log), so one slow reader never holds memory or delays the
others. A keepalive comment goes to every stream from one timer, not one per connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref

from gateway_project.core.broadcast import prefixed

__all__ = [
    "AlertHub",
    "Subscription",
    "alert_channel",
    "alert_channel_pattern",
    "dispatch_in_process",
    "render_event",
]

logger = logging.getLogger("gateway.alerts")

QUEUE_LIMIT = 1000
CHANNEL_PREFIX = "alerts:tenant:"
KEEPALIVE = b": keepalive\n\n"
DISCONNECTED = object()
_GLOB_SPECIALS = re.compile(r"([\\*?\[\]])")

_hubs: weakref.WeakSet[AlertHub] = weakref.WeakSet()


def alert_channel(tenant: str) -> str:
    """`<CACHE_KEY_PREFIX>:alerts:tenant:<slug>` (SPEC section 9): deployments sharing a Redis
    never hear each other's alerts."""
    return prefixed(f"{CHANNEL_PREFIX}{tenant}")


def alert_channel_pattern() -> str:
    """The PSUBSCRIBE pattern for every tenant's channel; the prefix is matched literally."""
    return _GLOB_SPECIALS.sub(r"\\\1", alert_channel("")) + "*"


def tenant_of(channel: bytes) -> str | None:
    """The tenant slug of an alert channel name, or None if it is not one of ours."""
    name, ours = channel.decode(), alert_channel("")
    return name[len(ours) :] if name.startswith(ours) else None


def render_event(event_id: str, event: dict) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event_id}\nevent: alert\ndata: {data}\n\n".encode()


class Subscription:
    __slots__ = ("tenant", "queue", "overflowed")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(DISCONNECTED)


class AlertHub:
    def __init__(self, order) -> None:
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._order = order  # the durable log's ordering of event ids
        self.last_event: dict[str, str] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        _hubs.add(self)

    def subscribe(self, tenant: str) -> Subscription:
        self.loop = asyncio.get_running_loop()
        subscription = Subscription(tenant)
        self._subscriptions.setdefault(tenant, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.tenant)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscriptions[subscription.tenant]

    def count(self, tenant: str | None = None) -> int:
        if tenant is not None:
            return len(self._subscriptions.get(tenant, ()))
        return sum(len(s) for s in self._subscriptions.values())

    def tenants(self) -> list[str]:
        return list(self._subscriptions)

    def dispatch(self, tenant: str, event_id: str, event: dict) -> int:
        """Offer the event to every local subscriber of the tenant (on the hub's loop)."""
        previous = self.last_event.get(tenant)
        if previous is None or self._order(event_id) > self._order(previous):
            self.last_event[tenant] = event_id
        subscribers = self._subscriptions.get(tenant)
        if not subscribers:
            return 0
        item = (self._order(event_id), render_event(event_id, event))
        for subscription in tuple(subscribers):
            subscription.offer(item)
        return len(subscribers)

    def dispatch_message(self, channel: bytes, data: bytes) -> None:
        """A Redis pub/sub message on <prefix>:alerts:tenant:{tenant}."""
        tenant = tenant_of(channel)
        if tenant is None:
            logger.warning("ignored alert message on foreign channel %s", channel)
            return
        try:
            message = json.loads(data)
            event_id, event = str(message["id"]), message["event"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored malformed alert message on %s", channel)
            return
        self.dispatch(tenant, event_id, event)

    def close_all(self) -> None:
        """End every stream (shutdown): clients reconnect elsewhere and replay what they missed."""
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.offer(DISCONNECTED)

    def keepalive(self) -> None:
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.offer((None, KEEPALIVE))

    async def run_keepalive(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.keepalive()


def dispatch_in_process(tenant: str, event_id: str, event: dict) -> None:
    """Without Redis: from a Django view thread, deliver on each instance's loop."""
    for hub in list(_hubs):
        if hub.loop is not None and not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(hub.dispatch, tenant, event_id, event)
