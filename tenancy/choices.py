"""Enumerations of tenancy."""

from django.db import models

from registry.choices import Plan, Role

__all__ = ["Plan", "Role", "SubscriptionStatus"]


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
