"""Enumerations of the plugin system."""

from django.db import models

__all__ = ["Scope"]


class Scope(models.TextChoices):
    """Where a PluginConfig applies; derived from which of service and tenant are set."""

    GLOBAL = "global", "every service, every caller"
    SERVICE = "service", "one service"
    TENANT = "tenant", "one tenant's requests to any service"
    SERVICE_TENANT = "service+tenant", "one tenant's requests to one service"
