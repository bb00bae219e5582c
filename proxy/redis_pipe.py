"""A minimal pipelined Redis connection for the hot path (the rate limiter's EVALSHA).

redis-py's asyncio client costs more Python per command than the limiter's whole Lua
script costs Redis, and it opens one connection per concurrent request. Here every
in-flight call shares one connection: commands are written as they come and replies
matched in order (RESP2), so 64 concurrent requests need one socket and no pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from urllib.parse import unquote, urlsplit

__all__ = ["RedisPipe", "RedisReplyError", "script_sha"]


class RedisReplyError(Exception):
    """Redis answered with an error (`-ERR ...`, `-NOSCRIPT ...`)."""


def _encode(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


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
        self._writer: asyncio.StreamWriter | None = None
        self._pending: deque[asyncio.Future] = deque()
        self._connecting: asyncio.Future | None = None
        self._reader_task: asyncio.Task | None = None

    async def call(self, *args):
        """Send one command and wait for its reply (raises OSError/TimeoutError/RedisReplyError)."""
        if self._writer is None:
            await self._connect()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(future)
        self._writer.write(_encode(args))
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
        if self._reader_task is not None:
            self._reader_task.cancel()
        self._drop(ConnectionError("closed"))

    # --- connection -------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._host, self._port, ssl=self._ssl), self._timeout
        )
        handshake = []
        if self._password:
            handshake.append([b"AUTH", *([self._username] if self._username else []), self._password])
        if self._db:
            handshake.append([b"SELECT", self._db])
        for command in handshake:
            writer.write(_encode(command))
            reply = await asyncio.wait_for(_read_reply(reader), self._timeout)
            if isinstance(reply, RedisReplyError):
                writer.close()
                raise reply
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._read_replies(reader))

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                reply = await _read_reply(reader)
                future = self._pending.popleft()
                if not future.done():
                    if isinstance(reply, RedisReplyError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
            self._drop(ConnectionError(f"redis connection lost: {exc!r}"))

    def _drop(self, error: Exception) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError("redis did not answer in time"))


async def _read_reply(reader: asyncio.StreamReader):
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        return RedisReplyError(rest.decode(errors="replace"))
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        count = int(rest)
        if count < 0:
            return None
        return [await _read_reply(reader) for _ in range(count)]
    raise ValueError(f"unexpected RESP reply {line[:20]!r}")


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
