"""Where the data plane leaves its metering batches: Redis, or this process without Redis."""

from __future__ import annotations

from django.conf import settings

from gateway_project.core.broadcast import sync_redis
from proxy.metering import UsageBatch, batch_hash_key, local_batches

__all__ = ["RedisBatchStore", "batch_store"]


class RedisBatchStore:
    """Pending batches in one Redis hash (field: batch id); the same calls as LocalBatches."""

    def __init__(self, client, prefix: str) -> None:
        self.client = client
        self.key = batch_hash_key(prefix)

    def pending(self) -> list[str]:
        return sorted(field.decode() for field in self.client.hkeys(self.key))

    def read(self, batch_id: str) -> UsageBatch | None:
        text = self.client.hget(self.key, batch_id)
        return UsageBatch.from_json(text) if text is not None else None

    def discard(self, batch_id: str) -> None:
        self.client.hdel(self.key, batch_id)


def batch_store():
    """The store the gateway instances of this deployment flush to."""
    if settings.REDIS_URL:
        return RedisBatchStore(sync_redis(), settings.CACHE_KEY_PREFIX)
    return local_batches
