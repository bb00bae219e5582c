"""Cluster-wide revocation of access tokens by `jti` (logout), within a second everywhere.

Each process keeps the revoked ids in memory, so the data plane checks revocation with a
dictionary lookup and no network call. Redis (when configured) holds the list for
instances that start later (a sorted set scored by expiry) and pub/sub tells running
instances at once; they also re-read the set every few seconds in case a message was lost.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from gateway_project.core.broadcast import prefixed, publish, sync_redis

__all__ = ["REVOKED_CHANNEL", "RevokedTokens", "is_revoked", "revoke_jti", "revoked_tokens"]

logger = logging.getLogger("gateway.auth")

REVOKED_CHANNEL = "revoked"
REVOKED_SET = "auth:revoked"


class RevokedTokens:
    """jti -> expiry (epoch seconds); an entry is dropped once its token has expired anyway."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0
        self.generation = 0  # moves on every change: open connections are checked again

    def add(self, jti: str, expires_at: float) -> None:
        with self._lock:
            self._expiry[jti] = expires_at
            self.generation += 1

    def merge(self, entries: dict[str, float]) -> None:
        with self._lock:
            if any(jti not in self._expiry for jti in entries):
                self.generation += 1
            self._expiry.update(entries)

    def __contains__(self, jti: str) -> bool:
        now = time.time()
        if now >= self._next_prune:
            self._prune(now)
        return jti in self._expiry

    def _prune(self, now: float) -> None:
        with self._lock:
            self._next_prune = now + 60
            self._expiry = {j: exp for j, exp in self._expiry.items() if exp > now}

    def __len__(self) -> int:
        return len(self._expiry)


revoked_tokens = RevokedTokens()


def revoke_jti(jti: str, expires_at: float) -> None:
    """Deny the token from now until it expires, on this instance at once and everywhere via Redis."""
    if not jti:
        return
    revoked_tokens.add(jti, expires_at)
    if settings.REDIS_URL:
        try:
            client = sync_redis()
            key = prefixed(REVOKED_SET)
            client.zadd(key, {jti: expires_at})
            client.zremrangebyscore(key, "-inf", time.time())
        except Exception as exc:
            logger.warning("could not store revocation in redis: %s", exc)
    publish(REVOKED_CHANNEL, f"{jti} {expires_at}")


def is_revoked(jti: str) -> bool:
    """For the control plane: this process's list, then Redis (one call) when configured."""
    if jti in revoked_tokens:
        return True
    if not settings.REDIS_URL:
        return False
    try:
        score = sync_redis().zscore(prefixed(REVOKED_SET), jti)
    except Exception:
        return False
    return score is not None and score > time.time()
