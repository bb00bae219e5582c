from django.db import models

__all__ = ["AppliedBatch", "UsageHour"]


class UsageHour(models.Model):
    """One tenant's use of one service during one hour, summed over every gateway instance.

    Tenant and service are kept as slugs, not foreign keys: usage is a record of what
    happened and outlives a renamed or deleted service. Latency is a histogram over
    `proxy.traffic.LATENCY_BOUNDS` so hours add up exactly and percentiles come from the sum.
    """

    tenant_slug = models.CharField(max_length=50, blank=True, db_index=True, help_text="Empty: anonymous.")
    service_slug = models.CharField(max_length=50)
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    requests = models.PositiveBigIntegerField(default=0)
    status_4xx = models.PositiveBigIntegerField(default=0)
    status_5xx = models.PositiveBigIntegerField(default=0)
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)
    latency_histogram = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-hour", "tenant_slug", "service_slug"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_slug", "service_slug", "hour"], name="usage_hour_unique"),
        ]
        indexes = [models.Index(fields=["hour"], name="usage_hour_hour_idx")]

    def __str__(self) -> str:
        return f"{self.tenant_slug or 'anonymous'} / {self.service_slug} @ {self.hour:%Y-%m-%d %H:00}"


class AppliedBatch(models.Model):
    """A metering batch already added to the usage hours: applying it again is a no-op."""

    batch_id = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "applied batches"

    def __str__(self) -> str:
        return self.batch_id
