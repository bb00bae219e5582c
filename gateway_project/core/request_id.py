"""Request ids and W3C trace context (SPEC section 4 step 1)."""

from __future__ import annotations

import random
import re

__all__ = ["accept_request_id", "continue_traceparent", "new_request_id", "parse_traceparent"]

_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
# version 00, 32-hex trace id, 16-hex parent id, 2-hex flags (W3C Trace Context, section 3.2).
_TRACEPARENT_RE = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


# Ids and trace ids need uniqueness, not secrecy: Mersenne Twister bits avoid a getrandom()
# syscall per request (W3C Trace Context asks for random, not cryptographic, trace ids).
_bits = random.SystemRandom().getrandbits(64)
_random = random.Random(_bits)


def new_request_id() -> str:
    """A UUID4 string (version nibble 4, RFC 4122 variant), without building a UUID object."""
    bits = _random.getrandbits(128)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


def accept_request_id(raw: bytes | None) -> str:
    """The client's id when it is 1-128 chars of [A-Za-z0-9._-], else a fresh UUID4."""
    if raw and _REQUEST_ID_RE.match(raw):
        return raw.decode()
    return new_request_id()


def continue_traceparent(raw: bytes | None) -> bytes:
    """A traceparent for the upstream hop: same trace, new parent id (ours); new trace if none."""
    span = b"%016x" % (_random.getrandbits(64) or 1)
    if raw:
        match = _TRACEPARENT_RE.match(raw.strip())
        if match and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN:
            return b"00-" + match.group(1) + b"-" + span + b"-" + match.group(3)
    return b"00-%032x-" % (_random.getrandbits(128) or 1) + span + b"-01"


def parse_traceparent(raw: bytes | None) -> tuple[int, int, int] | None:
    """(trace id, parent id, flags) of a well-formed traceparent with non-zero ids, else None."""
    match = _TRACEPARENT_RE.match(raw.strip()) if raw else None
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return None
    return int(match.group(1), 16), int(match.group(2), 16), int(match.group(3), 16)
