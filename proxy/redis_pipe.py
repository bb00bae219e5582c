"""A minimal pipelined Redis connection for the hot path (the rate limiter, the response cache).

redis-py's asyncio client costs more Python per command than the limiter's whole Lua
script costs Redis, and it opens one connection per concurrent request. Here every
in-flight call shares one connection: commands are written as they come and replies are
matched in order (RESP2), parsed straight from the socket's buffer in an asyncio.Protocol,
so 64 concurrent requests need one socket, no pool and no coroutine per reply element.
Commands issued in the same event-loop turn leave in one write (one syscall, one packet).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from urllib.parse import unquote, urlsplit

from proxy.write_coalescing import CoalescingTransport

__all__ = ["RedisPipe", "RedisReplyError", "script_sha"]

_INCOMPLETE = object()


class RedisReplyError(Exception):
    """Redis answered with an error (`-ERR ...`, `-NOSCRIPT ...`)."""


def encode_command(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buffer: bytes, position: int):
    """(reply, next position) for one RESP2 reply at `position`, or (_INCOMPLETE, position)."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        return _INCOMPLETE, position
    kind = buffer[position : position + 1]
    body = buffer[position + 1 : end]
    after = end + 2
    if kind == b":":
        return int(body), after
    if kind == b"+":
        return body, after
    if kind == b"-":
        return RedisReplyError(body.decode(errors="replace")), after
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return _INCOMPLETE, position
        return buffer[after : after + size], after + size + 2
    if kind == b"*":
        count = int(body)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse_reply(buffer, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, position
            items.append(item)
        return items, after
    raise ValueError(f"unexpected RESP reply {buffer[position : position + 20]!r}")


class _RespProtocol(asyncio.Protocol):
    def __init__(self, on_lost) -> None:
        self.transport = None
        self.pending: deque[asyncio.Future] = deque()
        self._buffer = b""
        self._on_lost = on_lost

    def connection_made(self, transport) -> None:
        self.transport = CoalescingTransport(transport, asyncio.get_running_loop())

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        position = 0
        while position < len(buffer):
            try:
                reply, next_position = parse_reply(buffer, position)
            except ValueError as exc:
                self.transport.close()
                self._fail(ConnectionError(str(exc)))
                return
            if reply is _INCOMPLETE:
                break
            position = next_position
            future = self.pending.popleft() if self.pending else None
            if future is not None and not future.done():
                if isinstance(reply, RedisReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        self._buffer = buffer[position:]

    def connection_lost(self, exc) -> None:
        self._fail(ConnectionError(f"redis connection lost: {exc!r}"))
        self._on_lost(self)

    def _fail(self, error: Exception) -> None:
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)


class RedisPipe:
    def __init__(self, url: str, timeout: float = 0.5) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        self._db = int(parts.path.lstrip("/") or 0)
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._timeout = timeout
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future | None = None

    async def call(self, *args):
        """Send one command and wait for its reply (raises OSError/TimeoutError/RedisReplyError)."""
        protocol = self._protocol
        if protocol is None:
            protocol = await self._connect()
        return await self._send(protocol, encode_command(args))

    async def _send(self, protocol: _RespProtocol, command: bytes):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        protocol.pending.append(future)
        protocol.transport.write(command)
        timer = loop.call_later(self._timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def evalsha(self, script: str, sha: str, keys: list, args: list):
        try:
            return await self.call(b"EVALSHA", sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self.call(b"SCRIPT", b"LOAD", script)
            return await self.call(b"EVALSHA", sha, len(keys), *keys, *args)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    # --- connection -------------------------------------------------------------------

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _RespProtocol(self._lost), self._host, self._port, ssl=self._ssl),
            self._timeout,
        )
        handshake = []
        if self._password:
            handshake.append([b"AUTH", *([self._username] if self._username else []), self._password])
        if self._db:
            handshake.append([b"SELECT", self._db])
        try:
            for command in handshake:
                await self._send(protocol, encode_command(command))
        except Exception:
            protocol.transport.close()
            raise
        self._protocol = protocol
        return protocol

    def _lost(self, protocol: _RespProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError("redis did not answer in time"))


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
