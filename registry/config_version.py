"""The registry's config version: bumped on every change, watched by every data plane.

The database row is the durable counter; Redis holds a copy every instance can poll
cheaply, and pub/sub announces each bump the moment its transaction commits. Each bump
also writes what it changed (a `ConfigChange` row: kind and key) in the same transaction,
so instances update only those entries of their snapshot (SPEC section 23).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F

from gateway_project.core.broadcast import prefixed, publish, sync_redis
from registry.choices import ChangeKind
from registry.models import ConfigChange, ConfigState

__all__ = [
    "CONFIG_CHANNEL",
    "VERSION_KEY",
    "bump_config_version",
    "current_config_version",
    "fold_versions_since",
]

logger = logging.getLogger("gateway.config")

VERSION_KEY = "config:version"
CONFIG_CHANNEL = "config"
_STATE_PK = 1
# Change rows kept: an instance further behind than this rebuilds its whole snapshot.
CHANGE_LOG_KEEP = 10_000
CHANGE_LOG_PRUNE_EVERY = 500
# Two commits can announce out of order; the shared copy only ever moves forward.
_SET_IF_GREATER = """
if tonumber(redis.call('GET', KEYS[1]) or '-1') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
"""


def bump_config_version(kind: str = ChangeKind.ALL, key: int = 0) -> int:
    """Increment the durable counter and log what changed, inside the caller's transaction
    (the row lock orders concurrent bumps); announce after commit. Returns the new version."""
    with transaction.atomic(savepoint=False):
        updated = ConfigState.objects.filter(pk=_STATE_PK).update(version=F("version") + 1)
        if not updated:
            ConfigState.objects.get_or_create(pk=_STATE_PK, defaults={"version": 1})
        version = current_config_version()
        ConfigChange.objects.create(version=version, kind=kind, key=key or 0)
        if version % CHANGE_LOG_PRUNE_EVERY == 0:
            ConfigChange.objects.filter(version__lte=version - CHANGE_LOG_KEEP).delete()
    transaction.on_commit(_announce, robust=True)
    return version


def fold_versions_since(version: int) -> None:
    """Make every bump since `version` (in the caller's transaction) one version, so an
    apply of many objects is one change to instances, and its change rows go with it."""
    ConfigState.objects.filter(pk=_STATE_PK).update(version=version + 1)
    ConfigChange.objects.filter(version__gt=version).update(version=version + 1)


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
