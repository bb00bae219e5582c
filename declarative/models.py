"""Data planes as their control plane sees them (SPEC section 18): name, version, liveness.

A row is written by the data plane's own long poll for config versions (it says which
version it serves each time it asks), never by staff; it is runtime state, not configuration,
so it is not in the configuration file.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

from declarative.data_plane.constants import ALIVE_WITHIN_SECONDS

__all__ = ["DataPlane"]


class DataPlane(models.Model):
    """One data plane following this control plane, as it last reported itself."""

    name = models.CharField(max_length=100, unique=True, help_text="GATEWAY_DATA_PLANE_NAME, or host:pid.")
    address = models.GenericIPAddressField(null=True, blank=True, help_text="Where it last called from.")
    config_version = models.IntegerField(default=-1, help_text="The config version it serves (-1: none yet).")
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "data plane"

    def __str__(self) -> str:
        return self.name

    @property
    def alive(self) -> bool:
        """It asked for config versions recently (it holds one request open at all times)."""
        return self.last_seen_at >= timezone.now() - timedelta(seconds=ALIVE_WITHIN_SECONDS)
