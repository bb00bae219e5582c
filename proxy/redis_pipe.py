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
import binascii
import hashlib
import ssl
from collections import deque
from urllib.parse import unquote, urlsplit

from proxy.write_coalescing import CoalescingTransport

__all__ = [
    "ClusterPipe",
    "RedisPipe",
    "RedisReplyError",
    "SentinelResolver",
    "key_slot",
    "open_pipe",
    "script_sha",
]

_INCOMPLETE = object()
# Replies after which this connection is to a server that is not (or no longer) the master.
_NOT_A_MASTER = ("READONLY", "MASTERDOWN", "LOADING")


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
    """One pipelined connection to one Redis; with a `resolver` (Sentinel) the address is
    asked for at every (re)connect and the server must say it is the master."""

    def __init__(self, url: str, timeout: float = 0.5, resolver=None) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        self._db = int(parts.path.lstrip("/") or 0)
        self._ssl = ssl.create_default_context() if parts.scheme.startswith("rediss") else None
        self._timeout = timeout
        self._resolver = resolver
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future | None = None

    @classmethod
    def for_node(cls, host: str, port: int, topology, timeout: float = 0.5, resolver=None) -> RedisPipe:
        """A pipe to one node of a topology (credentials, TLS and database from it)."""
        pipe = cls("redis://", timeout, resolver)
        pipe._host, pipe._port, pipe._db = host, port, topology.db
        pipe._username, pipe._password = topology.username, topology.password
        pipe._ssl = ssl.create_default_context() if topology.tls else None
        return pipe

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    async def call(self, *args):
        """Send one command and wait for its reply (raises OSError/TimeoutError/RedisReplyError)."""
        protocol = self._protocol
        if protocol is None:
            protocol = await self._connect()
        try:
            return await self._send(protocol, encode_command(args))
        except RedisReplyError as exc:
            if str(exc).startswith(_NOT_A_MASTER):
                self._drop(protocol)  # a demoted master: ask the sentinels again
            raise
        except TimeoutError:
            if self._resolver is not None:
                self._drop(protocol)  # a partitioned master never resets the socket
            raise

    async def call_asking(self, *args):
        """ASKING then the command, written together on one connection (a slot being
        migrated): the target serves the command only right after ASKING."""
        protocol = self._protocol
        if protocol is None:
            protocol = await self._connect()
        loop = asyncio.get_running_loop()
        asking, reply = loop.create_future(), loop.create_future()
        protocol.pending.extend((asking, reply))
        protocol.transport.write(encode_command((b"ASKING",)) + encode_command(args))
        timer = loop.call_later(self._timeout, _expire_all, (asking, reply))
        try:
            await asking
            return await reply
        finally:
            timer.cancel()

    async def _send(self, protocol: _RespProtocol, command: bytes):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        protocol.pending.append(future)
        protocol.transport.write(command)
        timer = loop.call_later(self._timeout, _expire_all, (future,))
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
        if self._resolver is not None:
            self._host, self._port = await self._resolver()
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
        if self._resolver is not None:
            handshake.append([b"ROLE"])
        try:
            for command in handshake:
                reply = await self._send(protocol, encode_command(command))
            if self._resolver is not None and not (reply and reply[0] == b"master"):
                raise ConnectionError(f"{self._host}:{self._port} is not the master yet")
        except Exception:
            protocol.transport.close()
            raise
        self._protocol = protocol
        return protocol

    def _lost(self, protocol: _RespProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def _drop(self, protocol: _RespProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if protocol.transport is not None:
            protocol.transport.close()


def _expire_all(futures: tuple[asyncio.Future, ...]) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(TimeoutError("redis did not answer in time"))


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


# --- Sentinel ---------------------------------------------------------------------------


class SentinelResolver:
    """Asks the sentinels, in turn, for the master's address (SENTINEL get-master-addr-by-name).

    Called at every (re)connect, so the pipe follows a failover as soon as one sentinel
    announces the promoted master; the one that answered last is asked first next time.
    """

    def __init__(self, topology, timeout: float = 0.3) -> None:
        self._sentinels = list(topology.nodes)
        self._master = topology.master.encode()
        self._password = topology.sentinel_password
        self._timeout = timeout

    async def __call__(self) -> tuple[str, int]:
        errors = []
        for index, (host, port) in enumerate(self._sentinels):
            try:
                reply = await asyncio.wait_for(self._ask(host, port), self._timeout)
            except (OSError, TimeoutError, RedisReplyError, ValueError) as exc:
                errors.append(f"{host}:{port}: {exc!r}")
                continue
            if reply:
                if index:  # prefer the sentinel that answered
                    self._sentinels.insert(0, self._sentinels.pop(index))
                return reply[0].decode(), int(reply[1])
            errors.append(f"{host}:{port}: does not know {self._master.decode()!r}")
        raise ConnectionError(f"no sentinel named the master: {'; '.join(errors)}")

    async def _ask(self, host: str, port: int):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            commands = [(b"SENTINEL", b"get-master-addr-by-name", self._master)]
            if self._password:
                commands.insert(0, (b"AUTH", self._password))
            writer.write(b"".join(encode_command(command) for command in commands))
            buffer = b""
            replies = []
            while len(replies) < len(commands):
                chunk = await reader.read(4096)
                if not chunk:
                    raise ConnectionError("sentinel closed the connection")
                buffer += chunk
                reply, position = parse_reply(buffer, 0)
                while reply is not _INCOMPLETE:
                    if isinstance(reply, RedisReplyError):
                        raise reply
                    replies.append(reply)
                    buffer = buffer[position:]
                    reply, position = parse_reply(buffer, 0) if buffer else (_INCOMPLETE, 0)
            return replies[-1]
        finally:
            writer.close()


# --- Cluster ----------------------------------------------------------------------------

SLOTS = 16384
_MAX_REDIRECTS = 5


def key_slot(key) -> int:
    """Redis Cluster's slot of a key: CRC16 (XMODEM) of the key or of its {hash tag}."""
    data = key if isinstance(key, bytes) else str(key).encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


class ClusterPipe:
    """A RedisPipe per cluster node, a slot map from CLUSTER SLOTS, MOVED and ASK followed.

    `call` routes a single-key command by its key (args[1]); `evalsha` by its first key
    (the caller keeps one script's keys in one slot). Calls to different nodes run on
    their own pipelined connections, so callers that gather them pay one round trip per
    shard touched, in parallel.
    """

    cluster = True

    def __init__(self, topology, timeout: float = 0.5) -> None:
        self._topology = topology
        self._timeout = timeout
        self._seeds = list(topology.nodes)
        self._nodes: dict[tuple[str, int], RedisPipe] = {}
        self._slots: list[tuple[str, int] | None] = [None] * SLOTS
        self._refreshing: asyncio.Future | None = None

    def _node(self, address: tuple[str, int]) -> RedisPipe:
        pipe = self._nodes.get(address)
        if pipe is None:
            pipe = self._nodes[address] = RedisPipe.for_node(*address, self._topology, self._timeout)
        return pipe

    async def call(self, *args):
        return await self.call_on_slot(key_slot(args[1]), *args)

    async def evalsha(self, script: str, sha: str, keys: list, args: list):
        slot = key_slot(keys[0])
        try:
            return await self.call_on_slot(slot, b"EVALSHA", sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            # EVAL, not SCRIPT LOAD + EVALSHA: mid-migration the node that lacks the script
            # is reached through ASK, which a separate SCRIPT LOAD would not follow. EVAL
            # also caches the script on that node for the next EVALSHA.
            return await self.call_on_slot(slot, b"EVAL", script, len(keys), *keys, *args)

    async def call_on_slot(self, slot: int, *args):
        address = self._slots[slot]
        if address is None:
            await self.refresh()
            address = self._slots[slot] or self._seeds[0]
        asking = False
        for _ in range(_MAX_REDIRECTS):
            node = self._node(address)
            try:
                return await (node.call_asking(*args) if asking else node.call(*args))
            except RedisReplyError as exc:
                kind, _, rest = str(exc).partition(" ")
                if kind not in ("MOVED", "ASK"):
                    raise
                address = _redirect_address(rest)
                asking = kind == "ASK"
                if not asking:  # the slot moved for good: remember it, refresh the rest
                    self._slots[slot] = address
                    self._refresh_soon()
            except (OSError, TimeoutError):
                self._refresh_soon()  # a failed node: its replica is promoted, the map changes
                raise
        raise ConnectionError(f"too many cluster redirects for slot {slot}")

    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())

    async def refresh(self) -> None:
        """Load the slot map (once at a time; concurrent callers share it)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        known = [*{address for address in self._slots if address is not None}, *self._seeds]
        errors = []
        for address in dict.fromkeys(known):
            try:
                reply = await self._node(address).call(b"CLUSTER", b"SLOTS")
            except (OSError, TimeoutError, RedisReplyError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {exc!r}")
                continue
            slots: list[tuple[str, int] | None] = [None] * SLOTS
            for start, end, master, *_replicas in reply:
                host = master[0].decode() or address[0]
                owner = (host, int(master[1]))
                for slot in range(start, end + 1):
                    slots[slot] = owner
            self._slots = slots
            return
        raise ConnectionError(f"no cluster node answered CLUSTER SLOTS: {'; '.join(errors)}")

    async def close(self) -> None:
        for pipe in self._nodes.values():
            await pipe.close()
        self._nodes.clear()


def _redirect_address(text: str) -> tuple[str, int]:
    """`<slot> <host>:<port>` of a MOVED/ASK reply."""
    _, _, endpoint = text.partition(" ")
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def open_pipe(topology, timeout: float = 0.5):
    """The hot path's Redis connection for a topology (SPEC section 21)."""
    from gateway_project.core.redis_topology import CLUSTER, SENTINEL

    if topology.kind == CLUSTER:
        return ClusterPipe(topology, timeout)
    if topology.kind == SENTINEL:
        host, port = topology.nodes[0]
        return RedisPipe.for_node(host, port, topology, timeout, resolver=SentinelResolver(topology))
    return RedisPipe(topology.url, timeout)
