"""Upstream HTTP clients behind one small interface: aiohttp (default, faster) or httpx.

One client per process, keep-alive pool sized for concurrency, redirects never followed,
explicit connect and read timeouts, bodies streamed both ways and never decompressed.
Both dial through the outbound guard (`gateway_project.core.outbound`): every address is
checked once per new connection, never per pooled request.
`UPSTREAM_CLIENT` picks the implementation; the README quotes the benchmark behind the
default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from gateway_project.core.outbound import GuardedConnector, guarded_async_transport

__all__ = [
    "ConnectFailure",
    "UpstreamBroken",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "create_upstream_client",
]

Body = bytes | AsyncIterator[bytes] | None
_KEEPALIVE_SECONDS = 30.0
_READ_BUFFER = 2**16


class UpstreamError(Exception):
    """The upstream exchange failed before a complete response arrived."""


class ConnectFailure(UpstreamError):
    """No connection (refused, unreachable, connect timeout): safe to retry on another target."""


class UpstreamTimeout(UpstreamError):
    """Connected, but the upstream did not answer within the read timeout."""


class UpstreamBroken(UpstreamError):
    """The upstream closed the connection or spoke broken HTTP."""


class UpstreamResponse(Protocol):
    status: int
    headers: list[tuple[bytes, bytes]]

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: Body,
        connect_timeout: float,
        read_timeout: float,
        tls=None,
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


# --- aiohttp --------------------------------------------------------------------------------


class _AiohttpResponse:
    __slots__ = ("_response", "status", "headers")

    def __init__(self, response) -> None:
        self._response = response
        self.status = response.status
        self.headers = list(response.raw_headers)

    async def read(self) -> bytes:
        import aiohttp

        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(str(exc)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(str(exc)) from exc

    def close(self) -> None:
        self._response.release()


class AiohttpUpstreamClient:
    """aiohttp's connection pool; measured several times faster than httpx on the hot path."""

    def __init__(self, pool_size: int) -> None:
        import aiohttp
        from yarl import URL

        self._aiohttp = aiohttp
        self._url = URL
        self._session = aiohttp.ClientSession(
            connector=GuardedConnector(
                limit=pool_size,
                limit_per_host=0,
                keepalive_timeout=_KEEPALIVE_SECONDS,
                ttl_dns_cache=60,
                use_dns_cache=True,
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            read_bufsize=_READ_BUFFER,
            trust_env=False,
        )
        self._timeouts: dict[tuple[float, float], object] = {}

    def _timeout(self, connect: float, read: float):
        key = (connect, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
            self._timeouts[key] = timeout
        return timeout

    async def send(self, method, url, headers, body, connect_timeout, read_timeout, tls=None):
        aiohttp = self._aiohttp
        try:
            response = await self._session.request(
                method,
                self._url(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
                chunked=None,
                timeout=self._timeout(connect_timeout, read_timeout),
                ssl=True if tls is None else tls,
            )
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailure(str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectFailure(f"connect timeout: {exc}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(str(exc) or "read timeout") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise UpstreamBroken(str(exc) or "server disconnected") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(str(exc)) from exc
        return _AiohttpResponse(response)

    async def close(self) -> None:
        await self._session.close()


# --- httpx ----------------------------------------------------------------------------------


class _HttpxResponse:
    __slots__ = ("_response", "status", "headers")

    def __init__(self, response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = list(response.headers.raw)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise UpstreamBroken(str(exc)) from exc

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._response.aclose())


class HttpxUpstreamClient:
    """The design's client (httpx), kept selectable for comparison under `make bench`."""

    def __init__(self, pool_size: int) -> None:
        import httpx

        self._httpx = httpx
        limits = httpx.Limits(
            max_connections=pool_size,
            max_keepalive_connections=pool_size,
            keepalive_expiry=_KEEPALIVE_SECONDS,
        )
        self._limits = limits
        self._client = self._new_client()
        self._tls_clients: dict[object, object] = {}  # httpx sets TLS per client, not per request

    def _new_client(self, tls=None):
        options = {"limits": self._limits} if tls is None else {"limits": self._limits, "verify": tls}
        return self._httpx.AsyncClient(
            transport=guarded_async_transport(**options), follow_redirects=False, trust_env=False
        )

    def _client_for(self, tls):
        if tls is None:
            return self._client
        client = self._tls_clients.get(tls)
        if client is None:
            client = self._tls_clients[tls] = self._new_client(tls)
        return client

    async def send(self, method, url, headers, body, connect_timeout, read_timeout, tls=None):
        httpx = self._httpx
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        client = self._client_for(tls)
        request = client.build_request(method, url, headers=headers, content=body, timeout=timeout)
        try:
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectFailure(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or "read timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamBroken(str(exc)) from exc
        return _HttpxResponse(response)

    async def close(self) -> None:
        for client in (self._client, *self._tls_clients.values()):
            await client.aclose()


def create_upstream_client(kind: str, pool_size: int) -> UpstreamClient:
    if kind == "httpx":
        return HttpxUpstreamClient(pool_size)
    if kind == "aiohttp":
        return AiohttpUpstreamClient(pool_size)
    if kind == "pyreqwest":
        try:
            import pyreqwest  # noqa: F401 - an optional extra
        except ImportError as exc:
            raise ValueError("UPSTREAM_CLIENT=pyreqwest needs pyreqwest: pip install '.[pyreqwest]'") from exc
        from proxy.upstream_pyreqwest import PyreqwestUpstreamClient

        return PyreqwestUpstreamClient(pool_size)
    raise ValueError(f"UPSTREAM_CLIENT must be aiohttp, httpx or pyreqwest, not {kind!r}")
