"""The upstream client on pyreqwest (Rust reqwest + hyper on tokio), `UPSTREAM_CLIENT=pyreqwest`.

A measured candidate for the hot path (`python -m bench.ab`), behind the interface of
`proxy/upstream.py`. reqwest resolves and dials inside Rust, out of the outbound guard's
reach, so each origin gets its own client pinned (`resolve`) to the addresses the guard
checked, re-checked every `_PIN_SECONDS` like aiohttp's DNS cache: a name that rebinds to
a denied address is never dialled. reqwest also sets timeouts per client, so the key is
(origin, connect timeout, read timeout). A target with its own TLS settings (CA bundle,
client certificate, verification off) is an `ssl.SSLContext` in the snapshot, which reqwest
cannot take: those requests go through the aiohttp client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

from gateway_project.core import outbound
from proxy.upstream import AiohttpUpstreamClient, Body, ConnectFailure, UpstreamBroken, UpstreamTimeout

__all__ = ["PyreqwestUpstreamClient"]

_KEEPALIVE = timedelta(seconds=30)
_PIN_SECONDS = 60.0  # aiohttp's ttl_dns_cache in proxy/upstream.py
_TIMER_SLACK = 0.01  # seconds; tokio's timers may fire this much before the asyncio clock says
_CLOSING: set[asyncio.Task] = set()
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _PyreqwestResponse:
    __slots__ = ("_context", "_response", "status", "headers")

    def __init__(self, context, response) -> None:
        self._context = context
        self._response = response
        self.status = response.status
        self.headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()
        ]

    async def read(self) -> bytes:
        from pyreqwest import exceptions

        try:
            return bytes(await self._response.body_reader.bytes())
        except exceptions.RequestError as exc:
            raise _body_failure(exc) from exc
        finally:
            await self._finish()

    async def chunks(self) -> AsyncIterator[bytes]:
        from pyreqwest import exceptions

        reader = self._response.body_reader
        try:
            while (chunk := await reader.read_chunk()) is not None:
                yield bytes(chunk)
        except exceptions.RequestError as exc:
            raise _body_failure(exc) from exc
        finally:
            await self._finish()

    async def _finish(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            await context.__aexit__(None, None, None)

    def close(self) -> None:
        if self._context is not None:
            task = asyncio.get_running_loop().create_task(self._finish())
            _CLOSING.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(_CLOSING.discard)


def _body_failure(exc: Exception) -> Exception:
    """A failure while the body streams: the read timeout, or a broken upstream."""
    from pyreqwest import exceptions

    if isinstance(exc, exceptions.RequestTimeoutError):
        return UpstreamTimeout(str(exc))
    return UpstreamBroken(str(exc))


def _timeout_failure(exc: Exception, elapsed: float, read_timeout: float) -> Exception:
    """pyreqwest reports any timeout before the response head as a connect timeout; a read
    timeout cannot fire before `read_timeout` has passed, so the elapsed time tells them apart
    (exact while the read timeout exceeds the connect timeout, as the defaults do)."""
    if elapsed >= read_timeout - _TIMER_SLACK:
        return UpstreamTimeout(f"read timeout: {exc}")
    return ConnectFailure(f"connect timeout: {exc}")


class _PinnedClient:
    """One reqwest client for one origin and timeout pair, dialling only checked addresses."""

    __slots__ = ("client", "expires")

    def __init__(self, client, expires: float) -> None:
        self.client, self.expires = client, expires


class PyreqwestUpstreamClient:
    """reqwest's pool through pyreqwest: redirects off, no decompression, bodies streamed."""

    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._clients: dict[tuple, _PinnedClient] = {}
        self._with_tls = AiohttpUpstreamClient(pool_size)
        self._building = asyncio.Lock()

    async def _client(self, url: str, connect: float, read: float):
        origin = url[: url.find("/", url.find("//") + 2)] if url.count("/") > 2 else url
        key = (origin, connect, read)
        pinned = self._clients.get(key)
        if pinned is None or pinned.expires < time.monotonic():
            async with self._building:  # the first burst to a new origin builds one client
                pinned = self._clients.get(key)
                if pinned is None or pinned.expires < time.monotonic():
                    pinned = await self._repin(key, pinned)
        return pinned.client

    async def _repin(self, key: tuple, stale: _PinnedClient | None) -> _PinnedClient:
        client = await self._pinned_build(*key)
        if stale is not None:
            task = asyncio.get_running_loop().create_task(stale.client.close())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)
        pinned = self._clients[key] = _PinnedClient(client, time.monotonic() + _PIN_SECONDS)
        return pinned

    async def _pinned_build(self, origin: str, connect: float, read: float):
        from pyreqwest.client import ClientBuilder

        parts = urlsplit(origin)
        host, port = parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(None, outbound.resolve, host, port)
        except outbound.OutboundRefused as exc:
            raise ConnectFailure(f"refused by the outbound guard: {exc.message}") from exc
        except OSError as exc:
            raise ConnectFailure(f"{host}: {exc}") from exc
        builder = (
            ClientBuilder()
            .max_connections(self._pool_size)
            .follow_redirects(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .no_proxy()
            .tcp_nodelay(True)
            .http1_only()
            .pool_idle_timeout(_KEEPALIVE)
            .connect_timeout(timedelta(seconds=connect))
            .read_timeout(timedelta(seconds=read))
        )
        for address in addresses:
            builder = builder.resolve(host, address, port)
        return builder.build()

    async def send(self, method, url, headers, body: Body, connect_timeout, read_timeout, tls=None):
        if tls is not None:
            return await self._with_tls.send(method, url, headers, body, connect_timeout, read_timeout, tls)
        from pyreqwest import exceptions

        client = await self._client(url, connect_timeout, read_timeout)
        # reqwest reads ahead up to a buffer limit before handing the response over; an SSE
        # or slow chunked upstream would be held back, so nothing is read ahead.
        request = client.request(method, url).headers(headers).streamed_read_buffer_limit(0)
        if isinstance(body, bytes):
            request = request.body_bytes(body)
        elif body is not None:
            request = request.body_stream(body)
        context = request.build_streamed()
        started = time.perf_counter()
        try:
            response = await context.__aenter__()
        except exceptions.ConnectTimeoutError as exc:
            raise _timeout_failure(exc, time.perf_counter() - started, read_timeout) from exc
        except exceptions.ConnectError as exc:
            raise ConnectFailure(str(exc)) from exc
        except exceptions.RequestTimeoutError as exc:
            raise UpstreamTimeout(str(exc) or "read timeout") from exc
        except exceptions.RequestError as exc:
            raise UpstreamBroken(str(exc)) from exc
        return _PyreqwestResponse(context, response)

    async def close(self) -> None:
        for pinned in self._clients.values():
            await pinned.client.close()
        await self._with_tls.close()
