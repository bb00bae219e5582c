"""Adding the data plane's metering batches to the usage hours, each exactly once.

A batch is applied in one transaction that also records its id (`AppliedBatch`, unique):
a crash before the commit leaves nothing behind and the batch still pending; a crash
after it leaves the batch pending but recorded, so the next roll-up only discards it.
Two roll-ups running at once serialise on the unique id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from proxy.metering import UsageBatch
from usage.constants import APPLIED_BATCH_RETENTION_DAYS
from usage.models import AppliedBatch, UsageHour
from usage.quota_alerts import raise_quota_alert
from usage.store import batch_store

__all__ = ["apply_batch", "roll_up"]

logger = logging.getLogger("gateway.usage")


def roll_up(store=None) -> int:
    """Apply every pending batch; returns how many were new."""
    store = store if store is not None else batch_store()
    applied = 0
    for batch_id in store.pending():
        try:
            batch = store.read(batch_id)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            # Not a batch this code wrote (or a corrupted one): dropped, so it cannot block the rest.
            logger.error("usage batch %s is unreadable and was dropped: %r", batch_id, exc)
            store.discard(batch_id)
            continue
        if batch is not None and apply_batch(batch):
            applied += 1
        store.discard(batch_id)
    _forget_old_batches()
    return applied


def apply_batch(batch: UsageBatch) -> bool:
    """Add one batch to the usage hours and raise its quota alerts; False if already applied."""
    try:
        with transaction.atomic():
            AppliedBatch.objects.create(batch_id=batch.id)
            for (tenant, service, hour), values in sorted(batch.buckets.items()):
                _add_to_hour(tenant, service, hour, values)
            for event in batch.quota_events:
                raise_quota_alert(event)
    except IntegrityError:
        if AppliedBatch.objects.filter(batch_id=batch.id).exists():
            logger.info("usage batch %s was already applied", batch.id)
            return False
        raise
    return True


def _add_to_hour(tenant: str, service: str, hour: int, values: list[int]) -> None:
    requests, status_4xx, status_5xx, bytes_in, bytes_out, *histogram = values
    row, _ = UsageHour.objects.select_for_update().get_or_create(
        tenant_slug=tenant, service_slug=service, hour=datetime.fromtimestamp(hour, UTC)
    )
    summed = list(row.latency_histogram) or [0] * len(histogram)
    UsageHour.objects.filter(pk=row.pk).update(
        requests=F("requests") + requests,
        status_4xx=F("status_4xx") + status_4xx,
        status_5xx=F("status_5xx") + status_5xx,
        bytes_in=F("bytes_in") + bytes_in,
        bytes_out=F("bytes_out") + bytes_out,
        latency_histogram=[a + b for a, b in zip(summed, histogram, strict=True)],
        updated_at=timezone.now(),
    )


def _forget_old_batches() -> None:
    horizon = timezone.now() - timedelta(days=APPLIED_BATCH_RETENTION_DAYS)
    AppliedBatch.objects.filter(created_at__lt=horizon).delete()
