"""Enumerations of alerts and notifications."""

from django.db import models

__all__ = ["Channel", "DeliveryStatus", "Severity", "SEVERITY_RANK"]


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {severity.value: rank for rank, severity in enumerate(Severity)}


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"
    WHATSAPP = "whatsapp", "WhatsApp"
    SSE = "sse", "Server-sent events"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    RETRYING = "retrying", "Retrying"
    DEAD = "dead", "Dead-lettered"
