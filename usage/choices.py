"""Enumerations of usage reporting."""

from django.db import models

__all__ = ["Granularity"]


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"
