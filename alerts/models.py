from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models

from alerts.choices import Channel, DeliveryStatus, Severity

__all__ = ["Alert", "NotificationDelivery", "NotificationRule"]

MAX_MESSAGE_LENGTH = 2000


class Alert(models.Model):
    """Something a tenant's dashboards should know now: streamed over SSE and routed to rules."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="alerts")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    message = models.TextField(validators=[MaxLengthValidator(MAX_MESSAGE_LENGTH)])
    service = models.CharField(max_length=50, blank=True)
    event_id = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Id in the durable stream (SSE id:)."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message[:60]}"


class NotificationRule(models.Model):
    """Route a tenant's alerts at or above a severity to a channel and destination."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="notification_rules")
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    destination = models.CharField(
        max_length=500,
        blank=True,
        help_text="Email address, webhook URL or WhatsApp number (E.164); empty for SSE.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name", "channel", "pk"]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.min_severity}+ -> {self.channel} {self.destination}".strip()

    def clean(self) -> None:
        from alerts.destinations import validate_destination

        try:
            validate_destination(self.channel, self.destination)
        except ValidationError as exc:
            raise ValidationError({"destination": exc.messages}) from exc


class NotificationDelivery(models.Model):
    """One attempt series to deliver one alert through one rule; dead-lettered after the last try."""

    rule = models.ForeignKey(NotificationRule, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "notification deliveries"

    def __str__(self) -> str:
        return f"{self.alert_id} via {self.rule.channel}: {self.status}"
