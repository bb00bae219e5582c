"""Usage metering (SPEC section 20): per tenant, service and hour, counted in the data plane.

A request adds a few integers to an in-memory bucket; nothing here touches the database.
Every `USAGE_FLUSH_SECONDS` the instance hands what it counted to a store as one batch
with a unique id: Redis (one HSET, so a batch is written whole or not at all) or, without
Redis, an in-process store. The control plane (`usage.rollup`) adds each batch to the
database once, recording its id in the same transaction, so a repeated or crashed roll-up
never counts twice. A flush that fails keeps its counts for the next one, so a Redis
outage loses nothing and a Redis restart loses at most the batches not yet rolled up.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from django.conf import settings

from proxy.traffic import LATENCY_BOUNDS

__all__ = [
    "COUNTERS",
    "HOUR_SECONDS",
    "LocalBatches",
    "Meter",
    "QuotaEvent",
    "UsageBatch",
    "batch_hash_key",
    "flush_forever",
    "flush_once",
    "local_batches",
]

logger = logging.getLogger("gateway.metering")

HOUR_SECONDS = 3600
COUNTERS = ("requests", "status_4xx", "status_5xx", "bytes_in", "bytes_out")
_HISTOGRAM_AT = len(COUNTERS)
_BUCKET_WIDTH = _HISTOGRAM_AT + len(LATENCY_BOUNDS) + 1
# Quota thresholds (percent of the quota) that raise an alert once per period.
QUOTA_ALERT_PERCENTS = (80, 100)

BucketKey = tuple[str, str, int]  # (tenant slug or "", service slug, hour start epoch)


def batch_hash_key(prefix: str) -> str:
    """One Redis hash of pending batches (field: batch id); the {tag} keeps it in one slot."""
    return f"{prefix}:usage:{{batches}}"


@dataclass(frozen=True, slots=True)
class QuotaEvent:
    """A request that brought a tenant's quota use to an alert threshold (exactly one does)."""

    tenant: str
    quota: str
    service: str
    percent: int
    limit: int
    period: str


@dataclass(slots=True)
class UsageBatch:
    """What one instance counted since its last flush, under an id nothing else uses."""

    id: str
    buckets: dict[BucketKey, list[int]] = field(default_factory=dict)
    quota_events: list[QuotaEvent] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "buckets": [[*key, *values] for key, values in self.buckets.items()],
                "quota_events": [list(_event_fields(event)) for event in self.quota_events],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> UsageBatch:
        data = json.loads(text)
        buckets = {(row[0], row[1], int(row[2])): [int(v) for v in row[3:]] for row in data["buckets"]}
        events = [QuotaEvent(*row) for row in data.get("quota_events", ())]
        return cls(data["id"], buckets, events)


def _event_fields(event: QuotaEvent) -> tuple:
    return (event.tenant, event.quota, event.service, event.percent, event.limit, event.period)


def new_bucket() -> list[int]:
    return [0] * _BUCKET_WIDTH


def add_into(total: list[int], values: list[int]) -> None:
    """Add one bucket's counters and histogram into another (both are plain sums)."""
    for index, value in enumerate(values):
        total[index] += value


class Meter:
    """This instance's counts since the last flush: a dict of small integer lists."""

    def __init__(self, instance: str, clock=time.time) -> None:
        self.instance = instance
        self._clock = clock
        self._buckets: dict[BucketKey, list[int]] = {}
        self._events: list[QuotaEvent] = []
        self._sequence = 0

    def record(
        self, tenant: str, service: str, status: int, bytes_in: int, bytes_out: int, seconds: float
    ) -> None:
        hour = int(self._clock()) // HOUR_SECONDS * HOUR_SECONDS
        key = (tenant, service, hour)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = new_bucket()
        bucket[0] += 1
        if status >= 500:
            bucket[2] += 1
        elif status >= 400:
            bucket[1] += 1
        bucket[3] += bytes_in
        bucket[4] += bytes_out
        bucket[_HISTOGRAM_AT + bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def note_quota(self, event: QuotaEvent) -> None:
        self._events.append(event)

    def take(self) -> UsageBatch | None:
        """Everything counted so far as one batch with a fresh id; None when nothing was."""
        if not self._buckets and not self._events:
            return None
        self._sequence += 1
        batch_id = f"{self.instance}:{self._sequence}:{secrets.token_hex(4)}"
        batch = UsageBatch(batch_id, self._buckets, self._events)
        self._buckets, self._events = {}, []
        return batch

    def give_back(self, batch: UsageBatch) -> None:
        """A flush failed: its counts join the next batch (under a new id)."""
        for key, values in batch.buckets.items():
            add_into(self._buckets.setdefault(key, new_bucket()), values)
        self._events[:0] = batch.quota_events


class LocalBatches:
    """The batch store of a gateway without Redis: the same calls as the Redis store."""

    def __init__(self) -> None:
        self._batches: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, batch: UsageBatch) -> None:
        with self._lock:
            self._batches[batch.id] = batch.to_json()

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    def read(self, batch_id: str) -> UsageBatch | None:
        with self._lock:
            text = self._batches.get(batch_id)
        return UsageBatch.from_json(text) if text is not None else None

    def discard(self, batch_id: str) -> None:
        with self._lock:
            self._batches.pop(batch_id, None)


local_batches = LocalBatches()


async def flush_once(runtime) -> UsageBatch | None:
    """Hand this instance's counts to the store; on failure keep them for the next flush."""
    batch = runtime.meter.take()
    if batch is None:
        return None
    if runtime.redis is None:
        local_batches.put(batch)
        return batch
    try:
        await runtime.redis.hset(batch_hash_key(settings.CACHE_KEY_PREFIX), batch.id, batch.to_json())
    except Exception as exc:
        runtime.meter.give_back(batch)
        logger.warning("usage flush to redis failed; counts kept for the next flush: %s", exc)
        return None
    return batch


async def flush_forever(runtime) -> None:
    """The instance's flush loop; a last flush runs when the runtime shuts down."""
    try:
        while True:
            await asyncio.sleep(settings.USAGE_FLUSH_SECONDS)
            await flush_once(runtime)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await flush_once(runtime)
        raise
