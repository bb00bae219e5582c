"""Announce control-plane events (config bumps, revocations, purges) to every gateway instance.

With Redis configured, a message goes out over Redis pub/sub; in-process listeners are
always called too, so a single embedded instance reacts without any server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings

from gateway_project.core import redis_topology

__all__ = ["listen", "prefixed", "publish", "sync_redis"]

logger = logging.getLogger("gateway.broadcast")

_listeners: dict[str, list[Callable[[str], None]]] = {}
_lock = threading.Lock()


def sync_redis():
    """One blocking Redis client per process (per REDIS_URL) for the control plane."""
    return _client_for(settings.REDIS_URL)


@lru_cache(maxsize=4)
def _client_for(url: str):
    """Single Redis, Sentinel master or Cluster, as REDIS_URL names it (SPEC section 21)."""
    return redis_topology.sync_client(
        redis_topology.parse(url), socket_connect_timeout=1, socket_timeout=2, health_check_interval=30
    )


def prefixed(name: str) -> str:
    """Redis key or channel name under this deployment's prefix (tests run side by side)."""
    return f"{settings.CACHE_KEY_PREFIX}:{name}"


def listen(channel: str, callback: Callable[[str], None]) -> None:
    """Call `callback(message)` in this process whenever `publish(channel, ...)` runs here."""
    with _lock:
        _listeners.setdefault(channel, []).append(callback)


def publish(channel: str, message: str) -> None:
    """Deliver to local listeners and, when Redis is configured, to every other instance."""
    for callback in list(_listeners.get(channel, ())):
        try:
            callback(message)
        except Exception:  # a broken listener must not break the admin save that triggered it
            logger.exception("local listener failed", extra={"channel": channel})
    if settings.REDIS_URL:
        try:
            sync_redis().publish(prefixed(channel), message)
        except Exception as exc:  # instances still converge through their version poll
            logger.warning("redis publish failed: %s", exc, extra={"channel": channel})
