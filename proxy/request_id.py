"""Request ids and W3C trace context (SPEC section 4 step 1)."""

from __future__ import annotations

import os
import re
import uuid

__all__ = ["accept_request_id", "continue_traceparent", "new_request_id"]

_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
# version 00, 32-hex trace id, 16-hex parent id, 2-hex flags (W3C Trace Context, section 3.2).
_TRACEPARENT_RE = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def new_request_id() -> str:
    return str(uuid.uuid4())


def accept_request_id(raw: bytes | None) -> str:
    """The client's id when it is 1-128 chars of [A-Za-z0-9._-], else a fresh UUID4."""
    if raw and _REQUEST_ID_RE.match(raw):
        return raw.decode()
    return new_request_id()


def continue_traceparent(raw: bytes | None) -> bytes:
    """A traceparent for the upstream hop: same trace, new parent id (ours); new trace if none."""
    span = os.urandom(8).hex().encode()
    if raw:
        match = _TRACEPARENT_RE.match(raw.strip())
        if match and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN:
            return b"00-" + match.group(1) + b"-" + span + b"-" + match.group(3)
    return b"00-" + os.urandom(16).hex().encode() + b"-" + span + b"-01"
