"""Response caching per service (SPEC section 15): GET/HEAD answers kept for the service's TTL.

Keyed by tenant, method and full URL, plus the values of the request headers the upstream
named in `Vary`; never for `Cache-Control: no-store`/`private`, `Set-Cookie` or `Vary: *`.
Entries live in Redis when configured (shared by every instance), in a bounded in-process
LRU otherwise. A purge bumps the service's cache generation, part of every key, and the
new generation reaches every instance with the config snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections import OrderedDict

from proxy.exchange import Answered, Exchange

__all__ = ["CACHEABLE_STATUSES", "ResponseCache", "cacheable_ttl", "serve_from_cache"]

logger = logging.getLogger("gateway.cache")

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 404, 410})
MAX_ENTRY_BYTES = 1024 * 1024
LOCAL_CAPACITY_BYTES = 64 * 1024 * 1024
_MAX_VARY_HEADERS = 8
# Headers that describe one transfer rather than the resource: never replayed from cache.
_NOT_STORED = frozenset({b"date", b"x-request-id", b"x-process-time", b"age", b"x-cache"})


def _directives(value: bytes | None) -> dict[str, str]:
    if not value:
        return {}
    directives = {}
    for part in value.decode("latin-1").lower().split(","):
        name, _, argument = part.strip().partition("=")
        directives[name] = argument.strip('"')
    return directives


def cacheable_ttl(status: int, headers: list[tuple[bytes, bytes]], service_ttl: int) -> int:
    """Seconds this response may be cached: the service's TTL capped by the upstream's max-age."""
    if status not in CACHEABLE_STATUSES:
        return 0
    index = {name.lower(): value for name, value in headers}
    if b"set-cookie" in index or index.get(b"vary", b"").strip() == b"*":
        return 0
    directives = _directives(index.get(b"cache-control"))
    if "no-store" in directives or "private" in directives or "no-cache" in directives:
        return 0
    for name in ("s-maxage", "max-age"):
        if directives.get(name, "").isdigit():
            return min(service_ttl, int(directives[name]))
    return service_ttl


def _vary_names(headers: list[tuple[bytes, bytes]]) -> list[str]:
    names = []
    for name, value in headers:
        if name.lower() == b"vary":
            names += [v.strip().lower() for v in value.decode("latin-1").split(",") if v.strip()]
    return sorted(set(names))[:_MAX_VARY_HEADERS]


class ResponseCache:
    """get/put of serialized responses; Redis through the runtime's pipe, or a local LRU."""

    def __init__(self, pipe=None, prefix: str = "gw") -> None:
        self._pipe = pipe
        self._prefix = prefix
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._local_bytes = 0

    def base_key(self, exchange: Exchange) -> str:
        service = exchange.service
        tenant = exchange.identity.tenant if exchange.identity is not None else "-"
        host = exchange.header_index.get(b"host", b"").decode("latin-1")
        url = f"{host}{exchange.path}?{exchange.query.decode('latin-1')}"
        digest = hashlib.sha256(f"{tenant}\n{exchange.method}\n{url}".encode()).hexdigest()[:40]
        return f"{self._prefix}:cache:{service.id}:{service.cache_generation}:{digest}"

    @staticmethod
    def variant(exchange: Exchange, names: list[str]) -> str:
        values = "\n".join(exchange.header_index.get(n.encode(), b"").decode("latin-1") for n in names)
        return hashlib.sha256(values.encode()).hexdigest()[:16]

    async def get(self, key: str) -> bytes | None:
        if self._pipe is None:
            item = self._local.get(key)
            if item is None or item[0] < time.monotonic():
                return None
            self._local.move_to_end(key)
            return item[1]
        return await self._pipe.call(b"GET", key)

    async def put(self, key: str, value: bytes, ttl: int) -> None:
        if self._pipe is None:
            self._store_local(key, value, ttl)
            return
        await self._pipe.call(b"SET", key, value, b"EX", ttl)

    def _store_local(self, key: str, value: bytes, ttl: int) -> None:
        previous = self._local.pop(key, None)
        if previous is not None:
            self._local_bytes -= len(previous[1])
        self._local[key] = (time.monotonic() + ttl, value)
        self._local_bytes += len(value)
        while self._local_bytes > LOCAL_CAPACITY_BYTES and self._local:
            _, (_, evicted) = self._local.popitem(last=False)
            self._local_bytes -= len(evicted)

    # --- the two halves used by the pipeline ----------------------------------------------

    async def lookup(self, exchange: Exchange) -> None:
        """Answer from cache (raises Answered) or remember where to store the response."""
        base = self.base_key(exchange)
        metrics = exchange.runtime.metrics.cache_requests
        try:
            index = await self.get(base)
            if index is not None:
                names = json.loads(index)
                entry = await self.get(f"{base}:{self.variant(exchange, names)}")
                if entry is not None:
                    metrics.labels(exchange.service.slug, "hit").inc()
                    raise _hit(entry)
        except (OSError, TimeoutError, ValueError) as exc:
            logger.warning("response cache unavailable, forwarding: %s", exc)
        metrics.labels(exchange.service.slug, "miss").inc()
        exchange.cache_key = base
        exchange.response_headers.append((b"x-cache", b"MISS"))

    async def store(self, exchange: Exchange, status: int, headers: list, body: bytes) -> None:
        ttl = cacheable_ttl(status, headers, exchange.service.cache_ttl)
        if ttl <= 0 or len(body) > MAX_ENTRY_BYTES:
            return
        names = _vary_names(headers)
        stored_headers = [
            [n.decode("latin-1"), v.decode("latin-1")] for n, v in headers if n.lower() not in _NOT_STORED
        ]
        entry = json.dumps(
            {
                "status": status,
                "headers": stored_headers,
                "body": base64.b64encode(body).decode(),
                "stored_at": time.time(),
            }
        ).encode()
        base = exchange.cache_key
        try:
            await self.put(base, json.dumps(names).encode(), ttl)
            await self.put(f"{base}:{self.variant(exchange, names)}", entry, ttl)
        except (OSError, TimeoutError) as exc:
            logger.warning("could not store a cached response: %s", exc)


def _hit(raw: bytes) -> Answered:
    entry = json.loads(raw)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in entry["headers"]]
    headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    age = max(0, int(time.time() - entry["stored_at"]))
    headers += [(b"x-cache", b"HIT"), (b"age", str(age).encode())]
    return Answered(entry["status"], headers, base64.b64decode(entry["body"]))


def serve_from_cache(exchange: Exchange):
    """Pipeline step: GET/HEAD of a service with a cache TTL is answered from cache when possible."""
    service = exchange.service
    if not service.cache_ttl or exchange.method not in CACHEABLE_METHODS:
        return None
    if b"no-cache" in exchange.header_index.get(b"cache-control", b"").lower():
        exchange.cache_key = exchange.runtime.response_cache.base_key(exchange)  # refresh the entry
        exchange.response_headers.append((b"x-cache", b"BYPASS"))
        return None
    return exchange.runtime.response_cache.lookup(exchange)
