"""CORS (SPEC section 4 step 2): exact-match origin allowlist, preflights answered here.

Never `*` with credentials; `Origin: null` and suffix look-alikes are not in the list, so
they get no CORS headers (and a 403 on preflight).
"""

from __future__ import annotations

from proxy.exchange import Answered, Exchange, Rejection
from registry.constants import ALL_METHODS

__all__ = ["CorsPolicy"]

EXPOSED_HEADERS = (
    b"X-Request-ID, X-Process-Time, RateLimit, RateLimit-Policy, X-RateLimit-Limit, "
    b"X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Cache"
)
_PREFLIGHT_MAX_AGE = b"600"
_ALLOWED_METHODS = ", ".join(ALL_METHODS).encode()
_TOKEN_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ")


class CorsPolicy:
    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(origin.rstrip("/").encode() for origin in origins)

    def headers_for(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """CORS response headers for apps outside the pipeline (the SSE stream)."""
        if origin is None:
            return []
        headers = [(b"vary", b"Origin")]
        if origin in self.origins:
            headers += [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", EXPOSED_HEADERS),
            ]
        return headers

    def apply(self, exchange: Exchange) -> None:
        origin = exchange.header_index.get(b"origin")
        if origin is None:
            return
        exchange.response_headers.append((b"vary", b"Origin"))
        allowed = origin in self.origins
        if exchange.method == "OPTIONS" and b"access-control-request-method" in exchange.header_index:
            self._preflight(exchange, origin, allowed)
        if allowed:
            exchange.origin = origin
            exchange.response_headers += [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", EXPOSED_HEADERS),
            ]

    def _preflight(self, exchange: Exchange, origin: bytes, allowed: bool) -> None:
        if not allowed:
            raise Rejection("FORBIDDEN", "This origin is not allowed to call the API.")
        requested = exchange.header_index.get(b"access-control-request-headers", b"")
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", _ALLOWED_METHODS),
            (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]
        if requested and all(byte in _TOKEN_CHARS for byte in requested):
            headers.append((b"access-control-allow-headers", requested))
        raise Answered(204, headers)
