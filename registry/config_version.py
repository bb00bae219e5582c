"""The registry's config version: bumped on every change, watched by every data plane.

The database row is the durable counter; Redis holds a copy every instance can poll
cheaply, and pub/sub announces each bump the moment its transaction commits.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F

from gateway_project.core.broadcast import prefixed, publish, sync_redis
from registry.models import ConfigState

__all__ = ["CONFIG_CHANNEL", "VERSION_KEY", "bump_config_version", "current_config_version"]

logger = logging.getLogger("gateway.config")

VERSION_KEY = "config:version"
CONFIG_CHANNEL = "config"
_STATE_PK = 1
# Two commits can announce out of order; the shared copy only ever moves forward.
_SET_IF_GREATER = """
if tonumber(redis.call('GET', KEYS[1]) or '-1') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
"""


def bump_config_version() -> None:
    """Increment the durable counter inside the caller's transaction; announce after commit."""
    updated = ConfigState.objects.filter(pk=_STATE_PK).update(version=F("version") + 1)
    if not updated:
        ConfigState.objects.get_or_create(pk=_STATE_PK, defaults={"version": 1})
    transaction.on_commit(_announce, robust=True)


def current_config_version() -> int:
    state = ConfigState.objects.filter(pk=_STATE_PK).values_list("version", flat=True).first()
    return state or 0


def _announce() -> None:
    version = current_config_version()
    if settings.REDIS_URL:
        try:
            sync_redis().eval(_SET_IF_GREATER, 1, prefixed(VERSION_KEY), version)
        except Exception as exc:  # instances still see the bump through the database
            logger.warning("could not share config version through redis: %s", exc)
    publish(CONFIG_CHANNEL, str(version))
