"""The registry's config version: bumped on every change, watched by every data plane."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F

from registry.broadcast import publish
from registry.models import ConfigState

__all__ = ["CONFIG_CHANNEL", "VERSION_CACHE_KEY", "bump_config_version", "current_config_version"]

logger = logging.getLogger("gateway.config")

VERSION_CACHE_KEY = "config:version"
CONFIG_CHANNEL = "config"
_STATE_PK = 1


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
        cache.set(VERSION_CACHE_KEY, version, timeout=None)
    publish(CONFIG_CHANNEL, str(version))
