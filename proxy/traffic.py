"""Recent traffic per service for the staff dashboard: requests, errors and latency in
10-second buckets over the last 15 minutes.

Recording is a few integer additions per request. With Redis configured, each instance
adds its closed buckets to shared hashes so the dashboard shows the whole cluster; without
it the dashboard shows this instance.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

__all__ = ["LATENCY_BOUNDS", "TrafficRecorder", "percentile", "read_shared", "redis_key"]

BUCKET_SECONDS = 10
HISTORY_BUCKETS = 90  # 15 minutes
# Upper bounds (seconds) of the latency histogram used for p95; the last is "slower".
LATENCY_BOUNDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_FIELDS = 3 + len(LATENCY_BOUNDS) + 1  # requests, errors (5xx), client errors (4xx), histogram


def _new_bucket() -> list[int]:
    return [0] * _FIELDS


def percentile(histogram: list[int], fraction: float) -> float | None:
    """The upper bound of the histogram bucket holding the given fraction of observations."""
    total = sum(histogram)
    if not total:
        return None
    threshold = fraction * total
    running = 0
    for index, count in enumerate(histogram):
        running += count
        if running >= threshold:
            return LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1] * 2
    return None


class TrafficRecorder:
    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._buckets: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(_new_bucket))
        self._flushed_until = 0

    def record(self, service: str, status: int, seconds: float) -> None:
        start = int(self._clock()) // BUCKET_SECONDS * BUCKET_SECONDS
        bucket = self._buckets[start][service]
        bucket[0] += 1
        if status >= 500:
            bucket[1] += 1
        elif status >= 400:
            bucket[2] += 1
        bucket[3 + bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def _prune(self, now: float) -> None:
        horizon = now - HISTORY_BUCKETS * BUCKET_SECONDS
        for start in [s for s in self._buckets if s < horizon]:
            del self._buckets[start]

    def series(self, shared: dict[int, dict[str, list[int]]] | None = None) -> dict:
        """Per service, per bucket: requests/s, 5xx/s, 4xx/s and p95 seconds."""
        now = self._clock()
        self._prune(now)
        buckets = shared if shared is not None else self._buckets
        current = int(now) // BUCKET_SECONDS * BUCKET_SECONDS
        starts = [current - BUCKET_SECONDS * i for i in range(HISTORY_BUCKETS - 1, -1, -1)]
        services = sorted({name for start in starts for name in buckets.get(start, {})})
        result = {}
        for name in services:
            points = []
            for start in starts:
                bucket = buckets.get(start, {}).get(name) or _new_bucket()
                points.append(
                    {
                        "t": start,
                        "rps": round(bucket[0] / BUCKET_SECONDS, 3),
                        "errors_per_s": round(bucket[1] / BUCKET_SECONDS, 3),
                        "client_errors_per_s": round(bucket[2] / BUCKET_SECONDS, 3),
                        "p95": percentile(bucket[3:], 0.95),
                    }
                )
            result[name] = points
        return {"bucket_seconds": BUCKET_SECONDS, "services": result}

    # --- sharing through Redis ---------------------------------------------------------------

    def closed_buckets(self) -> dict[int, dict[str, list[int]]]:
        """Buckets that ended since the last call (to add to the shared hashes once)."""
        current = int(self._clock()) // BUCKET_SECONDS * BUCKET_SECONDS
        closed = {s: dict(b) for s, b in self._buckets.items() if self._flushed_until <= s < current}
        self._flushed_until = current
        return closed


def redis_key(prefix: str, start: int) -> str:
    return f"{prefix}:traffic:{start}"


def read_shared(client, prefix: str, now: float | None = None) -> dict[int, dict[str, list[int]]]:
    """The cluster's closed buckets from Redis (a blocking client: called from Django views)."""
    current = int(now if now is not None else time.time()) // BUCKET_SECONDS * BUCKET_SECONDS
    starts = [current - BUCKET_SECONDS * i for i in range(HISTORY_BUCKETS)]
    pipe = client.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(redis_key(prefix, start))
    shared: dict[int, dict[str, list[int]]] = {}
    for start, fields in zip(starts, pipe.execute(), strict=True):
        for field, value in fields.items():
            service, _, index = field.decode().rpartition(":")
            shared.setdefault(start, {}).setdefault(service, _new_bucket())[int(index)] = int(value)
    return shared
