"""Request hygiene (SPEC section 4 step 3): refuse what different parsers could read differently.

Route matching and forwarding both use the path this step produces, so the gateway and
the upstream can never disagree about which resource was asked for.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from proxy.exchange import Exchange, Rejection

__all__ = ["MAX_HEADER_COUNT", "check_headers", "normalize_path"]

MAX_HEADER_COUNT = 100
MAX_HEADER_BYTES = 16 * 1024
# Encoded '/', '\' and NUL change a path's segments after decoding; ';' starts the
# path parameters some servers strip (`/..;/` tricks); a raw '\' is a separator on some.
_FORBIDDEN_RAW = re.compile(rb"%2f|%5c|%00|\\|\x00|;", re.IGNORECASE)
_DOT_SEGMENTS = (b".", b"..")


def normalize_path(raw_path: bytes) -> tuple[str, bool]:
    """The path with empty and dot segments resolved, and whether dot segments were present.

    Segments keep their original percent-encoding; only their decoded value decides
    whether they are dot segments (`%2e%2e` is `..`).
    """
    if _FORBIDDEN_RAW.search(raw_path):
        raise Rejection("INVALID_REQUEST", "The path contains an encoded slash, backslash, NUL or ';'.")
    if not raw_path.startswith(b"/"):
        raise Rejection("INVALID_REQUEST", "The request target must be an absolute path.")
    if b"//" not in raw_path and b"." not in raw_path and b"%2e" not in raw_path.lower():
        return raw_path.decode("latin-1"), False  # the common case: nothing to resolve
    resolved: list[bytes] = []
    had_dots = False
    for segment in raw_path.split(b"/")[1:]:
        decoded = unquote_to_bytes(segment) if b"%" in segment else segment
        if decoded in _DOT_SEGMENTS:
            had_dots = True
            if decoded == b".." and resolved:
                resolved.pop()
            continue
        if segment:
            resolved.append(segment)
    trailing = raw_path.endswith(b"/") and resolved
    path = b"/" + b"/".join(resolved) + (b"/" if trailing else b"")
    return path.decode("latin-1"), had_dots


def check_headers(exchange: Exchange) -> None:
    """Framing and credential ambiguity: CL+TE, duplicate CL, duplicate Authorization."""
    headers = exchange.headers
    if len(headers) > MAX_HEADER_COUNT:
        raise Rejection("HEADERS_TOO_LARGE", f"More than {MAX_HEADER_COUNT} request headers.")
    index = exchange.header_index
    duplicates = exchange.duplicate_headers
    if duplicates:
        for name in (
            b"content-length",
            b"authorization",
            b"transfer-encoding",
            b"host",
            b"x-api-key",
        ):
            if name in duplicates:
                raise Rejection("INVALID_REQUEST", f"Duplicate {name.decode()} header.")
    if b"content-length" in index:
        if b"transfer-encoding" in index:
            raise Rejection("INVALID_REQUEST", "Both Content-Length and Transfer-Encoding were sent.")
        if not index[b"content-length"].isdigit():
            raise Rejection("INVALID_REQUEST", "Content-Length is not a number.")
    elif b"transfer-encoding" in index and index[b"transfer-encoding"].strip().lower() != b"chunked":
        raise Rejection("INVALID_REQUEST", "Only Transfer-Encoding: chunked is accepted.")
    for name, value in headers:
        if len(value) > MAX_HEADER_BYTES:
            raise Rejection("HEADERS_TOO_LARGE", f"The {name.decode('latin-1')} header is too large.")
